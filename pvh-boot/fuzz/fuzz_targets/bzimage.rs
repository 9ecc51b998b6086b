//! bzImage setup header parsing and payload decompression (every Linux format).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvh_boot::kernel::{BzImage, ElfKernel};

/// Decompressed output ceiling: large enough for real formats, small enough to stay fast.
const LIMIT: usize = 16 << 20;

fuzz_target!(|data: &[u8]| {
    // Give the fuzzer a valid-looking setup header to start from: first byte picks the
    // payload's compression magic, the rest is the payload.
    let mut img = vec![0u8; 0x400];
    img[0x1f1] = 1;
    img[0x1fe..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    let (sel, rest) = data.split_first().unwrap_or((&0, &[]));
    let magic: &[u8] = match sel % 8 {
        0 => &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3],
        1 => b"BZh9",
        2 => &[0xfd, b'7', b'z', b'X', b'Z', 0],
        3 => &[0x5d, 0, 0, 0x80, 0],
        4 => &[0x02, 0x21, 0x4c, 0x18],
        5 => &[0x28, 0xb5, 0x2f, 0xfd],
        6 => b"\x7fELF",
        _ => &[],
    };
    let payload_len = magic.len() + rest.len();
    img[0x24c..0x250].copy_from_slice(&(payload_len as u32).to_le_bytes());
    img.extend_from_slice(magic);
    img.extend_from_slice(rest);
    for input in [data, &img[..]] {
        if let Ok(bz) = BzImage::parse(input) {
            if let Ok(elf) = bz.vmlinux_with_limit(LIMIT) {
                let _ = ElfKernel::parse(&elf).map(|k| k.pvh_entry_checked());
            }
        }
    }
});
