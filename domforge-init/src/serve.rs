//! domforge-init inside a driver domain (issue 19): the hotplug half of `xl devd`.
//!
//! A domain that serves other domains' PV disks or vifs gets an initramfs domforge generates
//! (`bundle::driver`): this binary as `/init`, the backends' kernel modules (`loop`, `bridge`,
//! `xen-blkback`, `xen-netback`), the disk images it serves at their targets, and the marker
//! [`SERVE_MARKER`]. Here there is no boot blob and no hypervisor privilege: the control domain's
//! domforge-init writes every device's backend directory under this domain's
//! `/local/domain/<me>/backend/<class>/<frontend>/<id>` (libxl's layout), blkback and netback in
//! this kernel probe them, and this loop does what the hotplug scripts do in a driver domain
//! under xl devd: for a `vbd` it attaches `params` (a loop device for a file) and writes
//! `physical-device`; for a `vif` it waits for netback's interface, renames it to `vifname` if
//! one is given, joins `bridge` and writes `hotplug-status = connected` — with the same
//! [`store::hotplug_step`] dom0 uses for the devices it serves itself.
//!
//! It talks to xenstored through the kernel's `/dev/xen/xenbus` (the same wire protocol as the
//! daemon's socket; relative paths resolve under this domain's home). It polls its backend
//! directories every [`SCAN`] rather than watching them: a device costs at most that much latency,
//! and a missed watch event cannot leave one unserved.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use xenstore_client::{Client, Errno, NO_TX, XsError};
use xenstore_layout::{DeviceType, Mode, Vbd, Vif, parse_mac};

use crate::store::{self, Device, DeviceKind, Hotplug, HotplugHost, HotplugJob, Store};

/// Where the generated driver-domain initramfs marks this mode.
pub const SERVE_MARKER: &str = schema::layout::SERVE_MARKER_AT_BOOT;
/// The kernel's xenstore device for domains without a local daemon (`drivers/xen/xenbus/
/// xenbus_dev_frontend.c`).
pub const XENBUS_DEV: &str = "/dev/xen/xenbus";
/// How often the backend directories are scanned.
pub const SCAN: Duration = Duration::from_millis(250);
/// How long a vif may take to appear before its job is given up (and said so).
const DEVICE_WAIT: Duration = Duration::from_secs(60);

/// One backend directory: (class, frontend, id).
type Key = (&'static str, u16, u32);

/// The server's state: what was done, what waits.
pub struct Server {
    store: Store,
    me: u16,
    host: Box<dyn HotplugHost>,
    done: BTreeSet<Key>,
    pending: Vec<(Key, HotplugJob)>,
}

impl Server {
    /// Serves the backends of this domain over `store` (its own domid is read from it).
    pub fn new(mut store: Store, host: Box<dyn HotplugHost>) -> Result<Self, XsError> {
        let me = store.read_opt(NO_TX, "domid")?.unwrap_or_default();
        let me = me
            .trim()
            .parse()
            .map_err(|_| XsError::Protocol(format!("this domain's `domid` node is {me:?}")))?;
        Ok(Self {
            store,
            me,
            host,
            done: BTreeSet::new(),
            pending: Vec::new(),
        })
    }

    /// This domain's id.
    pub fn domid(&self) -> u16 {
        self.me
    }

    /// Tells the control domain this domain serves ([`xenstore_layout::serving_node`]): it builds
    /// the frontends served here only then, so a driver domain that fails early in its boot takes
    /// no frontend down with it.
    pub fn announce(&mut self) -> Result<(), XsError> {
        let path = xenstore_layout::serving_node(self.me);
        self.store.write(NO_TX, &path, b"1")
    }

    /// One scan and one attempt at every pending job; returns messages for the console.
    pub fn turn(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        match scan(&mut self.store, self.me) {
            Ok(found) => {
                let present: BTreeSet<Key> = found.iter().map(|(k, _)| *k).collect();
                // A frontend that went away (its directory removed) frees its key.
                self.done.retain(|k| present.contains(k));
                self.pending.retain(|(k, _)| present.contains(k));
                for (key, device) in found {
                    if self.done.contains(&key) || self.pending.iter().any(|(k, _)| *k == key) {
                        continue;
                    }
                    let job = HotplugJob {
                        device,
                        deadline: now + DEVICE_WAIT,
                    };
                    self.pending.push((key, job));
                }
            }
            Err(e) => out.push(format!("scanning backend directories: {e}")),
        }
        for (key, job) in std::mem::take(&mut self.pending) {
            match store::hotplug_step(&mut self.store, self.host.as_mut(), &job) {
                Hotplug::Done(what) => {
                    out.push(format!("serving domain {}: {what}", key.1));
                    self.done.insert(key);
                }
                Hotplug::Wait if now < job.deadline => self.pending.push((key, job)),
                Hotplug::Wait => {
                    out.push(format!(
                        "{} of domain {} never appeared within {} s",
                        job.device.describe(),
                        key.1,
                        DEVICE_WAIT.as_secs()
                    ));
                    self.done.insert(key);
                }
                Hotplug::Failed(e) => {
                    out.push(format!("domain {}: {e}", key.1));
                    self.done.insert(key);
                }
            }
        }
        out
    }
}

/// Children of `path`, none when it does not exist yet.
fn children(store: &mut Store, path: &str) -> Result<Vec<String>, XsError> {
    match store.directory(NO_TX, path) {
        Ok(v) => Ok(v),
        Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Every device directory under this domain's `backend/vbd` and `backend/vif`, read back into
/// the [`Device`] the control domain wrote (`xenstore_layout::disk_nodes`/`vif_nodes`). A
/// directory still being written (no `params`/`bridge` yet) is skipped until the next scan.
pub fn scan(store: &mut Store, me: u16) -> Result<Vec<(Key, Device)>, XsError> {
    let mut out = Vec::new();
    for class in ["vbd", "vif"] {
        let base = format!("/local/domain/{me}/backend/{class}");
        for fe in children(store, &base)? {
            let Ok(frontend) = fe.parse::<u16>() else {
                continue;
            };
            for id in children(store, &format!("{base}/{fe}"))? {
                let Ok(devid) = id.parse::<u32>() else {
                    continue;
                };
                let dir = format!("{base}/{fe}/{id}");
                let kind = match class {
                    "vbd" => read_vbd(store, &dir, devid)?,
                    _ => read_vif(store, &dir, frontend, devid)?,
                };
                if let Some(kind) = kind {
                    let device = Device {
                        frontend,
                        backend: me,
                        kind,
                    };
                    out.push(((class, frontend, devid), device));
                }
            }
        }
    }
    Ok(out)
}

fn read_vbd(store: &mut Store, dir: &str, devid: u32) -> Result<Option<DeviceKind>, XsError> {
    let mut get = |k: &str| store.read_opt(NO_TX, &format!("{dir}/{k}"));
    let Some(target) = get("params")? else {
        return Ok(None);
    };
    let mode = if get("mode")?.as_deref() == Some("w") {
        Mode::Rw
    } else {
        Mode::Ro
    };
    let device_type = if get("device-type")?.as_deref() == Some("cdrom") {
        DeviceType::Cdrom
    } else {
        DeviceType::Disk
    };
    let vdev = get("dev")?.unwrap_or_else(|| devid.to_string());
    Ok(Some(DeviceKind::Disk(Vbd {
        vdev,
        devid,
        target,
        mode,
        device_type,
    })))
}

fn read_vif(
    store: &mut Store,
    dir: &str,
    frontend: u16,
    handle: u32,
) -> Result<Option<DeviceKind>, XsError> {
    let mut get = |k: &str| store.read_opt(NO_TX, &format!("{dir}/{k}"));
    let Some(bridge) = get("bridge")? else {
        return Ok(None);
    };
    let mtu = get("mtu")?.and_then(|m| m.parse().ok()).unwrap_or(1500);
    let mac = get("mac")?
        .and_then(|m| parse_mac(&m).ok())
        .unwrap_or_default();
    let script = get("script")?.unwrap_or_default();
    let vifname = get("vifname")?;
    let ifname = vifname
        .clone()
        .unwrap_or_else(|| format!("vif{frontend}.{handle}"));
    Ok(Some(DeviceKind::Nic {
        vif: Vif {
            handle,
            mac,
            bridge,
            script,
            mtu,
            vifname,
        },
        ifname,
    }))
}

/// Opens `/dev/xen/xenbus`, waiting for the driver to create it.
pub fn open_xenbus(timeout: Duration) -> Result<Store, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(XENBUS_DEV)
        {
            Ok(f) => {
                let stream: Box<dyn store::Stream> = Box::new(f);
                return Ok(Client::new(stream));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "{XENBUS_DEV}: {e}; a driver domain needs xenstore (it is built with a store ring when the system has PV devices)"
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[cfg(test)]
mod tests;
