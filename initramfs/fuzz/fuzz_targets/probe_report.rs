//! Console text is guest-controlled: parsing report lines must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Some(parsed) = probe::parse_report_line(line) {
            assert!(!parsed.name.is_empty() && !parsed.key.is_empty());
        }
    }
    for report in probe::ProbeReport::collect(text.lines()).values() {
        let _ = report.check_complete();
        let _ = report.ram_ranges();
        let _ = report.cpus_online();
    }
});
