//! What this crate does to the FAT32 file system fatfs formatted, at the level of its on-disk
//! structures (Microsoft's FAT specification: "BPB structure", "FAT Directory Structure", "FSInfo
//! Sector Structure"): putting `.` and `..` first in new directories ([`drop_dot_lfn_entries`]),
//! and giving the files their clusters ([`place_files`]).

use crate::Extent;

/// The FAT32 geometry of a formatted partition, from its BPB (Microsoft's FAT specification,
/// "BPB structure"): `BPB_BytsPerSec` (11), `BPB_SecPerClus` (13), `BPB_RsvdSecCnt` (14),
/// `BPB_NumFATs` (16), `BPB_FATSz32` (36), `BPB_RootClus` (44).
pub(crate) struct Geometry {
    cluster: usize,
    fat_start: usize,
    data_start: usize,
    root: u32,
}

impl Geometry {
    pub(crate) fn read(b: &[u8]) -> Geometry {
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let sector = u16_at(11);
        let reserved = u16_at(14);
        let fats = b[16] as usize;
        let fat_sectors = u32_at(36) as usize;
        Geometry {
            cluster: sector * b[13] as usize,
            fat_start: reserved * sector,
            data_start: (reserved + fats * fat_sectors) * sector,
            root: u32_at(44),
        }
    }
    fn offset(&self, cluster: u32) -> usize {
        self.data_start + (cluster as usize - 2) * self.cluster
    }
    /// The cluster chain from `first` (FAT32 entries are 28 bits; >= 0x0ffffff8 ends a chain).
    fn chain(&self, b: &[u8], first: u32) -> Vec<u32> {
        let mut out = vec![first];
        let mut c = first;
        while out.len() < b.len() / self.cluster {
            let o = self.fat_start + 4 * c as usize;
            let next = u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) & 0x0fff_ffff;
            if !(2..0x0fff_fff8).contains(&next) {
                break;
            }
            out.push(next);
            c = next;
        }
        out
    }
}

/// The directory entry of `name` in the directory starting at `dir`: its byte offset in `b`,
/// found by the long name entries fatfs wrote before its short entry, or by the short (8.3) name
/// for a name fatfs stored as one.
fn find_entry(b: &[u8], g: &Geometry, dir: u32, name: &str) -> Option<usize> {
    let want: Vec<u16> = name.encode_utf16().collect();
    let upper = name.to_ascii_uppercase();
    let mut lfn: Vec<u16> = Vec::new();
    for c in g.chain(b, dir) {
        let at = g.offset(c);
        for (k, e) in b[at..at + g.cluster].chunks(32).enumerate() {
            match (e[0], e[11]) {
                (0, _) => return None,
                (0xe5, _) => lfn.clear(),
                (_, 0x0f) => {
                    // LFN entry: characters at 1..11, 14..26, 28..32 (UCS-2); the entries of one
                    // name come last part first.
                    let mut part: Vec<u16> = Vec::new();
                    for (s, n) in [(1usize, 5usize), (14, 6), (28, 2)] {
                        for k in 0..n {
                            part.push(u16::from_le_bytes([e[s + 2 * k], e[s + 2 * k + 1]]));
                        }
                    }
                    let end = part.iter().position(|&u| u == 0).unwrap_or(part.len());
                    part.truncate(end);
                    part.extend_from_slice(&lfn);
                    lfn = part;
                }
                (_, attr) if attr & 0x08 != 0 => lfn.clear(), // the volume label
                _ => {
                    // An entry with long-name entries is that name only: its short name is an
                    // alias fatfs made up (`LONGNA~1.TXT`), which another file may be called.
                    let matches = if lfn.is_empty() {
                        short_name(e) == upper
                    } else {
                        lfn == want
                    };
                    lfn.clear();
                    if matches {
                        return Some(at + 32 * k);
                    }
                }
            }
        }
    }
    None
}

/// A short entry's 8.3 name as `NAME.EXT` (`NAME` without an extension).
fn short_name(e: &[u8]) -> String {
    let base = String::from_utf8_lossy(&e[0..8]).trim_end().to_string();
    let ext = String::from_utf8_lossy(&e[8..11]).trim_end().to_string();
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// The first cluster an entry names (`DIR_FstClusHI` at 20, `DIR_FstClusLO` at 26).
fn first_cluster(e: &[u8]) -> u32 {
    let hi = u16::from_le_bytes([e[20], e[21]]) as u32;
    let lo = u16::from_le_bytes([e[26], e[27]]) as u32;
    hi << 16 | lo
}

/// The first cluster of the subdirectory `name` in the directory starting at `dir`.
fn find_subdir(b: &[u8], g: &Geometry, dir: u32, name: &str) -> Option<u32> {
    let at = find_entry(b, g, dir, name)?;
    let e = &b[at..at + 32];
    (e[11] & 0x10 != 0).then(|| first_cluster(e))
}

/// fatfs 0.3 writes a long-name entry before the `.` and `..` entries of a new directory; FAT
/// requires `.` and `..` to be the directory's first two entries (what `fsck.fat` checks: "Expected
/// a valid '.' entry in this slot"). This rewrites the first four entries, `[LFN(.)] [.] [LFN(..)]
/// [..]`, as `[.] [..] [deleted] [deleted]`, and gives `..` of a directory in the root cluster 0.
pub(crate) fn drop_dot_lfn_entries(b: &mut [u8], dir: &str) -> std::io::Result<()> {
    let g = Geometry::read(b);
    let mut cluster = g.root;
    let in_root = !dir.contains('/');
    for part in dir.split('/') {
        cluster = find_subdir(b, &g, cluster, part).ok_or_else(|| {
            std::io::Error::other(format!("directory `{part}` not found after writing"))
        })?;
    }
    let at = g.offset(cluster);
    let slot = |i: usize| at + 32 * i..at + 32 * (i + 1);
    let is_lfn = |b: &[u8], i: usize| b[slot(i)][11] == 0x0f;
    if !(is_lfn(b, 0) && &b[slot(1)][..11] == b".          " && is_lfn(b, 2))
        || &b[slot(3)][..11] != b"..         "
    {
        // Already in FAT's order (a fatfs that no longer writes them).
        return Ok(());
    }
    let dot = b[slot(1)].to_vec();
    let mut dotdot = b[slot(3)].to_vec();
    if in_root {
        // `..` of a directory in the root names cluster 0, not the root's cluster (FAT
        // specification, "FAT Directory Structure"); fatfs 0.3 writes the root's.
        dotdot[20..22].fill(0);
        dotdot[26..28].fill(0);
    }
    b[slot(0)].copy_from_slice(&dot);
    b[slot(1)].copy_from_slice(&dotdot);
    for i in [2, 3] {
        b[slot(i)].fill(0);
        b[slot(i)][0] = 0xe5;
    }
    Ok(())
}

/// FAT32's end-of-chain mark (any of 0x0ffffff8..=0x0fffffff; this is what fatfs and mkfs write).
const END_OF_CHAIN: u32 = 0x0fff_ffff;
/// FSInfo's signatures (`FSI_LeadSig` at 0, `FSI_StrucSig` at 484) and fields (`FSI_Free_Count`
/// at 488, `FSI_Nxt_Free` at 492).
const FSI_LEAD_SIG: u32 = 0x4161_5252;
const FSI_STRUC_SIG: u32 = 0x6141_7272;

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn set_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// Gives each of `files` (index given to `compose`, path, bytes) its clusters in the partition `b`
/// (at byte `start` of the image), which fatfs formatted and where it created every file empty:
/// one contiguous run per file, after every cluster fatfs allocated (the root and the
/// directories), chained in both FATs, the file's entry pointed at it with its size, and FSInfo's
/// free count and next-free hint moved on. Returns where each file's bytes go; nothing is copied.
///
/// Why not let fatfs write the bytes: fatfs 0.3 allocates, chains and writes one cluster at a time
/// through its storage (six small reads and writes a cluster), which was most of a 64-domain
/// bundle's build; here a file costs a loop over its FAT entries.
pub(crate) fn place_files(
    b: &mut [u8],
    files: &[(usize, &str, &[u8])],
    start: u64,
) -> std::io::Result<Vec<Extent>> {
    let g = Geometry::read(b);
    let fats = b[16] as usize;
    let fat_bytes = (g.data_start - g.fat_start) / fats.max(1);
    let clusters = ((b.len() - g.data_start) / g.cluster) as u32;
    // Cluster numbers run from 2; the FAT's entries 0 and 1 are reserved.
    let entry = |b: &[u8], c: u32| u32_at(b, g.fat_start + 4 * c as usize) & 0x0fff_ffff;
    let mut next = (2..clusters + 2)
        .rev()
        .find(|&c| entry(b, c) != 0)
        .map_or(2, |c| c + 1);
    let mut allocated = 0u32;
    let mut extents = Vec::with_capacity(files.len());
    for &(index, path, bytes) in files {
        if bytes.is_empty() {
            continue;
        }
        let n = bytes.len().div_ceil(g.cluster) as u32;
        if next + n > clusters + 2 {
            return Err(std::io::Error::other(format!(
                "`{path}` does not fit the partition ({n} clusters from {next} of {clusters})"
            )));
        }
        for c in next..next + n {
            let value = if c + 1 == next + n {
                END_OF_CHAIN
            } else {
                c + 1
            };
            for f in 0..fats {
                let o = g.fat_start + f * fat_bytes + 4 * c as usize;
                // The top 4 bits of a FAT32 entry are reserved: kept as they are.
                let old = u32_at(b, o);
                set_u32(b, o, (old & 0xf000_0000) | value);
            }
        }
        let at = entry_of_path(b, &g, path).ok_or_else(|| {
            std::io::Error::other(format!("`{path}`'s entry not found after writing"))
        })?;
        b[at + 20..at + 22].copy_from_slice(&((next >> 16) as u16).to_le_bytes());
        b[at + 26..at + 28].copy_from_slice(&(next as u16).to_le_bytes());
        set_u32(b, at + 28, bytes.len() as u32);
        extents.push(Extent {
            at: start + g.offset(next) as u64,
            file: index,
            offset: 0,
            len: bytes.len() as u64,
        });
        next += n;
        allocated += n;
    }
    // FSInfo (sector BPB_FSInfo, offset 48) and its copy in the backup boot sectors
    // (BPB_BkBootSec at 50, FSInfo one sector after it), where they carry their signatures.
    let sector = u16::from_le_bytes([b[11], b[12]]) as usize;
    let info = u16::from_le_bytes([b[48], b[49]]) as usize;
    let backup = u16::from_le_bytes([b[50], b[51]]) as usize;
    for s in [info, backup + info] {
        let o = s * sector;
        if o + 512 > b.len() || u32_at(b, o) != FSI_LEAD_SIG || u32_at(b, o + 484) != FSI_STRUC_SIG
        {
            continue;
        }
        let free = u32_at(b, o + 488);
        if free != u32::MAX {
            set_u32(b, o + 488, free.saturating_sub(allocated));
        }
        set_u32(b, o + 492, next);
    }
    Ok(extents)
}

/// The byte offset of the entry of the file at `path` (`/`-separated) from the root directory.
fn entry_of_path(b: &[u8], g: &Geometry, path: &str) -> Option<usize> {
    let (dirs, name) = match path.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, path),
    };
    let mut dir = g.root;
    for part in dirs.into_iter().flat_map(|d| d.split('/')) {
        dir = find_subdir(b, g, dir, part)?;
    }
    find_entry(b, g, dir, name)
}
