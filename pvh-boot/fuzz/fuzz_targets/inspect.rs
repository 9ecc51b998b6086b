//! `inspect_kernel` on arbitrary files: format detection, every parser, Display.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = pvh_boot::inspect::inspect_kernel_with_limit(data, 16 << 20) {
        let _ = report.to_string();
    }
});
