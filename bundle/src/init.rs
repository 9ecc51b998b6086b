//! Where the static `domforge-init` binaries come from.
//!
//! A bundle whose domains domforge-init builds carries it as `/init` of dom0's initramfs: a static
//! executable for the control domain's architecture ([`init_target`]). domforge never compiles it
//! while building a bundle (an installed `domforge` has no source tree to compile from); it looks,
//! in order:
//!
//! 1. `--init PATH` ([`InitLocator::explicit`]): the binary itself, or a directory laid out like
//!    a libexec directory (`<dir>/<target>/domforge-init`) or holding `domforge-init-<target>`;
//! 2. `$DOMFORGE_INIT_X86_64` (or `$DOMFORGE_INIT`) / `$DOMFORGE_INIT_AARCH64`;
//! 3. beside the `domforge` executable: `<bin>/../libexec/domforge/<target>/domforge-init` (what
//!    `scripts/install` and the release tarball lay out) or `<bin>/domforge-init-<target>`;
//! 4. the Cargo target directory this `domforge` was built in: `<target dir>/<target>/init/
//!    domforge-init` (the size-tuned `init` profile, which `scripts/build-init`, run by
//!    `scripts/test-all`, builds), else `<target dir>/<target>/release/domforge-init`.
//!
//! Whatever is found is checked: an ELF for the right machine with no program interpreter (a
//! dynamically linked binary cannot run as `/init` of an initramfs without a libc).

use std::path::{Path, PathBuf};

use firmware_config::board::Arch;

/// The Rust target `domforge-init` is built for on each architecture: static musl binaries, so the
/// control domain's initramfs needs no libc.
pub fn init_target(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-unknown-linux-musl",
        Arch::Arm64 => "aarch64-unknown-linux-musl",
    }
}

/// The variables naming a ready-made `domforge-init` for `arch` (`DOMFORGE_INIT` also works for
/// x86_64, as before ARM joined).
fn init_env(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &["DOMFORGE_INIT_X86_64", "DOMFORGE_INIT"],
        Arch::Arm64 => &["DOMFORGE_INIT_AARCH64"],
    }
}

/// Why no usable `domforge-init` was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    #[error(
        "no static domforge-init for {target} found (looked in: {looked}); build it with \
         `scripts/build-init`, install domforge with `scripts/install`, or give `--init PATH`"
    )]
    NotFound {
        target: &'static str,
        looked: String,
    },
    #[error("{path}: {reason}; domforge-init must be a static {target} executable")]
    Unusable {
        path: String,
        target: &'static str,
        reason: String,
    },
}

/// Finds `domforge-init` (see the module docs for the order).
#[derive(Debug, Clone, Default)]
pub struct InitLocator {
    /// `--init PATH`: a binary or a directory.
    pub explicit: Option<PathBuf>,
}

impl InitLocator {
    pub fn new(explicit: Option<PathBuf>) -> Self {
        Self { explicit }
    }

    /// The places looked at for `arch`, in order.
    pub fn candidates(&self, arch: Arch) -> Vec<PathBuf> {
        let target = init_target(arch);
        let mut out = Vec::new();
        let in_dir = |d: &Path| {
            vec![
                d.join(target).join("domforge-init"),
                d.join(format!("domforge-init-{target}")),
            ]
        };
        if let Some(p) = &self.explicit {
            if p.is_dir() {
                out.extend(in_dir(p));
            } else {
                out.push(p.clone());
            }
        }
        for var in init_env(arch) {
            if let Some(p) = std::env::var_os(var) {
                out.push(PathBuf::from(p));
            }
        }
        if let Ok(exe) = std::env::current_exe()
            && let Some(bin) = exe.parent()
        {
            out.push(
                bin.join("../libexec/domforge")
                    .join(target)
                    .join("domforge-init"),
            );
            out.push(bin.join(format!("domforge-init-{target}")));
            // `<target dir>/<profile>/domforge` or `<target dir>/<profile>/deps/<test binary>`.
            if let Some(t) = exe.ancestors().find(|a| a.join("CACHEDIR.TAG").is_file()) {
                // The size-tuned `init` profile (root Cargo.toml), else a plain release build.
                out.push(t.join(target).join("init/domforge-init"));
                out.push(t.join(target).join("release/domforge-init"));
            }
        }
        out
    }

    /// The first candidate that exists, checked to be a static executable for `arch`. An explicit
    /// `--init` or variable that names no file is an error, not a reason to look further.
    pub fn find(&self, arch: Arch) -> Result<PathBuf, InitError> {
        let target = init_target(arch);
        let explicit =
            self.explicit.is_some() || init_env(arch).iter().any(|v| std::env::var_os(v).is_some());
        let candidates = self.candidates(arch);
        for (i, p) in candidates.iter().enumerate() {
            if p.is_file() {
                let bytes = std::fs::read(p).map_err(|e| InitError::Unusable {
                    path: p.display().to_string(),
                    target,
                    reason: e.to_string(),
                })?;
                check_static_elf(&bytes, arch).map_err(|reason| InitError::Unusable {
                    path: p.display().to_string(),
                    target,
                    reason,
                })?;
                return Ok(p.clone());
            }
            if i == 0 && explicit && self.explicit.as_ref().is_none_or(|e| !e.is_dir()) {
                return Err(InitError::Unusable {
                    path: p.display().to_string(),
                    target,
                    reason: "no such file".into(),
                });
            }
        }
        Err(InitError::NotFound {
            target,
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// An ELF64 little-endian executable for `arch` without `PT_INTERP` (ELF gABI: `e_machine` at 18,
/// `e_phoff` at 32, `e_phentsize`/`e_phnum` at 54/56; `EM_X86_64` = 62, `EM_AARCH64` = 183;
/// `PT_INTERP` = 3 names the dynamic loader).
pub fn check_static_elf(bytes: &[u8], arch: Arch) -> Result<(), String> {
    if bytes.len() < 64 || !bytes.starts_with(b"\x7fELF") {
        return Err("not an ELF executable".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let machine = u16_at(18);
    let want = match arch {
        Arch::X86_64 => 62,
        Arch::Arm64 => 183,
    };
    if machine != want {
        return Err(format!(
            "an ELF for machine {machine}, not {} ({want})",
            arch.as_str()
        ));
    }
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(54) as usize, u16_at(56) as usize);
    for i in 0..phnum {
        let at = phoff.saturating_add(i.saturating_mul(phentsize));
        let Some(h) = bytes.get(at..at + 4) else {
            return Err("its program headers lie outside the file".into());
        };
        if u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == 3 {
            return Err("dynamically linked (it has a program interpreter)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16, interp: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&(if interp { 3u32 } else { 1 }).to_le_bytes());
        b
    }

    #[test]
    fn static_elf_of_the_right_machine_passes() {
        assert_eq!(check_static_elf(&elf(62, false), Arch::X86_64), Ok(()));
        assert_eq!(check_static_elf(&elf(183, false), Arch::Arm64), Ok(()));
    }

    #[test]
    fn wrong_machine_dynamic_or_not_elf_is_refused_with_the_reason() {
        assert!(
            check_static_elf(&elf(183, false), Arch::X86_64)
                .unwrap_err()
                .contains("machine 183")
        );
        assert!(
            check_static_elf(&elf(62, true), Arch::X86_64)
                .unwrap_err()
                .contains("dynamically linked")
        );
        assert_eq!(
            check_static_elf(b"#!/bin/sh\n", Arch::X86_64).unwrap_err(),
            "not an ELF executable"
        );
    }

    #[test]
    fn an_explicit_path_that_is_missing_is_an_error_naming_it() {
        let l = InitLocator::new(Some(PathBuf::from("/nonexistent/domforge-init")));
        let e = l.find(Arch::Arm64).unwrap_err();
        assert!(
            e.to_string()
                .contains("/nonexistent/domforge-init: no such file")
        );
    }
}
