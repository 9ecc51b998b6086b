//! [`Bundle::write`]: the only code that writes a bundle to disk.
//!
//! Everything is decided before the first byte is written: the files, `SHA256SUMS` (every file of
//! the bundle but itself, `sha256sum -c` format: the host DTB, the boot modules in load order, then
//! the rest by name) and `build.json` (a [`BuildOutput`] with paths relative to the directory). The
//! files go into a staging directory inside the output directory first; only when all of them are
//! written are the previous build's files removed and the new ones moved into place, so a failed
//! write (a full disk) leaves the previous bundle as it was and never a mix of two. Files in the
//! directory that are not a bundle's are left alone.

use std::path::{Path, PathBuf};

use qemu_launch::QemuInvocation;

use sha2::{Digest, Sha256};

use crate::{BootTarget, BuiltModule, Bundle, BundleFile, Role, sha256_hex};

/// What [`Bundle::write`] wrote. In memory every path is absolute; `build.json` holds the same with
/// paths relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BuildOutput {
    pub dir: PathBuf,
    /// The host DTB (empty on x86, which has no device tree).
    pub host_dtb: PathBuf,
    /// Boots the written bundle in QEMU by each boot target it has (absolute paths; spawn from
    /// anywhere); empty for boards QEMU does not emulate. In `build.json`: an object keyed by
    /// target name (`qemu-direct`, `u-boot`, `uefi`, `grub`).
    #[serde(serialize_with = "by_target_name")]
    pub qemu_boots: Vec<(BootTarget, QemuInvocation)>,
    /// Xen first, then the modules in plan order.
    pub modules: Vec<BuiltModule>,
    pub plan: firmware_config::plan::SystemPlan,
    /// Things a person should know that did not stop the build (not in build.json).
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl BuildOutput {
    /// How QEMU boots the written bundle by `target`, if it has that target in QEMU.
    pub fn qemu(&self, target: BootTarget) -> Option<&QemuInvocation> {
        self.qemu_boots
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, q)| q)
    }
}

fn by_target_name<S: serde::Serializer>(
    boots: &[(BootTarget, QemuInvocation)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(boots.len()))?;
    for (t, q) in boots {
        map.serialize_entry(t.name(), q)?;
    }
    map.end()
}

/// Why writing stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the QEMU command line for {dir}: {reason}")]
    Qemu { dir: PathBuf, reason: String },
    #[error("encoding build.json: {0}")]
    Json(#[from] serde_json::Error),
    /// A disk image names a file the bundle does not hold (a bundle assembled wrong).
    #[error("the bundle's {0}")]
    Image(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The staging directory inside the output directory (same file system, so moves are renames).
const STAGING: &str = ".domforge-staging";

/// Top-level names a bundle may have written: removed before a new bundle moves in, so a
/// directory never mixes two builds (e.g. the fragment of a domain that no longer exists).
fn is_bundle_name(name: &str, listed: &[String]) -> bool {
    matches!(
        name,
        "modules"
            | "host.dtb"
            | "host.dts"
            | "run-qemu.sh"
            | "boot.source"
            | "boot.scr"
            | "SHA256SUMS"
            | "build.json"
            | "disk0.img"
            | "boot.img"
            | "run-qemu-uboot.sh"
            | "run-qemu-uefi.sh"
            | "run-qemu-grub.sh"
            | "uefi.img"
            | "BOOTAA64.cfg"
            | "BOOTX64.cfg"
            | "boot.blob"
            | "system.svg"
    ) || (name.starts_with("passthrough-") && (name.ends_with(".dtb") || name.ends_with(".dts")))
        || listed.iter().any(|l| l == name)
}

impl Bundle {
    /// The SHA-256 of `f`, a file of this bundle, in hex.
    fn digest_of(&self, f: &BundleFile) -> Result<String, WriteError> {
        let mut h = Sha256::new();
        for segment in self.segments(f).map_err(WriteError::Image)? {
            h.update(segment);
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// `SHA256SUMS`: every file but itself (see the module docs for the order).
    pub fn sha256sums(&self, extra: &[(&str, &[u8])]) -> Result<String, WriteError> {
        let mut rest: Vec<(String, String)> = Vec::new();
        for f in &self.files {
            if f.role != Role::Module && f.role != Role::HostDtb {
                rest.push((f.path.display().to_string(), self.digest_of(f)?));
            }
        }
        rest.extend(extra.iter().map(|(p, b)| (p.to_string(), sha256_hex(b))));
        rest.sort();
        let mut s = String::new();
        for f in self.files.iter().filter(|f| f.role == Role::HostDtb) {
            s.push_str(&format!("{}  {}\n", self.digest_of(f)?, f.path.display()));
        }
        for m in &self.modules {
            s.push_str(&format!("{}  {}\n", m.sha256, m.path.display()));
        }
        for (p, d) in rest {
            s.push_str(&format!("{d}  {p}\n"));
        }
        Ok(s)
    }

    /// Every QEMU invocation with paths under `base`.
    fn qemu_at(&self, base: &Path) -> Result<Vec<(BootTarget, QemuInvocation)>, WriteError> {
        self.qemu_boots
            .iter()
            .map(|(t, q)| {
                q.invocation(base)
                    .map(|inv| (*t, inv))
                    .map_err(|reason| WriteError::Qemu {
                        dir: base.to_path_buf(),
                        reason,
                    })
            })
            .collect()
    }

    /// `build.json`: the bundle with paths relative to its directory.
    pub fn build_json(&self) -> Result<String, WriteError> {
        let relative = BuildOutput {
            dir: PathBuf::from("."),
            host_dtb: self.host_dtb.clone().unwrap_or_default(),
            qemu_boots: self.qemu_at(Path::new(""))?,
            modules: self.modules.clone(),
            plan: self.plan.clone(),
            notes: Vec::new(),
        };
        let mut json = serde_json::to_string_pretty(&relative)?;
        json.push('\n');
        Ok(json)
    }

    /// Writes the bundle into `out` (created if needed); see the module docs.
    pub fn write(&self, out: &Path) -> Result<BuildOutput, WriteError> {
        std::fs::create_dir_all(out).map_err(io(out))?;
        let dir = std::fs::canonicalize(out).map_err(io(out))?;
        let qemu_boots = self.qemu_at(&dir)?;
        let json = self.build_json()?;
        let sums = self.sha256sums(&[("build.json", json.as_bytes())])?;

        let staging = dir.join(STAGING);
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        let staged = self.stage(&staging, &json, &sums);
        if let Err(e) = staged {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        replace(&dir, &staging)?;
        let modules = self
            .modules
            .iter()
            .map(|m| BuiltModule {
                path: dir.join(&m.path),
                ..m.clone()
            })
            .collect();
        Ok(BuildOutput {
            host_dtb: self
                .host_dtb
                .as_ref()
                .map(|p| dir.join(p))
                .unwrap_or_default(),
            dir,
            qemu_boots,
            modules,
            plan: self.plan.clone(),
            notes: self.notes.clone(),
        })
    }

    fn stage(&self, staging: &Path, json: &str, sums: &str) -> Result<(), WriteError> {
        std::fs::create_dir_all(staging).map_err(io(staging))?;
        for f in &self.files {
            let p = staging.join(&f.path);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            write_segments(&p, &self.segments(f).map_err(WriteError::Image)?)?;
            if f.executable {
                set_executable(&p)?;
            }
        }
        for (name, text) in [("build.json", json), ("SHA256SUMS", sums)] {
            let p = staging.join(name);
            std::fs::write(&p, text).map_err(io(&p))?;
        }
        Ok(())
    }
}

/// Writes `segments`, one after another, as the file `p`.
fn write_segments(p: &Path, segments: &[&[u8]]) -> Result<(), WriteError> {
    use std::io::Write;
    let mut file = std::fs::File::create(p).map_err(io(p))?;
    for s in segments {
        file.write_all(s).map_err(io(p))?;
    }
    Ok(())
}

/// Removes the previous bundle's files from `dir` and moves the staged ones in.
fn replace(dir: &Path, staging: &Path) -> Result<(), WriteError> {
    // Names an earlier bundle listed in its SHA256SUMS (top-level component), beyond the fixed set.
    let listed: Vec<String> = std::fs::read_to_string(dir.join("SHA256SUMS"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, p)| p))
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != STAGING && is_bundle_name(&name, &listed) {
            let p = e.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(io(&p))?;
            } else {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
    }
    for e in std::fs::read_dir(staging).map_err(io(staging))? {
        let e = e.map_err(io(staging))?;
        let to = dir.join(e.file_name());
        std::fs::rename(e.path(), &to).map_err(io(&to))?;
    }
    std::fs::remove_dir(staging).map_err(io(staging))
}

#[cfg(unix)]
fn set_executable(p: &Path) -> Result<(), WriteError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).map_err(io(p))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<(), WriteError> {
    Ok(())
}
