//! The GUID partition table of an image with one EFI system partition, written by hand from UEFI
//! 2.10 §5.2.3 (protective MBR), §5.3.2 (GPT header) and §5.3.3 (GPT partition entry array).
//!
//! Layout of a disk of `n` sectors:
//! - LBA 0: protective MBR, one `0xEE` record from LBA 1 over the rest of the disk (capped at
//!   `0xFFFFFFFF` sectors), all other fields zero, `0xAA55` signature.
//! - LBA 1: primary header; LBA 2..=33: 128 entries of 128 bytes (16 KiB, the minimum the spec
//!   asks for), entry 0 the ESP, the other 127 zero (unused).
//! - LBA `n-33..=n-2`: the backup entry array (the same bytes); LBA `n-1`: the backup header.
//! - First usable LBA 34, last usable LBA `n-34`.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::SECTOR;

/// Number of entries in the partition entry array (UEFI 2.10 §5.3.2: at least 16,384 bytes).
pub const GPT_ENTRIES: u32 = 128;
/// Size of one partition entry.
pub const GPT_ENTRY_SIZE: u32 = 128;
/// Sectors the entry array takes (128 × 128 / 512).
const ARRAY_SECTORS: u64 = (GPT_ENTRIES as u64 * GPT_ENTRY_SIZE as u64) / SECTOR;
/// The header's size (`HeaderSize`, §5.3.2 table 5.5): 92 bytes, the rest of its sector zero.
const HEADER_SIZE: u32 = 92;
/// The partition name of the ESP (`PartitionName`, UTF-16LE, up to 36 code units).
pub const ESP_NAME: &str = "EFI system partition";
/// The EFI system partition's type GUID (UEFI 2.10 §5.3.3 table 5.7).
pub const ESP_TYPE: Guid = Guid([
    0xc1, 0x2a, 0x73, 0x28, 0xf8, 0x1f, 0x11, 0xd2, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
]);

/// A GUID, held in its canonical (text) byte order: `C12A7328-F81F-...` is
/// `[0xc1, 0x2a, 0x73, 0x28, 0xf8, 0x1f, ...]`. Displayed upper case, as `sfdisk` and `sgdisk` print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// A version 4 (random), RFC 4122 variant GUID made of the first 16 bytes of
    /// SHA-256(`what` ‖ `seed`): deterministic, but shaped like the random GUIDs tools expect.
    pub fn derived(what: &str, seed: &[u8]) -> Guid {
        let mut h = Sha256::new();
        h.update(what.as_bytes());
        h.update([0]);
        h.update(seed);
        let d = h.finalize();
        let mut g = [0u8; 16];
        g.copy_from_slice(&d[..16]);
        // RFC 4122 §4.1.3: version in the high nibble of time_hi_and_version; §4.1.1: variant
        // `10` in the top bits of clock_seq_hi_and_reserved.
        g[6] = (g[6] & 0x0f) | 0x40;
        g[8] = (g[8] & 0x3f) | 0x80;
        Guid(g)
    }

    /// The on-disk encoding (UEFI 2.10 Appendix A, "EFI_GUID"): the first three fields
    /// (`TimeLow`, `TimeMid`, `TimeHighAndVersion`) little-endian, the last eight bytes as written.
    pub fn to_disk(self) -> [u8; 16] {
        let g = self.0;
        let mut o = g;
        o[0..4].copy_from_slice(&[g[3], g[2], g[1], g[0]]);
        o[4..6].copy_from_slice(&[g[5], g[4]]);
        o[6..8].copy_from_slice(&[g[7], g[6]]);
        o
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// The GUIDs of a GPT image (`sfdisk --json` prints them as the table's `id` and the partition's
/// `uuid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptIds {
    pub disk_guid: Guid,
    pub partition_guid: Guid,
}

/// Sectors a GPT needs at the end of the disk: the backup entry array and the backup header.
pub const BACKUP_SECTORS: u64 = ARRAY_SECTORS + 1;

/// Writes the protective MBR, both headers and both entry arrays into `image` (the whole disk,
/// a whole number of sectors), for one ESP over `first..=last` (LBAs).
pub(crate) fn write(image: &mut [u8], first: u64, last: u64, ids: GptIds) {
    let sectors = image.len() as u64 / SECTOR;
    debug_assert!(sectors * SECTOR == image.len() as u64 && last < sectors - BACKUP_SECTORS);
    protective_mbr(&mut image[..SECTOR as usize], sectors);

    let mut array = vec![0u8; (ARRAY_SECTORS * SECTOR) as usize];
    let e = &mut array[..GPT_ENTRY_SIZE as usize];
    e[0..16].copy_from_slice(&ESP_TYPE.to_disk());
    e[16..32].copy_from_slice(&ids.partition_guid.to_disk());
    e[32..40].copy_from_slice(&first.to_le_bytes());
    e[40..48].copy_from_slice(&last.to_le_bytes());
    // Attributes (48..56) zero: no "required partition" or legacy BIOS bits.
    for (i, u) in ESP_NAME.encode_utf16().enumerate() {
        e[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
    }
    let array_crc = crc32fast::hash(&array);

    let backup_array = sectors - BACKUP_SECTORS;
    let header = |my: u64, alternate: u64, entries: u64| {
        let mut h = [0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        // 16..20: HeaderCRC32, computed with the field zero; 20..24 reserved, zero.
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ARRAY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(backup_array - 1).to_le_bytes());
        h[56..72].copy_from_slice(&ids.disk_guid.to_disk());
        h[72..80].copy_from_slice(&entries.to_le_bytes());
        h[80..84].copy_from_slice(&GPT_ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&GPT_ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&array_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let at = |lba: u64| (lba * SECTOR) as usize;
    image[at(1)..at(2)].copy_from_slice(&header(1, sectors - 1, 2));
    image[at(2)..at(2 + ARRAY_SECTORS)].copy_from_slice(&array);
    image[at(backup_array)..at(sectors - 1)].copy_from_slice(&array);
    image[at(sectors - 1)..].copy_from_slice(&header(sectors - 1, 1, backup_array));
}

/// UEFI 2.10 §5.2.3 table 5.4: boot code, disk signature and the other three records zero; one
/// record with `StartingCHS` 0x000200, `OSType` 0xEE, `EndingCHS` 0xFFFFFF (the disk's end is
/// not representable), `StartingLBA` 1, `SizeInLBA` the disk less one sector, capped at
/// 0xFFFFFFFF.
fn protective_mbr(mbr: &mut [u8], sectors: u64) {
    mbr.fill(0);
    let r = &mut mbr[446..462];
    r[0] = 0x00;
    r[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    r[4] = 0xee;
    r[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    r[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    r[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510..512].copy_from_slice(&[0x55, 0xaa]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_type_is_encoded_mixed_endian() {
        assert_eq!(ESP_TYPE.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        assert_eq!(
            ESP_TYPE.to_disk(),
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
    }

    #[test]
    fn derived_guids_are_version_4_rfc_4122() {
        let g = Guid::derived("disk", b"seed").to_string();
        assert_eq!(&g[14..15], "4", "{g}");
        assert!("89AB".contains(&g[19..20]), "{g}");
        assert_ne!(
            Guid::derived("disk", b"seed"),
            Guid::derived("part", b"seed")
        );
    }

    #[test]
    fn protective_mbr_size_is_capped() {
        let mut m = [0u8; 512];
        protective_mbr(&mut m, 1 << 40);
        assert_eq!(&m[458..462], &[0xff; 4]);
        protective_mbr(&mut m, 4096);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 4095);
    }
}
