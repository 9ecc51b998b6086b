//! Flashable boot disk images: a partition table with one bootable FAT32 partition holding the
//! given files, built in memory, byte-reproducibly, with no root, loop device or mtools. Two
//! tables ([`PartitionTable`]): an MBR with one active FAT32 partition (U-Boot, the Raspberry Pi
//! boot ROM) and a GPT with one EFI system partition (UEFI firmware: EDK2's AAVMF/OVMF, GRUB's
//! EFI images). [`build`] gives the whole image in memory; [`compose`] gives its layout without
//! copying the files into it, for a writer that streams the image from the files it already holds
//! ([`extents`]).
//!
//! ```
//! use disk_image::{ImageOptions, PartitionTable};
//! let files: Vec<(&str, &[u8])> = vec![("EFI/BOOT/BOOTAA64.EFI", b"MZ..."), ("EFI/BOOT/BOOTAA64.cfg", b"[global]")];
//! // The size-and-names check, without the bytes (what `domforge check` runs):
//! let sizes: Vec<(&str, u64)> = files.iter().map(|(p, b)| (*p, b.len() as u64)).collect();
//! let opts = ImageOptions { table: PartitionTable::Gpt, label: "ESP".into(), ..ImageOptions::default() };
//! let image_size = disk_image::check(&sizes, &opts)?;
//! let image = disk_image::build(&files, &opts)?;
//! assert_eq!(image.bytes.len() as u64, image_size);
//! # Ok::<(), disk_image::DiskImageError>(())
//! ```
//!
//! # Layout, MBR ([`PartitionTable::Mbr`], the default)
//! - Sector 0: an MBR (`disk signature` derived from the contents, see below) with one primary
//!   partition, type `0x0c` (FAT32, LBA addressing), marked active (`0x80`).
//! - The partition starts at LBA 2048 (1 MiB, the alignment `fdisk`/`sfdisk` default to and the
//!   layout QEMU's U-Boot and the Raspberry Pi boot ROM read, see `../shared/notes/qemu-recipes.md`)
//!   and runs to the end of the image. U-Boot's distro boot scans the active partitions
//!   (`part list ... -bootable`) and finds `/boot.scr` there; the Pi firmware reads the first FAT
//!   partition.
//!
//! # Layout, GPT ([`PartitionTable::Gpt`])
//! UEFI 2.10 §5.2.3 and §5.3 (see [`gpt`] for the fields): a protective MBR at LBA 0 (one `0xEE`
//! record over the disk), the primary header at LBA 1, 128 entries of 128 bytes at LBA 2..=33, the
//! EFI system partition (type `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`, name
//! "EFI system partition") at LBA 2048 with the same size as the MBR's partition would have, then
//! one more MiB at the end of the disk whose last 33 sectors are the backup entry array and the
//! backup header. Keeping the image a whole number of MiB (like the MBR image) is what SD cards,
//! `qemu-img` and `dd bs=1M` like; the space between the ESP's end and the backup array is unused.
//! UEFI firmware finds `\EFI\BOOT\BOOT{AA64,X64}.EFI` on the ESP with no boot entry configured
//! (UEFI 2.10 §3.5.1.1, "Removable Media Boot Behavior").
//!
//! # The FAT32 partition (both tables)
//! At least 64 MiB, so more than the 65,525 clusters FAT32 needs with 512-byte clusters; larger
//! clusters (1, 2, 4 KiB) where the partition keeps 70,000 of them ([`partition_size_for`]). Its `BPB_HiddSec` is the partition's start LBA as `mkfs.fat` writes it
//! for a partition. Every name is checked before anything is written ([`check`]): FAT long names
//! of at most 255 UTF-16 units, none of `" * / : < > ? \ |` or control characters, no trailing dot
//! or space, no two paths the same but for case.
//!
//! # Reproducibility
//! The same files give the same bytes: files are written sorted by path, their directories created
//! in that order; every timestamp is 1980-01-01 00:00:00 (the FAT epoch; [`FixedTime`]); the
//! volume ID and the MBR disk signature are the first bytes of a SHA-256 over the paths and
//! contents, so two different bundles get different IDs (hosts that cache by volume ID tell them
//! apart) but rebuilding one gives the same. The GPT's disk and partition GUIDs are SHA-256 over
//! that digest and the label, shaped as version 4 RFC 4122 GUIDs ([`Guid::derived`]).
//!
//! # Why these crates
//! - [`fatfs`] (0.3): the FAT implementation the Rust ecosystem uses (rust-fatfs; formatting,
//!   long file names, FAT12/16/32), pure Rust over any `Read + Write + Seek`, so the partition is
//!   formatted and filled inside a `Vec<u8>`. Its `chrono` feature is off: the clock never reaches
//!   the image.
//! - [`mbrman`]: a small, maintained MBR reader/writer (rust-disk-partition-management, the
//!   sister of the `gptman` crate); it writes the partition entry, CHS fields and boot signature,
//!   which is exactly the part of the disk that is easy to get subtly wrong by hand.
//! - The GPT is our own ~100 lines over [`crc32fast`] (already in the workspace's lock through
//!   `flate2`, `bzip2-rs`, `png`), not `gptman` (3.1): a GPT with one entry is a fixed layout the
//!   spec gives field by field, while `gptman` brings `nix` by default (block-device ioctls we
//!   never use) and is built around reading and editing a table, not laying a fresh one out with
//!   chosen GUIDs and a chosen backup position. Correctness is checked by tools that share no code with it: `sgdisk -v` (both headers,
//!   both CRCs, the backup) and `sfdisk --json` in `tests/independent_tools.rs`.
//!
//! `fsck.fat -n`, `mdir`/`mcopy` check the file system in this crate's tests and in the crates
//! that use it.

use std::io::{Cursor, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

pub mod extents;
mod fat;
pub mod gpt;
mod names;

pub use extents::{ComposedImage, Extent};
pub use gpt::{GptIds, Guid};
pub use names::MAX_NAME_UNITS;

/// Bytes per sector, for the partition table and the FAT file system.
pub const SECTOR: u64 = 512;
/// The partition's first sector (1 MiB), in both tables.
pub const PARTITION_START_LBA: u64 = 2048;
/// MBR partition type: FAT32 with LBA addressing (`W95 FAT32 (LBA)` in `fdisk`).
pub const PARTITION_TYPE_FAT32_LBA: u8 = 0x0c;
/// The smallest partition: FAT32 needs at least 65,525 clusters.
pub const MIN_PARTITION: u64 = 64 << 20;
/// Default limit on an image's size.
pub const DEFAULT_MAX_IMAGE: u64 = 2 << 30;
/// FAT32 cannot hold a file of 4 GiB or more (32-bit file size).
pub const MAX_FILE: u64 = u32::MAX as u64;
/// What a GPT image has after its ESP: one MiB, whose last 33 sectors are the backup table.
pub const GPT_TAIL: u64 = MIB;

const MIB: u64 = 1 << 20;

/// Why an image could not be made. Everything but [`DiskImageError::Fat`] and
/// [`DiskImageError::Mbr`] (I/O inside the in-memory image) is found by [`check`].
#[derive(Debug, thiserror::Error)]
pub enum DiskImageError {
    #[error(
        "the boot image would be {size} bytes, over its {limit}-byte limit ({files} bytes of \
         files); leave files out or make them smaller"
    )]
    TooLarge { size: u64, limit: u64, files: u64 },
    #[error(
        "`{path}` is {size} bytes: FAT32 holds files below 4 GiB only (at most {MAX_FILE} bytes)"
    )]
    FileTooLarge { path: String, size: u64 },
    #[error("`{path}` cannot be a FAT path: {reason}")]
    BadPath { path: String, reason: String },
    #[error(
        "`{label}` cannot be a FAT volume label: at most 11 of A-Z, a-z, 0-9, `-` and `_` \
         (it is stored upper-cased)"
    )]
    BadLabel { label: String },
    #[error("writing `{path}` into the FAT partition: {source}")]
    Fat {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the partition table: {0}")]
    Mbr(String),
}

/// Which partition table the image has (see the crate docs for both layouts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PartitionTable {
    /// MBR, one active FAT32-LBA (`0x0c`) partition: U-Boot, Raspberry Pi.
    #[default]
    Mbr,
    /// GPT, one EFI system partition (FAT32): UEFI firmware, GRUB's EFI images.
    Gpt,
}

/// Options of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    /// The FAT volume label (up to 11 characters, upper-cased, padded with spaces).
    pub label: String,
    /// The largest image allowed, in bytes (the whole disk, partition table included).
    pub max_size: u64,
    /// MBR or GPT.
    pub table: PartitionTable,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            label: "DOMFORGE".into(),
            max_size: DEFAULT_MAX_IMAGE,
            table: PartitionTable::Mbr,
        }
    }
}

/// A finished image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskImage {
    pub bytes: Vec<u8>,
    /// The MBR disk signature (`sfdisk` prints it as `label-id: 0x...`); 0 in a GPT image, whose
    /// protective MBR leaves it unused (UEFI 2.10 §5.2.3).
    pub disk_signature: u32,
    /// The FAT volume ID (`mdir` prints it as `Volume Serial Number is XXXX-XXXX`).
    pub volume_id: u32,
    /// The partition's size in bytes (it starts at [`PARTITION_START_LBA`]).
    pub partition_size: u64,
    /// The GPT's GUIDs (`None` for an MBR image).
    pub gpt: Option<GptIds>,
}

/// Every timestamp in the image: 1980-01-01 00:00:00, the earliest FAT date.
#[derive(Debug)]
pub struct FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// The cluster sizes the partition may have, smallest first.
const CLUSTERS: [u64; 4] = [512, 1024, 2048, 4096];

/// How many clusters a partition has at least before the next larger cluster size is used: FAT32
/// needs at least 65,525 data clusters (Microsoft's FAT specification, "FAT Type
/// Determination"); the FATs and reserved sectors take under 1% of them (4 bytes a cluster,
/// twice, against 1,024 or more), so 70,000 keeps a wide margin above the line.
const CLUSTERS_AT_LEAST: u64 = 70_000;

/// The cluster size for a partition of `size` bytes: the largest that leaves it
/// [`CLUSTERS_AT_LEAST`] clusters. Larger clusters are fewer for the file system writer to
/// allocate and chain (a 64-domain bundle's images hold ~80 MB each); FAT32 partitions of 64 MiB
/// have 512-byte clusters, 70 MiB 1 KiB, 137 MiB 2 KiB, 274 MiB and more 4 KiB.
fn cluster_for(size: u64) -> u64 {
    CLUSTERS
        .into_iter()
        .rev()
        .find(|&c| size >= smallest_with(c))
        .unwrap_or(CLUSTERS[0])
}

/// The smallest partition given clusters of `cluster` bytes.
fn smallest_with(cluster: u64) -> u64 {
    if cluster == CLUSTERS[0] {
        MIN_PARTITION
    } else {
        round_up(cluster * CLUSTERS_AT_LEAST, MIB)
    }
}

/// The partition size for files of these sizes: the data rounded to clusters, two FATs, room for
/// the directories, rounded up to whole MiB, at least [`MIN_PARTITION`].
pub fn partition_size_for(file_sizes: impl IntoIterator<Item = u64> + Clone) -> u64 {
    let guess = |cluster: u64| -> u64 {
        let (mut data, mut n) = (0u64, 0u64);
        for s in file_sizes.clone() {
            data += round_up(s.max(1), cluster);
            n += 1;
        }
        // Directory entries (a long name takes a few 32-byte entries) and one cluster per
        // directory, generously; then the two FATs (4 bytes per cluster each) on top.
        let dirs = n * 256 + 64 * cluster + 4 * MIB;
        let body = data + dirs;
        let fats = 2 * 4 * body.div_ceil(cluster);
        round_up(body + fats + fats / 8, MIB)
    };
    // For each cluster size, the room counted with it, raised to that size's smallest partition;
    // of those formatted with the cluster size they were counted with, the smallest (the larger
    // cluster size on a tie).
    CLUSTERS
        .into_iter()
        .map(|c| (c, guess(c).max(smallest_with(c))))
        .filter(|&(c, size)| cluster_for(size) == c)
        .min_by_key(|&(c, size)| (size, std::cmp::Reverse(c)))
        .map_or(MIN_PARTITION, |(_, size)| size)
}

/// The image size for files of these sizes (partition plus the 1 MiB before it).
pub fn image_size_for(file_sizes: impl IntoIterator<Item = u64> + Clone) -> u64 {
    PARTITION_START_LBA * SECTOR + partition_size_for(file_sizes)
}

/// The volume label as FAT stores it: 11 bytes, upper case, space-padded.
fn label_bytes(label: &str) -> [u8; 11] {
    let mut out = [b' '; 11];
    for (o, c) in out.iter_mut().zip(
        label
            .bytes()
            .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')),
    ) {
        *o = c.to_ascii_uppercase();
    }
    out
}

/// The image size for files of these sizes with this table: the MiB before the partition, the
/// partition and, for a GPT, [`GPT_TAIL`].
pub fn image_size_with(
    file_sizes: impl IntoIterator<Item = u64> + Clone,
    table: PartitionTable,
) -> u64 {
    let tail = match table {
        PartitionTable::Mbr => 0,
        PartitionTable::Gpt => GPT_TAIL,
    };
    image_size_for(file_sizes) + tail
}

/// Everything [`build`] would refuse, from the paths and sizes alone: the label a FAT label
/// ([`DiskImageError::BadLabel`]), each path a FAT name
/// ([`DiskImageError::BadPath`]), no two the same but for case, each file below 4 GiB
/// ([`DiskImageError::FileTooLarge`]), the image within `opts.max_size` (and, for an MBR, within
/// the 2^32 sectors its fields hold; [`DiskImageError::TooLarge`]). Returns the image's size in
/// bytes. [`build`] runs this first, so afterwards it fails only on I/O.
pub fn check(files: &[(&str, u64)], opts: &ImageOptions) -> Result<u64, DiskImageError> {
    let label_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_');
    if opts.label.len() > 11 || !opts.label.bytes().all(label_ok) {
        return Err(DiskImageError::BadLabel {
            label: opts.label.clone(),
        });
    }
    let mut sorted: Vec<(&str, u64)> = files.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for &(path, size) in &sorted {
        names::check_path(path)?;
        if size > MAX_FILE {
            return Err(DiskImageError::FileTooLarge {
                path: path.to_string(),
                size,
            });
        }
    }
    names::check_collisions(sorted.iter().map(|(p, _)| *p))?;
    let sizes: Vec<u64> = sorted.iter().map(|(_, s)| *s).collect();
    let size = image_size_with(sizes.iter().copied(), opts.table);
    let limit = match opts.table {
        PartitionTable::Mbr => opts.max_size.min(u64::from(u32::MAX) * SECTOR),
        PartitionTable::Gpt => opts.max_size,
    };
    if size > limit {
        return Err(DiskImageError::TooLarge {
            size,
            limit,
            files: sizes.iter().sum(),
        });
    }
    Ok(size)
}

/// Builds the image of `files` (relative paths with `/`; see the crate docs), after [`check`].
pub fn build(files: &[(&str, &[u8])], opts: &ImageOptions) -> Result<DiskImage, DiskImageError> {
    Ok(compose(files, &|_| None, opts)?.into_image(files))
}

/// [`build`] without copying the files into the image (see [`extents`]): the
/// returned [`ComposedImage`] holds the partition table and the file system's metadata, and says
/// where each file's bytes go. `known(bytes)` gives the SHA-256 of whichever files the caller
/// already knows, so a large file is not hashed again for the image's identifiers; a known digest
/// must be the file's real SHA-256, or the identifiers are not those [`build`] gives.
pub fn compose(
    files: &[(&str, &[u8])],
    known: &dyn Fn(&[u8]) -> Option<[u8; 32]>,
    opts: &ImageOptions,
) -> Result<ComposedImage, DiskImageError> {
    let sizes: Vec<(&str, u64)> = files.iter().map(|(p, b)| (*p, b.len() as u64)).collect();
    let image_size = check(&sizes, opts)?;
    let mut sorted: Vec<(usize, &str, &[u8])> = files
        .iter()
        .enumerate()
        .map(|(i, (p, b))| (i, *p, *b))
        .collect();
    sorted.sort_by(|a, b| a.1.cmp(b.1));
    let partition_size = partition_size_for(sorted.iter().map(|(_, _, b)| b.len() as u64));
    let digest = {
        let mut h = Sha256::new();
        for (_, path, bytes) in &sorted {
            h.update((path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            match known(bytes) {
                Some(d) => h.update(d),
                None => h.update(Sha256::digest(bytes)),
            }
        }
        h.finalize()
    };
    let volume_id = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);

    // The partition is formatted in place, inside the image; the files' bytes stay where they
    // are (zeroed pages of a fresh allocation are never touched, so no image-sized copy is made).
    let mut image = vec![0u8; image_size as usize];
    let start = PARTITION_START_LBA * SECTOR;
    let extents = fat_partition(
        &sorted,
        &mut image[start as usize..(start + partition_size) as usize],
        start,
        volume_id,
        &opts.label,
    )?;
    let mut image = Cursor::new(image);
    let (disk_signature, gpt) = match opts.table {
        PartitionTable::Mbr => {
            let sig = u32::from_le_bytes([digest[4], digest[5], digest[6], digest[7]]);
            write_mbr(&mut image, image_size, partition_size, sig)?;
            (sig, None)
        }
        PartitionTable::Gpt => {
            let mut seed = digest.to_vec();
            seed.extend_from_slice(opts.label.as_bytes());
            let ids = GptIds {
                disk_guid: Guid::derived("domforge disk-image: GPT disk", &seed),
                partition_guid: Guid::derived("domforge disk-image: GPT ESP", &seed),
            };
            let last = PARTITION_START_LBA + partition_size / SECTOR - 1;
            gpt::write(image.get_mut(), PARTITION_START_LBA, last, ids);
            (0, Some(ids))
        }
    };
    Ok(ComposedImage {
        base: image.into_inner(),
        extents,
        disk_signature,
        volume_id,
        partition_size,
        gpt,
    })
}

/// Formats `partition` (zeroed; at byte `start` of the image) as FAT32 and writes `files`
/// (index given to [`compose`], path, bytes; sorted by path) into it; returns where the files'
/// bytes go (see [`extents`]).
fn fat_partition(
    files: &[(usize, &str, &[u8])],
    partition: &mut [u8],
    start: u64,
    volume_id: u32,
    label: &str,
) -> Result<Vec<Extent>, DiskImageError> {
    let size = partition.len() as u64;
    let fat = |path: &str| {
        let path = path.to_string();
        move |source| DiskImageError::Fat { path, source }
    };
    let mut disk = Cursor::new(partition);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(cluster_for(size) as u32)
            .volume_id(volume_id)
            .volume_label(label_bytes(label)),
    )
    .map_err(fat("(format)"))?;
    // BPB_HiddSec (offset 28): the sectors before the partition, in the boot sector and in its
    // FAT32 backup (BPB_BkBootSec = 6, what fatfs writes).
    for sector in [0u64, 6] {
        let at = (sector * SECTOR + 28) as usize;
        disk.get_mut()[at..at + 4].copy_from_slice(&(PARTITION_START_LBA as u32).to_le_bytes());
    }
    disk.seek(SeekFrom::Start(0)).map_err(fat("(format)"))?;
    {
        let fs = fatfs::FileSystem::new(
            &mut disk,
            fatfs::FsOptions::new()
                .time_provider(&FIXED_TIME)
                .update_accessed_date(false),
        )
        .map_err(fat("(mount)"))?;
        let root = fs.root_dir();
        let mut made: Vec<String> = Vec::new();
        // Every file is created empty: its clusters are given after unmount (fat::place_files).
        for (_, path, _) in files {
            let mut dir = String::new();
            let parts: Vec<&str> = path.split('/').collect();
            for part in &parts[..parts.len() - 1] {
                if !dir.is_empty() {
                    dir.push('/');
                }
                dir.push_str(part);
                if !made.contains(&dir) {
                    root.create_dir(&dir).map_err(fat(&dir))?;
                    made.push(dir.clone());
                }
            }
            let mut f = root.create_file(path).map_err(fat(path))?;
            f.truncate().map_err(fat(path))?;
            f.flush().map_err(fat(path))?;
        }
        drop(root);
        // Counting the free clusters makes fatfs record the count in FSInfo at unmount
        // (`FSI_Free_Count`); left unknown (0xffffffff), `fsck.fat` reports it uninitialized.
        fs.stats().map_err(fat("(stats)"))?;
        fs.unmount().map_err(fat("(unmount)"))?;
    }
    let bytes = disk.into_inner();
    for dir in made_dirs(files.iter().map(|(_, p, _)| *p)) {
        fat::drop_dot_lfn_entries(bytes, &dir).map_err(fat(&dir))?;
    }
    fat::place_files(bytes, files, start).map_err(fat("(placing the files)"))
}

/// The directories `files` need, parents first.
fn made_dirs<'a>(paths: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    for path in paths {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let d = path[..at + i].to_string();
            if !dirs.contains(&d) {
                dirs.push(d);
            }
            at += i + 1;
        }
    }
    dirs
}

fn write_mbr(
    image: &mut Cursor<Vec<u8>>,
    image_size: u64,
    partition_size: u64,
    disk_signature: u32,
) -> Result<(), DiskImageError> {
    let mbr_err = |e: mbrman::Error| DiskImageError::Mbr(e.to_string());
    let mut mbr = mbrman::MBR::new_from(image, SECTOR as u32, disk_signature.to_le_bytes())
        .map_err(mbr_err)?;
    debug_assert_eq!(u64::from(mbr.disk_size) * SECTOR, image_size);
    mbr[1] = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_ACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys: PARTITION_TYPE_FAT32_LBA,
        last_chs: mbrman::CHS::empty(),
        starting_lba: PARTITION_START_LBA as u32,
        sectors: (partition_size / SECTOR) as u32,
    };
    mbr.write_into(image).map_err(mbr_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_files_same_bytes_in_any_order() {
        let a = build(
            &[("boot.scr", b"x"), ("modules/xen", &[7u8; 5000])],
            &ImageOptions::default(),
        )
        .unwrap();
        let b = build(
            &[("modules/xen", &[7u8; 5000]), ("boot.scr", b"x")],
            &ImageOptions::default(),
        )
        .unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.bytes.len() as u64, MIB + MIN_PARTITION);
        // The boot signature of the MBR and of the FAT boot sector.
        assert_eq!(&a.bytes[510..512], &[0x55, 0xaa]);
        let p = (PARTITION_START_LBA * SECTOR) as usize;
        assert_eq!(&a.bytes[p + 510..p + 512], &[0x55, 0xaa]);
        let c = build(&[("boot.scr", b"y")], &ImageOptions::default()).unwrap();
        assert_ne!(a.volume_id, c.volume_id);
    }

    #[test]
    fn a_composed_image_streams_as_the_built_one() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let files: [(&str, &[u8]); 3] = [
            ("modules/kernel", &big),
            ("boot.scr", b"script"),
            ("modules/empty", b""),
        ];
        for table in [PartitionTable::Mbr, PartitionTable::Gpt] {
            let opts = ImageOptions {
                table,
                ..ImageOptions::default()
            };
            let built = build(&files, &opts).unwrap();
            let composed = compose(&files, &|_| None, &opts).unwrap();
            // Every file with bytes is a run, not a copy: the kernel's clusters are zero in base.
            assert_eq!(composed.extents.len(), 2, "{:?}", composed.extents);
            let k = composed.extents.iter().find(|e| e.file == 0).unwrap();
            assert_eq!((k.offset, k.len), (0, big.len() as u64));
            assert!(
                composed.base[k.at as usize..][..big.len()]
                    .iter()
                    .all(|&b| b == 0)
            );
            let streamed: Vec<u8> = composed.segments(|i| Some(files[i].1)).unwrap().concat();
            assert_eq!(streamed, built.bytes);
            // A file shorter than its runs is refused, not read past.
            assert!(
                composed
                    .segments(|i| Some(&files[i].1[..i.min(1)]))
                    .is_none()
            );
            let mut filled = composed.clone();
            filled.fill(0, &big);
            filled.fill(1, b"script");
            assert!(filled.extents.is_empty());
            assert_eq!(filled.base, built.bytes);
        }
    }

    #[test]
    fn over_the_limit_is_refused_before_building() {
        let opts = ImageOptions {
            max_size: 32 << 20,
            ..ImageOptions::default()
        };
        let e = build(&[("a", b"1")], &opts).unwrap_err();
        assert!(matches!(e, DiskImageError::TooLarge { .. }), "{e}");
        assert!(
            e.to_string().contains("over its 33554432-byte limit"),
            "{e}"
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        for p in ["", "/abs", "a/../b", "a:b", "dir/"] {
            let e = build(&[(p, b"1")], &ImageOptions::default()).unwrap_err();
            assert!(matches!(e, DiskImageError::BadPath { .. }), "{p}: {e}");
        }
    }

    #[test]
    fn sizes_grow_with_the_files() {
        assert_eq!(partition_size_for([1u64]), MIN_PARTITION);
        let big = partition_size_for([100 * MIB, 30 * MIB]);
        assert!(big > 130 * MIB && big < 150 * MIB, "{big}");
        let huge = partition_size_for([700 * MIB]);
        assert!(huge > 700 * MIB, "{huge}");
    }
}
