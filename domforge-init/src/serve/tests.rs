//! The driver-domain server against the in-memory daemon: the control domain writes the devices
//! (libxl's layout, `xenstore_layout`), then the server, connected as the driver domain with its
//! permissions enforced, must find them and write what blkback and netback wait for.

use super::*;
use crate::store::{Device, DeviceKind, write_all};
use xenstore_client::fake::FakeXenstored;
use xenstore_layout::{DeviceType, Mode, Perm, Vbd, Vif};

const DRIVER: u16 = 7;
const APP: u16 = 5;

#[derive(Default, Clone)]
struct Recorder(std::rc::Rc<std::cell::RefCell<(Vec<String>, Vec<String>)>>);

impl HotplugHost for Recorder {
    fn attach_disk(&mut self, target: &str, ro: bool) -> Result<(u32, u32, String), String> {
        self.0
            .borrow_mut()
            .0
            .push(format!("attach {target} ro={ro}"));
        Ok((7, 1, "/dev/loop1".into()))
    }
    fn interface_exists(&mut self, name: &str) -> bool {
        self.0.borrow().1.iter().any(|i| i == name)
    }
    fn rename_interface(&mut self, from: &str, to: &str) -> Result<(), String> {
        let mut s = self.0.borrow_mut();
        s.0.push(format!("rename {from} {to}"));
        let i =
            s.1.iter()
                .position(|i| i == from)
                .ok_or("no such interface")?;
        s.1[i] = to.into();
        Ok(())
    }
    fn join_bridge(&mut self, bridge: &str, ifname: &str, mtu: u32) -> Result<(), String> {
        self.0
            .borrow_mut()
            .0
            .push(format!("bridge {bridge} {ifname} mtu={mtu}"));
        Ok(())
    }
}

fn devices() -> Vec<Device> {
    vec![
        Device {
            frontend: APP,
            backend: DRIVER,
            kind: DeviceKind::Disk(Vbd {
                vdev: "xvda".into(),
                devid: 51712,
                target: "/srv/app.img".into(),
                mode: Mode::Ro,
                device_type: DeviceType::Disk,
            }),
        },
        Device {
            frontend: APP,
            backend: DRIVER,
            kind: DeviceKind::Nic {
                vif: Vif {
                    handle: 0,
                    mac: [0, 0x16, 0x3e, 0, 0, 5],
                    bridge: "br-app".into(),
                    script: "/etc/xen/scripts/vif-bridge".into(),
                    mtu: 9000,
                    vifname: Some("app-net".into()),
                },
                ifname: "app-net".into(),
            },
        },
    ]
}

#[test]
fn a_driver_domain_serves_what_the_control_domain_wrote_within_its_permissions() {
    let d = FakeXenstored::new();
    let stream: Box<dyn store::Stream> = Box::new(d.clone());
    let mut dom0 = Client::new(stream);
    // The driver domain's own `domid`, readable by it (as `store::introduce` writes it).
    let node = xenstore_layout::Node::new(
        format!("/local/domain/{DRIVER}/domid"),
        DRIVER.to_string().as_bytes(),
        &[
            Perm::new(0, xenstore_layout::Access::None),
            Perm::new(DRIVER, xenstore_layout::Access::Read),
        ],
    );
    // Its `data` directory, writable by it (`xenstore_layout::domain_nodes`).
    let data = xenstore_layout::Node::new(
        format!("/local/domain/{DRIVER}/data"),
        b"",
        &[Perm::new(DRIVER, xenstore_layout::Access::None)],
    );
    write_all(&mut dom0, [node, data].iter()).unwrap();
    for dev in devices() {
        write_all(&mut dom0, dev.transaction().all()).unwrap();
    }

    // From here on every request is the driver domain's, permissions enforced.
    let as_driver: Box<dyn store::Stream> = Box::new(d.with_caller(DRIVER));
    let host = Recorder::default();
    let mut server = Server::new(Client::new(as_driver), Box::new(host.clone())).unwrap();
    assert_eq!(server.domid(), DRIVER);
    server.announce().unwrap();
    assert_eq!(
        d.value(&format!("/local/domain/{DRIVER}/data/domforge-serving"))
            .as_deref(),
        Some("1")
    );
    let t0 = Instant::now();
    let said = server.turn(t0);
    let be = format!("/local/domain/{DRIVER}/backend");
    // blkback's backend_changed scans physical-device with "%x:%x".
    assert_eq!(
        d.value(&format!("{be}/vbd/{APP}/51712/physical-device"))
            .as_deref(),
        Some("7:1"),
        "{said:?}"
    );
    assert_eq!(host.0.borrow().0[0], "attach /srv/app.img ro=true");
    // The vif does not exist yet: nothing written, the job waits.
    assert_eq!(d.value(&format!("{be}/vif/{APP}/0/hotplug-status")), None);

    // netback creates vif5.0; the server renames it to `vifname` and bridges it.
    host.0.borrow_mut().1.push(format!("vif{APP}.0"));
    server.turn(t0 + SCAN);
    assert_eq!(
        d.value(&format!("{be}/vif/{APP}/0/hotplug-status"))
            .as_deref(),
        Some("connected")
    );
    let log = host.0.borrow().0.clone();
    assert_eq!(
        &log[1..],
        [
            format!("rename vif{APP}.0 app-net"),
            "bridge br-app app-net mtu=9000".to_string()
        ]
    );
    // Nothing is done twice.
    server.turn(t0 + SCAN * 2);
    assert_eq!(host.0.borrow().0.len(), 3);
}

#[test]
fn a_half_written_device_waits_for_the_next_scan() {
    let d = FakeXenstored::new();
    let stream: Box<dyn store::Stream> = Box::new(d.clone());
    let mut dom0 = Client::new(stream);
    dom0.write(
        NO_TX,
        &format!("/local/domain/{DRIVER}/backend/vbd/{APP}/51712/dev"),
        b"xvda",
    )
    .unwrap();
    let found = scan(&mut dom0, DRIVER).unwrap();
    assert!(found.is_empty(), "no params yet: {found:?}");
    assert!(
        scan(&mut dom0, 9).unwrap().is_empty(),
        "no backend directory at all"
    );
}
