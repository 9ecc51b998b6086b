//! What the tool knows about each file the manifest names, handed in by the caller.
//!
//! `firmware-config` does no I/O and does not parse kernels (that is `pvh-boot`'s job). The CLI reads
//! each file the manifest names, asks the image parsers what it is, and passes the answers here as
//! plain facts keyed by the source string exactly as written in the manifest.

use alloc::collections::BTreeMap;
use alloc::string::String;

/// The format of a boot file, as far as validation and planning care.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case")]
pub enum ImageFormat {
    /// arm64 `Image` (magic "ARM\x64" at 0x38), uncompressed.
    Arm64Image,
    /// gzip-compressed arm64 `Image` (Xen decompresses gzip only).
    Arm64ImageGzip,
    /// An ELF kernel; `pvh_entry` is the `XEN_ELFNOTE_PHYS32_ENTRY` note when present.
    Elf {
        machine: String,
        pvh_entry: Option<u64>,
    },
    /// An x86 bzImage; `pvh_entry` comes from the ELF inside its payload.
    BzImage { pvh_entry: Option<u64> },
    /// A cpio archive (optionally compressed): an initramfs.
    Initramfs,
    /// A flattened device tree blob.
    DeviceTree,
    /// A Xen hypervisor image.
    Xen,
    /// A file shorter (or longer) than its own headers promise: an interrupted download or copy.
    /// `what` is the format with an article (`"an arm64 Image"`), `reason` the broken promise.
    Damaged { what: String, reason: String },
    /// Something else; the string says what was recognised.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArtifactFacts {
    /// Exact size in bytes (boot-module `reg` sizes must be exact).
    pub size: u64,
    pub format: ImageFormat,
    /// Where the file really is (after resolving `debian:` and `builtin:` sources).
    pub path: String,
    /// Hex SHA-256 of the contents, for the digest list of measured boot.
    pub sha256: String,
    /// The file's identity when `sha256` was computed from it, if that identity had settled
    /// (`pipeline::facts`): a reader that finds the file with this same identity before and after
    /// reading it gets the bytes that were hashed, and need not hash them again. `None`: verify.
    #[serde(skip)]
    pub identity: Option<FileIdentity>,
}

/// Who a file on disk is, as the kernel reports it: device, inode, size, and the modification and
/// status-change times in nanoseconds. Any write, replacement or `touch` changes it, and ctime
/// cannot be set back from user space (`pipeline::facts` has the argument, and the racy window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

#[cfg(feature = "std")]
impl FileIdentity {
    /// The identity `meta` (of a path or an open file) describes.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Facts per source string; an `Err` says why the file could not be read or fetched.
pub type ArtifactTable = BTreeMap<String, Result<ArtifactFacts, String>>;
