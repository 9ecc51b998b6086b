//! The boot-blob frame, written from `blob.rs`'s documented layout rather than with its code, so the
//! fuzz targets can build frames around arbitrary payloads independently of the code under test.
#![allow(dead_code)]

use firmware_config::blob::{FORMAT_VERSION, HEADER_LEN, MAGIC};

/// CRC-32C (Castagnoli), bitwise from the polynomial: reflected 0x82F63B78, initial value and final
/// XOR 0xFFFFFFFF (RFC 3720 §B.4). Check value for "123456789" is 0xE3069283.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `payload` behind a correct 16-byte header: magic, version, reserved 0, length, CRC-32C.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Rewrites the header's CRC (and, when asked, its length) to match whatever payload follows.
pub fn repair(blob: &mut [u8], fix_length: bool) {
    if blob.len() < HEADER_LEN {
        return;
    }
    let (header, body) = blob.split_at_mut(HEADER_LEN);
    if fix_length {
        header[8..12].copy_from_slice(&(body.len() as u32).to_le_bytes());
    }
    header[12..16].copy_from_slice(&crc32c(body).to_le_bytes());
}
