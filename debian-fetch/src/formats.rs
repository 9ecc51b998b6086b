//! Small format checks for the binaries we fetch, so a wrong or corrupt file is rejected with
//! a reason before it reaches QEMU or Xen.

/// Linux arm64 `Image` header magic `"ARM\x64"` (little-endian 0x644d5241) at byte offset 56
/// (Linux `Documentation/arch/arm64/booting.rst`, "Call the kernel image": `u32 magic`).
pub const ARM64_IMAGE_MAGIC: [u8; 4] = *b"ARM\x64";
/// Offset of [`ARM64_IMAGE_MAGIC`] in the 64-byte image header.
pub const ARM64_IMAGE_MAGIC_OFFSET: usize = 56;

/// ELF identification bytes (System V ABI, `e_ident[EI_MAG0..EI_MAG3]`).
pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";

/// Multiboot (v1) header magic (Multiboot Specification 0.6.96, §3.1.2 `magic` = 0x1BADB002).
pub const MULTIBOOT1_MAGIC: u32 = 0x1BAD_B002;
/// Multiboot 1 header must lie within the first 8192 bytes, 32-bit aligned (§3.1.1).
pub const MULTIBOOT1_SEARCH_LEN: usize = 8192;
/// Multiboot2 header magic (Multiboot2 Specification §3.1.2, `magic` = 0xE85250D6).
pub const MULTIBOOT2_MAGIC: u32 = 0xE852_50D6;
/// Multiboot2 header must lie within the first 32768 bytes, 64-bit aligned (§3.1.1).
pub const MULTIBOOT2_SEARCH_LEN: usize = 32768;

/// gzip member magic (RFC 1952 §2.3.1: ID1 = 0x1f, ID2 = 0x8b).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `bytes` starts like a Linux arm64 `Image` (also how Xen's arm64 binary looks:
/// Xen reuses the Linux image header so bootloaders can load it the same way).
pub fn is_arm64_image(bytes: &[u8]) -> bool {
    bytes.get(ARM64_IMAGE_MAGIC_OFFSET..ARM64_IMAGE_MAGIC_OFFSET.saturating_add(4))
        == Some(&ARM64_IMAGE_MAGIC[..])
}

/// Whether `bytes` starts with the ELF magic.
pub fn is_elf(bytes: &[u8]) -> bool {
    bytes.get(..4) == Some(&ELF_MAGIC[..])
}

/// Whether `bytes` starts with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.get(..2) == Some(&GZIP_MAGIC[..])
}

/// Byte offset of a valid Multiboot 1 header: magic at a 4-aligned offset within the first
/// 8192 bytes, followed by `flags` and `checksum` with `magic + flags + checksum == 0`
/// (mod 2^32, spec §3.1.2). QEMU's `-kernel` multiboot loader looks for exactly this.
pub fn multiboot1_header_offset(bytes: &[u8]) -> Option<usize> {
    let limit = bytes.len().min(MULTIBOOT1_SEARCH_LEN);
    (0..limit).step_by(4).find(|&offset| {
        let word = |k: usize| {
            let start = offset.checked_add(k.checked_mul(4)?)?;
            let chunk: [u8; 4] = bytes.get(start..start.checked_add(4)?)?.try_into().ok()?;
            Some(u32::from_le_bytes(chunk))
        };
        match (word(0), word(1), word(2)) {
            (Some(magic), Some(flags), Some(checksum)) => {
                magic == MULTIBOOT1_MAGIC && magic.wrapping_add(flags).wrapping_add(checksum) == 0
            }
            _ => false,
        }
    })
}

/// Byte offset of a Multiboot2 header magic (8-aligned, first 32768 bytes) whose checksum
/// field makes `magic + architecture + header_length + checksum == 0` (spec §3.1.2).
pub fn multiboot2_header_offset(bytes: &[u8]) -> Option<usize> {
    let limit = bytes.len().min(MULTIBOOT2_SEARCH_LEN);
    (0..limit).step_by(8).find(|&offset| {
        let word = |k: usize| {
            let start = offset.checked_add(k.checked_mul(4)?)?;
            let chunk: [u8; 4] = bytes.get(start..start.checked_add(4)?)?.try_into().ok()?;
            Some(u32::from_le_bytes(chunk))
        };
        match (word(0), word(1), word(2), word(3)) {
            (Some(magic), Some(arch), Some(len), Some(checksum)) => {
                magic == MULTIBOOT2_MAGIC
                    && magic
                        .wrapping_add(arch)
                        .wrapping_add(len)
                        .wrapping_add(checksum)
                        == 0
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiboot_checksum_is_checked() {
        let mut image = vec![0u8; 64];
        let flags: u32 = 0x0001_0003;
        let checksum = 0u32.wrapping_sub(MULTIBOOT1_MAGIC).wrapping_sub(flags);
        image[16..20].copy_from_slice(&MULTIBOOT1_MAGIC.to_le_bytes());
        image[20..24].copy_from_slice(&flags.to_le_bytes());
        image[24..28].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(multiboot1_header_offset(&image), Some(16));
        image[24] ^= 1;
        assert_eq!(multiboot1_header_offset(&image), None);
        // Truncated right after the magic: no panic, no match.
        assert_eq!(multiboot1_header_offset(&image[..18]), None);
    }

    #[test]
    fn short_inputs_are_not_images() {
        assert!(!is_arm64_image(b"ARM"));
        assert!(!is_elf(b"\x7fEL"));
        assert!(!is_gzip(b"\x1f"));
    }
}
