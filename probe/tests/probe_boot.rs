//! The probe guest against independent references.
//!
//! `probe_image_lists_with_gnu_cpio` always runs (needs the Debian fetch and GNU cpio).
//! `probe_boots_in_qemu_aarch64` boots Debian's arm64 kernel with the probe initramfs in plain
//! QEMU (no Xen) and checks the report the real guest prints. It is ignored by default
//! because it takes about a minute under TCG; run it with
//! `cargo test -p probe --test probe_boot -- --ignored --nocapture`
//! (needs `qemu-system-aarch64`, package `qemu-system-arm`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use debian_fetch::{Arch, Fetcher, default_cache_dir};
use initramfs::kmod::resolve_modules;
use probe::{ARM64_VIRTIO_MODULES, ProbeImage, ProbeReport};

/// A prerequisite is missing: skipped, or failed where the project's test policy is strict.
fn skip_or_fail(reason: &str) {
    test_support::missing("probe_boot", reason);
}

/// Echoes the probe's lines and returns the complete report of guest `name`.
fn report_of(console: &[String], name: &str) -> ProbeReport {
    for line in console.iter().filter(|l| l.contains("DOMFORGE-PROBE")) {
        eprintln!("{line}");
    }
    let mut reports = ProbeReport::collect(console.iter().map(String::as_str));
    let report = reports.remove(name).unwrap_or_else(|| {
        panic!(
            "no probe report; console tail:\n{}",
            console[console.len().saturating_sub(40)..].join("\n")
        )
    });
    report.check_complete().unwrap();
    report
}

/// Builds the arm64 probe (busybox + virtio modules of Debian's kernel); `None` = skipped.
fn arm64_probe() -> Option<(debian_fetch::KernelFiles, Vec<u8>)> {
    let fetcher = Fetcher::new(default_cache_dir().ok()?);
    let (busybox, kernel) = match (
        fetcher.busybox_static(Arch::Arm64),
        fetcher.linux_kernel(Arch::Arm64),
    ) {
        (Ok(b), Ok(k)) => (b, k),
        (Err(e), _) | (_, Err(e)) => {
            skip_or_fail(&format!("fetching busybox/kernel failed: {e}"));
            return None;
        }
    };
    let modules = resolve_modules(&kernel.modules_dir, ARM64_VIRTIO_MODULES).unwrap();
    let image = ProbeImage::from_busybox_file(&busybox)
        .unwrap()
        .with_modules(&modules)
        .unwrap();
    Some((kernel, image.to_cpio_gz().unwrap()))
}

#[test]
fn probe_image_lists_with_gnu_cpio() {
    let Some((kernel, gz)) = arm64_probe() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.cpio.gz");
    std::fs::write(&path, &gz).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc {} | cpio -it --quiet", path.display()))
        .output()
        .unwrap();
    if !out.status.success() {
        return skip_or_fail("gzip/cpio could not list the probe image (apt-get install cpio)");
    }
    let listing = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = listing.lines().collect();
    for needed in [
        "init",
        "bin/busybox",
        "bin/sh",
        "dev/console",
        "etc/domforge/modules",
    ] {
        assert!(names.contains(&needed), "{needed} missing: {names:?}");
    }
    let module_dir = format!("lib/modules/{}/kernel/drivers/", kernel.release);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with(&module_dir) && n.ends_with("virtio_blk.ko")),
        "{names:?}"
    );
    // Our `.modinfo` reader against binutils' `readelf -p .modinfo`, over modules with and
    // without dependencies.
    let mut compared = 0;
    let mut with_deps = 0;
    for sub in [
        "kernel/drivers/block",
        "kernel/drivers/virtio",
        "kernel/drivers/net",
        "kernel/fs/ext4",
    ] {
        let Ok(entries) = std::fs::read_dir(kernel.modules_dir.join(sub)) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_none_or(|e| e != "ko") {
                continue;
            }
            let Ok(out) = Command::new("readelf")
                .arg("-p")
                .arg(".modinfo")
                .arg(&path)
                .output()
            else {
                return skip_or_fail("readelf (binutils) not installed");
            };
            let text = String::from_utf8_lossy(&out.stdout);
            let theirs: Vec<String> = text
                .lines()
                .find_map(|l| l.split_once("depends=").map(|(_, d)| d.trim().to_owned()))
                .unwrap_or_default()
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.replace('-', "_"))
                .collect();
            let ours = initramfs::kmod::module_depends(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(ours, theirs, "{}", path.display());
            compared += 1;
            with_deps += usize::from(!ours.is_empty());
        }
    }
    assert!(
        compared > 10 && with_deps > 3,
        "compared {compared}, with deps {with_deps}"
    );
}

#[test]
#[ignore = "boots a kernel under TCG (about a minute); run with --ignored"]
fn probe_boots_in_qemu_aarch64() {
    if Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        .is_err()
    {
        return skip_or_fail("qemu-system-aarch64 not installed (apt-get install qemu-system-arm)");
    }
    let Some((kernel, gz)) = arm64_probe() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("probe.cpio.gz");
    std::fs::write(&initrd, &gz).unwrap();
    let disk = dir.path().join("disk.img");
    let mut contents = b"DOMFORGE-DISK marker-4711\n".to_vec();
    contents.resize(1 << 20, 0);
    std::fs::write(&disk, &contents).unwrap();

    // QEMU virt (hw/arm/virt.c memmap): PL031 RTC at 0x09010000, PL061 GPIO at 0x09030000,
    // the 32 virtio-mmio transports at 0x0a000000 + 0x200 * n, the first device taking the
    // highest (0x0a003e00). 0x09100000 is unassigned: a denied device that is not there.
    let append = "console=ttyAMA0 domforge.name=t1 \
        domforge.expect_devices=pl031@9010000,pl061@9030000,virtio-blk@a003e00 \
        domforge.deny_devices=pl011@9100000";
    let mut child = Command::new("qemu-system-aarch64")
        .args([
            "-M",
            "virt",
            "-cpu",
            "cortex-a57",
            "-m",
            "512",
            "-smp",
            "2",
            "-nographic",
        ])
        .args(["-no-reboot", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", append])
        .arg("-drive")
        .arg(format!("if=none,format=raw,id=d0,file={}", disk.display()))
        .args(["-device", "virtio-blk-device,drive=d0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let console = read_until(&mut child, |line| {
        line.contains("DOMFORGE-PROBE") && line.contains(" end=")
    });
    let report = report_of(&console, "t1");
    assert_eq!(report.get("arch"), Some("aarch64"));
    assert_eq!(report.get("kernel"), Some(kernel.release.as_str()));
    assert_eq!(report.cpus_online(), Some(2));
    assert_eq!(report.get_u64("cpus.cpuinfo"), Some(2));
    // -m 512: QEMU virt RAM starts at 0x40000000 (hw/arm/virt.c, VIRT_MEM).
    assert_eq!(report.ram_ranges().first().map(|r| r.0), Some(0x4000_0000));
    let ram_end = report.ram_ranges().iter().map(|r| r.1).max().unwrap();
    assert_eq!(ram_end, 0x4000_0000 + (512 << 20) - 1);
    assert!(report.mem_total_kb().unwrap() < 512 * 1024);
    assert_eq!(report.get("hypervisor"), Some("none"));
    assert_eq!(report.device("pl031@9010000", "verdict"), Some("ok"));
    assert_eq!(report.device("pl031@9010000", "dt"), Some("/pl031@9010000"));
    assert_eq!(report.device("pl031@9010000", "driver"), Some("rtc-pl031"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let rtc: u64 = report
        .device("pl031@9010000", "value")
        .unwrap()
        .parse()
        .unwrap();
    assert!(rtc.abs_diff(now) < 3600, "guest RTC {rtc} vs host {now}");
    assert_eq!(report.device("pl061@9030000", "verdict"), Some("ok"));
    assert_eq!(
        report.device("virtio-blk@a003e00", "value"),
        Some("vda DOMFORGE-DISK marker-4711")
    );
    assert_eq!(report.device("virtio-blk@a003e00", "verdict"), Some("ok"));
    assert_eq!(
        report.device("virtio-blk@a003e00", "dt"),
        Some("/virtio_mmio@a003e00")
    );
    assert_eq!(report.device("pl011@9100000", "present"), Some("no"));
    assert_eq!(report.device("pl011@9100000", "verdict"), Some("ok"));
    assert!(report.device("pl011@9100000", "devmem").is_some());
}

/// Boots the amd64 probe in QEMU x86_64 (TCG) and returns its console lines.
fn boot_amd64(append: &str) -> Option<(debian_fetch::KernelFiles, Vec<String>)> {
    boot_amd64_until(append, |line| {
        line.contains("DOMFORGE-PROBE") && line.contains(" end=")
    })
}

/// [`boot_amd64`] reading the console until `stop` matches.
fn boot_amd64_until(
    append: &str,
    stop: impl Fn(&str) -> bool,
) -> Option<(debian_fetch::KernelFiles, Vec<String>)> {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_or_fail("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)");
        return None;
    }
    let fetcher = Fetcher::new(default_cache_dir().ok()?);
    let (busybox, kernel) = match (
        fetcher.busybox_static(Arch::X86_64),
        fetcher.linux_kernel(Arch::X86_64),
    ) {
        (Ok(b), Ok(k)) => (b, k),
        (Err(e), _) | (_, Err(e)) => {
            skip_or_fail(&format!("fetching busybox/kernel failed: {e}"));
            return None;
        }
    };
    let gz = ProbeImage::from_busybox_file(&busybox)
        .unwrap()
        .to_cpio_gz()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("probe.cpio.gz");
    std::fs::write(&initrd, &gz).unwrap();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-M",
            "q35",
            "-cpu",
            "qemu64",
            "-m",
            "512",
            "-smp",
            "2",
            "-nographic",
        ])
        .args(["-no-reboot", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let console = read_until(&mut child, stop);
    Some((kernel, console))
}

/// Collects console lines until `stop` matches one (or 300 s pass), then kills QEMU.
fn read_until(child: &mut std::process::Child, stop: impl Fn(&str) -> bool) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut console = Vec::new();
    while started.elapsed() < Duration::from_secs(300) {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                let done = stop(&line);
                console.push(line);
                if done {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    eprintln!("console read for {:.1?}", started.elapsed());
    console
}

#[test]
#[ignore = "boots a kernel under TCG; run with --ignored"]
fn probe_boots_in_qemu_x86_64() {
    let Some((kernel, console)) = boot_amd64("console=ttyS0 domforge.name=x1") else {
        return;
    };
    let report = report_of(&console, "x1");
    assert_eq!(report.get("arch"), Some("x86_64"));
    assert_eq!(report.get("kernel"), Some(kernel.release.as_str()));
    assert_eq!(report.cpus_online(), Some(2));
    // TCG qemu64 sets the CPUID hypervisor bit but no hypervisor is detected by name.
    assert!(
        matches!(report.get("hypervisor"), Some("none" | "unknown")),
        "{:?}",
        report.get("hypervisor")
    );
    let ram: u64 = report.ram_ranges().iter().map(|(s, e)| e - s + 1).sum();
    assert!(ram > 500 << 20 && ram <= 512 << 20, "System RAM {ram:#x}");
}

#[test]
#[ignore = "boots a kernel under TCG; run with --ignored"]
fn probe_crashes_on_request() {
    let Some((_, console)) =
        boot_amd64_until("console=ttyS0 domforge.name=c1 domforge.crash=1", |line| {
            line.contains("Kernel panic")
        })
    else {
        return;
    };
    let reports = ProbeReport::collect(console.iter().map(String::as_str));
    let report = &reports["c1"];
    report.check_complete().unwrap();
    assert_eq!(report.get("crash"), Some("requested"));
    assert!(
        console.iter().any(|l| l.contains("sysrq: Trigger a crash")),
        "{console:#?}"
    );
}
