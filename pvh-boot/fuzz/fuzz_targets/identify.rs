//! `identify` and `check_complete` on arbitrary files: every size check (DTB, uImage, arm64
//! Image PE sections, bzImage, ELF, cpio, compressed streams) never panics, and a refusal always
//! names a format and a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pvh_boot::identify::identify(data);
    if let Err(e) = pvh_boot::identify::check_complete(data) {
        assert!(!e.format.is_empty() && !e.reason.is_empty());
        let _ = e.to_string();
    }
});
