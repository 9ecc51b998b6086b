//! Arbitrary entry paths and kinds: the initramfs builder returns errors, never panics, and
//! what it accepts always serialises.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut initramfs = initramfs::cpio::Initramfs::new();
    for (i, line) in text.lines().enumerate() {
        let _ = match i % 4 {
            0 => initramfs.add_file(line, 0o644, line.as_bytes().to_vec()),
            1 => initramfs.add_directory(line, 0o755),
            2 => initramfs.add_symlink(line, "target"),
            _ => initramfs.add_char_device(line, 0o600, 1, 3),
        };
    }
    let archive = initramfs.to_cpio().expect("accepted entries serialise");
    assert_eq!(archive.len() % 4, 0);
});
