//! The shared-library closure of dynamically linked executables: what an initramfs must carry for
//! them to run (used for Debian's xenstored in a dom0 serving PV devices, issue 19, and for the xl
//! dom0 of the benchmark).
//!
//! The closure is computed from the binaries themselves, not from package `Depends` (which name far
//! more than the loader ever maps: python3, perl, …):
//!
//! 1. read each ELF's `PT_INTERP` and `PT_DYNAMIC` ([`dynamic_info`]): `DT_NEEDED` sonames,
//!    `DT_RPATH`/`DT_RUNPATH`;
//! 2. look every soname up the way `ld.so(8)` ("Rpath token expansion", "search order") does for a
//!    system without `ld.so.cache` (the initramfs has none): `DT_RPATH` of the object and of the
//!    executable when the object has no `DT_RUNPATH`, the object's `DT_RUNPATH`, then the default
//!    directories of Debian's multiarch glibc for the object's machine (`/lib/x86_64-linux-gnu`,
//!    `/usr/lib/x86_64-linux-gnu`, `/lib`, `/usr/lib`; `aarch64-linux-gnu` for arm64);
//! 3. the lookup runs in the union of the unpacked packages ([`PackageView`]), following the
//!    packages' symlinks (`libxenlight.so.4.17 -> libxenlight.so.4.17.0`,
//!    `/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2`), which go into the
//!    initramfs as symlinks so the loader finds the sonames it asks for;
//! 4. repeat for every library found until nothing new is needed.
//!
//! A soname found in none of the packages is an error naming it and who needs it
//! ([`ClosureError::Unresolved`]): the caller's package list must then grow, rather than an
//! initramfs that fails at run time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Library directories searched after `DT_RPATH`/`DT_RUNPATH` on amd64: Debian's glibc adds the
/// multiarch directories before the traditional ones (its `debian/patches/…/ld.so multiarch` list,
/// as `ld.so --help` shows under "System search path").
pub const DEFAULT_LIBRARY_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib",
    "usr/lib",
];

/// The same list for arm64 (Debian's multiarch tuple `aarch64-linux-gnu`).
pub const ARM64_LIBRARY_DIRS: &[&str] = &[
    "lib/aarch64-linux-gnu",
    "usr/lib/aarch64-linux-gnu",
    "lib",
    "usr/lib",
];

/// `e_machine` values (System V gABI, `EM_X86_64` 62, `EM_AARCH64` 183).
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// The default library directories for an object of machine `e_machine`.
pub fn library_dirs(machine: u16) -> Result<&'static [&'static str], &'static str> {
    match machine {
        EM_X86_64 => Ok(DEFAULT_LIBRARY_DIRS),
        EM_AARCH64 => Ok(ARM64_LIBRARY_DIRS),
        _ => Err("an ELF for neither x86-64 nor aarch64"),
    }
}

/// Why a closure could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ClosureError {
    #[error("{path}: {reason}")]
    BadElf { path: String, reason: &'static str },
    #[error(
        "{needed_by} needs {soname}, found in none of the fetched packages ({searched}); add the \
         package that ships it to the list of library packages"
    )]
    Unresolved {
        soname: String,
        needed_by: String,
        searched: String,
    },
    #[error("{0} is in none of the fetched packages")]
    Missing(String),
    #[error("{0}: too many levels of symbolic links (or a loop)")]
    SymlinkLoop(String),
    #[error("{path} leaves its package's directory")]
    Escapes { path: String },
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

type Result<T, E = ClosureError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClosureError + '_ {
    move |source| ClosureError::Io {
        path: path.to_owned(),
        source,
    }
}

// ------------------------------------------------------------------------------------------------
// ELF: PT_INTERP and the dynamic section
// ------------------------------------------------------------------------------------------------

/// Program header types (System V gABI, "Program Header", `p_type`).
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
/// Dynamic section tags (gABI "Dynamic Section", `d_tag`; `DT_RUNPATH` = 29 from the gABI's 2000 update).
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// What the dynamic loader reads from an ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `PT_INTERP`: the program interpreter (dynamic loader) of an executable.
    pub interp: Option<String>,
    /// `DT_NEEDED`, in order.
    pub needed: Vec<String>,
    /// `DT_SONAME`.
    pub soname: Option<String>,
    /// `DT_RPATH` (colon-separated in the file; split here).
    pub rpath: Vec<String>,
    /// `DT_RUNPATH`.
    pub runpath: Vec<String>,
    /// Whether the file has a `PT_DYNAMIC` segment at all (a static executable has none).
    pub dynamic: bool,
    /// `e_machine` (ELF header offset 0x12, u16).
    pub machine: u16,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}
fn usize_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64_at(b, at)?).ok()
}

/// A NUL-terminated string at `at` in `b`.
fn c_str(b: &[u8], at: usize) -> Option<String> {
    let rest = b.get(at..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(rest.get(..end)?).into_owned())
}

struct Segment {
    kind: u32,
    offset: usize,
    vaddr: u64,
    filesz: usize,
}

/// Reads `PT_INTERP` and the `DT_*` entries the loader uses from a 64-bit little-endian ELF
/// (x86-64, aarch64). Offsets from the System V gABI ELF64 header (`e_phoff` 0x20 u64,
/// `e_phentsize` 0x36, `e_phnum` 0x38 u16) and program header (`p_type` +0 u32, `p_offset` +8,
/// `p_vaddr` +16, `p_filesz` +32, u64); a dynamic entry is `d_tag` i64 + `d_val` u64. `DT_STRTAB` is a
/// virtual address, turned into a file offset through the `PT_LOAD` segment that contains it.
pub fn dynamic_info(elf: &[u8]) -> Result<DynamicInfo, &'static str> {
    if elf.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file");
    }
    // EI_CLASS = ELFCLASS64 (2), EI_DATA = ELFDATA2LSB (1).
    if elf.get(4..6) != Some([2u8, 1].as_slice()) {
        return Err("not a 64-bit little-endian ELF");
    }
    let phoff = usize_at(elf, 0x20).ok_or("truncated ELF header")?;
    let phentsize = usize::from(u16_at(elf, 0x36).ok_or("truncated ELF header")?);
    let phnum = usize::from(u16_at(elf, 0x38).ok_or("truncated ELF header")?);
    if phnum > 0 && phentsize < 56 {
        return Err("program header entries smaller than Elf64_Phdr");
    }
    let mut segments = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or("program header table out of range")?;
        let bad = "truncated program header";
        segments.push(Segment {
            kind: u32_at(elf, at).ok_or(bad)?,
            offset: usize_at(elf, at.checked_add(8).ok_or(bad)?).ok_or(bad)?,
            vaddr: u64_at(elf, at.checked_add(16).ok_or(bad)?).ok_or(bad)?,
            filesz: usize_at(elf, at.checked_add(32).ok_or(bad)?).ok_or(bad)?,
        });
    }
    let bytes_of = |s: &Segment| -> Result<&[u8], &'static str> {
        s.offset
            .checked_add(s.filesz)
            .and_then(|end| elf.get(s.offset..end))
            .ok_or("segment outside the file")
    };
    let mut info = DynamicInfo {
        machine: u16_at(elf, 0x12).ok_or("truncated ELF header")?,
        ..DynamicInfo::default()
    };
    if let Some(s) = segments.iter().find(|s| s.kind == PT_INTERP) {
        let bytes = bytes_of(s)?;
        info.interp = Some(c_str(bytes, 0).ok_or("PT_INTERP is not NUL-terminated")?);
    }
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Ok(info);
    };
    info.dynamic = true;
    let dynamic = bytes_of(dynamic)?;
    let mut entries = Vec::new();
    for entry in dynamic.chunks_exact(16) {
        let tag = u64_at(entry, 0).ok_or("truncated dynamic entry")?;
        let value = u64_at(entry, 8).ok_or("truncated dynamic entry")?;
        if tag == DT_NULL {
            break;
        }
        entries.push((tag, value));
    }
    let find = |tag: u64| entries.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v);
    if !entries
        .iter()
        .any(|(t, _)| matches!(*t, DT_NEEDED | DT_SONAME | DT_RPATH | DT_RUNPATH))
    {
        return Ok(info);
    }
    let strtab_vaddr = find(DT_STRTAB).ok_or("dynamic section without DT_STRTAB")?;
    let strsz = usize::try_from(find(DT_STRSZ).ok_or("dynamic section without DT_STRSZ")?)
        .map_err(|_| "DT_STRSZ too large")?;
    let load = segments
        .iter()
        .find(|s| {
            s.kind == PT_LOAD
                && strtab_vaddr >= s.vaddr
                && u64::try_from(s.filesz)
                    .ok()
                    .and_then(|f| s.vaddr.checked_add(f))
                    .is_some_and(|end| strtab_vaddr < end)
        })
        .ok_or("DT_STRTAB is in no loaded segment")?;
    let strtab_offset = usize::try_from(strtab_vaddr - load.vaddr)
        .ok()
        .and_then(|d| load.offset.checked_add(d))
        .ok_or("DT_STRTAB out of range")?;
    let strtab = strtab_offset
        .checked_add(strsz)
        .and_then(|end| elf.get(strtab_offset..end))
        .ok_or("string table outside the file")?;
    let string = |value: u64| -> Result<String, &'static str> {
        usize::try_from(value)
            .ok()
            .and_then(|at| c_str(strtab, at))
            .ok_or("dynamic string outside DT_STRTAB")
    };
    let split = |s: String| -> Vec<String> {
        s.split(':')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    for &(tag, value) in &entries {
        match tag {
            DT_NEEDED => info.needed.push(string(value)?),
            DT_SONAME => info.soname = Some(string(value)?),
            DT_RPATH => info.rpath.extend(split(string(value)?)),
            DT_RUNPATH => info.runpath.extend(split(string(value)?)),
            _ => {}
        }
    }
    Ok(info)
}

// ------------------------------------------------------------------------------------------------
// The union of unpacked packages, and closures in it
// ------------------------------------------------------------------------------------------------

/// One unpacked package (or any directory tree standing for one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRoot {
    /// Name shown in reports (`libc6 2.36-9+deb12u13`).
    pub label: String,
    /// The directory the package was unpacked into.
    pub dir: PathBuf,
}

/// The file system the packages would make if installed together: a path is looked up in each
/// root in order, the first that has it wins.
#[derive(Debug, Clone, Default)]
pub struct PackageView {
    roots: Vec<PackageRoot>,
}

/// Lexically normalises an absolute-or-relative path to a root-relative one without `.`/`..`
/// (`..` at the top stays at the top, as in the kernel's lookup of `/..`). `None` for a path with
/// a NUL byte or none at all.
pub fn normalize(path: &str) -> Option<String> {
    if path.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn parent(vpath: &str) -> &str {
    vpath.rsplit_once('/').map_or("", |(d, _)| d)
}

/// A path resolved in a [`PackageView`]: the symlinks passed through and the file reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `(path, target as written in the package)` of each symlink followed, in order.
    pub symlinks: Vec<(String, String)>,
    /// Root-relative path of the regular file reached.
    pub path: String,
    /// That file on the host.
    pub host_path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The package it comes from ([`PackageRoot::label`]).
    pub package: String,
}

/// The merged-/usr twin of a root-relative path under `bin`, `sbin`, `lib*` (`lib64/x` →
/// `usr/lib64/x`), as Debian's base-files links those directories since trixie.
fn merged_usr(vpath: &str) -> Option<String> {
    let top = vpath.split('/').next()?;
    let merged = matches!(top, "bin" | "sbin") || top.starts_with("lib");
    (merged && vpath.contains('/')).then(|| format!("usr/{vpath}"))
}

/// Symlink hops before giving up (Linux `MAXSYMLINKS` is 40).
const MAX_SYMLINKS: usize = 40;

impl PackageView {
    pub fn new(roots: Vec<PackageRoot>) -> Self {
        Self { roots }
    }

    pub fn roots(&self) -> &[PackageRoot] {
        &self.roots
    }

    /// The root that has `vpath` (as a file or symlink) and its metadata.
    fn lookup(&self, vpath: &str) -> Option<(&PackageRoot, PathBuf, std::fs::Metadata)> {
        self.roots.iter().find_map(|r| {
            let host = r.dir.join(vpath);
            let meta = std::fs::symlink_metadata(&host).ok()?;
            (meta.is_file() || meta.is_symlink()).then_some((r, host, meta))
        })
    }

    /// Follows `vpath` through symlinks (within the view) to a regular file; `None` if it is absent.
    pub fn resolve(&self, vpath: &str) -> Result<Option<Resolved>> {
        let Some(mut current) = normalize(vpath) else {
            return Ok(None);
        };
        let mut symlinks = Vec::new();
        for _ in 0..MAX_SYMLINKS {
            let Some((root, host, meta)) = self.lookup(&current) else {
                // Merged /usr (Debian since trixie): the packages ship `usr/lib64/ld-linux…` and the
                // `/lib64 -> usr/lib64` link comes from base-files, which no closure fetches.
                match merged_usr(&current).filter(|u| self.lookup(u).is_some()) {
                    Some(usr) => {
                        symlinks.push((current.clone(), format!("/{usr}")));
                        current = usr;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            if meta.is_symlink() {
                let target = std::fs::read_link(&host).map_err(io(&host))?;
                let target = target.to_string_lossy().into_owned();
                let next = if target.starts_with('/') {
                    normalize(&target)
                } else {
                    normalize(&format!("{}/{target}", parent(&current)))
                };
                symlinks.push((current.clone(), target));
                match next {
                    Some(n) => current = n,
                    None => return Ok(None),
                }
                continue;
            }
            // The file must really be inside its root: `dpkg-deb -x` output is trusted to hold no
            // directory symlinks pointing outside, but a host tree used as a root might.
            let real = std::fs::canonicalize(&host).map_err(io(&host))?;
            let real_root = std::fs::canonicalize(&root.dir).map_err(io(&root.dir))?;
            if !real.starts_with(&real_root) {
                return Err(ClosureError::Escapes {
                    path: host.display().to_string(),
                });
            }
            return Ok(Some(Resolved {
                symlinks,
                path: current,
                host_path: host,
                size: meta.len(),
                package: root.label.clone(),
            }));
        }
        Err(ClosureError::SymlinkLoop(vpath.to_owned()))
    }
}

/// One regular file of a closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosureFile {
    /// Root-relative path (where it goes in the initramfs).
    pub path: String,
    pub host_path: PathBuf,
    pub size: u64,
    pub package: String,
    /// Why it is there: `root`, `interpreter of X` or `SONAME needed by X`.
    pub reason: String,
}

/// Everything some executables need to run: themselves, their loader, their libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    /// The executables asked for.
    pub roots: Vec<String>,
    /// Regular files, in discovery order (roots first).
    pub files: Vec<ClosureFile>,
    /// Symlinks on the way to them (`path -> target`), deduplicated.
    pub symlinks: BTreeMap<String, String>,
}

impl Closure {
    /// Sum of the regular files' sizes (symlinks are a few bytes of metadata, not counted).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Expands `$ORIGIN`/`${ORIGIN}` (ld.so(8) "Rpath token expansion") to the object's directory.
fn expand_origin(dir: &str, object_dir: &str) -> String {
    let origin = format!("/{object_dir}");
    dir.replace("${ORIGIN}", &origin)
        .replace("$ORIGIN", &origin)
}

/// Libraries loaded with `dlopen` rather than `DT_NEEDED`, as `(loaded by soname, soname, why)`:
/// invisible in the dynamic section, yet the program fails without them. Seen: `xl create` on a
/// timeout path aborts with "libgcc_s.so.1 must be installed for pthread_cancel to work" (glibc 2.36
/// `nptl/pthread_cancel.c` → `__libc_unwind_link_get()` dlopens `LIBGCC_S_SO`).
pub const GLIBC_DLOPENS: &[(&str, &str, &str)] = &[(
    "libc.so.6",
    "libgcc_s.so.1",
    "dlopened by libc.so.6 for pthread_cancel and unwinding",
)];

/// The closure of `executables` (root-relative paths) in `view` through `DT_NEEDED` only (what
/// `ldd` lists); see the module docs for the search order.
pub fn closure(view: &PackageView, executables: &[&str]) -> Result<Closure> {
    closure_with(view, executables, &[])
}

/// [`closure`] plus `dlopens` (`(loaded by soname, soname, why)`, e.g. [`GLIBC_DLOPENS`]): when a
/// library whose `DT_SONAME` (or file name) is the first is in the closure, the second is added
/// as if it were needed by it.
pub fn closure_with(
    view: &PackageView,
    executables: &[&str],
    dlopens: &[(&str, &str, &str)],
) -> Result<Closure> {
    let mut out = Closure {
        roots: executables.iter().map(|s| (*s).to_owned()).collect(),
        ..Closure::default()
    };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    // (path to examine, reason, DT_RPATH of the executable that started the chain)
    let mut queue: Vec<(String, String, Vec<String>)> = Vec::new();
    for exe in executables {
        queue.push(((*exe).to_owned(), "root".to_owned(), Vec::new()));
    }
    let searched = || {
        view.roots
            .iter()
            .map(|r| r.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    while !queue.is_empty() {
        let (vpath, reason, exe_rpath) = queue.remove(0);
        let resolved = view
            .resolve(&vpath)?
            .ok_or_else(|| ClosureError::Missing(vpath.clone()))?;
        for (link, target) in &resolved.symlinks {
            out.symlinks.insert(link.clone(), target.clone());
        }
        if !seen.insert(resolved.path.clone()) {
            continue;
        }
        let bytes = std::fs::read(&resolved.host_path).map_err(io(&resolved.host_path))?;
        let info = dynamic_info(&bytes).map_err(|reason| ClosureError::BadElf {
            path: resolved.path.clone(),
            reason,
        })?;
        let name = resolved.path.clone();
        let object_dir = parent(&name).to_owned();
        out.files.push(ClosureFile {
            path: resolved.path.clone(),
            host_path: resolved.host_path.clone(),
            size: resolved.size,
            package: resolved.package.clone(),
            reason,
        });
        // The executable's DT_RPATH also applies to every library it loads (ld.so(8)); the
        // executable is the first file of its chain.
        let chain_rpath = if exe_rpath.is_empty() && info.runpath.is_empty() {
            info.rpath.clone()
        } else {
            exe_rpath
        };
        if let Some(interp) = &info.interp {
            queue.push((
                interp.clone(),
                format!("interpreter of {name}"),
                chain_rpath.clone(),
            ));
        }
        let mut dirs: Vec<String> = Vec::new();
        if info.runpath.is_empty() {
            dirs.extend(info.rpath.iter().map(|d| expand_origin(d, &object_dir)));
            dirs.extend(chain_rpath.iter().cloned());
        }
        dirs.extend(info.runpath.iter().map(|d| expand_origin(d, &object_dir)));
        let defaults = library_dirs(info.machine).map_err(|reason| ClosureError::BadElf {
            path: name.clone(),
            reason,
        })?;
        dirs.extend(defaults.iter().map(|d| (*d).to_owned()));
        let file_name = name.rsplit('/').next().unwrap_or(&name);
        let loaded_by_name = |by: &str| info.soname.as_deref() == Some(by) || file_name == by;
        let mut needed: Vec<(String, String)> = info
            .needed
            .iter()
            .map(|n| (n.clone(), format!("{n} needed by {name}")))
            .collect();
        for (by, soname, why) in dlopens {
            if loaded_by_name(by) {
                needed.push(((*soname).to_owned(), format!("{soname} {why}")));
            }
        }
        for (soname, why) in &needed {
            // A DT_NEEDED with a slash is a path, used as is (ld.so(8)).
            let candidates: Vec<String> = if soname.contains('/') {
                vec![soname.clone()]
            } else {
                dirs.iter().map(|d| format!("{d}/{soname}")).collect()
            };
            let mut found = None;
            for c in candidates {
                if view.resolve(&c)?.is_some() {
                    found = Some(c);
                    break;
                }
            }
            let path = found.ok_or_else(|| ClosureError::Unresolved {
                soname: soname.clone(),
                needed_by: name.clone(),
                searched: searched(),
            })?;
            queue.push((path, why.clone(), chain_rpath.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_search_path_follows_the_objects_machine() {
        assert_eq!(library_dirs(62).unwrap()[0], "lib/x86_64-linux-gnu");
        assert_eq!(library_dirs(183).unwrap()[1], "usr/lib/aarch64-linux-gnu");
        // EM_ARM (40): Debian's armhf has its own tuple, and no dom0 domforge builds is 32-bit.
        assert!(library_dirs(40).is_err());
    }

    /// `readelf -d` / `-l` of a host file, the independent reference (binutils).
    fn readelf(args: &[&str], path: &str) -> Option<String> {
        let out = Command::new("readelf").args(args).arg(path).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    use test_support::readelf_bracketed as bracketed;

    fn host_elves() -> Vec<String> {
        let mut v: Vec<String> = [
            "/usr/bin/readelf",
            "/bin/ls",
            "/usr/bin/apt-get",
            "/usr/bin/dpkg-deb",
        ]
        .iter()
        .filter(|p| Path::new(p).is_file())
        .map(|p| (*p).to_owned())
        .collect();
        if let Ok(libc) = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6") {
            v.push(libc.display().to_string());
        }
        v
    }

    #[test]
    fn dynamic_info_agrees_with_readelf() {
        let files = host_elves();
        assert!(
            Command::new("readelf").arg("-v").output().is_ok(),
            "readelf (binutils) is needed as the reference for this test"
        );
        assert!(!files.is_empty(), "no host ELF files to compare with");
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            let info = dynamic_info(&bytes).unwrap_or_else(|e| panic!("{f}: {e}"));
            let d = readelf(&["-dW"], &f).unwrap_or_else(|| panic!("readelf -d {f}"));
            assert_eq!(info.needed, bracketed(&d, "(NEEDED)"), "{f}");
            assert_eq!(
                info.soname.into_iter().collect::<Vec<_>>(),
                bracketed(&d, "(SONAME)"),
                "{f}"
            );
            let joined = |v: &[String]| {
                if v.is_empty() {
                    vec![]
                } else {
                    vec![v.join(":")]
                }
            };
            assert_eq!(joined(&info.runpath), bracketed(&d, "(RUNPATH)"), "{f}");
            assert_eq!(joined(&info.rpath), bracketed(&d, "(RPATH)"), "{f}");
            let l = readelf(&["-lW"], &f).unwrap_or_else(|| panic!("readelf -l {f}"));
            let interp: Vec<String> = l
                .lines()
                .filter_map(|x| {
                    x.trim()
                        .strip_prefix("[Requesting program interpreter: ")?
                        .strip_suffix(']')
                        .map(str::to_owned)
                })
                .collect();
            assert_eq!(info.interp.into_iter().collect::<Vec<_>>(), interp, "{f}");
        }
    }

    #[test]
    fn bad_elves_are_refused_not_panicked_on() {
        assert!(dynamic_info(b"#!/bin/sh\n").is_err());
        assert!(dynamic_info(b"\x7fELF\x01\x01").is_err());
        let ls = std::fs::read("/bin/ls").unwrap();
        for cut in [5, 40, 63, 64, 200, 1000, ls.len() / 2] {
            let _ = dynamic_info(&ls[..cut.min(ls.len())]);
        }
        // Every single-byte corruption of the header and program headers yields Ok or Err.
        for at in 0..(64 + 56 * 13).min(ls.len()) {
            let mut b = ls.clone();
            b[at] ^= 0xff;
            let _ = dynamic_info(&b);
        }
    }

    #[test]
    fn normalize_stays_inside_the_root() {
        assert_eq!(normalize("/lib/../lib64/./x").as_deref(), Some("lib64/x"));
        assert_eq!(normalize("../../etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(normalize("/"), None);
        assert_eq!(normalize("a\0b"), None);
        assert_eq!(
            expand_origin("$ORIGIN/../lib", "usr/bin"),
            "/usr/bin/../lib"
        );
    }

    /// The closure of host programs, computed with the host's `/` as the only "package", must be
    /// the set of files `ldd` (glibc's loader in trace mode, the reference) reports.
    #[test]
    fn closure_matches_ldd_on_host_programs() {
        let view = PackageView::new(vec![PackageRoot {
            label: "host".into(),
            dir: PathBuf::from("/"),
        }]);
        for exe in ["usr/bin/readelf", "usr/bin/apt-get", "usr/bin/dpkg-deb"] {
            if !Path::new("/").join(exe).is_file() {
                continue;
            }
            let c = closure(&view, &[exe]).unwrap_or_else(|e| panic!("{exe}: {e}"));
            let ours: BTreeSet<PathBuf> = c
                .files
                .iter()
                .skip(1)
                .map(|f| std::fs::canonicalize(&f.host_path).unwrap())
                .collect();
            let out = Command::new("ldd").arg(format!("/{exe}")).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let reference: BTreeSet<PathBuf> = text
                .lines()
                .filter_map(|l| {
                    // `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x…)` or `/lib64/ld-linux… (0x…)`
                    let l = l.trim();
                    let path = match l.split_once("=>") {
                        Some((_, rest)) => rest.trim().split(' ').next()?,
                        None => l.split(' ').next()?,
                    };
                    path.starts_with('/')
                        .then(|| std::fs::canonicalize(path).ok())
                        .flatten()
                })
                .collect();
            assert!(!reference.is_empty(), "ldd said nothing about {exe}");
            assert_eq!(ours, reference, "{exe}");
            assert!(c.total_bytes() > c.files[0].size);
        }
    }

    #[test]
    fn glibc_dlopens_add_libgcc_s_where_libc_is() {
        let view = PackageView::new(vec![PackageRoot {
            label: "host".into(),
            dir: PathBuf::from("/"),
        }]);
        let plain = closure(&view, &["bin/ls"]).unwrap();
        let with = closure_with(&view, &["bin/ls"], GLIBC_DLOPENS).unwrap();
        let gcc_s = |c: &Closure| {
            c.files.iter().any(|f| {
                f.path
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .starts_with("libgcc_s.so.1")
            })
        };
        assert!(!gcc_s(&plain), "ls does not link libgcc_s (ldd agrees)");
        assert!(gcc_s(&with));
        assert_eq!(with.files.len(), plain.files.len() + 1);
    }

    #[test]
    fn an_unresolvable_soname_names_itself_and_its_user() {
        // A package tree with only `ls` in it: libc cannot be found.
        let t = std::env::temp_dir().join(format!("xl-dom0-{}", std::process::id()));
        std::fs::create_dir_all(t.join("bin")).unwrap();
        std::fs::copy("/bin/ls", t.join("bin/ls")).unwrap();
        let view = PackageView::new(vec![PackageRoot {
            label: "only-ls".into(),
            dir: t.clone(),
        }]);
        let err = closure(&view, &["bin/ls"]).unwrap_err().to_string();
        assert!(err.contains("bin/ls needs libselinux.so.1"), "{err}");
        assert!(err.contains("(only-ls)"), "{err}");
        std::fs::remove_dir_all(&t).unwrap();
    }
}
