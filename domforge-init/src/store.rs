//! xenstore in the control domain (issue 19).
//!
//! When the boot blob says some domain has a PV device ([`BootConfig::xenstore`]), domforge-init
//! starts Debian's C xenstored (we write no xenstored of our own), connects to its unix socket and,
//! for every domain it builds, does what libxl does around `xl create`:
//!
//! 1. writes the standard per-domain nodes (`xenstore_layout::domain_nodes`, libxl's
//!    `libxl__domain_make` + `libxl__build_post`), then `XS_INTRODUCE`s the domain with its store
//!    ring and event channel (libxl_dom.c `libxl__build_post` → `xs_introduce_domain`);
//! 2. writes each PV device's backend and frontend directories in **one transaction** each
//!    (`xenstore_layout::disk_nodes`/`vif_nodes`; blkback/netback probe once on the first watch
//!    event and never again, so a half-written directory leaves the device dead — pv-devices.md);
//! 3. only then unpauses it — the frontend finds complete nodes whenever it looks.
//!
//! Every call happens from domforge-init's one thread, between builds: no other toolstack call can
//! race an introduction (init-dom0less's race is its concurrent `xl` use; here there is none).
//!
//! The devices dom0 itself serves get dom0's hotplug work here too ([`HotplugJob`]), what Xen's
//! `block` and `vif-bridge` scripts do under xl: a file target is attached to a loop device and
//! `physical-device` written (blkback waits for it); a vif joins its bridge once netback has
//! created it, then `hotplug-status = connected` (netback waits for that before Connected).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firmware_config::blob::{BootConfig, BootDisk, BootDomain, BootNic};
use xenstore_client::{Client, NO_TX, XsError};
use xenstore_layout::{
    ConsoleInfo, DeviceType, DomainInfo, Mode, Node, Perm, StoreInfo, Transaction, Vbd, Vif,
    device_paths, disk_nodes, domain_nodes, vif_nodes,
};

/// Any byte stream a [`Store`] talks over (the xenstored socket; the fake daemon in tests).
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A connection to xenstored.
pub type Store = Client<Box<dyn Stream>>;

/// Transaction retries on `EAGAIN` (another writer committed first).
const TX_ATTEMPTS: u32 = 8;

/// Where dom0's generated initramfs carries Debian's xenstored (and the directories it needs).
pub const XENSTORED: &str = schema::layout::XENSTORED_AT_BOOT;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("starting {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("xenstored exited at start ({status}); its messages are above")]
    Exited { status: std::process::ExitStatus },
    #[error("xenstored's socket ({paths}) did not appear within {secs} s")]
    NoSocket { paths: String, secs: u64 },
    #[error("xenstore: {0}")]
    Xs(#[from] XsError),
}

/// Starts xenstored in the foreground of its own process (`--no-fork`: domforge-init keeps the
/// child; `--pid-file` as Debian's init script passes it) and waits for its socket.
pub fn start_xenstored(root: &Path, timeout: Duration) -> Result<(Child, Store), StoreError> {
    for dir in schema::layout::XENSTORED_DIRS {
        // Best effort: a missing directory shows up as xenstored's own error below.
        let _ = std::fs::create_dir_all(root.join(dir));
    }
    let path = root.join(XENSTORED.trim_start_matches('/'));
    let mut child = Command::new(&path)
        .args(["--no-fork", "--pid-file", "/run/xenstored.pid"])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| StoreError::Spawn {
            path: path.clone(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(StoreError::Exited { status });
        }
        for p in xenstore_client::SOCKET_PATHS {
            if let Ok(s) = std::os::unix::net::UnixStream::connect(root.join(&p[1..])) {
                let stream: Box<dyn Stream> = Box::new(s);
                return Ok((child, Client::new(stream)));
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Err(StoreError::NoSocket {
                paths: xenstore_client::SOCKET_PATHS.join(", "),
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `nodes` (each value and its permissions) in one transaction.
pub fn write_all<'a>(
    store: &mut Store,
    nodes: impl IntoIterator<Item = &'a Node>,
) -> Result<(), XsError> {
    let nodes: Vec<&Node> = nodes.into_iter().collect();
    store.in_transaction(TX_ATTEMPTS, |c, tx| {
        for n in &nodes {
            c.write(tx, &n.path, &n.value)?;
            c.set_perms(tx, &n.path, &n.perms)?;
        }
        Ok(())
    })
}

/// dom0's own nodes, as Debian's `xen-init-dom0` writes them at boot (`name`, `domid`): guests'
/// frontends and `xenstore-ls` name the backend domain from them.
pub fn write_dom0(store: &mut Store) -> Result<(), XsError> {
    let ro = [Perm::new(0, xenstore_layout::Access::Read)];
    let nodes = [
        Node::new("/local/domain/0/name", b"Domain-0", &ro),
        Node::new("/local/domain/0/domid", b"0", &ro),
    ];
    write_all(store, nodes.iter())
}

/// What a built domain needs for its xenstore entries.
#[derive(Debug, Clone, Copy)]
pub struct Rings {
    /// The PV console's ring, `None` for an ARM guest whose console is the vPL011: xenconsoled
    /// reads `console/` as a PV console, and libxl keeps the vPL011 under `vuart/0` instead
    /// (`libxl__device_vuart_add`), which nothing here reads.
    pub console: Option<(u64, u32)>,
    pub store_pfn: u64,
    pub store_port: u32,
}

/// The domain's standard nodes, then `XS_INTRODUCE` (libxl's order).
pub fn introduce(
    store: &mut Store,
    d: &BootDomain,
    domid: u16,
    rings: Rings,
) -> Result<(), XsError> {
    let info = DomainInfo {
        domid,
        name: d.name.to_string(),
        target_kib: d.memory_kib,
        static_max_kib: None,
        toolstack: 0,
        console: rings.console.map(|(ring_ref, port)| ConsoleInfo {
            ring_ref,
            port,
            backend: 0,
        }),
        store: Some(StoreInfo {
            ring_ref: rings.store_pfn,
            port: rings.store_port,
        }),
        uuid: None,
    };
    let nodes = domain_nodes(&info);
    write_all(store, nodes.iter())?;
    store.introduce(domid, rings.store_pfn, rings.store_port)
}

/// One PV device of a frontend, resolved to domain ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub frontend: u16,
    pub backend: u16,
    pub kind: DeviceKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    Disk(Vbd),
    Nic {
        vif: Vif,
        /// The interface netback creates in the backend (`vif<frontend>.<handle>` unless named).
        ifname: String,
    },
}

impl Device {
    /// The nodes of the device, for one transaction.
    pub fn transaction(&self) -> Transaction {
        match &self.kind {
            DeviceKind::Disk(v) => disk_nodes(v, self.frontend, self.backend),
            DeviceKind::Nic { vif, .. } => vif_nodes(vif, self.frontend, self.backend),
        }
    }

    /// The backend directory (`/local/domain/B/backend/<class>/F/<id>`).
    pub fn backend_path(&self) -> String {
        let (class, id) = match &self.kind {
            DeviceKind::Disk(v) => ("vbd", v.devid),
            DeviceKind::Nic { vif, .. } => ("vif", vif.handle),
        };
        device_paths(class, id, self.frontend, self.backend).0
    }

    /// Short name for messages: `xvda` / `vif 0`.
    pub fn describe(&self) -> String {
        match &self.kind {
            DeviceKind::Disk(v) => v.vdev.clone(),
            DeviceKind::Nic { vif, .. } => format!("vif {}", vif.handle),
        }
    }
}

/// libxl's default vif script path, which netback only reads (it fails its probe without a
/// `script` key, pv-devices.md) and nothing here runs.
const VIF_SCRIPT: &str = "/etc/xen/scripts/vif-bridge";

/// The devices of domain `d` (built as `frontend`); `domid_of(i)` is the domain id of domain
/// index `i` when it runs (`None` for `backend = None`: dom0). A backend that is not running is
/// reported as `Err(name)` so the caller can say which backend is missing.
pub fn devices(
    config: &BootConfig,
    d: &BootDomain,
    frontend: u16,
    domid_of: impl Fn(usize) -> Option<u16>,
) -> Vec<Result<Device, (String, String)>> {
    let backend_of = |b: Option<u8>| -> Result<u16, String> {
        match b {
            None => Ok(0),
            Some(i) => domid_of(usize::from(i)).ok_or_else(|| {
                config
                    .domains
                    .get(usize::from(i))
                    .map_or_else(|| format!("#{i}"), |o| o.name.to_string())
            }),
        }
    };
    let disk = |x: &BootDisk| -> Result<Device, (String, String)> {
        let backend = backend_of(x.backend).map_err(|b| (x.vdev.to_string(), b))?;
        Ok(Device {
            frontend,
            backend,
            kind: DeviceKind::Disk(Vbd {
                vdev: x.vdev.to_string(),
                devid: x.devid,
                target: x.target.to_string(),
                mode: if x.read_only { Mode::Ro } else { Mode::Rw },
                device_type: if x.cdrom {
                    DeviceType::Cdrom
                } else {
                    DeviceType::Disk
                },
            }),
        })
    };
    let nic = |x: &BootNic| -> Result<Device, (String, String)> {
        let backend = backend_of(x.backend).map_err(|b| (format!("vif {}", x.handle), b))?;
        let ifname = x
            .vifname
            .as_ref()
            .map_or_else(|| format!("vif{frontend}.{}", x.handle), |n| n.to_string());
        Ok(Device {
            frontend,
            backend,
            kind: DeviceKind::Nic {
                vif: Vif {
                    handle: x.handle,
                    mac: x.mac,
                    bridge: x.bridge.to_string(),
                    script: VIF_SCRIPT.to_string(),
                    mtu: x.mtu,
                    vifname: x.vifname.as_ref().map(|n| n.to_string()),
                },
                ifname,
            },
        })
    };
    d.pv_disks
        .iter()
        .map(disk)
        .chain(d.pv_nics.iter().map(nic))
        .collect()
}

/// Removes what [`introduce`] and the device transactions wrote for a stopped domain and makes
/// xenstored forget it (libxl's `libxl__destroy_domid` → `xs_release_domain`, `xs_rm` of the
/// domain path and of its backend directories).
pub fn forget(store: &mut Store, domid: u16, devices: &[Device]) -> Result<(), XsError> {
    for dev in devices {
        // A backend that already removed its directory is fine.
        let _ = store.rm(NO_TX, &dev.backend_path());
    }
    let _ = store.rm(NO_TX, &format!("/local/domain/{domid}"));
    match store.release(domid) {
        // xenstored forgets a dying domain by itself when it sees VIRQ_DOM_EXC
        // (`tools/xenstored/domain.c` `domain_cleanup`); then there is nothing left to release.
        Err(e) if e.errno() == Some(xenstore_client::Errno::ENOENT) => Ok(()),
        other => other,
    }
}

/// dom0's hotplug work for one device it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotplugJob {
    pub device: Device,
    /// Give up (and say so) after this.
    pub deadline: Instant,
}

/// What a hotplug step asks of the host.
pub trait HotplugHost {
    /// Attaches `target` (a regular file: to a free loop device; a block device: as it is) and
    /// returns its `(major, minor)` and device node.
    fn attach_disk(&mut self, target: &str, read_only: bool) -> Result<(u32, u32, String), String>;
    /// Whether network interface `name` exists yet.
    fn interface_exists(&mut self, name: &str) -> bool;
    /// Renames interface `from` (down, as netback leaves it) to `to` (xl's `vifname`).
    fn rename_interface(&mut self, from: &str, to: &str) -> Result<(), String>;
    /// Creates `bridge` if needed, sets `ifname`'s MTU, adds it to the bridge and brings both up.
    fn join_bridge(&mut self, bridge: &str, ifname: &str, mtu: u32) -> Result<(), String>;
}

/// Outcome of one attempt at a hotplug job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hotplug {
    Done(String),
    /// Not yet possible (the vif does not exist yet); try again later.
    Wait,
    Failed(String),
}

/// One attempt at `job`: for a disk, attach and write `physical-device` (hex `major:minor`, as
/// blkback's `backend_changed` scans it with `"%x:%x"`, drivers/block/xen-blkback/xenbus.c) and
/// `hotplug-status`; for a vif, once netback has made the interface, join the bridge and write
/// `hotplug-status = connected` (xen-netback's `hotplug_status_changed` waits for it).
pub fn hotplug_step(store: &mut Store, host: &mut dyn HotplugHost, job: &HotplugJob) -> Hotplug {
    let be = job.device.backend_path();
    let perms = Perm::owned_read_by(job.device.backend, job.device.frontend);
    let result = match &job.device.kind {
        DeviceKind::Disk(v) => {
            let (major, minor, node) = match host.attach_disk(&v.target, v.mode == Mode::Ro) {
                Ok(x) => x,
                Err(e) => return Hotplug::Failed(format!("attaching {}: {e}", v.target)),
            };
            let values = [
                ("node", node.clone()),
                ("physical-device", format!("{major:x}:{minor:x}")),
                ("physical-device-path", node.clone()),
                ("hotplug-status", "connected".to_string()),
            ];
            let nodes: Vec<Node> = values
                .iter()
                .map(|(k, v)| Node::new(format!("{be}/{k}"), v.as_bytes(), &perms))
                .collect();
            write_all(store, nodes.iter()).map(|()| format!("{} on {node}", v.target))
        }
        DeviceKind::Nic { vif, ifname } => {
            if !host.interface_exists(ifname) {
                // netback always names it vif<frontend>.<handle> (xenvif_alloc); a `vifname` is
                // the hotplug side's rename, as vif-bridge does it.
                let made = format!("vif{}.{}", job.device.frontend, vif.handle);
                if made == *ifname || !host.interface_exists(&made) {
                    return Hotplug::Wait;
                }
                if let Err(e) = host.rename_interface(&made, ifname) {
                    return Hotplug::Failed(format!("renaming {made} to {ifname}: {e}"));
                }
            }
            if let Err(e) = host.join_bridge(&vif.bridge, ifname, vif.mtu) {
                return Hotplug::Failed(format!("{ifname} into bridge {}: {e}", vif.bridge));
            }
            let node = Node::new(format!("{be}/hotplug-status"), b"connected", &perms);
            write_all(store, [node].iter()).map(|()| format!("{ifname} in bridge {}", vif.bridge))
        }
    };
    match result {
        Ok(what) => Hotplug::Done(what),
        Err(e) => Hotplug::Failed(format!("writing {be}: {e}")),
    }
}

#[cfg(test)]
mod tests;
