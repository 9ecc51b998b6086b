//! Kernel modules come from downloaded packages: the ELF `.modinfo` reader must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = images::kmod::modinfo_section(data);
    let _ = images::kmod::module_depends(data);
    let _ = images::formats::multiboot1_header_offset(data);
    let _ = images::formats::multiboot2_header_offset(data);
    let _ = images::formats::is_arm64_image(data);
});
