//! PV disks and networks (issue 19): who serves each device, and whether it can.
//!
//! - **E0263**: a `backend=` names no domain, or the frontend itself.
//! - **E0264**: PV devices need xenstore, which domforge runs in dom0 (under domforge-init); a
//!   system without dom0 has no xenstore and no default backend.
//! - **E0265**: a dom0less domain (built by Xen) as frontend or backend without xenstore access
//!   (`enhanced` other than `enabled`/`legacy`): its xenbus never comes up.
//! - **E0266**: two disks of one domain with the same device number (`xvda` twice, or `xvda` and
//!   `51712`), two vifs with one handle.
//! - **E0267**: one MAC address on two interfaces (explicit, or a stable default colliding with one).
//! - **E0268**: one backing file or device served writable to two frontends, or writable and
//!   read-only at once: two kernels writing one file system corrupt it (xl's `block` script refuses
//!   the same with "already in use").
//! - **E0269**: a disk target that nothing would put there: dom0's root file system is generated
//!   by domforge, so a dom0-served file exists only when `image=` ships it; `image=` cannot ship
//!   into `/dev` (devtmpfs).
//!
//! Cycles (A serves B, B serves A) are refused with the `depends_on` cycles (E0224): a frontend
//! boots after its backends, so backend edges are boot-order edges ([`super::boot_order`]).

use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::vec::Vec;

use crate::diag::Diagnostic;
use crate::manifest::{At, Builder, DiskAccess, Domain, Enhanced, Manifest, Span};

use super::{Validator, enhanced_of, has_dom0};

/// Paths of dom0's generated root file system that a shipped disk image may not replace: `/init`,
/// domforge's own files, the kernel modules and xenstored with its libraries, and the mount points
/// and runtime directories (`schema::layout`, `initramfs::dom0`).
const DOM0_RESERVED: &[&str] = &[
    "/init",
    "/domforge",
    "/etc",
    "/lib",
    "/lib64",
    "/usr",
    "/bin",
    "/sbin",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var",
];

/// Names that mean dom0 in `backend=` (xl calls it `Domain-0`).
pub const DOM0_NAMES: &[&str] = &["dom0", "Domain-0"];

/// The domain that serves a device.
#[derive(Debug, Clone, Copy)]
pub enum Backend<'m> {
    /// dom0, the control domain: the default, or `backend=dom0`.
    Dom0,
    Domain(&'m Domain),
    /// Names no domain (E0263).
    Unknown,
}

/// Resolves a device's `backend=`.
pub fn backend_of<'m>(m: &'m Manifest, backend: Option<&At<String>>) -> Backend<'m> {
    match backend {
        None => Backend::Dom0,
        Some(b) if DOM0_NAMES.contains(&b.value.as_str()) => Backend::Dom0,
        Some(b) => m.domain(&b.value).map_or(Backend::Unknown, Backend::Domain),
    }
}

/// Whether any domain has a PV device: then dom0 runs xenstored and domforge-init introduces
/// every domain.
pub fn needs_xenstore(m: &Manifest) -> bool {
    m.domains
        .iter()
        .any(|d| !d.disks.is_empty() || !d.vifs.is_empty())
}

/// The MAC of a vif: explicit, else the stable default (`xenstore_layout::default_mac`).
pub fn mac_of(m: &Manifest, d: &Domain, vif: &crate::manifest::Vif) -> [u8; 6] {
    vif.mac.as_ref().map_or_else(
        || xenstore_layout::default_mac(&m.system.name.value, &d.name.value, vif.handle.value),
        |mac| mac.value,
    )
}

/// Every device of a domain as (backend, the spans to blame).
fn device_backends(d: &Domain) -> impl Iterator<Item = (Option<&At<String>>, &Span)> {
    let disks = d.disks.iter().map(|x| (x.backend.as_ref(), &x.span));
    let vifs = d.vifs.iter().map(|x| (x.backend.as_ref(), &x.span));
    disks.chain(vifs)
}

impl Validator<'_> {
    pub(super) fn pv_devices(&mut self) {
        let m = self.m();
        if !needs_xenstore(m) {
            return;
        }
        self.pv_xenstore_domain();
        for d in &m.domains {
            self.pv_backends(d);
            self.pv_unique_devices(d);
        }
        self.pv_unique_macs();
        self.pv_shared_targets();
    }

    /// E0264: xenstore needs dom0.
    fn pv_xenstore_domain(&mut self) {
        let m = self.m();
        if has_dom0(m) {
            return;
        }
        let Some((d, span)) = m
            .domains
            .iter()
            .find_map(|d| device_backends(d).next().map(|(_, s)| (d, s)))
        else {
            return;
        };
        self.d.push(
            Diagnostic::error("E0264", format!("domain `{}` has PV devices, but there is no dom0 to run xenstore", d.name.value))
                .at(span.clone(), "needs xenstore")
                .note("domforge runs Debian's xenstored in dom0 and introduces every domain to it from domforge-init; backends and frontends find each other through it")
                .help("add a [dom0] table, or pass a disk or NIC controller to the domain with `passthrough`/`pci` instead"),
        );
    }

    /// E0263, E0265: each backend exists, is not the frontend, and both ends can reach xenstore.
    fn pv_backends(&mut self, d: &Domain) {
        let m = self.m();
        let names: Vec<&str> = m.domains.iter().map(|x| x.name.value.as_str()).collect();
        // Without dom0 there is no xenstore at all (E0264, said once); do not repeat it per domain.
        let mut blamed_frontend = !has_dom0(m);
        for (backend, span) in device_backends(d) {
            if !blamed_frontend && !self.reaches_xenstore(d) {
                blamed_frontend = true;
                self.d.push(no_xenstore(d, span, "a frontend"));
            }
            match backend_of(m, backend) {
                Backend::Dom0 => {}
                Backend::Unknown => {
                    let b = backend.expect("Unknown comes from a named backend");
                    self.d.push(
                        Diagnostic::error("E0263", format!("no domain is named `{}`", b.value))
                            .at(b.span.clone(), "unknown backend domain")
                            .suggest(
                                &b.value,
                                names.iter().copied().chain(DOM0_NAMES.iter().copied()),
                                Some("leave `backend=` out for dom0"),
                            ),
                    );
                }
                Backend::Domain(be) if core::ptr::eq(be, d) => {
                    let b = backend.expect("a domain comes from a named backend");
                    self.d.push(
                        Diagnostic::error("E0263", format!("domain `{}` cannot serve its own device", d.name.value))
                            .at(b.span.clone(), "the frontend itself")
                            .note("a backend maps the frontend's grants from another domain; Xen's PV protocols have no loopback")
                            .help("name a driver domain, or leave `backend=` out for dom0"),
                    );
                }
                Backend::Domain(be) => {
                    if has_dom0(m) && !self.reaches_xenstore(be) {
                        let b = backend.expect("a domain comes from a named backend");
                        self.d.push(no_xenstore(be, &b.span, "a backend"));
                    }
                }
            }
        }
        self.pv_targets(d);
    }

    /// A domain built by domforge-init always gets a store ring; one built by Xen only with
    /// `xen,enhanced` giving xenstore (booting.txt).
    fn reaches_xenstore(&self, d: &Domain) -> bool {
        d.builder() == Builder::Init
            || matches!(
                enhanced_of(self.m(), d),
                Enhanced::Enabled | Enhanced::Legacy
            )
    }

    /// E0269: a dom0-served file must be shipped; nothing ships into /dev.
    fn pv_targets(&mut self, d: &Domain) {
        let m = self.m();
        for disk in &d.disks {
            let in_dev = disk.target.value.starts_with("/dev/");
            let backend = backend_of(m, disk.backend.as_ref());
            if let Some(image) = &disk.image {
                self.artifact_any(image, &format!("disk image of `{}`", d.name.value));
                let reserved = DOM0_RESERVED.iter().find(|r| {
                    disk.target.value == **r || disk.target.value.starts_with(&format!("{r}/"))
                });
                if let (Backend::Dom0, Some(r)) = (backend, reserved) {
                    self.d.push(
                        Diagnostic::error(
                            "E0269",
                            format!("`image=` cannot ship into `{r}` of dom0"),
                        )
                        .at(
                            disk.target.span.clone(),
                            "domforge generates this part of dom0's root file system",
                        )
                        .help("ship it to a directory of its own, e.g. `target=/srv/disk.img`"),
                    );
                } else if in_dev {
                    self.d.push(
                        Diagnostic::error("E0269", "`image=` cannot ship a file into /dev")
                            .at(disk.target.span.clone(), "/dev is the kernel's devtmpfs")
                            .help("give a target outside /dev, e.g. `target=/srv/disk.img`; domforge attaches it to a loop device"),
                    );
                }
            } else if !in_dev && matches!(backend, Backend::Dom0) {
                self.d.push(
                    Diagnostic::error("E0269", format!("nothing would be at `{}` in dom0", disk.target.value))
                        .at(disk.target.span.clone(), "dom0's root file system is generated by domforge")
                        .help("add `image=<file on the build host>` before `target=` to ship it there, or serve a block device of dom0 (`target=/dev/...`)"),
                );
            }
        }
    }

    /// E0266: device numbers and vif handles are unique per domain.
    fn pv_unique_devices(&mut self, d: &Domain) {
        let mut seen: BTreeMap<u32, &At<String>> = BTreeMap::new();
        for disk in &d.disks {
            if let Some(&first) = seen.get(&disk.devid) {
                let same = if first.value == disk.vdev.value {
                    String::new()
                } else {
                    format!(
                        " (`{}` and `{}` are both device {})",
                        first.value, disk.vdev.value, disk.devid
                    )
                };
                self.d.push(
                    Diagnostic::error(
                        "E0266",
                        format!(
                            "domain `{}` has two disks at `{}`{same}",
                            d.name.value, disk.vdev.value
                        ),
                    )
                    .at(disk.vdev.span.clone(), "second disk here")
                    .also(first.span.clone(), "first here")
                    .help("give each disk its own `vdev` (xvda, xvdb, ...)"),
                );
            } else {
                seen.insert(disk.devid, &disk.vdev);
            }
        }
        let mut handles: BTreeMap<u32, &At<u32>> = BTreeMap::new();
        for vif in &d.vifs {
            if let Some(&first) = handles.get(&vif.handle.value) {
                self.d.push(
                    Diagnostic::error(
                        "E0266",
                        format!(
                            "domain `{}` has two vifs with handle {}",
                            d.name.value, vif.handle.value
                        ),
                    )
                    .at(vif.handle.span.clone(), "second here")
                    .also(first.span.clone(), "first here")
                    .help(
                        "remove `devid=` (the default is the entry's index) or give distinct ones",
                    ),
                );
            } else {
                handles.insert(vif.handle.value, &vif.handle);
            }
        }
    }

    /// E0267: a MAC belongs to one interface in the system.
    fn pv_unique_macs(&mut self) {
        let m = self.m();
        let mut seen: BTreeMap<[u8; 6], (&Domain, &crate::manifest::Vif)> = BTreeMap::new();
        for d in &m.domains {
            for vif in &d.vifs {
                let mac = mac_of(m, d, vif);
                let Some((fd, fv)) = seen.insert(mac, (d, vif)) else {
                    continue;
                };
                let span = |v: &crate::manifest::Vif| {
                    v.mac.as_ref().map_or(v.span.clone(), |x| x.span.clone())
                };
                let shown = xenstore_layout::format_mac(&mac);
                let why = if vif.mac.is_some() && fv.mac.is_some() {
                    ""
                } else {
                    " (one of them is domforge's stable default, which is derived from the system and domain names)"
                };
                self.d.push(
                    Diagnostic::error(
                        "E0267",
                        format!("two interfaces have the MAC address {shown}{why}"),
                    )
                    .at(span(vif), format!("a vif of `{}`", d.name.value))
                    .also(span(fv), format!("a vif of `{}`", fd.name.value))
                    .help("give one of them another `mac=` (Xen's prefix is 00:16:3e)"),
                );
            }
        }
    }

    /// E0268: a writable target is served to one frontend only.
    fn pv_shared_targets(&mut self) {
        let m = self.m();
        // (backend name, target) → first user: (domain, access, span).
        let mut seen: BTreeMap<(String, &str), (&Domain, DiskAccess, &Span)> = BTreeMap::new();
        for d in &m.domains {
            for disk in &d.disks {
                let backend = match backend_of(m, disk.backend.as_ref()) {
                    Backend::Dom0 => String::from("dom0"),
                    Backend::Domain(b) => b.name.value.clone(),
                    Backend::Unknown => continue,
                };
                let key = (backend.clone(), disk.target.value.as_str());
                let Some(&(fd, faccess, fspan)) = seen.get(&key) else {
                    seen.insert(key, (d, disk.access, &disk.target.span));
                    continue;
                };
                if faccess == DiskAccess::Ro && disk.access == DiskAccess::Ro {
                    continue;
                }
                self.d.push(
                    Diagnostic::error("E0268", format!("`{}` of `{backend}` is served to `{}` and `{}`, and one of them may write it", disk.target.value, fd.name.value, d.name.value))
                        .at(disk.target.span.clone(), format!("served to `{}` ({})", d.name.value, access_name(disk.access)))
                        .also(fspan.clone(), format!("served to `{}` ({})", fd.name.value, access_name(faccess)))
                        .note("two kernels caching one file system corrupt it; only read-only sharing is safe")
                        .help("give each domain its own image, or make every user `access=ro`"),
                );
            }
        }
    }
}

fn access_name(a: DiskAccess) -> &'static str {
    match a {
        DiskAccess::Ro => "read-only",
        DiskAccess::Rw => "writable",
    }
}

fn no_xenstore(d: &Domain, span: &Span, role: &str) -> Diagnostic {
    Diagnostic::error(
        "E0265",
        format!(
            "domain `{}` is {role} of a PV device but has no xenstore",
            d.name.value
        ),
    )
    .at(span.clone(), "needs xenstore")
    .note("Xen gives a dom0less domain xenstore only with `xen,enhanced` = enabled or legacy (docs/misc/arm/device-tree/booting.txt)")
    .help(format!(
        "set `enhanced = \"enabled\"` on `{}` (it is the default with a dom0)",
        d.name.value
    ))
}

#[cfg(test)]
mod tests {
    use crate::manifest::{DiskAccess, DiskDevtype, Manifest};
    use crate::plan::plan;
    use crate::testing;
    use crate::validate::CheckInput;

    const SYSTEM: &str = r#"
[system]
name = "pv"
board = "qemu-virt-arm64"
xen = "4.17"

[dom0]
kernel = "Image"

[[domain]]
name = "app"
kind = "arm64"
memory = "64M"
kernel = "Image"
builder = "init"
disk = ["vdev=xvdb, backend=storage, access=ro, target=/dev/vdb", "/dev/vdc,,xvda"]
vif = ["backend=net, bridge=br1", "mac=00:16:3e:0a:0b:0c, mtu=9000"]

[[domain]]
name = "storage"
kind = "arm64"
memory = "64M"
kernel = "Image"
builder = "init"

[[domain]]
name = "net"
kind = "arm64"
memory = "64M"
kernel = "Image"
builder = "init"
"#;

    /// The plan lists each device with its backend, device number (vbd-interface.txt:
    /// xvda = 202<<8 = 51712, xvdb = 51728) and MAC, and boots frontends after their backends
    /// although the manifest lists the frontend first.
    #[test]
    fn the_plan_lists_devices_and_boots_backends_first() {
        let manifest = Manifest::parse(SYSTEM).unwrap();
        let board = testing::virt_arm64();
        let inventory = testing::gic_v3_inventory("/intc", std::vec::Vec::new());
        let artifacts = testing::arm64_artifacts(&["Image", "debian:xen"], 4096);
        let (p, _) = plan(CheckInput {
            manifest: &manifest,
            board: &board,
            inventory: &inventory,
            artifacts: &artifacts,
        })
        .unwrap_or_else(|d| panic!("{d:?}"));
        assert!(p.xenstore);
        let order: std::vec::Vec<&str> = p.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(order, ["storage", "net", "app"]);
        let app = p.domain("app").unwrap();
        let disks: std::vec::Vec<_> = app
            .pv_disks
            .iter()
            .map(|d| {
                (
                    d.vdev.as_str(),
                    d.devid,
                    d.backend.as_str(),
                    d.target.as_str(),
                    d.access,
                )
            })
            .collect();
        assert_eq!(
            disks,
            [
                ("xvdb", 51728, "storage", "/dev/vdb", DiskAccess::Ro),
                ("xvda", 51712, "dom0", "/dev/vdc", DiskAccess::Rw),
            ]
        );
        assert!(app.pv_disks.iter().all(|d| d.devtype == DiskDevtype::Disk));
        let nics: std::vec::Vec<_> = app
            .pv_nics
            .iter()
            .map(|n| (n.handle, n.backend.as_str(), n.bridge.as_str(), n.mtu))
            .collect();
        assert_eq!(nics, [(0, "net", "br1", 1500), (1, "dom0", "xenbr0", 9000)]);
        assert_eq!(app.pv_nics[1].mac, "00:16:3e:0a:0b:0c");
        // The default MAC is Xen's OUI and stable.
        assert!(app.pv_nics[0].mac.starts_with("00:16:3e:"));
        assert_eq!(
            app.pv_nics[0].mac,
            xenstore_layout::format_mac(&xenstore_layout::default_mac("pv", "app", 0))
        );
        assert!(p.domain("storage").unwrap().pv_disks.is_empty());
    }

    #[test]
    fn a_system_without_devices_needs_no_xenstore() {
        let text = std::string::String::from(SYSTEM.split("disk = [").next().unwrap()) + "\n";
        let m = Manifest::parse(&text).unwrap();
        assert!(!super::needs_xenstore(&m));
    }
}
