//! The xenstore side against the in-memory daemon. Expected keys and permissions come from the
//! layout xl 4.17 wrote (pv-devices.md, run 5) and Xen's docs/misc/xenstore-paths.pandoc, not from
//! this code's output.

use super::*;
use firmware_config::blob::{BootBuilder, BootConsole, BootKind, BootOnCrash};
use xenstore_client::fake::FakeXenstored;
use xenstore_client::wire::MsgType;

fn store() -> (FakeXenstored, Store) {
    let d = FakeXenstored::new();
    let stream: Box<dyn Stream> = Box::new(d.clone());
    (d, Client::new(stream))
}

fn domain(name: &str) -> BootDomain {
    BootDomain {
        name: name.try_into().unwrap(),
        kind: BootKind::Pvh,
        builder: BootBuilder::Init,
        vcpus: 1,
        memory_kib: 128 * 1024,
        kernel: "/domforge/modules/kernel-0".try_into().unwrap(),
        ramdisk: None,
        cmdline: "console=hvc0".try_into().unwrap(),
        console: BootConsole::Hvc,
        on_crash: BootOnCrash::Destroy,
        depends_on: Default::default(),
        iomem: Default::default(),
        irqs: Default::default(),
        dt_devices: Default::default(),
        p2m_pool_kib: 0,
        passthrough_dtb: None,
        pv_disks: Default::default(),
        pv_nics: Default::default(),
    }
}

fn config(domains: Vec<BootDomain>) -> BootConfig {
    BootConfig {
        system: "t".try_into().unwrap(),
        xen_major: 4,
        xen_minor: 17,
        domctl_interface: 0x15,
        arm_gic: None,
        domains,
        xenstore: true,
    }
}

const RINGS: Rings = Rings {
    console: Some((0xfefff, 1)),
    store_pfn: 0xfeffc,
    store_port: 2,
};

#[test]
fn a_domain_gets_its_nodes_before_it_is_introduced() {
    let (d, mut s) = store();
    write_dom0(&mut s).unwrap();
    assert_eq!(d.value("/local/domain/0/name").as_deref(), Some("Domain-0"));
    introduce(&mut s, &domain("app"), 3, RINGS).unwrap();
    assert_eq!(d.value("/local/domain/3/name").as_deref(), Some("app"));
    assert_eq!(d.value("/local/domain/3/domid").as_deref(), Some("3"));
    // xenstore-paths.pandoc: memory/target in KiB; store/ring-ref is the gfn for HVM guests.
    assert_eq!(
        d.value("/local/domain/3/memory/target").as_deref(),
        Some("131072")
    );
    assert_eq!(
        d.value("/local/domain/3/store/ring-ref").as_deref(),
        Some("1044476")
    );
    assert_eq!(
        d.value("/local/domain/3/console/port").as_deref(),
        Some("1")
    );
    // The domain may read its directory but not write `name`; it may write control/shutdown.
    let name = d.node("/local/domain/3/name").unwrap();
    assert_eq!(name.perms[0], Perm::new(0, xenstore_layout::Access::None));
    assert_eq!(name.perms[1], Perm::new(3, xenstore_layout::Access::Read));
    let shutdown = d.node("/local/domain/3/control/shutdown").unwrap();
    assert_eq!(shutdown.perms[0].domid, 3);
    assert_eq!(d.introduced().get(&3), Some(&(0xfeffc, 2)));
    // Nodes first, then XS_INTRODUCE (libxl's order): the introduce is the last request.
    let log = d.log();
    assert_eq!(log.last().unwrap().ty, MsgType::Introduce);
    assert_eq!(log.last().unwrap().args, ["3", "1044476", "2"]);
}

#[test]
fn a_vpl011_guest_gets_no_pv_console_nodes() {
    let (d, mut s) = store();
    let rings = Rings {
        console: None,
        ..RINGS
    };
    introduce(&mut s, &domain("arm-app"), 4, rings).unwrap();
    assert_eq!(d.value("/local/domain/4/name").as_deref(), Some("arm-app"));
    assert_eq!(d.value("/local/domain/4/console/ring-ref"), None);
    assert_eq!(d.value("/local/domain/4/console/port"), None);
    assert_eq!(d.introduced().get(&4), Some(&(0xfeffc, 2)));
}

fn app_with_devices() -> (BootConfig, BootDomain) {
    let mut app = domain("app");
    app.pv_disks
        .push(BootDisk {
            vdev: "xvda".try_into().unwrap(),
            devid: 51712,
            backend: Some(0),
            target: "/srv/app.img".try_into().unwrap(),
            read_only: true,
            cdrom: false,
        })
        .unwrap();
    app.pv_nics
        .push(BootNic {
            handle: 0,
            mac: [0, 0x16, 0x3e, 1, 2, 3],
            backend: None,
            bridge: "xenbr0".try_into().unwrap(),
            vifname: None,
            mtu: 1500,
        })
        .unwrap();
    let cfg = config(vec![domain("storage"), app.clone()]);
    (cfg, app)
}

#[test]
fn devices_resolve_backends_and_name_a_missing_one() {
    let (cfg, app) = app_with_devices();
    let devs = devices(&cfg, &app, 5, |i| (i == 0).then_some(2));
    let devs: Vec<Device> = devs.into_iter().map(Result::unwrap).collect();
    assert_eq!((devs[0].frontend, devs[0].backend), (5, 2));
    assert_eq!(
        devs[0].backend_path(),
        "/local/domain/2/backend/vbd/5/51712"
    );
    assert_eq!((devs[1].frontend, devs[1].backend), (5, 0));
    let DeviceKind::Nic { ifname, vif } = &devs[1].kind else {
        panic!("a nic")
    };
    // xen-netback names the backend interface vif<domid>.<handle> (xenbus.c backend_create_xenvif).
    assert_eq!(ifname, "vif5.0");
    assert_eq!(vif.script, "/etc/xen/scripts/vif-bridge");
    let missing = devices(&cfg, &app, 5, |_| None);
    assert_eq!(
        missing[0].as_ref().unwrap_err(),
        &("xvda".to_string(), "storage".to_string())
    );
    assert!(missing[1].is_ok(), "dom0 is always there");
}

#[test]
fn a_device_is_written_in_one_transaction_with_both_ends() {
    let (d, mut s) = store();
    let (cfg, app) = app_with_devices();
    let dev = devices(&cfg, &app, 5, |_| Some(2)).remove(0).unwrap();
    let tx = dev.transaction();
    write_all(&mut s, tx.all()).unwrap();
    let be = "/local/domain/2/backend/vbd/5/51712";
    let fe = "/local/domain/5/device/vbd/51712";
    // pv-devices.md, run 5 (xl's layout), keys blkback and blkfront read.
    for (k, v) in [
        ("frontend", fe),
        ("frontend-id", "5"),
        ("online", "1"),
        ("state", "1"),
        ("params", "/srv/app.img"),
        ("mode", "r"),
        ("device-type", "disk"),
    ] {
        assert_eq!(d.value(&format!("{be}/{k}")).as_deref(), Some(v), "{k}");
    }
    for (k, v) in [
        ("backend", be),
        ("backend-id", "2"),
        ("state", "1"),
        ("virtual-device", "51712"),
    ] {
        assert_eq!(d.value(&format!("{fe}/{k}")).as_deref(), Some(v), "{k}");
    }
    // Backend directory owned by the backend, readable by the frontend; and the reverse.
    assert_eq!(
        d.node(be).unwrap().perms,
        Perm::owned_read_by(2, 5).to_vec()
    );
    assert_eq!(
        d.node(fe).unwrap().perms,
        Perm::owned_read_by(5, 2).to_vec()
    );
    // Everything in one transaction: every write and chmod carries the same nonzero tx id.
    let writes: Vec<_> = d
        .log()
        .into_iter()
        .filter(|l| matches!(l.ty, MsgType::Write | MsgType::SetPerms))
        .collect();
    assert!(!writes.is_empty());
    let tx_id = writes[0].tx;
    assert!(tx_id != 0 && writes.iter().all(|l| l.tx == tx_id));
}

#[derive(Default)]
struct FakeHotplug {
    interfaces: Vec<String>,
    attached: Vec<(String, bool)>,
    bridged: Vec<(String, String, u32)>,
}

impl HotplugHost for FakeHotplug {
    fn attach_disk(&mut self, target: &str, ro: bool) -> Result<(u32, u32, String), String> {
        self.attached.push((target.to_string(), ro));
        Ok((7, 10, "/dev/loop10".to_string()))
    }
    fn interface_exists(&mut self, name: &str) -> bool {
        self.interfaces.iter().any(|i| i == name)
    }
    fn rename_interface(&mut self, from: &str, to: &str) -> Result<(), String> {
        let i = self
            .interfaces
            .iter()
            .position(|i| i == from)
            .ok_or("no such interface")?;
        self.interfaces[i] = to.to_string();
        Ok(())
    }
    fn join_bridge(&mut self, bridge: &str, ifname: &str, mtu: u32) -> Result<(), String> {
        self.bridged
            .push((bridge.to_string(), ifname.to_string(), mtu));
        Ok(())
    }
}

#[test]
fn dom0_hotplug_writes_what_blkback_and_netback_wait_for() {
    let (d, mut s) = store();
    let (cfg, app) = app_with_devices();
    let devs: Vec<Device> = devices(&cfg, &app, 5, |_| Some(0))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut host = FakeHotplug::default();
    let job = |device: &Device| HotplugJob {
        device: device.clone(),
        deadline: Instant::now() + Duration::from_secs(30),
    };
    let done = hotplug_step(&mut s, &mut host, &job(&devs[0]));
    assert!(matches!(done, Hotplug::Done(_)), "{done:?}");
    assert_eq!(host.attached, [("/srv/app.img".to_string(), true)]);
    let be = "/local/domain/0/backend/vbd/5/51712";
    // blkback scans "%x:%x": loop10 is minor 0xa.
    assert_eq!(
        d.value(&format!("{be}/physical-device")).as_deref(),
        Some("7:a")
    );
    assert_eq!(
        d.value(&format!("{be}/hotplug-status")).as_deref(),
        Some("connected")
    );
    // The vif waits until netback has created vif5.0.
    assert_eq!(
        hotplug_step(&mut s, &mut host, &job(&devs[1])),
        Hotplug::Wait
    );
    host.interfaces.push("vif5.0".into());
    let done = hotplug_step(&mut s, &mut host, &job(&devs[1]));
    assert!(matches!(done, Hotplug::Done(_)), "{done:?}");
    assert_eq!(host.bridged, [("xenbr0".into(), "vif5.0".into(), 1500)]);
    assert_eq!(
        d.value("/local/domain/0/backend/vif/5/0/hotplug-status")
            .as_deref(),
        Some("connected")
    );
}

#[test]
fn forgetting_a_domain_removes_its_nodes_and_releases_it() {
    let (d, mut s) = store();
    let (cfg, app) = app_with_devices();
    introduce(&mut s, &app, 5, RINGS).unwrap();
    let devs: Vec<Device> = devices(&cfg, &app, 5, |_| Some(0))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for dev in &devs {
        write_all(&mut s, dev.transaction().all()).unwrap();
    }
    forget(&mut s, 5, &devs).unwrap();
    assert!(d.node("/local/domain/5/name").is_none());
    assert!(d.node("/local/domain/0/backend/vbd/5/51712").is_none());
    assert!(d.node("/local/domain/0/backend/vif/5/0").is_none());
    assert_eq!(d.log().last().unwrap().ty, MsgType::Release);
}
