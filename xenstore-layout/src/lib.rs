//! The xenstore layout a toolstack writes: the standard per-domain nodes and the backend/frontend
//! directories of PV disks (vbd) and networks (vif), with their permissions.
//!
//! `no_std` + `alloc` so that domforge-init (the target side) writes exactly what the host tool
//! planned. Sources for every key: Xen `docs/misc/xenstore-paths.pandoc`, `docs/misc/xenstore.txt`
//! (permissions), `docs/misc/vbd-interface.txt` + `xen/include/public/io/blkif.h` (device numbers),
//! libxl's `libxl_create.c` (`libxl__domain_make`), `libxl_device.c` (`libxl__device_generic_add`),
//! `libxl_disk.c` (`device_disk_add`), `libxl_nic.c` (`libxl__set_xenstore_nic`), and the layout
//! `xl` 4.17 wrote as recorded in the project's notes (`pv-devices.md`).
#![no_std]

#[cfg(test)]
extern crate std;

extern crate alloc;

mod mac;
mod vdev;

pub use mac::{MacError, XEN_OUI, default_mac, format_mac, parse_mac};
pub use vdev::{VdevError, vdev_to_devid};

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// What a domain may do with a node (xenstore.txt: `n` none, `r` read, `w` write, `b` both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
    Both,
}

impl Access {
    /// The letter xenstore's wire protocol and `xenstore-chmod` use.
    pub fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }

    /// The access a letter stands for (the inverse of [`Access::letter`]).
    pub fn from_letter(c: char) -> Option<Access> {
        Some(match c {
            'n' => Access::None,
            'r' => Access::Read,
            'w' => Access::Write,
            'b' => Access::Both,
            _ => return None,
        })
    }

    pub fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }

    pub fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }
}

/// One permission entry. In a node's list the **first** entry names the owner (who may always read
/// and write) and its access is what every domain not listed gets (xenstore.txt, "Permissions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub domid: u16,
    pub access: Access,
}

impl Perm {
    pub const fn new(domid: u16, access: Access) -> Perm {
        Perm { domid, access }
    }

    /// `n<owner>,r<reader>`: owned by `owner`, readable by `reader`, hidden from everyone else —
    /// the pair libxl sets on both ends of a device.
    pub const fn owned_read_by(owner: u16, reader: u16) -> [Perm; 2] {
        [
            Perm::new(owner, Access::None),
            Perm::new(reader, Access::Read),
        ]
    }

    /// `n0`-style text, one element of `XS_SET_PERMS` (xenstore.txt "PERM").
    pub fn to_wire(self) -> String {
        format!("{}{}", self.access.letter(), self.domid)
    }

    /// Parses `n0`-style text.
    pub fn parse(s: &str) -> Option<Perm> {
        let mut chars = s.chars();
        let access = Access::from_letter(chars.next()?)?;
        let domid = chars.as_str().parse().ok()?;
        Some(Perm { domid, access })
    }
}

/// Renders a permission list as `xenstore-ls -p` / `xenstore-chmod` do: `n0,r1`.
pub fn perms_string(perms: &[Perm]) -> String {
    let mut s = String::new();
    for (i, p) in perms.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&p.to_wire());
    }
    s
}

/// One xenstore node to write: absolute path, value (may be empty: a directory) and permissions
/// (never empty: every node we write sets them explicitly, so nothing depends on inheritance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: String,
    pub value: Vec<u8>,
    pub perms: Vec<Perm>,
}

impl Node {
    pub fn new(path: impl Into<String>, value: impl AsRef<[u8]>, perms: &[Perm]) -> Node {
        Node {
            path: path.into(),
            value: value.as_ref().to_vec(),
            perms: perms.to_vec(),
        }
    }
}

/// What one device needs: `parents` first (directories, each written and chmod'ed, may already
/// exist — writing them again is harmless), then `nodes`, **all in one xenstore transaction**:
/// blkback/netback probe on the first watch event of the backend directory and never re-probe, so
/// a backend directory that appears before its keys leaves the device in state 1 forever
/// (pv-devices.md, "Race"). libxl does the same (`libxl__device_generic_add` inside a transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub parents: Vec<Node>,
    pub nodes: Vec<Node>,
}

impl Transaction {
    /// Every node in write order: parents, then device nodes.
    pub fn all(&self) -> impl Iterator<Item = &Node> {
        self.parents.iter().chain(self.nodes.iter())
    }
}

/// The domain's own console ring (PV console / PVH `console`), as the builder set it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleInfo {
    /// Guest frame number of the console ring page (`console/ring-ref`, xenstore-paths.pandoc).
    pub ring_ref: u64,
    /// Event channel port in the guest (`console/port`).
    pub port: u32,
    /// Domain serving the console backend (xenconsoled's domain, usually 0).
    pub backend: u16,
}

/// The xenstore ring of the domain (`store/ring-ref`, `store/port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    pub ring_ref: u64,
    pub port: u32,
}

/// What `domain_nodes` needs to know about a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    pub domid: u16,
    pub name: String,
    /// `memory/target` in KiB (the balloon target).
    pub target_kib: u64,
    /// `memory/static-max` in KiB (maxmem); `None` = same as target.
    pub static_max_kib: Option<u64>,
    /// Domain 0 of the writer (the toolstack domain that owns the directory); 0 on dom0 systems.
    pub toolstack: u16,
    pub console: Option<ConsoleInfo>,
    pub store: Option<StoreInfo>,
    /// `vm` path (`/vm/<uuid>`), written when the domain has a UUID.
    pub uuid: Option<String>,
}

/// The standard per-domain nodes, as libxl's `libxl__domain_make` and `libxl__build_post`
/// (libxl_dom.c) write them:
///
/// - `/local/domain/N` owned by the toolstack, readable by N (`roperm`: n<ts>, rN),
/// - read-only to the guest: `name`, `domid`, `vm`, `memory/*`, `console/*`, `store/*`, `device`,
///   `control`,
/// - writable by the guest (`rwperm`: owner N): `data`, `drivers`, `feature`, `attr`, `error`,
///   `device/suspend/event-channel`, `control/shutdown`, `control/sysrq`, `control/feature-*`
///   (the guest announces its features there, xenstore-paths.pandoc "control/feature-*").
pub fn domain_nodes(d: &DomainInfo) -> Vec<Node> {
    let ts = d.toolstack;
    let n = d.domid;
    let ro = [Perm::new(ts, Access::None), Perm::new(n, Access::Read)];
    let rw = [Perm::new(n, Access::None)];
    let base = format!("/local/domain/{n}");
    let mut out = Vec::new();
    let mut push = |rel: &str, value: &[u8], perms: &[Perm]| {
        let path = if rel.is_empty() {
            base.clone()
        } else {
            format!("{base}/{rel}")
        };
        out.push(Node::new(path, value, perms));
    };
    push("", b"", &ro);
    if let Some(uuid) = &d.uuid {
        push("vm", format!("/vm/{uuid}").as_bytes(), &ro);
    }
    push("name", d.name.as_bytes(), &ro);
    push("domid", n.to_string().as_bytes(), &ro);
    push("memory", b"", &ro);
    push("memory/target", d.target_kib.to_string().as_bytes(), &ro);
    let max = d.static_max_kib.unwrap_or(d.target_kib);
    push("memory/static-max", max.to_string().as_bytes(), &ro);
    if let Some(c) = &d.console {
        push("console", b"", &ro);
        push("console/backend-id", c.backend.to_string().as_bytes(), &ro);
        push("console/ring-ref", c.ring_ref.to_string().as_bytes(), &ro);
        push("console/port", c.port.to_string().as_bytes(), &ro);
        // libxl_console.c: `limit` = LIBXL_XENCONSOLE_LIMIT (1048576), `type` = "xenconsoled",
        // `output` = "pty" for the primary console.
        push("console/limit", b"1048576", &ro);
        push("console/type", b"xenconsoled", &ro);
        push("console/output", b"pty", &ro);
    }
    if let Some(s) = &d.store {
        push("store", b"", &ro);
        push("store/ring-ref", s.ring_ref.to_string().as_bytes(), &ro);
        push("store/port", s.port.to_string().as_bytes(), &ro);
    }
    push("device", b"", &ro);
    push("device/suspend", b"", &ro);
    push("device/suspend/event-channel", b"", &rw);
    push("control", b"", &ro);
    push("control/shutdown", b"", &rw);
    push("control/sysrq", b"", &rw);
    for f in ["poweroff", "reboot", "suspend", "s3", "s4"] {
        push(&format!("control/feature-{f}"), b"", &rw);
    }
    push("control/platform-feature-multiprocessor-suspend", b"1", &ro);
    push("control/platform-feature-xs_reset_watches", b"1", &ro);
    for dir in ["data", "drivers", "feature", "attr", "error"] {
        push(dir, b"", &rw);
    }
    out
}

/// Where driver domain `domid`, running domforge's serve mode, says it serves (value `"1"`): its
/// backends' modules are loaded and its hotplug loop runs, so the control domain may build the
/// frontends it serves. Under `data/`, the subtree xenstore-paths.pandoc gives a domain "for
/// arbitrary domain use" (writable by it, see [`domain_nodes`]); no Xen tool reads this name.
pub fn serving_node(domid: u16) -> String {
    format!("/local/domain/{domid}/data/domforge-serving")
}

/// Disk access mode (blkback's `mode`: `r` or `w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ro,
    Rw,
}

/// `device-type` (blkif.h): a disk or a CD-ROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceType {
    Disk,
    Cdrom,
}

/// A PV disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vbd {
    /// The guest's name for it (`xvda`, `hda`, `sdb2`…), written to the backend's `dev`.
    pub vdev: String,
    /// Its device number ([`vdev_to_devid`]), the directory name on both sides.
    pub devid: u32,
    /// The file or block device in the **backend** domain (`params`).
    pub target: String,
    pub mode: Mode,
    pub device_type: DeviceType,
}

/// A PV network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vif {
    /// Index in the frontend (`handle`, the directory name `vif/<handle>`).
    pub handle: u32,
    pub mac: [u8; 6],
    pub bridge: String,
    /// netback reads `script` in its probe and fails without it (pv-devices.md); it only passes it
    /// on to udev. libxl's default is `/etc/xen/scripts/vif-bridge`.
    pub script: String,
    pub mtu: u32,
    /// The backend interface's name when not netback's `vif<frontend>.<handle>` (xl's `vifname`):
    /// written as `vifname`, which netback ignores and the hotplug side renames the interface to.
    pub vifname: Option<String>,
}

/// The two parent directories every device class needs, n<owner> r<other>
/// (pv-devices.md: `/local/domain/B/backend/<class>/F` (nB,rF), `/local/domain/F/device/<class>`
/// (nF,rB)). Children created in them inherit their perms in xenstored; we still set perms on every
/// node explicitly.
fn parents(class: &str, frontend: u16, backend: u16) -> Vec<Node> {
    let be_perm = Perm::owned_read_by(backend, frontend);
    let fe_perm = Perm::owned_read_by(frontend, backend);
    vec![
        Node::new(format!("/local/domain/{backend}/backend"), b"", &be_perm),
        Node::new(
            format!("/local/domain/{backend}/backend/{class}"),
            b"",
            &be_perm,
        ),
        Node::new(
            format!("/local/domain/{backend}/backend/{class}/{frontend}"),
            b"",
            &be_perm,
        ),
        Node::new(format!("/local/domain/{frontend}/device"), b"", &fe_perm),
        Node::new(
            format!("/local/domain/{frontend}/device/{class}"),
            b"",
            &fe_perm,
        ),
    ]
}

/// Directory paths of one device: (backend, frontend).
pub fn device_paths(class: &str, id: u32, frontend: u16, backend: u16) -> (String, String) {
    (
        format!("/local/domain/{backend}/backend/{class}/{frontend}/{id}"),
        format!("/local/domain/{frontend}/device/{class}/{id}"),
    )
}

struct DevBuilder {
    nodes: Vec<Node>,
    be: String,
    fe: String,
    be_perm: [Perm; 2],
    fe_perm: [Perm; 2],
}

impl DevBuilder {
    fn new(class: &str, id: u32, frontend: u16, backend: u16) -> DevBuilder {
        let (be, fe) = device_paths(class, id, frontend, backend);
        let be_perm = Perm::owned_read_by(backend, frontend);
        let fe_perm = Perm::owned_read_by(frontend, backend);
        let mut b = DevBuilder {
            nodes: Vec::new(),
            be,
            fe,
            be_perm,
            fe_perm,
        };
        b.nodes.push(Node::new(b.be.clone(), b"", &be_perm));
        b.nodes.push(Node::new(b.fe.clone(), b"", &fe_perm));
        b.be("frontend", b.fe.clone().as_bytes());
        b.be("frontend-id", frontend.to_string().as_bytes());
        b.be("online", b"1");
        b.be("state", b"1");
        b.fe("backend", b.be.clone().as_bytes());
        b.fe("backend-id", backend.to_string().as_bytes());
        b.fe("state", b"1");
        b
    }
    fn be(&mut self, key: &str, value: &[u8]) {
        self.nodes.push(Node::new(
            format!("{}/{key}", self.be),
            value,
            &self.be_perm,
        ));
    }
    fn fe(&mut self, key: &str, value: &[u8]) {
        self.nodes.push(Node::new(
            format!("{}/{key}", self.fe),
            value,
            &self.fe_perm,
        ));
    }
}

/// The nodes of one PV disk, as libxl's `device_disk_add` writes them (pv-devices.md, run 5).
/// `script`, `hotplug-status`, `node`, `physical-device` are not written: the backend domain's
/// hotplug step (domforge-init) sets up the loop device and writes `physical-device` itself.
pub fn disk_nodes(dev: &Vbd, frontend: u16, backend: u16) -> Transaction {
    let mut b = DevBuilder::new("vbd", dev.devid, frontend, backend);
    let dtype: &[u8] = match dev.device_type {
        DeviceType::Disk => b"disk",
        DeviceType::Cdrom => b"cdrom",
    };
    b.be("params", dev.target.as_bytes());
    b.be("type", b"phy");
    b.be("mode", if dev.mode == Mode::Rw { b"w" } else { b"r" });
    b.be("device-type", dtype);
    b.be("dev", dev.vdev.as_bytes());
    b.be(
        "removable",
        if dev.device_type == DeviceType::Cdrom {
            b"1"
        } else {
            b"0"
        },
    );
    b.be("bootable", b"1");
    b.be("specification", b"xen");
    b.be(
        "discard-enable",
        if dev.mode == Mode::Rw { b"1" } else { b"0" },
    );
    b.fe("virtual-device", dev.devid.to_string().as_bytes());
    b.fe("device-type", dtype);
    b.fe("trusted", b"1");
    Transaction {
        parents: parents("vbd", frontend, backend),
        nodes: b.nodes,
    }
}

/// The nodes of one PV network interface, as libxl's `libxl__set_xenstore_nic` writes them
/// (pv-devices.md, run 5). `mtu` in the frontend is owned by the backend (n<B>,r<F>) as xl wrote it.
pub fn vif_nodes(dev: &Vif, frontend: u16, backend: u16) -> Transaction {
    let mut b = DevBuilder::new("vif", dev.handle, frontend, backend);
    let mac = format_mac(&dev.mac);
    let handle = dev.handle.to_string();
    b.be("script", dev.script.as_bytes());
    b.be("mac", mac.as_bytes());
    b.be("bridge", dev.bridge.as_bytes());
    b.be("handle", handle.as_bytes());
    b.be("type", b"vif");
    b.be("mtu", dev.mtu.to_string().as_bytes());
    if let Some(name) = &dev.vifname {
        b.be("vifname", name.as_bytes());
    }
    b.fe("handle", handle.as_bytes());
    b.fe("mac", mac.as_bytes());
    b.fe("trusted", b"1");
    let mtu_perm = Perm::owned_read_by(backend, frontend);
    let fe = b.fe.clone();
    b.nodes.push(Node::new(
        format!("{fe}/mtu"),
        dev.mtu.to_string().as_bytes(),
        &mtu_perm,
    ));
    Transaction {
        parents: parents("vif", frontend, backend),
        nodes: b.nodes,
    }
}

#[cfg(test)]
mod tests;
