//! Reader, writer and DTS printer against dtc on real trees.
//!
//! Independent reference: dtc. For each board blob B:
//! - `dtc -O dts (our to_dtb(from_dtb(B)))` == `dtc -O dts B` (we read and rewrite every node,
//!   property and reservation exactly);
//! - our `to_dts` compiles with `dtc -I dts -O dtb`, and that blob decompiles to the same text as our
//!   own blob does.

mod support;

use device_tree::{DeviceTree, DtError};

fn boards() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    for (name, blob) in [
        ("virt-gic2", support::qemu_virt_dtb(2)),
        ("virt-gic3", support::qemu_virt_dtb(3)),
        ("rpi4", support::rpi4()),
        ("zcu102", support::zcu102()),
    ] {
        if let Some(b) = blob {
            v.push((name, b));
        }
    }
    v
}

#[test]
fn rewrite_is_identical_to_dtc() {
    for (name, blob) in boards() {
        let tree = DeviceTree::from_dtb(&blob).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = tree.to_dtb();
        let want = support::dtc_decompile(&blob, &format!("{name}-orig.dtb"));
        let got = support::dtc_decompile(&ours, &format!("{name}-ours.dtb"));
        assert_eq!(got, want, "{name}: rewritten blob differs");
        // And our reader reads our own writer's output back to the same model.
        assert_eq!(DeviceTree::from_dtb(&ours).as_ref(), Ok(&tree), "{name}");
    }
}

#[test]
fn dts_is_accepted_by_dtc_and_means_the_same() {
    for (name, blob) in boards() {
        let tree = DeviceTree::from_dtb(&blob).expect("parse");
        let dts = tree.to_dts();
        let compiled = support::dtc_compile(&dts, &format!("{name}.dts"))
            .unwrap_or_else(|e| panic!("{name}: dtc rejected our DTS: {e}"));
        let via_dts = support::dtc_decompile(&compiled, &format!("{name}-via-dts.dtb"));
        let direct = support::dtc_decompile(&tree.to_dtb(), &format!("{name}-direct.dtb"));
        assert_eq!(via_dts, direct, "{name}: DTS round trip changed the tree");
    }
}

#[test]
fn dts_escapes_and_types() {
    let mut t = DeviceTree::new();
    t.root
        .set_prop("s", device_tree::value::string("a \"quoted\" \\ path"));
    t.root
        .set_prop("list", device_tree::value::strings(&["one", "two"]));
    t.root
        .set_prop("cells", device_tree::value::cells(&[1, 0xdead_beef]));
    t.root.set_prop("bytes", vec![1u8, 2, 3]);
    t.root.set_prop("empty", Vec::new());
    t.root.set_prop("nul-only", vec![0u8]);
    t.root.set_prop("binary", vec![0xffu8, 0, 0x10, 0]);
    t.reservations.push(device_tree::MemReservation {
        address: 0x1000,
        size: 0x2000,
    });
    let dts = t.to_dts();
    let compiled =
        support::dtc_compile(&dts, "escapes.dts").unwrap_or_else(|e| panic!("{e}\n{dts}"));
    // dtc's blob must hold exactly our bytes.
    assert_eq!(DeviceTree::from_dtb(&compiled), Ok(t));
}

#[test]
fn reservations_are_read() {
    // bcm2711-rpi-4-b.dts: `/memreserve/ 0x00000000 0x00001000;` (the spin tables; dtc prints it).
    let Some(blob) = support::rpi4() else { return };
    let t = DeviceTree::from_dtb(&blob).expect("parse");
    assert_eq!(
        t.reservations,
        vec![device_tree::MemReservation {
            address: 0,
            size: 0x1000
        }]
    );
}

#[test]
fn malformed_blobs_are_typed_errors() {
    assert!(matches!(
        DeviceTree::from_dtb(&[]),
        Err(DtError::Truncated { .. })
    ));
    assert!(matches!(
        DeviceTree::from_dtb(&[0u8; 64]),
        Err(DtError::BadMagic(0))
    ));
    let Some(blob) = support::qemu_virt_dtb(3) else {
        return;
    };
    let tree = DeviceTree::from_dtb(&blob).expect("parse");
    let good = tree.to_dtb();
    // Every truncation fails cleanly (the header's totalsize no longer fits).
    for cut in (0..good.len()).step_by(7) {
        assert!(DeviceTree::from_dtb(&good[..cut]).is_err(), "cut at {cut}");
    }
    // Corrupting single bytes never panics (errors or a different tree are both fine).
    for i in (0..good.len()).step_by(3) {
        let mut b = good.clone();
        b[i] ^= 0xa5;
        let _ = DeviceTree::from_dtb(&b);
    }
    // Version 15 is refused with its number.
    let mut b = good.clone();
    b[20..24].copy_from_slice(&15u32.to_be_bytes());
    assert_eq!(
        DeviceTree::from_dtb(&b),
        Err(DtError::UnsupportedVersion {
            version: 15,
            last_comp: 16
        })
    );
}

#[test]
fn deep_nesting_is_bounded() {
    let mut node = device_tree::Node::new("n");
    for _ in 0..200 {
        let mut parent = device_tree::Node::new("n");
        parent.children.push(node);
        node = parent;
    }
    let mut t = DeviceTree::new();
    t.root.children.push(node);
    let blob = t.to_dtb();
    assert_eq!(
        DeviceTree::from_dtb(&blob),
        Err(DtError::TooDeep {
            max: device_tree::tree::MAX_DEPTH
        })
    );
}

#[test]
fn lookup_and_edit() {
    let Some(blob) = support::qemu_virt_dtb(2) else {
        return;
    };
    let mut t = DeviceTree::from_dtb(&blob).expect("parse");
    // Unit-less lookup as in libfdt.
    assert_eq!(
        t.canonical_path("/pl031").as_deref(),
        Some("/pl031@9010000")
    );
    assert!(t.node("/no-such-node").is_none());
    t.set_prop("/pl031@9010000", "xen,passthrough", Vec::new())
        .expect("set");
    t.add_node("/chosen", device_tree::Node::new("extra"))
        .expect("add");
    let out = t.to_dtb();
    assert_eq!(
        support::fdtget(&out, "/pl031@9010000", "xen,passthrough", "x").as_deref(),
        Some("")
    );
    assert!(support::fdt_subnodes(&out, "/chosen").contains(&"extra".to_owned()));
    assert_eq!(
        t.set_prop("/missing", "x", Vec::new()),
        Err(DtError::NodeNotFound("/missing".into()))
    );
}
