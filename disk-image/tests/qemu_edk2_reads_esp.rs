//! The GPT image read by the firmware that will boot it: EDK2, as OVMF (Debian `ovmf`, x86_64
//! q35) and as AAVMF (Debian `qemu-efi-aarch64`, ARM64 `virt`) in QEMU, with the image as a
//! virtio disk and no EFI binary on it. The firmware finds no boot loader,
//! starts its built-in UEFI Shell, which maps the ESP as `FS0:` (printing its GPT device path:
//! partition number, partition GUID, start, size) and runs `\startup.nsh` from it; the script
//! prints a file from a nested directory and lists that directory, then powers off
//! (`reset -s`). So EDK2's own GPT and FAT drivers, not just Linux tools, accept the image.
//!
//! A QEMU boot: gated by `test_support` (runs under `DOMFORGE_QEMU_TESTS=1`, scripts/test-all
//! and CI). It does not involve Xen, so it runs once, not per Xen release: ~12 s per firmware on
//! this machine, 5 s of which are the shell's `startup.nsh` countdown.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use disk_image::{ImageOptions, PARTITION_START_LBA, PartitionTable, SECTOR, build};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
const AAVMF: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";
/// Generous for a shared 2-core machine (the boot takes ~12 s when idle).
const DEADLINE: Duration = Duration::from_secs(150);

/// The two tests run in parallel threads; one QEMU at a time on the shared machine.
static ONE_QEMU_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn ovmf_maps_the_esp_and_reads_nested_files() {
    const T: &str = "ovmf_maps_the_esp_and_reads_nested_files";
    test_support::require!(qemu T);
    test_support::require!(tool "qemu-system-x86_64", "qemu-system-x86");
    if !Path::new(OVMF_CODE).exists() {
        test_support::missing(T, &format!("{OVMF_CODE} is missing (apt-get install ovmf)"));
        return;
    }
    firmware_reads_the_esp("qemu-system-x86_64", |vars| {
        [
            "-machine",
            "q35",
            "-drive",
            &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
            "-drive",
            &format!("if=pflash,format=raw,file={}", vars.display()),
            "-device",
            "virtio-blk-pci,drive=hd0",
        ]
        .map(String::from)
        .to_vec()
    });
}

#[test]
fn aavmf_maps_the_esp_and_reads_nested_files() {
    const T: &str = "aavmf_maps_the_esp_and_reads_nested_files";
    test_support::require!(qemu T);
    test_support::require!(tool "qemu-system-aarch64", "qemu-system-arm");
    if !Path::new(AAVMF).exists() {
        test_support::missing(
            T,
            &format!("{AAVMF} is missing (apt-get install qemu-efi-aarch64)"),
        );
        return;
    }
    firmware_reads_the_esp("qemu-system-aarch64", |_| {
        [
            "-machine",
            "virt",
            "-cpu",
            "cortex-a57",
            "-bios",
            AAVMF,
            "-device",
            "virtio-blk-pci,drive=hd0",
        ]
        .map(String::from)
        .to_vec()
    });
}

/// Boots `qemu` with the image as drive `hd0` and the firmware `args` (given the path of a
/// writable copy of OVMF's variable store) and checks what the shell printed.
fn firmware_reads_the_esp(qemu: &str, args: impl FnOnce(&Path) -> Vec<String>) {
    let _one = ONE_QEMU_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let script = "echo -off\r\necho DOMFORGE-ESP-BEGIN\r\ntype fs0:\\EFI\\BOOT\\hello.txt\r\n\
                  ls fs0:\\EFI\\BOOT\r\necho DOMFORGE-ESP-END\r\nreset -s\r\n";
    let hello = b"hello from a domforge ESP\r\n";
    let files: Vec<(&str, &[u8])> = vec![
        ("startup.nsh", script.as_bytes()),
        ("EFI/BOOT/hello.txt", hello),
        ("EFI/BOOT/a long name.bin", &[0x5a; 3000]),
    ];
    let img = build(
        &files,
        &ImageOptions {
            table: PartitionTable::Gpt,
            label: "ESP".into(),
            ..ImageOptions::default()
        },
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("disk-image-{qemu}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("esp.img");
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::write(&disk, &img.bytes).unwrap();
    if Path::new(OVMF_VARS).exists() {
        std::fs::copy(OVMF_VARS, &vars).unwrap();
    }

    let started = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-m", "512", "-nographic", "-nic", "none"])
        .args(args(&vars))
        .arg("-drive")
        .arg(format!("if=none,id=hd0,format=raw,file={}", disk.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {qemu}: {e}"));
    // The shell powers QEMU off at the script's end; the deadline only catches a hang.
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.wait();
    let elapsed = started.elapsed();
    let raw = String::from_utf8_lossy(&reader.join().unwrap()).replace('\r', "");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        elapsed < DEADLINE,
        "{qemu}: EDK2 did not finish in {DEADLINE:?}:\n{raw}"
    );
    eprintln!(
        "{qemu}: EDK2 read the ESP in {:.1} s",
        elapsed.as_secs_f64()
    );

    // The GPT device path EDK2 built: partition 1, our GUID, start 0x800, size in sectors.
    let ids = img.gpt.unwrap();
    let node = format!(
        "HD(1,GPT,{},0x{:X},0x{:X})",
        ids.partition_guid,
        PARTITION_START_LBA,
        img.partition_size / SECTOR
    );
    assert!(raw.contains(&node), "no `{node}` in:\n{raw}");
    let begin = raw
        .find("DOMFORGE-ESP-BEGIN")
        .unwrap_or_else(|| panic!("startup.nsh did not run:\n{raw}"));
    let end = raw[begin..].find("DOMFORGE-ESP-END").map(|e| begin + e);
    let body = &raw[begin..end.unwrap_or_else(|| panic!("script cut short:\n{raw}"))];
    assert!(body.contains("hello from a domforge ESP"), "{body}");
    assert!(body.contains("a long name.bin"), "{body}");
    assert!(body.contains("3,000") || body.contains("3000"), "{body}");
    assert!(body.contains("01/01/1980"), "{body}");
}
