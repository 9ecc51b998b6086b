//! PV disks and network interfaces in xl.cfg's syntax (issue 19).
//!
//! A `disk` entry is an xl DISKSPEC (docs/misc/xl-disk-configuration.txt, xl-disk-configuration(5)):
//! comma-separated `key=value` pairs, flags and positional parameters `target, format, vdev, access`
//! in that order; `target=` takes the whole remainder of the string, commas included. A `vif` entry
//! is an xl vif spec (docs/misc/xl-network-configuration.markdown): `key=value` pairs only.
//!
//! Both accept `backend=<domain>` as xl does, naming a domain of the manifest. Keys xl accepts but
//! domforge cannot honour (qcow images need QEMU's qdisk backend, hotplug scripts need a shell and
//! xl's script environment, emulated NICs need a device model) are refused with the reason
//! ([`SpecError::unsupported`]), never ignored: a guest that silently lost its rate limit or its
//! read-only flag would be worse than an error.
//!
//! The parsers work on the string alone and report byte ranges inside it; the manifest converter
//! maps them to file spans.

use core::ops::Range;
use std::borrow::ToOwned;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

/// Disk access mode (xl `access`: `ro`/`r` or `rw`/`w`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskAccess {
    Ro,
    Rw,
}

/// xl `devtype`: a disk or a CD-ROM (blkif.h `device-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskDevtype {
    Disk,
    Cdrom,
}

/// A value inside a spec string: its text and its byte range in that string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub text: String,
    pub at: Range<usize>,
}

/// One parsed DISKSPEC, before its spans are mapped into the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub vdev: Part,
    /// Xen's virtual device number of `vdev` (docs/misc/vbd-interface.txt).
    pub devid: u32,
    /// The file or block device, as the **backend** domain sees it (libxl writes it to `params`).
    pub target: Part,
    pub access: DiskAccess,
    pub devtype: DiskDevtype,
    pub backend: Option<Part>,
    /// domforge's extension: a file on the build host that the bundle ships into the backend
    /// domain at `target` (xl has no such thing: its targets already exist in dom0).
    pub image: Option<Part>,
}

/// One parsed vif spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifSpec {
    pub mac: Option<([u8; 6], Range<usize>)>,
    /// The bridge in the backend domain; libxl's default is `xenbr0` (libxl_nic.c).
    pub bridge: Option<Part>,
    pub backend: Option<Part>,
    /// The backend interface's name (xl `vifname`); default `vif<domid>.<handle>`.
    pub vifname: Option<Part>,
    pub mtu: Option<(u32, Range<usize>)>,
    /// xl `devid`: the handle, default the entry's index.
    pub devid: Option<(u32, Range<usize>)>,
}

/// What is wrong, where in the spec string, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// `true`: valid xl, but domforge cannot serve it (E0022); `false`: not valid (E0020/E0021).
    pub unsupported: bool,
    pub message: String,
    pub at: Range<usize>,
    pub label: String,
    pub help: Option<String>,
    pub note: Option<String>,
}

impl SpecError {
    fn invalid(message: impl Into<String>, at: Range<usize>, label: impl Into<String>) -> Self {
        SpecError {
            unsupported: false,
            message: message.into(),
            at,
            label: label.into(),
            help: None,
            note: None,
        }
    }
    fn unsupported(message: impl Into<String>, at: Range<usize>, why: impl Into<String>) -> Self {
        SpecError {
            unsupported: true,
            message: message.into(),
            at,
            label: "domforge cannot honour this".to_owned(),
            help: None,
            note: Some(why.into()),
        }
    }
    fn help(mut self, h: impl Into<String>) -> Self {
        self.help = Some(h.into());
        self
    }
}

/// One comma-separated item, trimmed: its text and range.
#[derive(Debug, Clone)]
struct Item<'a> {
    text: &'a str,
    at: Range<usize>,
}

impl Item<'_> {
    fn part(&self) -> Part {
        Part {
            text: self.text.to_owned(),
            at: self.at.clone(),
        }
    }
}

/// Splits at commas, trimming whitespace; `target=` (disk specs only) swallows the rest.
fn items(spec: &str, target_takes_rest: bool) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start <= spec.len() {
        let rest = &spec[start..];
        let lead = rest.len() - rest.trim_start().len();
        let body_start = start + lead;
        let body = &spec[body_start..];
        let end = if target_takes_rest && body.starts_with("target=") {
            spec.len()
        } else {
            body.find(',').map_or(spec.len(), |i| body_start + i)
        };
        let raw = &spec[body_start..end];
        let text = raw.trim_end();
        out.push(Item {
            text,
            at: body_start..body_start + text.len(),
        });
        if end >= spec.len() {
            break;
        }
        start = end + 1;
    }
    out
}

/// An xl `kind` (disk, vif) parameter `key` that xl does not have, with the nearest one it has.
fn unknown_key(kind: &str, key: &str, item: &Item<'_>, keys: &[&str]) -> SpecError {
    let mut e = SpecError::invalid(
        format!("unknown {kind} parameter `{key}`"),
        item.at.clone(),
        format!("not an xl {kind} parameter"),
    );
    e.help = Some(match crate::diag::did_you_mean(key, keys.iter().copied()) {
        Some(k) => format!("did you mean `{k}`?"),
        None => format!("{kind} parameters: {}", keys.join(", ")),
    });
    e
}
/// `key=value` → (key, value item); the value's range is inside the item.
fn key_value<'a>(item: &Item<'a>) -> Option<(&'a str, Item<'a>)> {
    let eq = item.text.find('=')?;
    let key = item.text[..eq].trim_end();
    let raw = &item.text[eq + 1..];
    let value = raw.trim_start();
    let vstart = item.at.start + eq + 1 + (raw.len() - value.len());
    Some((
        key,
        Item {
            text: value,
            at: vstart..vstart + value.len(),
        },
    ))
}

const DISK_KEYS: &[&str] = &[
    "target",
    "format",
    "vdev",
    "access",
    "devtype",
    "backend",
    "backendtype",
    "script",
    "specification",
    "transport",
    "image",
];
const DISK_FLAGS: &[&str] = &[
    "cdrom",
    "discard",
    "no-discard",
    "direct-io-safe",
    "trusted",
    "untrusted",
];

/// Parses one xl DISKSPEC.
pub fn parse_disk(spec: &str) -> Result<DiskSpec, SpecError> {
    let whole = 0..spec.len();
    let mut named: Vec<(&str, Item<'_>)> = Vec::new();
    let mut positional: Vec<Item<'_>> = Vec::new();
    let mut cdrom_flag = false;
    let mut prefix_format: Option<Item<'_>> = None;
    for item in items(spec, true) {
        if let Some((key, value)) = key_value(&item) {
            if !DISK_KEYS.contains(&key) {
                return Err(unknown_key("disk", key, &item, DISK_KEYS));
            }
            if named.iter().any(|(k, _)| *k == key) {
                return Err(SpecError::invalid(
                    format!("`{key}` is given twice"),
                    item.at.clone(),
                    "second time",
                )
                .help("each parameter may be given once (xl-disk-configuration(5))"));
            }
            named.push((key, value));
        } else if DISK_FLAGS.contains(&item.text) {
            match item.text {
                "cdrom" => cdrom_flag = true,
                // blkback's own defaults already serve these; they change nothing we write.
                "discard" | "trusted" => {}
                "no-discard" | "untrusted" | "direct-io-safe" => {
                    return Err(SpecError::unsupported(
                        format!("the `{}` flag is not supported", item.text),
                        item.at.clone(),
                        "domforge writes blkback's defaults (discard enabled for writable disks, trusted frontends, no direct-io-safe for QEMU backends)",
                    )
                    .help("remove the flag"));
                }
                _ => unreachable!("DISK_FLAGS is matched in full"),
            }
        } else {
            // The deprecated `<format>:<target>` prefix (`phy:/dev/sda`, `raw:/img`, `file:/img`)
            // sets the format; xl then assigns the other positionals past it.
            let mut item = item;
            if positional.is_empty()
                && let Some((pre, _)) = item.text.split_once(':')
                && matches!(
                    pre,
                    "phy" | "raw" | "file" | "qcow" | "qcow2" | "vhd" | "tap"
                )
            {
                let pre_len = pre.len();
                prefix_format = Some(Item {
                    text: pre,
                    at: item.at.start..item.at.start + pre_len,
                });
                item = Item {
                    text: &item.text[pre_len + 1..],
                    at: item.at.start + pre_len + 1..item.at.end,
                };
            }
            positional.push(item);
        }
    }
    let mut order: Vec<&str> = ["target", "format", "vdev", "access"].to_vec();
    order.retain(|p| !named.iter().any(|(k, _)| k == p));
    if prefix_format.is_some() {
        order.retain(|p| *p != "format");
    }
    if positional.len() > order.len() {
        let extra = &positional[order.len()];
        return Err(SpecError::invalid(
            format!("unexpected `{}`", extra.text),
            extra.at.clone(),
            "every positional parameter (target, format, vdev, access) is already given",
        )
        .help("write named parameters, e.g. `vdev=xvda, access=rw, target=/srv/disk.img`"));
    }
    for (name, item) in order.iter().zip(positional) {
        // An empty positional (`/img,,hda`) means "default".
        if !item.text.is_empty() {
            named.push((name, item));
        }
    }
    let get = |k: &str| named.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());

    let format = get("format").or(prefix_format);
    if let Some(f) = &format {
        match f.text {
            "raw" | "phy" | "file" => {}
            "qcow" | "qcow2" | "vhd" | "qed" | "tap" => {
                return Err(SpecError::unsupported(
                    format!("`{}` images are not supported", f.text),
                    f.at.clone(),
                    "only raw images can be served: blkback reads a block device, and image formats need QEMU's qdisk backend, which domforge does not run",
                )
                .help(format!("convert it on the build host: `qemu-img convert -O raw disk.{0} disk.img`", f.text)));
            }
            other => {
                return Err(SpecError::invalid(
                    format!("unknown disk format `{other}`"),
                    f.at.clone(),
                    "expected raw (or xl's qcow, qcow2, vhd, qed)",
                ));
            }
        }
    }
    for key in ["backendtype", "script", "specification", "transport"] {
        if let Some(v) = get(key) {
            let fine = match key {
                "backendtype" => v.text == "phy",
                "specification" => v.text == "xen",
                _ => false,
            };
            if !fine {
                let why = match key {
                    "backendtype" => {
                        "domforge serves disks with Linux's blkback (`phy`); `qdisk` and `tap` need QEMU or tapdisk in the backend domain"
                    }
                    "script" => {
                        "block hotplug scripts need a shell and xl's script environment; domforge-init in the backend domain attaches the file to a loop device itself"
                    }
                    _ => {
                        "virtio disks need a device model; domforge serves Xen PV disks (`specification=xen`)"
                    }
                };
                return Err(SpecError::unsupported(
                    format!("`{key}={}` is not supported", v.text),
                    v.at.clone(),
                    why,
                )
                .help(format!("remove `{key}=`")));
            }
        }
    }

    let Some(vdev) = get("vdev") else {
        return Err(SpecError::invalid(
            "the disk has no `vdev`",
            whole,
            "which device should the guest see?",
        )
        .help("add `vdev=xvda` (xl's positional order is target, format, vdev, access)"));
    };
    let (vdev_name, cdrom_suffix) = match vdev.text.strip_suffix(":cdrom") {
        Some(v) => (v, true),
        None => (vdev.text, false),
    };
    let devid = xenstore_layout::vdev_to_devid(vdev_name).map_err(|e| {
        SpecError::invalid(
            format!("`{vdev_name}` is not a virtual disk name"),
            vdev.at.clone(),
            e.to_string(),
        )
        .help("use xvda, xvdb... (docs/misc/vbd-interface.txt)")
    })?;

    let devtype = match get("devtype") {
        None => DiskDevtype::Disk,
        Some(v) if v.text == "disk" => DiskDevtype::Disk,
        Some(v) if v.text == "cdrom" => DiskDevtype::Cdrom,
        Some(v) => {
            return Err(SpecError::invalid(
                format!("unknown devtype `{}`", v.text),
                v.at.clone(),
                "expected `disk` or `cdrom`",
            ));
        }
    };
    let devtype = if cdrom_flag || cdrom_suffix {
        DiskDevtype::Cdrom
    } else {
        devtype
    };

    let access = match get("access") {
        None if devtype == DiskDevtype::Cdrom => DiskAccess::Ro,
        None => DiskAccess::Rw,
        Some(v) => match v.text {
            "ro" | "r" => DiskAccess::Ro,
            "rw" | "w" => DiskAccess::Rw,
            other => {
                return Err(SpecError::invalid(
                    format!("unknown access `{other}`"),
                    v.at.clone(),
                    "expected ro (r) or rw (w)",
                ));
            }
        },
    };
    if devtype == DiskDevtype::Cdrom && access == DiskAccess::Rw {
        let at = get("access").map_or(whole.clone(), |a| a.at);
        return Err(
            SpecError::invalid("a CD-ROM cannot be writable", at, "CD-ROMs are read-only")
                .help("use `access=ro`, or `devtype=disk`"),
        );
    }

    let Some(target) = get("target") else {
        return Err(SpecError::unsupported(
            "the disk has no target",
            whole,
            "an empty drive (xl's CD-ROM without media) needs `xl cd-insert` later, which domforge has no equivalent of",
        )
        .help("give the file or device: `target=/srv/disk.img` (last, it takes the rest of the string)"));
    };
    if !target.text.starts_with('/') {
        return Err(SpecError::invalid(
            format!("the target `{}` is not an absolute path", target.text),
            target.at.clone(),
            "a path in the backend domain, e.g. /dev/vdb or /srv/disk.img",
        ));
    }
    let image = get("image");
    if let Some(i) = &image
        && i.text.is_empty()
    {
        return Err(SpecError::invalid(
            "`image=` names no file",
            i.at.clone(),
            "a file on the build host",
        ));
    }
    Ok(DiskSpec {
        vdev: Part {
            text: vdev_name.to_owned(),
            at: vdev.at.start..vdev.at.start + vdev_name.len(),
        },
        devid,
        target: target.part(),
        access,
        devtype,
        backend: get("backend").map(|b| b.part()),
        image: image.map(|i| i.part()),
    })
}

const VIF_KEYS: &[&str] = &[
    "mac",
    "bridge",
    "backend",
    "vifname",
    "mtu",
    "devid",
    "type",
    "script",
    "model",
    "rate",
    "ip",
    "gatewaydev",
    "forwarddev",
    "accel",
    "match",
];

/// Linux's IFNAMSIZ is 16 with the NUL: interface names are at most 15 bytes.
const IFNAME_MAX: usize = 15;

/// Parses one xl vif spec.
pub fn parse_vif(spec: &str) -> Result<VifSpec, SpecError> {
    let mut out = VifSpec {
        mac: None,
        bridge: None,
        backend: None,
        vifname: None,
        mtu: None,
        devid: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    for item in items(spec, false) {
        if item.text.is_empty() {
            continue;
        }
        let Some((key, value)) = key_value(&item) else {
            return Err(SpecError::invalid(
                format!("`{}` is not `key=value`", item.text),
                item.at.clone(),
                "vif parameters are all named",
            )
            .help("e.g. `bridge=xenbr0, mac=00:16:3e:00:00:01, backend=netdrv`"));
        };
        if !VIF_KEYS.contains(&key) {
            return Err(unknown_key("vif", key, &item, VIF_KEYS));
        }
        if seen.contains(&key) {
            return Err(SpecError::invalid(
                format!("`{key}` is given twice"),
                item.at.clone(),
                "second time",
            ));
        }
        seen.push(key);
        vif_param(&mut out, key, value)?;
    }
    Ok(out)
}

fn vif_param(out: &mut VifSpec, key: &str, v: Item<'_>) -> Result<(), SpecError> {
    let number = |v: &Item<'_>, what: &str| {
        v.text.parse::<u32>().map_err(|_| {
            SpecError::invalid(
                format!("`{}` is not a number", v.text),
                v.at.clone(),
                format!("{what} is a decimal number"),
            )
        })
    };
    match key {
        "mac" => {
            let mac = xenstore_layout::parse_mac(v.text).map_err(|e| {
                SpecError::invalid(
                    format!("`{}` is not a MAC address", v.text),
                    v.at.clone(),
                    e.to_string(),
                )
            })?;
            // IEEE 802: bit 0 of the first octet marks a group (multicast) address, which no
            // interface may own; xl refuses it too (libxl_nic.c).
            if mac[0] & 1 != 0 {
                return Err(SpecError::invalid(
                    format!("`{}` is a multicast address", v.text),
                    v.at.clone(),
                    "the first byte is odd: a group address",
                )
                .help("use Xen's prefix 00:16:3e, or leave `mac` out for a stable default"));
            }
            out.mac = Some((mac, v.at.clone()));
        }
        "bridge" | "vifname" => {
            let ok = !v.text.is_empty()
                && v.text.len() <= IFNAME_MAX
                && v.text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                return Err(SpecError::invalid(
                    format!("`{}` is not a network interface name", v.text),
                    v.at.clone(),
                    "1-15 letters, digits, '-', '_' or '.' (Linux IFNAMSIZ)",
                ));
            }
            if key == "bridge" {
                out.bridge = Some(v.part());
            } else {
                out.vifname = Some(v.part());
            }
        }
        "backend" => out.backend = Some(v.part()),
        "mtu" => {
            let mtu = number(&v, "mtu")?;
            // 68: the IPv4 minimum (RFC 791); 65535: netback's limit (ETH_MAX_MTU).
            if !(68..=65535).contains(&mtu) {
                return Err(SpecError::invalid(
                    format!("an MTU of {mtu} is out of range"),
                    v.at.clone(),
                    "68 to 65535",
                ));
            }
            out.mtu = Some((mtu, v.at.clone()));
        }
        "devid" => out.devid = Some((number(&v, "devid")?, v.at.clone())),
        "type" if v.text == "vif" => {}
        other => return Err(vif_unsupported(other, v)),
    }
    Ok(())
}

fn vif_unsupported(key: &str, v: Item<'_>) -> SpecError {
    let (why, help) = match key {
        "type" | "model" => (
            "emulated NICs (`type=ioemu`, `model=`) need a device model; domforge serves Xen PV interfaces",
            "remove it: PVH and ARM guests use the PV interface (`type=vif`)",
        ),
        "script" => (
            "vif hotplug scripts need a shell and xl's script environment; domforge-init in the backend domain brings the vif up and adds it to `bridge` itself",
            "remove `script=`; give `bridge=` for the bridge to join",
        ),
        "ip" | "gatewaydev" | "forwarddev" => (
            "routed and NAT setups are done by xl's vif-route/vif-nat scripts, which domforge does not run; domforge bridges",
            "use `bridge=` and configure addresses inside the guests",
        ),
        "rate" => (
            "netback's credit scheduler (`rate`) is not configured by domforge yet; accepting it would silently drop the limit",
            "remove `rate=`",
        ),
        _ => (
            "this xl option has no meaning for a PV interface served by domforge",
            "remove it",
        ),
    };
    SpecError::unsupported(format!("`{key}={}` is not supported", v.text), v.at, why).help(help)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(s: &str) -> DiskSpec {
        parse_disk(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
    }

    /// The equivalent forms xl-disk-configuration(5) lists under "SYNTAX".
    #[test]
    fn the_manual_s_equivalent_disk_forms_agree() {
        let forms = [
            "/dev/vg/guest-volume,,hda",
            "/dev/vg/guest-volume,raw,hda,rw",
            "format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume",
            "raw:/dev/vg/guest-volume,hda,w",
        ];
        for f in forms {
            let d = disk(f);
            assert_eq!(
                (
                    d.vdev.text.as_str(),
                    d.target.text.as_str(),
                    d.access,
                    d.devtype
                ),
                (
                    "hda",
                    "/dev/vg/guest-volume",
                    DiskAccess::Rw,
                    DiskDevtype::Disk
                ),
                "{f}"
            );
            // hda: major 3, disk 0 (vbd-interface.txt).
            assert_eq!(d.devid, 3 << 8, "{f}");
        }
        let cdroms = [
            "/root/image.iso,,hdc,cdrom",
            "/root/image.iso,,hdc,,cdrom",
            "/root/image.iso,raw,hdc,devtype=cdrom",
            "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso",
            "raw:/root/image.iso,hdc:cdrom,ro",
        ];
        for f in cdroms {
            let d = disk(f);
            assert_eq!(
                (
                    d.vdev.text.as_str(),
                    d.target.text.as_str(),
                    d.access,
                    d.devtype
                ),
                ("hdc", "/root/image.iso", DiskAccess::Ro, DiskDevtype::Cdrom),
                "{f}"
            );
            // hdc: major 22 (vbd-interface.txt).
            assert_eq!(d.devid, 22 << 8, "{f}");
        }
    }

    #[test]
    fn target_takes_the_rest_and_ranges_point_into_the_string() {
        let s = "vdev=xvdb, backend=storage, target=/srv/a,b.img";
        let d = disk(s);
        assert_eq!(d.target.text, "/srv/a,b.img");
        assert_eq!(&s[d.target.at.clone()], "/srv/a,b.img");
        assert_eq!(&s[d.vdev.at.clone()], "xvdb");
        assert_eq!(d.devid, 202 << 8 | 1 << 4);
        assert_eq!(d.backend.unwrap().text, "storage");
    }

    #[test]
    fn bad_disks_name_the_offending_part() {
        let cases = [
            ("vdev=xvda, colour=red, target=/x", "colour=red", false),
            ("/x,qcow2,xvda", "qcow2", true),
            ("vdev=xvda, backendtype=qdisk, target=/x", "qdisk", true),
            (
                "vdev=xvda, script=block-drbd, target=/x",
                "block-drbd",
                true,
            ),
            ("vdev=floppy, target=/x", "floppy", false),
            ("vdev=xvda, access=rwx, target=/x", "rwx", false),
            ("vdev=xvda, target=relative.img", "relative.img", false),
            ("/x,raw,xvda,rw,extra", "extra", false),
            ("vdev=xvda, vdev=xvdb, target=/x", "vdev=xvdb", false),
            (
                "vdev=xvda, devtype=cdrom, access=rw, target=/x",
                "rw",
                false,
            ),
            ("vdev=xvda, no-discard, target=/x", "no-discard", true),
        ];
        for (s, at, unsupported) in cases {
            let e = parse_disk(s).expect_err(s);
            assert_eq!(&s[e.at.clone()], at, "{s}: {e:?}");
            assert_eq!(e.unsupported, unsupported, "{s}");
        }
        let e = parse_disk("target=/x").unwrap_err();
        assert!(e.message.contains("vdev"));
        let e = parse_disk("vdev=xvda").unwrap_err();
        assert!(e.message.contains("no target"));
        let e = parse_disk("vdev=xvda, acess=ro, target=/x").unwrap_err();
        assert_eq!(e.help.as_deref(), Some("did you mean `access`?"));
    }

    #[test]
    fn vifs_parse_and_refuse_what_needs_scripts() {
        let s = "bridge=xenbr1, mac=00:16:3E:01:02:03, backend=netdrv, mtu=9000, type=vif";
        let v = parse_vif(s).unwrap();
        assert_eq!(v.mac.as_ref().unwrap().0, [0, 0x16, 0x3e, 1, 2, 3]);
        assert_eq!(v.bridge.unwrap().text, "xenbr1");
        assert_eq!(v.backend.unwrap().text, "netdrv");
        assert_eq!(v.mtu.unwrap().0, 9000);
        assert_eq!(parse_vif("").unwrap().bridge, None);
        let cases = [
            ("mac=01:16:3e:00:00:01", "01:16:3e:00:00:01", false),
            ("mac=00:16:3e:00:00", "00:16:3e:00:00", false),
            (
                "bridge=a-very-long-bridge-name",
                "a-very-long-bridge-name",
                false,
            ),
            ("type=ioemu", "ioemu", true),
            ("model=e1000", "e1000", true),
            ("script=vif-route", "vif-route", true),
            ("ip=10.0.0.2", "10.0.0.2", true),
            ("mtu=20", "20", false),
            ("bridge", "bridge", false),
            ("brige=xenbr0", "brige=xenbr0", false),
        ];
        for (s, at, unsupported) in cases {
            let e = parse_vif(s).expect_err(s);
            assert_eq!(&s[e.at.clone()], at, "{s}: {e:?}");
            assert_eq!(e.unsupported, unsupported, "{s}");
        }
    }

    #[test]
    fn no_input_panics() {
        for s in [
            ",",
            ",,,,",
            "=",
            "target=",
            "a:b",
            " , = , ",
            "phy:",
            "vdev=,target=/",
        ] {
            let _ = parse_disk(s);
            let _ = parse_vif(s);
        }
    }
}
