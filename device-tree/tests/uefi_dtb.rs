//! The UEFI variant of the host DTB, read back with libfdt's `fdtget` (booting.txt, "UEFI boot and
//! dom0less": each module node names its file with `xen,uefi-binary`; Xen's stub writes `reg`).

mod support;

use std::collections::BTreeMap;

use device_tree::DeviceTree;
use device_tree::dom0less::{
    ChosenSpec, Dom0Spec, DomainNodeSpec, ModuleKind, ModuleSpec, apply_chosen,
};
use device_tree::uefi::{UefiDtbError, uefi_variant};

fn module(kind: ModuleKind, addr: u64, size: u64) -> ModuleSpec {
    support::module(kind, addr, size, None)
}

fn spec() -> ChosenSpec {
    let dom = |name: &str, k: u64, r: u64| DomainNodeSpec {
        modules: vec![
            module(ModuleKind::Kernel, k, 0x1000),
            module(ModuleKind::Ramdisk, r, 0x200),
        ],
        ..support::domain(name)
    };
    ChosenSpec {
        xen_bootargs: "console=dtuart".into(),
        dom0: Some(Dom0Spec {
            kernel: module(ModuleKind::Kernel, 0x4700_0000, 0x1234),
            ramdisk: None,
            xsm_policy: None,
            bootargs: Some("console=hvc0".into()),
        }),
        domains: vec![
            dom("a", 0x4a00_0000, 0x4b00_0000),
            dom("b", 0x4c00_0000, 0x4d00_0000),
        ],
        cpupools: vec![],
        passthrough_host_paths: vec![],
    }
}

#[test]
fn modules_name_their_esp_files() {
    let Some(blob) = support::qemu_virt_dtb(2) else {
        return;
    };
    let mut t = DeviceTree::from_dtb(&blob).expect("parse");
    apply_chosen(&mut t, &spec()).expect("apply");
    let direct = t.to_dtb();
    let files: BTreeMap<u64, String> = [
        (0x4700_0000, "dom0-vmlinuz"),
        (0x4a00_0000, "guest-vmlinuz"), // one kernel shared by both domUs: loaded once by Xen
        (0x4c00_0000, "guest-vmlinuz"),
        (0x4b00_0000, "a-initrd.cpio"),
        (0x4d00_0000, "b-initrd.cpio"),
    ]
    .into_iter()
    .map(|(a, n)| (a, n.to_owned()))
    .collect();
    let u = uefi_variant(&t, &files).expect("uefi").to_dtb();
    // The direct tree is untouched.
    assert_eq!(t.to_dtb(), direct);
    support::dtc_decompile(&u, "uefi.dtb");
    let g = |n: &str, p: &str, ty: &str| support::fdtget(&u, n, p, ty);
    assert_eq!(
        g("/chosen/module@47000000", "xen,uefi-binary", "s").as_deref(),
        Some("dom0-vmlinuz")
    );
    assert_eq!(g("/chosen/module@47000000", "reg", "x"), None);
    assert_eq!(
        g("/chosen/domU-a/module@4a000000", "xen,uefi-binary", "s").as_deref(),
        Some("guest-vmlinuz")
    );
    assert_eq!(
        g("/chosen/domU-b/module@4c000000", "xen,uefi-binary", "s").as_deref(),
        Some("guest-vmlinuz")
    );
    assert_eq!(
        g("/chosen/domU-b/module@4d000000", "xen,uefi-binary", "s").as_deref(),
        Some("b-initrd.cpio")
    );
    assert_eq!(g("/chosen/domU-b/module@4d000000", "reg", "x"), None);
    assert_eq!(
        g("/chosen/domU-b/module@4d000000", "compatible", "s").as_deref(),
        Some("multiboot,ramdisk multiboot,module")
    );
}

#[test]
fn refuses_names_the_esp_cannot_hold_and_unnamed_modules() {
    let mut t = DeviceTree::new();
    t.root.add_child(device_tree::Node::new("chosen"));
    apply_chosen(&mut t, &spec()).expect("apply");
    let mut files = BTreeMap::new();
    files.insert(0x4700_0000u64, "EFI/dom0".to_owned());
    assert_eq!(
        uefi_variant(&t, &files),
        Err(UefiDtbError::BadName("EFI/dom0".into()))
    );
    files.insert(0x4700_0000, "dom0".to_owned());
    assert!(
        matches!(uefi_variant(&t, &files), Err(UefiDtbError::Unnamed(p)) if p == "/chosen/domU-a/module@4a000000")
    );
}
