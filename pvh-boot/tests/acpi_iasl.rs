//! The ACPI tables checked by Debian's `iasl` (acpica-tools) as the independent reference:
//! `iasl -d` must disassemble every table without checksum complaints, and what it decodes
//! must say what a PVH guest needs (one enabled Local APIC per vCPU with ID 2*n, a
//! hardware-reduced FADT pointing at the DSDT, one ACPI0007 device per vCPU). The DSDT is
//! also recompiled by iasl and must come out byte-identical to ours.
//!
//! iasl 20200925 cannot disassemble a lone RSDP (it has no standard table header), so the
//! RSDP is checked against the ACPI 6.5 §5.2.5.3 layout typed here.

mod common;

use std::path::Path;
use std::process::Command;

use pvh_boot::acpi::{AcpiTables, build_tables};

fn iasl_d(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let dat = dir.join(format!("{name}.dat"));
    std::fs::write(&dat, bytes).unwrap();
    let out = Command::new("iasl")
        .arg("-d")
        .arg(&dat)
        .current_dir(dir)
        .output()
        .expect("run iasl");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl -d {name} failed:\n{log}");
    let dsl = std::fs::read_to_string(dir.join(format!("{name}.dsl"))).expect("iasl wrote a .dsl");
    for bad in ["Incorrect checksum", "Error", "Warning", "Invalid"] {
        assert!(
            !log.contains(bad) && !dsl.contains(bad),
            "iasl -d {name}: {bad}\n{log}\n{dsl}"
        );
    }
    dsl
}

/// Values of `FieldName : Value` lines for a field.
fn field<'a>(dsl: &'a str, name: &str) -> Vec<&'a str> {
    dsl.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(" : ")?;
            k.trim_end()
                .ends_with(name)
                .then(|| v.split_whitespace().next().unwrap_or(""))
        })
        .collect()
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap_or_else(|_| panic!("hex {s}"))
}

fn check(vcpus: u32) {
    if !common::require_tools(&[("iasl", "acpica-tools")]) {
        return;
    }
    let t: AcpiTables = build_tables(vcpus, 0xFC00_0000).unwrap();
    let dir = common::temp_dir(&format!("acpi-{vcpus}"));
    let table = |a: u64| t.table_at(a).unwrap();

    // MADT.
    let madt = iasl_d(&dir, "apic", table(t.madt));
    assert_eq!(
        madt.matches("[Processor Local APIC]").count(),
        vcpus as usize
    );
    let ids: Vec<u64> = field(&madt, "Local Apic ID")
        .iter()
        .map(|v| hex(v))
        .collect();
    assert_eq!(
        ids,
        (0..u64::from(vcpus)).map(|i| 2 * i).collect::<Vec<_>>(),
        "Xen LAPIC IDs are 2*vcpu"
    );
    let uids: Vec<u64> = field(&madt, "Processor ID")
        .iter()
        .map(|v| hex(v))
        .collect();
    assert_eq!(uids, (0..u64::from(vcpus)).collect::<Vec<_>>());
    assert!(field(&madt, "Processor Enabled").iter().all(|v| *v == "1"));
    assert_eq!(field(&madt, "PC-AT Compatibility"), ["0"]);
    assert_eq!(field(&madt, "Local Apic Address"), ["FEE00000"]);

    // FADT.
    let fadt = iasl_d(&dir, "facp", table(t.fadt));
    assert_eq!(field(&fadt, "Hardware Reduced (V5)"), ["1"]);
    let dsdt_addrs: Vec<u64> = field(&fadt, "DSDT Address")
        .iter()
        .map(|v| hex(v))
        .collect();
    assert_eq!(dsdt_addrs, [t.dsdt, t.dsdt]);
    assert_eq!(field(&fadt, "Revision").first(), Some(&"05"));

    // XSDT and RSDT point at the FADT and MADT.
    let xsdt = iasl_d(&dir, "xsdt", table(t.xsdt));
    let rsdt = iasl_d(&dir, "rsdt", table(t.rsdt));
    for dsl in [&xsdt, &rsdt] {
        let addrs: Vec<u64> = dsl
            .lines()
            .filter(|l| l.contains("ACPI Table Address"))
            .map(|l| hex(l.rsplit(" : ").next().unwrap().trim()))
            .collect();
        assert_eq!(addrs, [t.fadt, t.madt]);
    }

    // DSDT: decompile, check, recompile, compare.
    let dsdt_bytes = table(t.dsdt);
    let dsdt = iasl_d(&dir, "dsdt", dsdt_bytes);
    assert_eq!(dsdt.matches("Device (P").count(), vcpus as usize);
    assert_eq!(
        dsdt.matches("Name (_HID, \"ACPI0007\"").count(),
        vcpus as usize
    );
    common::run(
        Command::new("iasl")
            .args(["-oa", "-p", "recompiled", "dsdt.dsl"])
            .current_dir(&dir),
    );
    let recompiled = std::fs::read(dir.join("recompiled.aml")).unwrap();
    // The header differs (iasl writes its own compiler ID); the AML body must not.
    assert!(
        recompiled[36..] == dsdt_bytes[36..],
        "iasl's recompiled DSDT body differs from ours"
    );

    // RSDP (ACPI 6.5 §5.2.5.3): signature, checksums, revision 2, length 36, pointers.
    let rsdp = table(t.rsdp);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(rsdp[..20].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    assert_eq!(rsdp.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    assert_eq!(rsdp[15], 2);
    assert_eq!(
        u32::from_le_bytes(rsdp[16..20].try_into().unwrap()) as u64,
        t.rsdt
    );
    assert_eq!(u32::from_le_bytes(rsdp[20..24].try_into().unwrap()), 36);
    assert_eq!(u64::from_le_bytes(rsdp[24..32].try_into().unwrap()), t.xsdt);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn iasl_accepts_tables_for_1_vcpu() {
    check(1);
}

#[test]
fn iasl_accepts_tables_for_2_vcpus() {
    check(2);
}

#[test]
fn iasl_accepts_tables_for_8_vcpus() {
    check(8);
}

#[test]
fn iasl_accepts_tables_for_128_vcpus() {
    check(128);
}

#[test]
fn bad_vcpu_counts_are_rejected() {
    assert!(build_tables(0, 0xFC00_0000).is_err());
    assert!(build_tables(129, 0xFC00_0000).is_err());
    assert!(build_tables(1, 0xFC00_0001).is_err());
}
