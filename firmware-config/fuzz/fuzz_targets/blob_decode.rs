//! Arbitrary bytes into the boot-blob decoder, twice: as a whole blob (the frame checks: magic,
//! version, reserved field, length, CRC-32C), and as a payload wrapped in a correct frame so that
//! every input reaches postcard and `BootConfig::check`.
//!
//! Whatever decodes must re-encode to a blob that decodes to the same configuration.
#![no_main]

use firmware_config::blob::{self, BootConfig};
use libfuzzer_sys::fuzz_target;

#[path = "../common/frame.rs"]
mod frame;

fn round_trip(config: &BootConfig) {
    let again = blob::encode(config).expect("a decoded config re-encodes");
    assert_eq!(blob::decode(&again).as_ref(), Ok(config));
}

fuzz_target!(|data: &[u8]| {
    let whole = blob::decode(data);
    // decode = payload check + postcard + semantic check: a frame error must surface unchanged.
    if let Err(e) = blob::payload(data) {
        assert_eq!(whole.as_ref().err(), Some(&e));
    }
    if let Ok(config) = whole {
        round_trip(&config);
    }
    // The independent CRC agrees with the check value the Rocksoft catalogue gives for CRC-32C.
    debug_assert_eq!(frame::crc32c(b"123456789"), 0xE306_9283);
    if data.len() <= blob::MAX_PAYLOAD {
        let blob_bytes = frame::framed(data);
        assert_eq!(blob::payload(&blob_bytes), Ok(data));
        if let Ok(config) = blob::decode(&blob_bytes) {
            round_trip(&config);
        }
    }
});
