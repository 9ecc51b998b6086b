//! ELF parsing, note decoding and guest layout/build on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvh_boot::kernel::ElfKernel;
use pvh_boot::layout::LayoutRequest;
use pvh_boot::memory::VecGuestMemory;

fuzz_target!(|data: &[u8]| {
    // Make most inputs start like an ELF so the fuzzer explores the headers.
    let mut bytes = b"\x7fELF".to_vec();
    bytes.extend_from_slice(data);
    for input in [data, &bytes[..]] {
        let Ok(elf) = ElfKernel::parse(input) else { continue };
        let _ = elf.pvh_entry_checked();
        let _ = elf.phys32_reloc();
        for seg in &elf.segments {
            let _ = elf.segment_data(seg);
        }
        let request = LayoutRequest { memory_bytes: 64 << 20, vcpus: 2, cmdline: "console=hvc0", ramdisk: Some(b"rd") };
        if let Ok((_, layout)) = pvh_boot::plan(&elf, &request) {
            let mut mem = VecGuestMemory::new(&layout.populate);
            let _ = pvh_boot::build_from_elf(&elf, &request, &mut mem);
        }
    }
});
