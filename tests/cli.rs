//! The `domforge` binary as a person uses it: exit codes, rustc-style locations, JSON for machines.

use std::process::Command;

fn domforge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_domforge"))
        .args(args)
        .arg("--quiet")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run domforge");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_points_at_file_line_and_column() {
    let (code, _, err) = domforge(&["check", "tests/bad-manifests/too-many-vcpus.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("error[E0206]: domain `app` asks for 8 vCPUs; the board has 2 CPUs"),
        "{err}"
    );
    assert!(
        err.contains("--> tests/bad-manifests/too-many-vcpus.toml:14:9"),
        "{err}"
    );
    assert!(err.contains("14 | vcpus = 8"), "{err}");
    assert!(err.contains("^ too many vCPUs"), "{err}");
}

#[test]
fn check_json_carries_code_and_location() {
    let (code, out, _) = domforge(&["check", "--json", "tests/bad-manifests/unknown-key.toml"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["ok"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "E0002");
    assert_eq!(d["location"]["line"], 12);
    assert_eq!(d["location"]["text"], "memroy");
    assert_eq!(d["help"], "did you mean `memory`?");
}

#[test]
fn compile_then_inspect_round_trips_the_blob() {
    let dir = std::env::temp_dir().join(format!("domforge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let blob = dir.join("sys.blob");
    let (code, _, err) = domforge(&[
        "compile",
        "examples/qemu-arm64.toml",
        "-o",
        blob.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = domforge(&["inspect", "--json", blob.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "boot-blob");
    let names: Vec<&str> = v["config"]["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app-1", "app-2", "rtc-driver"]);
    // A flipped byte is refused with the reason, not a panic.
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let (code, _, err) = domforge(&["inspect", blob.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("checksum mismatch"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plan_is_deterministic() {
    let (c1, a, e1) = domforge(&["plan", "--json", "examples/qemu-arm64.toml"]);
    let (c2, b, _) = domforge(&["plan", "--json", "examples/qemu-arm64.toml"]);
    assert_eq!((c1, c2), (0, 0), "{e1}");
    assert_eq!(a, b);
}

/// The lock commands as CI and a person use them, offline against the shared cache (skipped when
/// it lacks Debian's arm64 Xen 4.17): `--locked` without a lock fails and says what to run,
/// `update` writes it and lists what it pinned, a second `update` reports it up to date, and
/// `--locked check` then passes.
#[test]
fn lock_commands() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(
        &manifest,
        "[system]\nname = \"lock-cli\"\nboard = \"qemu-virt-arm64\"\nxen = \"4.17\"\n\n\
         [[domain]]\nname = \"g\"\nkind = \"arm64\"\nvcpus = 1\nmemory = \"128M\"\nkernel = \"Image\"\n",
    )
    .unwrap();
    // A tiny uncompressed arm64 Image header: magic "ARM\x64" at 56.
    let mut image = vec![0u8; 4096];
    image[56..60].copy_from_slice(b"ARM\x64");
    std::fs::write(dir.path().join("Image"), &image).unwrap();
    let m = manifest.to_str().unwrap();
    let lock = dir.path().join("m.toml.lock");

    let (code, _, err) = domforge(&["--offline", "--locked", "check", m]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--locked"), "{err}");
    assert!(err.contains(&format!("domforge update {m}")), "{err}");
    assert!(!lock.exists());

    let (code, out, err) = domforge(&["--offline", "update", m]);
    if code != 0 && err.contains("not in the cache") {
        eprintln!("SKIPPED: Debian's arm64 Xen 4.17 is not cached: {err}");
        return;
    }
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("+ debian:xen (arm64, Xen 4.17): xen-hypervisor-4.17-arm64"),
        "{out}"
    );
    assert!(lock.is_file());
    let (code, out, err) = domforge(&["--offline", "update", m]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("up to date"), "{out}");
    let (code, out, err) = domforge(&["--offline", "--locked", "check", m]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok"), "{out}");
}
