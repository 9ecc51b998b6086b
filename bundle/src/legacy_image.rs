//! U-Boot's legacy image format, for `boot.scr`: a 64-byte big-endian header and the data.
//!
//! Layout from U-Boot `include/image.h` (`struct legacy_img_hdr`): `ih_magic` (0x27051956),
//! `ih_hcrc` (CRC-32 of the header with this field 0), `ih_time`, `ih_size` (data bytes),
//! `ih_load`, `ih_ep`, `ih_dcrc` (CRC-32 of the data), `ih_os`, `ih_arch`, `ih_type`, `ih_comp`,
//! `ih_name[32]`. A script image (`IH_TYPE_SCRIPT`) holds a multi-file payload (`tools/mkimage.c`,
//! `image_multi_getimg()` in `boot/image-board.c`): a zero-terminated table of big-endian 32-bit
//! lengths, then the files, each but the last padded to 4 bytes; `source` runs the first file.
//! The time is 0 (what `mkimage` writes with `SOURCE_DATE_EPOCH=0`), so the bytes are reproducible.

/// `IH_MAGIC`.
pub const MAGIC: u32 = 0x2705_1956;
/// `IH_OS_LINUX`.
pub const OS_LINUX: u8 = 5;
/// `IH_ARCH_ARM64`.
pub const ARCH_ARM64: u8 = 22;
/// `IH_TYPE_SCRIPT`.
pub const TYPE_SCRIPT: u8 = 6;
/// `IH_COMP_NONE`.
pub const COMP_NONE: u8 = 0;
/// `sizeof(struct legacy_img_hdr)`.
pub const HEADER_LEN: usize = 64;

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// A script image of `script` for arm64, named `name` (at most 32 bytes; longer is cut, as
/// `mkimage -n` does).
pub fn script_image(script: &[u8], name: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(script.len() + 8);
    data.extend_from_slice(&(script.len() as u32).to_be_bytes());
    data.extend_from_slice(&0u32.to_be_bytes());
    data.extend_from_slice(script);
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
    // ih_time, ih_load, ih_ep stay 0.
    h[12..16].copy_from_slice(&(data.len() as u32).to_be_bytes());
    h[24..28].copy_from_slice(&crc32(&data).to_be_bytes());
    h[28] = OS_LINUX;
    h[29] = ARCH_ARM64;
    h[30] = TYPE_SCRIPT;
    h[31] = COMP_NONE;
    let name = name.as_bytes();
    let n = name.len().min(32);
    h[32..32 + n].copy_from_slice(&name[..n]);
    let hcrc = crc32(&h);
    h[4..8].copy_from_slice(&hcrc.to_be_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_where_image_h_puts_them() {
        let img = script_image(b"echo hi\n", "");
        assert_eq!(&img[0..4], &MAGIC.to_be_bytes());
        assert_eq!(u32::from_be_bytes(img[12..16].try_into().unwrap()), 16);
        assert_eq!(&img[28..32], &[5, 22, 6, 0]);
        assert_eq!(&img[64..72], &[0, 0, 0, 8, 0, 0, 0, 0]);
        assert_eq!(&img[72..], b"echo hi\n");
        // The header CRC covers the header with ih_hcrc zeroed.
        let mut h = img[..64].to_vec();
        h[4..8].fill(0);
        assert_eq!(crc32(&h).to_be_bytes(), img[4..8]);
    }
}
