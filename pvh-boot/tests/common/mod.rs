//! Helpers shared by the integration tests: external tools as independent references,
//! temporary directories, and the Debian kernel fetch.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether we run in CI, where a missing prerequisite is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skip (return false) with a printed reason, or fail in CI.
pub fn require(ok: bool, what: &str) -> bool {
    if !ok {
        if in_ci() {
            panic!("prerequisite missing in CI: {what}");
        }
        eprintln!("SKIPPED: prerequisite missing: {what}");
    }
    ok
}

/// Whether a tool answers `--version` (or `-v` for iasl).
pub fn have_tool(tool: &str) -> bool {
    let arg = if tool == "iasl" { "-v" } else { "--version" };
    Command::new(tool).arg(arg).output().is_ok()
}

/// Require every tool, naming the Debian package to install.
pub fn require_tools(tools: &[(&str, &str)]) -> bool {
    tools.iter().all(|(tool, pkg)| {
        require(
            have_tool(tool),
            &format!("`{tool}` (apt-get install {pkg})"),
        )
    })
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pvh-boot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Run a command, panicking with its stderr on failure; returns stdout.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One note as `readelf -n` prints it.
#[derive(Debug)]
pub struct ReadelfNote {
    pub owner: String,
    pub data_size: u64,
    /// The numeric type when readelf prints it as "Unknown note type: (0x...)".
    pub kind: Option<u32>,
    pub desc: Vec<u8>,
}

/// Parse `readelf -n` output (description data on the same or the next line). readelf names some Xen note types after unrelated
/// generic notes (type 1 appears as "NT_VERSION"), so the number is only taken from the
/// "Unknown note type: (0x..)" form.
pub fn readelf_notes(file: &Path) -> Vec<ReadelfNote> {
    let text = String::from_utf8(run(Command::new("readelf").arg("-n").arg(file)))
        .expect("readelf output is UTF-8");
    let mut notes: Vec<ReadelfNote> = Vec::new();
    for line in text.lines() {
        let (trimmed, desc) = match line.split_once("description data:") {
            Some((head, hex)) => (head.trim(), Some(hex)),
            None => (line.trim(), None),
        };
        let parse_desc = |hex: &str| -> Vec<u8> {
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
                .collect()
        };
        if trimmed.is_empty() {
            if let (Some(n), Some(hex)) = (notes.last_mut(), desc) {
                n.desc = parse_desc(hex);
            }
            continue;
        }
        let mut fields = trimmed.split_whitespace();
        let (Some(owner), Some(size)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some(size) = size
            .strip_prefix("0x")
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            continue;
        };
        let kind = trimmed
            .split("Unknown note type: (0x")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|s| u32::from_str_radix(s, 16).ok());
        notes.push(ReadelfNote {
            owner: owner.to_string(),
            data_size: size,
            kind,
            desc: desc.map(parse_desc).unwrap_or_default(),
        });
    }
    notes
}

/// `(offset, vaddr, paddr, filesz, memsz)` of each LOAD line of `readelf -lW`, and the entry.
pub fn readelf_loads(file: &Path) -> (u64, Vec<[u64; 5]>) {
    let text =
        String::from_utf8(run(Command::new("readelf").arg("-hlW").arg(file))).expect("utf-8");
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex");
    let mut entry = 0;
    let mut loads = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(e) = t.strip_prefix("Entry point address:") {
            entry = hex(e.trim());
        }
        if t.starts_with("LOAD ") {
            let f: Vec<&str> = t.split_whitespace().collect();
            loads.push([hex(f[1]), hex(f[2]), hex(f[3]), hex(f[4]), hex(f[5])]);
        }
    }
    (entry, loads)
}

/// Check our decoded Xen notes against readelf's, note by note.
pub fn assert_notes_match_readelf(ours: &[pvh_boot::kernel::XenNote], file: &Path) {
    use pvh_boot::kernel::XenNoteValue;
    let theirs: Vec<ReadelfNote> = readelf_notes(file)
        .into_iter()
        .filter(|n| n.owner == "Xen")
        .collect();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "number of Xen notes differs from readelf"
    );
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(t.data_size as usize, t.desc.len(), "readelf parse of {o:?}");
        if let Some(kind) = t.kind {
            assert_eq!(o.kind, kind, "note type");
        }
        match &o.value {
            XenNoteValue::Numeric(v) => {
                let mut b = [0u8; 8];
                b[..t.desc.len()].copy_from_slice(&t.desc);
                assert!(t.desc.len() == 4 || t.desc.len() == 8);
                assert_eq!(*v, u64::from_le_bytes(b), "{}", o.name);
            }
            XenNoteValue::String(s) => {
                let end = t.desc.iter().position(|&c| c == 0).unwrap_or(t.desc.len());
                assert_eq!(s.as_bytes(), &t.desc[..end], "{}", o.name);
            }
            XenNoteValue::Bytes(b) => assert_eq!(b, &t.desc, "{}", o.name),
            XenNoteValue::Phys32Reloc(r) => {
                let w = |i: usize| {
                    t.desc
                        .get(i * 4..i * 4 + 4)
                        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                };
                assert_eq!(Some(r.align), w(0).or(Some(0x20_0000)));
                assert_eq!(Some(r.min), w(1).or(Some(0)));
                assert_eq!(Some(r.max), w(2).or(Some(0xffff_ffff)));
            }
        }
    }
}

/// PHYS32_ENTRY (type 0x12) as readelf prints it.
pub fn readelf_pvh_entry(file: &Path) -> Option<u64> {
    let n = readelf_notes(file)
        .into_iter()
        .find(|n| n.owner == "Xen" && n.kind == Some(0x12))?;
    let mut b = [0u8; 8];
    b.get_mut(..n.desc.len())?.copy_from_slice(&n.desc);
    Some(u64::from_le_bytes(b))
}

/// Cache directory for Debian downloads.
pub fn debian_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME");
    base.join("domforge").join("debian")
}

/// Fetch (once) and unpack a Debian `linux-image-*-<flavour>-unsigned` package; return the
/// path of its `vmlinuz`. `flavour` is "amd64" or "cloud-amd64". `None` = skipped.
pub fn debian_vmlinuz(flavour: &str) -> Option<PathBuf> {
    if !require(
        have_tool("apt-get") && have_tool("dpkg-deb"),
        "apt-get and dpkg-deb (a Debian system)",
    ) {
        return None;
    }
    let dir = debian_cache();
    std::fs::create_dir_all(&dir).expect("create cache dir");
    // The newest ABI of the running suite, e.g. linux-image-6.1.0-54-amd64-unsigned.
    let pkg = match std::env::var("DOMFORGE_DEBIAN_KERNEL_PKG") {
        Ok(p) if flavour == "amd64" => p,
        _ => {
            let list = run(Command::new("apt-cache").args([
                "search",
                "--names-only",
                &format!("^linux-image-[0-9.]+-[0-9]+-{flavour}-unsigned$"),
            ]));
            let mut names: Vec<String> = String::from_utf8_lossy(&list)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect();
            names.sort_by_key(|n| {
                n.split(['-', '.'])
                    .filter_map(|p| p.parse::<u64>().ok())
                    .collect::<Vec<_>>()
            });
            let Some(p) = names.pop() else {
                require(
                    false,
                    &format!(
                        "no linux-image-*-{flavour}-unsigned in apt's lists (run apt-get update)"
                    ),
                );
                return None;
            };
            p
        }
    };
    let deb = std::fs::read_dir(&dir)
        .expect("read cache")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        });
    let deb = match deb {
        Some(d) => d,
        None => {
            eprintln!("downloading {pkg} into {}", dir.display());
            let ok = Command::new("apt-get")
                .arg("download")
                .arg(&pkg)
                .current_dir(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !require(ok, &format!("apt-get download {pkg}")) {
                return None;
            }
            std::fs::read_dir(&dir)
                .expect("read cache")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{pkg}_")))
                })
                .expect("downloaded .deb")
        }
    };
    let unpacked = dir.join(format!("{pkg}.unpacked"));
    if !unpacked.join("boot").is_dir() {
        let tmp = dir.join(format!("{pkg}.unpacking-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp));
        if std::fs::rename(&tmp, &unpacked).is_err() {
            // Another test process unpacked it first.
            let _ = std::fs::remove_dir_all(&tmp);
            assert!(unpacked.join("boot").is_dir(), "unpack {}", deb.display());
        }
    }
    let vmlinuz = std::fs::read_dir(unpacked.join("boot"))
        .expect("boot dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .expect("vmlinuz in the package");
    Some(vmlinuz)
}
