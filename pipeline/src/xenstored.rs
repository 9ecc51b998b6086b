//! Debian's C xenstored for a dom0 that serves PV devices (issue 19), fetched with exactly the
//! shared libraries its loader maps ([`elf_closure`]) and pinned by the lock as `debian:xenstored`.
//!
//! Its Xen series must be the system's: xenstored links libxenctrl, whose domctls carry the
//! hypervisor's `XEN_DOMCTL_INTERFACE_VERSION` (a 4.17 libxenctrl is refused by Xen 4.20), so 4.17
//! takes bookworm's `xen-utils-4.17` and 4.20 trixie's `xen-utils-4.20`.

use bundle::dom0::XenstoredFiles;
use sha2::{Digest, Sha256};

use crate::lock::{LockSession, LockedPackage, LockedSource};
use crate::{Options, fetch_message, hex, lock_key, refresh_for_update};

/// The lock's source name for xenstored and its libraries.
pub const LOCK_SOURCE: &str = "debian:xenstored";

/// The packages of xenstored's closure for Xen `series` (`4.17`, `4.20`), the binary's package
/// first. The `libxen*` ones are built from the same source and fetched at its version; libgcc_s is
/// what glibc dlopens for `pthread_cancel` ([`elf_closure::GLIBC_DLOPENS`]).
pub fn packages(series: &str) -> Vec<String> {
    let mut out = vec![format!("xen-utils-{series}")];
    out.extend(
        [
            "libc6",
            "libgcc-s1",
            "libxencall1",
            "libxendevicemodel1",
            "libxenevtchn1",
            "libxenforeignmemory1",
            "libxengnttab1",
            "libxentoolcore1",
            "libxentoollog1",
        ]
        .map(str::to_owned),
    );
    out.push(format!("libxenmisc{series}"));
    out
}

/// `usr/lib/xen-<series>/bin/xenstored`, where Debian installs the C daemon.
pub fn binary(series: &str) -> String {
    format!("usr/lib/xen-{series}/bin/xenstored")
}

/// Fetches xenstored for Xen `series` and dom0's architecture `arch`, and reads its closure
/// into memory.
pub fn fetch(
    opts: &Options,
    lock: &mut LockSession,
    series: &str,
    arch: firmware_config::board::Arch,
) -> Result<XenstoredFiles, String> {
    let suite = debian_fetch::suite_for_xen(series).ok_or_else(|| {
        format!("Debian packages no xenstored for Xen {series} (only 4.17 and 4.20)")
    })?;
    let key = lock_key(LOCK_SOURCE, arch, Some(series));
    let names = packages(series);
    let fetcher = opts.fetcher();
    let pins: Option<Vec<_>> = names.iter().map(|n| lock.package_pin(&key, n)).collect();
    let fetched = match pins {
        Some(pins) => pins
            .iter()
            .map(|p| fetcher.fetch_pinned(p).map_err(|e| fetch_message(&e, lock)))
            .collect::<Result<Vec<_>, _>>()?,
        None => {
            lock.may_resolve(&key)?;
            refresh_for_update(lock, &fetcher, opts, suite, arch)?;
            let first = debian_fetch::PackageRequest::new(&names[0], arch).in_suite(suite);
            let utils = fetcher.fetch(&first).map_err(|e| e.to_string())?;
            let mut all = vec![utils.clone()];
            for name in &names[1..] {
                let mut request = debian_fetch::PackageRequest::new(name, arch).in_suite(suite);
                if name.starts_with("libxen") {
                    request = request.with_version(utils.version.clone());
                }
                all.push(fetcher.fetch(&request).map_err(|e| e.to_string())?);
            }
            all
        }
    };
    let view = elf_closure::PackageView::new(
        fetched
            .iter()
            .map(|p| elf_closure::PackageRoot {
                label: format!("{} {}", p.name, p.version),
                dir: p.root_dir.clone(),
            })
            .collect(),
    );
    let bin = binary(series);
    let closure = elf_closure::closure_with(&view, &[bin.as_str()], elf_closure::GLIBC_DLOPENS)
        .map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for f in &closure.files {
        let bytes =
            std::fs::read(&f.host_path).map_err(|e| format!("{}: {e}", f.host_path.display()))?;
        files.push((f.path.clone(), bytes));
    }
    let sha256 = hex(&Sha256::digest(&files[0].1));
    lock.record(
        LockedSource {
            source: key.0,
            architecture: key.1,
            xen: key.2,
            sha256,
            recipe: None,
            packages: fetched
                .iter()
                .map(|p| LockedPackage::binary(p, suite))
                .collect(),
        },
        &closure.files[0].host_path,
    )?;
    Ok(XenstoredFiles {
        binary: bin,
        files,
        symlinks: closure.symlinks.into_iter().collect(),
        packages: fetched
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_libxenctrl_package_follows_the_series() {
        assert_eq!(packages("4.17")[0], "xen-utils-4.17");
        assert!(packages("4.20").contains(&"libxenmisc4.20".to_string()));
        assert_eq!(binary("4.20"), "usr/lib/xen-4.20/bin/xenstored");
    }
}
