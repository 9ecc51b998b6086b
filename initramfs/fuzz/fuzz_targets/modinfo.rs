//! Kernel modules come from downloaded packages: the ELF `.modinfo` reader must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = initramfs::kmod::modinfo_section(data);
    let _ = initramfs::kmod::module_depends(data);
    let _ = debian_fetch::formats::multiboot1_header_offset(data);
    let _ = debian_fetch::formats::multiboot2_header_offset(data);
    let _ = debian_fetch::formats::is_arm64_image(data);
});
