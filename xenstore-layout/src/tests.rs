//! Against an in-memory xenstore that behaves as xenstored does for writes (missing parents are
//! created with the parent's perms, xenstore.txt "WRITE"), compared with the layout xl 4.17 wrote
//! (pv-devices.md, `xenstore-ls -fp` of run 5) — the independent reference.

use super::*;
use std::collections::BTreeMap;
use std::string::String;

#[derive(Default)]
struct FakeStore {
    nodes: BTreeMap<String, (Vec<u8>, Vec<Perm>)>,
}

impl FakeStore {
    fn new() -> FakeStore {
        let mut s = FakeStore::default();
        s.nodes
            .insert("/".into(), (Vec::new(), vec![Perm::new(0, Access::None)]));
        s
    }
    /// xenstored's write: a missing ancestor is created empty, inheriting its parent's perms.
    fn write(&mut self, path: &str, value: &[u8]) {
        let mut cur = String::new();
        let mut parent_perms = self.nodes["/"].1.clone();
        for seg in path.trim_start_matches('/').split('/') {
            cur.push('/');
            cur.push_str(seg);
            let entry = self
                .nodes
                .entry(cur.clone())
                .or_insert_with(|| (Vec::new(), parent_perms.clone()));
            parent_perms = entry.1.clone();
        }
        self.nodes.get_mut(path).unwrap().0 = value.to_vec();
    }
    fn set_perms(&mut self, path: &str, perms: &[Perm]) {
        self.nodes.get_mut(path).unwrap().1 = perms.to_vec();
    }
    fn apply(&mut self, t: &Transaction) {
        for n in t.all() {
            self.write(&n.path, &n.value);
            self.set_perms(&n.path, &n.perms);
        }
    }
    fn get(&self, path: &str) -> (String, String) {
        let (v, p) = &self.nodes[path];
        (String::from_utf8(v.clone()).unwrap(), perms_string(p))
    }
}

fn vbd() -> Vbd {
    Vbd {
        vdev: "xvda".into(),
        devid: vdev_to_devid("xvda").unwrap(),
        target: "/run/d0.img".into(),
        mode: Mode::Rw,
        device_type: DeviceType::Disk,
    }
}

#[test]
fn vdev_numbers_match_vbd_interface_txt() {
    // Examples given in docs/misc/vbd-interface.txt and Linux's xen-blkfront major/minor tables.
    assert_eq!(vdev_to_devid("xvda"), Ok(51712));
    assert_eq!(vdev_to_devid("xvdb"), Ok(51728));
    assert_eq!(vdev_to_devid("xvda1"), Ok(51713));
    assert_eq!(vdev_to_devid("xvdq"), Ok(1 << 28 | 16 << 8));
    assert_eq!(vdev_to_devid("xvdaa"), Ok(1 << 28 | 26 << 8));
    assert_eq!(vdev_to_devid("hda"), Ok(768));
    assert_eq!(vdev_to_devid("hdb"), Ok(832));
    assert_eq!(vdev_to_devid("hdc"), Ok(5632));
    assert_eq!(vdev_to_devid("sda"), Ok(2048));
    assert_eq!(vdev_to_devid("sdb1"), Ok(2065));
    assert_eq!(vdev_to_devid("51712"), Ok(51712));
    assert_eq!(vdev_to_devid("hde"), Err(VdevError::OutOfRange));
    assert_eq!(vdev_to_devid("vda"), Err(VdevError::Syntax));
    assert_eq!(vdev_to_devid("xvd"), Err(VdevError::Syntax));
    assert_eq!(vdev_to_devid("xvda01"), Err(VdevError::Syntax));
}

#[test]
fn mac_round_trip_and_default_is_stable_and_xen_oui() {
    let m = parse_mac("00:16:3E:63:7a:5d").unwrap();
    assert_eq!(format_mac(&m), "00:16:3e:63:7a:5d");
    assert!(parse_mac("00:16:3e:63:7a").is_err());
    assert!(parse_mac("00:16:3e:63:7a:5d:00").is_err());
    let a = default_mac("sys", "app", 0);
    assert_eq!(a, default_mac("sys", "app", 0));
    assert_ne!(a, default_mac("sys", "app", 1));
    assert_eq!(a[..3], XEN_OUI);
}

#[test]
fn disk_layout_matches_what_xl_wrote() {
    let mut s = FakeStore::new();
    s.apply(&disk_nodes(&vbd(), 1, 0));
    let be = "/local/domain/0/backend/vbd/1/51712";
    let fe = "/local/domain/1/device/vbd/51712";
    assert_eq!(s.get(be), ("".into(), "n0,r1".into()));
    for (k, v) in [
        ("frontend", fe),
        ("frontend-id", "1"),
        ("online", "1"),
        ("state", "1"),
        ("params", "/run/d0.img"),
        ("mode", "w"),
        ("device-type", "disk"),
        ("dev", "xvda"),
        ("type", "phy"),
        ("removable", "0"),
        ("bootable", "1"),
        ("specification", "xen"),
        ("discard-enable", "1"),
    ] {
        assert_eq!(
            s.get(&format!("{be}/{k}")),
            (v.into(), "n0,r1".into()),
            "{k}"
        );
    }
    assert_eq!(s.get(fe), ("".into(), "n1,r0".into()));
    for (k, v) in [
        ("backend", be),
        ("backend-id", "0"),
        ("state", "1"),
        ("virtual-device", "51712"),
        ("device-type", "disk"),
        ("trusted", "1"),
    ] {
        assert_eq!(
            s.get(&format!("{fe}/{k}")),
            (v.into(), "n1,r0".into()),
            "{k}"
        );
    }
    assert_eq!(s.get("/local/domain/0/backend/vbd/1").1, "n0,r1");
    assert_eq!(s.get("/local/domain/1/device/vbd").1, "n1,r0");
}

#[test]
fn vif_layout_matches_what_xl_wrote_including_script_and_mtu_owner() {
    let vif = Vif {
        handle: 0,
        mac: parse_mac("00:16:3e:63:7a:5d").unwrap(),
        bridge: "xenbr0".into(),
        script: "/etc/xen/scripts/vif-bridge".into(),
        mtu: 1500,
        vifname: None,
    };
    let mut s = FakeStore::new();
    s.apply(&vif_nodes(&vif, 1, 0));
    let be = "/local/domain/0/backend/vif/1/0";
    let fe = "/local/domain/1/device/vif/0";
    for (k, v) in [
        ("frontend", fe),
        ("frontend-id", "1"),
        ("online", "1"),
        ("state", "1"),
        ("script", "/etc/xen/scripts/vif-bridge"),
        ("mac", "00:16:3e:63:7a:5d"),
        ("bridge", "xenbr0"),
        ("handle", "0"),
        ("type", "vif"),
    ] {
        assert_eq!(
            s.get(&format!("{be}/{k}")),
            (v.into(), "n0,r1".into()),
            "{k}"
        );
    }
    for (k, v) in [
        ("backend", be),
        ("backend-id", "0"),
        ("state", "1"),
        ("handle", "0"),
        ("mac", "00:16:3e:63:7a:5d"),
        ("trusted", "1"),
    ] {
        assert_eq!(
            s.get(&format!("{fe}/{k}")),
            (v.into(), "n1,r0".into()),
            "{k}"
        );
    }
    assert_eq!(s.get(&format!("{fe}/mtu")), ("1500".into(), "n0,r1".into()));
}

#[test]
fn driver_domain_backend_perms_name_both_domains() {
    let mut s = FakeStore::new();
    let t = disk_nodes(&vbd(), 4, 3);
    // Parents come first in the transaction, and every device node is under one of them.
    assert!(
        t.nodes
            .iter()
            .all(|n| t.parents.iter().any(|p| n.path.starts_with(&p.path)))
    );
    s.apply(&t);
    assert_eq!(
        s.get("/local/domain/3/backend/vbd/4/51712/params").1,
        "n3,r4"
    );
    assert_eq!(
        s.get("/local/domain/4/device/vbd/51712/backend").0,
        "/local/domain/3/backend/vbd/4/51712"
    );
    assert_eq!(s.get("/local/domain/4/device/vbd/51712/state").1, "n4,r3");
}

#[test]
fn inheritance_means_explicit_perms_are_what_xenstored_would_give_anyway() {
    // Children created under a chmod'ed parent inherit its perms (pv-devices.md); writing only the
    // parents' perms and then the keys without chmod gives the same store as our explicit perms.
    let t = disk_nodes(&vbd(), 1, 0);
    let mut explicit = FakeStore::new();
    explicit.apply(&t);
    let mut inherited = FakeStore::new();
    for p in &t.parents {
        inherited.write(&p.path, &p.value);
        inherited.set_perms(&p.path, &p.perms);
    }
    for n in &t.nodes {
        inherited.write(&n.path, &n.value);
    }
    for n in &t.nodes {
        assert_eq!(inherited.get(&n.path), explicit.get(&n.path), "{}", n.path);
    }
}

#[test]
fn domain_nodes_perms() {
    let d = DomainInfo {
        domid: 2,
        name: "app".into(),
        target_kib: 262144,
        static_max_kib: None,
        toolstack: 0,
        console: Some(ConsoleInfo {
            ring_ref: 0xfeffc,
            port: 2,
            backend: 0,
        }),
        store: Some(StoreInfo {
            ring_ref: 0xfeffb,
            port: 1,
        }),
        uuid: None,
    };
    let mut s = FakeStore::new();
    for n in domain_nodes(&d) {
        s.write(&n.path, &n.value);
        s.set_perms(&n.path, &n.perms);
    }
    assert_eq!(s.get("/local/domain/2"), ("".into(), "n0,r2".into()));
    assert_eq!(
        s.get("/local/domain/2/name"),
        ("app".into(), "n0,r2".into())
    );
    assert_eq!(s.get("/local/domain/2/domid").0, "2");
    assert_eq!(s.get("/local/domain/2/memory/static-max").0, "262144");
    assert_eq!(s.get("/local/domain/2/console/ring-ref").0, "1044476");
    assert_eq!(s.get("/local/domain/2/control/shutdown").1, "n2");
    assert_eq!(s.get("/local/domain/2/data").1, "n2");
    assert_eq!(s.get("/local/domain/2/device").1, "n0,r2");
}
