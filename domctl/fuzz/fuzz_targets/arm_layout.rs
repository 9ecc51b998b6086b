//! An arm64 kernel file comes from the control domain's initramfs, i.e. from whoever built the
//! image: parsing it (raw `Image` or compressed) and laying a guest out around it must never panic,
//! and an accepted layout must keep the kernel, ramdisk and DTB inside guest RAM without overlap.
#![no_main]
use domctl::builder::arm::{ArmKernel, ArmLayout};
use firmware_config::board::Region;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the guest: memory (1-512 MiB), ramdisk and DTB sizes.
    let [m, r0, r1, d0, rest @ ..] = data else {
        return;
    };
    let memory = (u64::from(*m) + 1) << 21;
    let ramdisk_len = Some(u64::from(u16::from_le_bytes([*r0, *r1])) << 8).filter(|&l| l > 0);
    let dtb_len = (u64::from(*d0) << 8).max(64);
    let Ok(kernel) = ArmKernel::from_image_with_limit(rest, 64 << 20) else {
        return;
    };
    let Ok(layout) = ArmLayout::plan(&kernel, memory, ramdisk_len, dtb_len) else {
        return;
    };
    let inside = |r: &Region| {
        layout
            .ram
            .iter()
            .any(|b| r.base >= b.base && r.end().is_some_and(|e| Some(e) <= b.end()))
    };
    assert!(inside(&layout.kernel), "kernel outside RAM: {layout:?}");
    assert!(inside(&layout.dtb), "DTB outside RAM: {layout:?}");
    assert!(!layout.kernel.overlaps(&layout.dtb), "{layout:?}");
    if let Some(i) = &layout.initrd {
        assert!(inside(i), "initrd outside RAM: {layout:?}");
        assert!(!i.overlaps(&layout.kernel) && !i.overlaps(&layout.dtb), "{layout:?}");
    }
    assert_eq!(layout.entry, layout.kernel.base);
    let _ = layout.populate_ranges();
});
