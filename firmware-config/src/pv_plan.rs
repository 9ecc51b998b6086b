//! The planned PV devices (issue 19): for every disk and vif, the frontend, the backend and
//! every value domforge-init will write to xenstore for it (`xenstore_layout::disk_nodes`,
//! `vif_nodes`).

use std::string::{String, ToString};
use std::vec::Vec;

use crate::manifest::{DiskAccess, DiskDevtype, Domain, Manifest};
use crate::validate::{Backend, backend_of, mac_of};

/// The default MTU libxl writes (libxl_nic.c: `LIBXL_DEVICE_NIC_MTU_DEFAULT` 1500).
pub const DEFAULT_MTU: u32 = 1500;

/// A planned PV disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PvDiskPlan {
    pub vdev: String,
    /// Xen virtual device number (the xenstore directory name on both ends).
    pub devid: u32,
    /// The serving domain's name; `dom0` for the control domain.
    pub backend: String,
    /// Path in the backend domain (`params`).
    pub target: String,
    pub access: DiskAccess,
    pub devtype: DiskDevtype,
    /// Manifest source of the file shipped to `target` in the backend, if any.
    pub image: Option<String>,
}

/// A planned PV network interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PvNicPlan {
    pub handle: u32,
    /// `00:16:3e:..`, lower case (libxl's `LIBXL_MAC_FMT`).
    pub mac: String,
    pub backend: String,
    pub bridge: String,
    /// The backend interface's name, `None` for Linux's default `vif<domid>.<handle>`
    /// (xen-netback names it from the frontend's domid, known only at boot).
    pub vifname: Option<String>,
    pub mtu: u32,
}

fn backend_name(m: &Manifest, b: Option<&crate::manifest::At<String>>) -> String {
    match backend_of(m, b) {
        Backend::Domain(d) => d.name.value.clone(),
        Backend::Dom0 | Backend::Unknown => "dom0".to_string(),
    }
}

pub(crate) fn disks(m: &Manifest, d: &Domain) -> Vec<PvDiskPlan> {
    d.disks
        .iter()
        .map(|x| PvDiskPlan {
            vdev: x.vdev.value.clone(),
            devid: x.devid,
            backend: backend_name(m, x.backend.as_ref()),
            target: x.target.value.clone(),
            access: x.access,
            devtype: x.devtype,
            image: x.image.as_ref().map(|i| i.value.clone()),
        })
        .collect()
}

pub(crate) fn nics(m: &Manifest, d: &Domain) -> Vec<PvNicPlan> {
    d.vifs
        .iter()
        .map(|v| PvNicPlan {
            handle: v.handle.value,
            mac: xenstore_layout::format_mac(&mac_of(m, d, v)),
            backend: backend_name(m, v.backend.as_ref()),
            bridge: v.bridge().to_string(),
            vifname: v.vifname.as_ref().map(|n| n.value.clone()),
            mtu: v.mtu.as_ref().map_or(DEFAULT_MTU, |x| x.value),
        })
        .collect()
}
