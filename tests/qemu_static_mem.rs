//! Scenario 4b of the QEMU proof: a driver domain owns a passed-through virtio-blk device and reads a
//! marker from it through DMA. Without an IOMMU, DMA only works when guest RAM equals host RAM, so the
//! domain is direct-mapped in static memory — which needs a Xen built with CONFIG_STATIC_MEMORY
//! (`builtin:xen-static-memory`: Debian's 4.17 source, rebuilt by `debian_fetch::xen_build`). Only Xen 4.17
//! is built that way here, so this scenario runs on 4.17 only.
//!
//! Runs when `CI=true` or `DOMFORGE_QEMU_TESTS=1` (it builds Xen and boots QEMU).

use pipeline::Options;
use qemu_tests::session::{self as run, RunOptions};
use std::path::Path;
use std::time::Duration;

const RUNS: usize = 3;

#[test]
fn scenario_4b_virtio_blk_dma_in_a_direct_mapped_driver_domain() {
    test_support::require!(qemu "scenario 4b (boots QEMU and builds Xen)");
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/static-mem-virtio-blk.toml");
    let opts = Options {
        quiet: true,
        ..Options::from_env().expect("cache dir")
    };
    let ro = RunOptions {
        deadline: Duration::from_secs(240),
        ..RunOptions::default()
    };
    let mut prepared =
        run::prepare(&manifest, &opts, &ro, |_| {}).unwrap_or_else(|e| panic!("prepare: {e}"));
    // The expectation that makes this scenario what it is: the owner must read the disk's marker.
    let owner = prepared
        .expectations
        .iter()
        .find(|e| e.disk_marker.is_some())
        .expect("a domain owns the virtio-blk transport");
    assert!(
        owner
            .disk_marker
            .as_deref()
            .is_some_and(|m| m.starts_with("vda DOMFORGE-DISK "))
    );
    for i in 1..=RUNS {
        let (report, log) = prepared
            .test(&ro, |_| {})
            .unwrap_or_else(|e| panic!("run {i}: {e}"));
        println!(
            "static-mem-virtio-blk (Xen 4.17 + CONFIG_STATIC_MEMORY) run {i}/{RUNS}: {} in {:.1} s",
            if report.passed { "pass" } else { "FAIL" },
            report.elapsed_s
        );
        assert!(
            report.passed,
            "run {i}:\n{}\n--- console tail ---\n{}",
            report.table(),
            log.tail(40)
        );
    }
    // Control: the same boot against a marker the disk does not hold must fail, naming the domain.
    let owner = prepared
        .expectations
        .iter_mut()
        .find(|e| e.disk_marker.is_some())
        .expect("owner");
    let name = owner.name.clone();
    owner.disk_marker = Some("vda DOMFORGE-DISK not-this-disk".into());
    let (report, _) = prepared.test(&ro, |_| {}).expect("boots");
    assert!(!report.passed, "a wrong disk marker must fail");
    let messages = report.messages().join("\n");
    assert!(
        messages.contains(&name) && messages.contains("virtio-blk disk"),
        "{messages}"
    );
}
