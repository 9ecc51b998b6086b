//! A deterministic writer for the `newc` cpio format that Linux unpacks as an initramfs.
//!
//! The layout follows Linux `Documentation/driver-api/early-userspace/buffer-format.rst`
//! ("initramfs buffer format"): every member is a 110-byte ASCII header
//! (`"070701"` + 13 fields of 8 hexadecimal digits), the NUL-terminated path name, padding
//! to a multiple of 4 bytes, the data, and padding to a multiple of 4 again. The archive
//! ends with a member named `TRAILER!!!`.
//!
//! We write our own instead of using the `cpio` crate because the archive must be
//! byte-for-byte reproducible (mtime 0, uid/gid 0, inode numbers assigned in write order)
//! and we want typed errors for names and sizes the format cannot carry; the whole writer
//! is smaller than the glue around a dependency would be.
//!
//! [`Initramfs`] sits on top of [`CpioWriter`]: it collects entries in a sorted map, creates
//! missing parent directories, always provides `/dev/console` (Linux opens it for `/init`'s
//! stdin/stdout/stderr before it runs `/init`; without it the init has no console at all,
//! see `init/main.c: console_on_rootfs()`), and compresses with gzip.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

/// Magic of the "new" (SVR4, no checksum) ASCII format; buffer-format.rst, `c_magic`.
const NEWC_MAGIC: &str = "070701";
/// Size of the fixed header: 6 magic bytes + 13 fields of 8 hex digits.
const NEWC_HEADER_LEN: usize = 110;
/// Name of the member that terminates the archive (buffer-format.rst).
const TRAILER_NAME: &str = "TRAILER!!!";

/// File-type bits of `st_mode` (Linux `include/uapi/linux/stat.h`).
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
/// Permission bits that may be given by callers (`07777`: rwx for all plus suid/sgid/sticky).
const PERMISSION_MASK: u32 = 0o7777;

/// Errors writing a cpio archive or initramfs.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// The path cannot be stored as an archive member name.
    #[error("invalid initramfs path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path as given.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A file is larger than the 32-bit `c_filesize` field allows.
    #[error(
        "initramfs member {path:?} is {size} bytes; newc cpio stores at most 4 GiB - 1 per file"
    )]
    TooLarge {
        /// Member path.
        path: String,
        /// Its size in bytes.
        size: u64,
    },
    /// More members than the 32-bit inode field can number.
    #[error("too many cpio members for 32-bit inode numbers")]
    TooManyEntries,
    /// An entry conflicts with an existing one (e.g. a file where a directory is needed).
    #[error("initramfs path {path:?} conflicts with an existing entry: {reason}")]
    Conflict {
        /// Member path.
        path: String,
        /// Description of the conflict.
        reason: &'static str,
    },
    /// The underlying writer failed.
    #[error("writing the cpio archive failed")]
    Io(#[from] std::io::Error),
    /// A host file to be included could not be read.
    #[error("reading {path} for the initramfs failed")]
    ReadHostFile {
        /// Host path.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Checks and normalises a member name: relative, `/`-separated, no `.`/`..`/empty components.
///
/// A leading `/` is accepted and removed (the kernel unpacks relative to the rootfs root).
fn normalise_path(path: &str) -> Result<String, CpioError> {
    let invalid = |reason| CpioError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(invalid("empty path (the root directory exists implicitly)"));
    }
    if trimmed.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    for component in trimmed.split('/') {
        match component {
            "" => return Err(invalid("empty path component (double or trailing '/')")),
            "." | ".." => return Err(invalid("'.' and '..' components are not allowed")),
            _ => {}
        }
    }
    // Also refuse it as a parent: the builder would create it as an implicit directory.
    if trimmed.split('/').next() == Some(TRAILER_NAME) {
        return Err(invalid("the name is reserved for the archive trailer"));
    }
    Ok(trimmed.to_owned())
}

/// Number of padding bytes to reach the next multiple of 4 (buffer-format.rst: "padded to a
/// multiple of four bytes").
fn pad4(len: u64) -> usize {
    // `len % 4` is in 0..4, so the conversion cannot fail.
    let rem = usize::try_from(len % 4).unwrap_or(0);
    (4 - rem) % 4
}

/// One member's metadata as written into the header.
struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    file_size: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

/// Streams a newc archive into `W`. Members are written in the order the methods are called;
/// parents must come before children (the kernel creates each member as it reads it).
pub struct CpioWriter<W: Write> {
    out: W,
    next_inode: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive. Nothing is written until the first member.
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_inode: 1,
            written: 0,
        }
    }

    fn write_counted(&mut self, bytes: &[u8]) -> Result<(), CpioError> {
        self.out.write_all(bytes)?;
        // usize -> u64 is lossless on every supported target.
        self.written = self.written.saturating_add(bytes.len() as u64);
        Ok(())
    }

    fn write_padding(&mut self) -> Result<(), CpioError> {
        let pad = pad4(self.written);
        self.write_counted(&[0u8; 4][..pad])
    }

    fn write_member(&mut self, header: &Header<'_>, data: &[u8]) -> Result<(), CpioError> {
        let inode = self.next_inode;
        self.next_inode = self
            .next_inode
            .checked_add(1)
            .ok_or(CpioError::TooManyEntries)?;
        let name_size = u32::try_from(header.name.len().saturating_add(1)).map_err(|_| {
            CpioError::InvalidPath {
                path: header.name.to_owned(),
                reason: "name too long",
            }
        })?;
        // Field order is fixed by buffer-format.rst: c_ino, c_mode, c_uid, c_gid, c_nlink,
        // c_mtime, c_filesize, c_maj, c_min, c_rmaj, c_rmin, c_namesize, c_chksum.
        let fields: [u32; 13] = [
            inode,
            header.mode,
            0, // uid: root
            0, // gid: root
            header.nlink,
            0, // mtime: fixed for reproducible images
            header.file_size,
            0, // c_maj/c_min: device of the file itself, irrelevant for an initramfs
            0,
            header.rdev_major,
            header.rdev_minor,
            name_size,
            0, // c_chksum: only used by the "070702" variant
        ];
        let mut text = String::with_capacity(NEWC_HEADER_LEN);
        text.push_str(NEWC_MAGIC);
        for field in fields {
            text.push_str(&format!("{field:08X}"));
        }
        debug_assert_eq!(text.len(), NEWC_HEADER_LEN);
        self.write_counted(text.as_bytes())?;
        self.write_counted(header.name.as_bytes())?;
        self.write_counted(&[0])?;
        self.write_padding()?;
        self.write_counted(data)?;
        self.write_padding()
    }

    /// Adds a directory with the given permission bits.
    pub fn directory(&mut self, path: &str, permissions: u32) -> Result<(), CpioError> {
        let name = normalise_path(path)?;
        self.write_member(
            &Header {
                name: &name,
                mode: S_IFDIR | (permissions & PERMISSION_MASK),
                nlink: 2,
                file_size: 0,
                rdev_major: 0,
                rdev_minor: 0,
            },
            &[],
        )
    }

    /// Adds a regular file with the given permission bits and contents.
    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) -> Result<(), CpioError> {
        let name = normalise_path(path)?;
        let file_size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge {
            path: name.clone(),
            size: data.len() as u64,
        })?;
        self.write_member(
            &Header {
                name: &name,
                mode: S_IFREG | (permissions & PERMISSION_MASK),
                nlink: 1,
                file_size,
                rdev_major: 0,
                rdev_minor: 0,
            },
            data,
        )
    }

    /// Adds a symbolic link; the link target is stored as the member's data (no NUL).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        let name = normalise_path(path)?;
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::InvalidPath {
                path: target.to_owned(),
                reason: "symlink target must be non-empty and free of NUL bytes",
            });
        }
        let file_size = u32::try_from(target.len()).map_err(|_| CpioError::TooLarge {
            path: name.clone(),
            size: target.len() as u64,
        })?;
        self.write_member(
            &Header {
                name: &name,
                mode: S_IFLNK | 0o777,
                nlink: 1,
                file_size,
                rdev_major: 0,
                rdev_minor: 0,
            },
            target.as_bytes(),
        )
    }

    /// Adds a character device node (`c_rmaj`/`c_rmin` carry the device number).
    pub fn char_device(
        &mut self,
        path: &str,
        permissions: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        let name = normalise_path(path)?;
        self.write_member(
            &Header {
                name: &name,
                mode: S_IFCHR | (permissions & PERMISSION_MASK),
                nlink: 1,
                file_size: 0,
                rdev_major: major,
                rdev_minor: minor,
            },
            &[],
        )
    }

    /// Writes the `TRAILER!!!` member and returns the inner writer.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.write_member(
            &Header {
                name: TRAILER_NAME,
                mode: 0,
                nlink: 1,
                file_size: 0,
                rdev_major: 0,
                rdev_minor: 0,
            },
            &[],
        )?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// What an [`Initramfs`] entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link to the given target.
    Symlink(String),
    /// A character device node.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    kind: EntryKind,
    permissions: u32,
}

/// Linux's `/dev/console` device number (Documentation/admin-guide/devices.txt: char 5,1).
pub const CONSOLE_MAJOR: u32 = 5;
/// See [`CONSOLE_MAJOR`].
pub const CONSOLE_MINOR: u32 = 1;

/// An initramfs under construction: a sorted set of entries written as one deterministic
/// newc archive. Parent directories are created on demand (mode 0755) and `/dev/console`
/// (c 5,1) is always present.
#[derive(Debug, Clone)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Default for Initramfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Initramfs {
    /// An initramfs holding only `/dev` and `/dev/console`.
    pub fn new() -> Self {
        let mut initramfs = Self {
            entries: BTreeMap::new(),
        };
        // Cannot fail: fixed, valid path on an empty map.
        let _ = initramfs.add_char_device("dev/console", 0o600, CONSOLE_MAJOR, CONSOLE_MINOR);
        initramfs
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<(), CpioError> {
        let name = normalise_path(path)?;
        // Create every missing parent as a directory; refuse to put anything below a
        // non-directory.
        let mut parent_end = 0;
        while let Some(offset) = name.get(parent_end..).and_then(|rest| rest.find('/')) {
            parent_end = parent_end.saturating_add(offset);
            let parent = name.get(..parent_end).unwrap_or_default().to_owned();
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(
                        parent,
                        Entry {
                            kind: EntryKind::Directory,
                            permissions: 0o755,
                        },
                    );
                }
                Some(Entry {
                    kind: EntryKind::Directory,
                    ..
                }) => {}
                Some(_) => {
                    return Err(CpioError::Conflict {
                        path: name,
                        reason: "a parent path is not a directory",
                    });
                }
            }
            parent_end = parent_end.saturating_add(1);
        }
        match (self.entries.get(&name), &entry.kind) {
            // Re-declaring a directory only updates its permissions.
            (
                Some(Entry {
                    kind: EntryKind::Directory,
                    ..
                }),
                EntryKind::Directory,
            ) => {}
            (
                Some(Entry {
                    kind: EntryKind::Directory,
                    ..
                }),
                _,
            ) => {
                let prefix = format!("{name}/");
                if self.entries.keys().any(|key| key.starts_with(&prefix)) {
                    return Err(CpioError::Conflict {
                        path: name,
                        reason: "a non-empty directory cannot be replaced",
                    });
                }
            }
            _ => {}
        }
        self.entries.insert(name, entry);
        Ok(())
    }

    /// Adds (or re-declares) a directory.
    pub fn add_directory(&mut self, path: &str, permissions: u32) -> Result<(), CpioError> {
        self.insert(
            path,
            Entry {
                kind: EntryKind::Directory,
                permissions,
            },
        )
    }

    /// Adds or replaces a regular file.
    pub fn add_file(
        &mut self,
        path: &str,
        permissions: u32,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), CpioError> {
        let data = data.into();
        if u32::try_from(data.len()).is_err() {
            return Err(CpioError::TooLarge {
                path: path.to_owned(),
                size: data.len() as u64,
            });
        }
        self.insert(
            path,
            Entry {
                kind: EntryKind::File(data),
                permissions,
            },
        )
    }

    /// Adds a regular file with the contents of a host file.
    pub fn add_host_file(
        &mut self,
        path: &str,
        permissions: u32,
        host_path: &Path,
    ) -> Result<(), CpioError> {
        let data = std::fs::read(host_path).map_err(|source| CpioError::ReadHostFile {
            path: host_path.to_owned(),
            source,
        })?;
        self.add_file(path, permissions, data)
    }

    /// Adds or replaces a symbolic link.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        if target.is_empty() || target.contains('\0') {
            return Err(CpioError::InvalidPath {
                path: target.to_owned(),
                reason: "symlink target must be non-empty and free of NUL bytes",
            });
        }
        self.insert(
            path,
            Entry {
                kind: EntryKind::Symlink(target.to_owned()),
                permissions: 0o777,
            },
        )
    }

    /// Adds or replaces a character device node.
    pub fn add_char_device(
        &mut self,
        path: &str,
        permissions: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.insert(
            path,
            Entry {
                kind: EntryKind::CharDevice { major, minor },
                permissions,
            },
        )
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&EntryKind> {
        let name = normalise_path(path).ok()?;
        self.entries.get(&name).map(|entry| &entry.kind)
    }

    /// Number of entries (directories included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries (never true: `/dev/console` is always present).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the uncompressed newc archive. Sorted order puts every parent before its
    /// children because a parent path is a strict prefix of the child's.
    pub fn write_cpio<W: Write>(&self, out: W) -> Result<W, CpioError> {
        let mut writer = CpioWriter::new(out);
        for (name, entry) in &self.entries {
            match &entry.kind {
                EntryKind::Directory => writer.directory(name, entry.permissions)?,
                EntryKind::File(data) => writer.file(name, entry.permissions, data)?,
                EntryKind::Symlink(target) => writer.symlink(name, target)?,
                EntryKind::CharDevice { major, minor } => {
                    writer.char_device(name, entry.permissions, *major, *minor)?;
                }
            }
        }
        writer.finish()
    }

    /// The uncompressed newc archive as bytes.
    pub fn to_cpio(&self) -> Result<Vec<u8>, CpioError> {
        self.write_cpio(Vec::new())
    }

    /// The gzip-compressed archive, the form bootloaders and Xen pass as a ramdisk
    /// (Linux accepts gzip initramfs with the default `CONFIG_RD_GZIP`).
    pub fn to_cpio_gz(&self) -> Result<Vec<u8>, CpioError> {
        let encoder = GzEncoder::new(Vec::new(), Compression::best());
        let encoder = self.write_cpio(encoder)?;
        Ok(encoder.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_buffer_format() {
        let mut writer = CpioWriter::new(Vec::new());
        writer
            .file("a", 0o644, b"xyz")
            .unwrap_or_else(|e| panic!("{e}"));
        let bytes = writer.finish().unwrap_or_else(|e| panic!("{e}"));
        // 110-byte header + "a\0" = 112 (already 4-aligned), 3 bytes data + 1 pad.
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[6..14], b"00000001", "first inode");
        assert_eq!(&bytes[14..22], b"000081A4", "mode S_IFREG|0644");
        assert_eq!(&bytes[54..62], b"00000003", "filesize");
        assert_eq!(&bytes[94..102], b"00000002", "namesize includes the NUL");
        assert_eq!(&bytes[110..112], b"a\0");
        assert_eq!(&bytes[112..116], b"xyz\0");
        assert_eq!(&bytes[116..122], b"070701");
        assert_eq!(bytes.len() % 4, 0);
        let tail = String::from_utf8_lossy(&bytes[116..]);
        assert!(tail.contains("TRAILER!!!"));
    }

    #[test]
    fn rejects_bad_paths() {
        let mut initramfs = Initramfs::new();
        for bad in [
            "",
            "/",
            "a//b",
            "a/../b",
            "./a",
            "a/",
            "TRAILER!!!",
            "TRAILER!!!/x",
            "a\0b",
        ] {
            assert!(
                initramfs.add_file(bad, 0o644, b"x".to_vec()).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn creates_parents_and_detects_conflicts() {
        let mut initramfs = Initramfs::new();
        initramfs
            .add_file("usr/bin/tool", 0o755, b"x".to_vec())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(initramfs.get("/usr"), Some(&EntryKind::Directory));
        assert_eq!(initramfs.get("usr/bin"), Some(&EntryKind::Directory));
        assert!(
            initramfs
                .add_file("usr/bin/tool/x", 0o644, b"x".to_vec())
                .is_err()
        );
        assert!(initramfs.add_file("usr", 0o644, b"x".to_vec()).is_err());
        assert_eq!(
            initramfs.get("dev/console"),
            Some(&EntryKind::CharDevice { major: 5, minor: 1 })
        );
    }

    #[test]
    fn output_is_deterministic() {
        let build = || {
            let mut initramfs = Initramfs::new();
            initramfs
                .add_file("init", 0o755, b"#!/bin/sh\n".to_vec())
                .unwrap_or_else(|e| panic!("{e}"));
            initramfs
                .add_symlink("bin/sh", "busybox")
                .unwrap_or_else(|e| panic!("{e}"));
            initramfs.to_cpio_gz().unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(build(), build());
    }
}
