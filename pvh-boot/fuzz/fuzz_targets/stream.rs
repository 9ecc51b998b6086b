//! The streaming loader on arbitrary bytes: LZ4 legacy blocks (`stream::Lz4Legacy`), the ELF
//! headers from the first block (`ElfKernel::parse_prefix`) and `build_streamed` into guest memory,
//! as domforge-init reads a kernel file from dom0's initramfs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvh_boot::kernel::ElfKernel;
use pvh_boot::layout::LayoutRequest;
use pvh_boot::memory::VecGuestMemory;
use pvh_boot::stream::{BlockSource, Lz4Legacy, SliceSource, LZ4_LEGACY_MAGIC};

fuzz_target!(|data: &[u8]| {
    // Most inputs start with the magic so the fuzzer explores the blocks.
    let mut stored = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
    stored.extend_from_slice(data);
    for input in [data, &stored[..]] {
        let Ok(Some(mut first)) = Lz4Legacy::open(SliceSource(input)) else { continue };
        let Ok(Some(block)) = first.next_block() else { continue };
        let headers = block.to_vec();
        let Ok(elf) = ElfKernel::parse_prefix(&headers, u64::MAX) else { continue };
        let request = LayoutRequest { memory_bytes: 64 << 20, vcpus: 1, cmdline: "console=hvc0", ramdisk: None };
        let Ok((_, layout)) = pvh_boot::plan(&elf, &request) else { continue };
        let Ok(Some(mut blocks)) = Lz4Legacy::open(SliceSource(input)) else { continue };
        let mut mem = VecGuestMemory::new(&layout.populate);
        let _ = pvh_boot::build_streamed(&elf, &mut blocks, &request, &mut mem);
    }
});
