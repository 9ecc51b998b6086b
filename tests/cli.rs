//! The `domforge` binary as a person uses it: exit codes, rustc-style locations, JSON for machines.

use std::process::Command;

fn domforge(args: &[&str]) -> (i32, String, String) {
    test_support::run_quiet(
        env!("CARGO_BIN_EXE_domforge"),
        env!("CARGO_MANIFEST_DIR"),
        args,
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

/// A temporary directory for files a test writes.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("domforge-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `check --json`: exactly one JSON document on stdout, and one summary line on stderr with the
/// real error count (not "0 errors").
fn check_json(path: &str) -> (serde_json::Value, String) {
    let (code, out, err) = domforge(&["check", "--json", path]);
    assert_eq!(code, 1, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {out:?}"));
    assert_eq!(v["ok"], false);
    (v, err)
}

#[test]
fn check_json_failure_summary_counts_the_errors() {
    let (v, err) = check_json("tests/bad-manifests/unknown-key.toml");
    assert_eq!(v["diagnostics"].as_array().unwrap().len(), 1);
    assert_eq!(
        err,
        "error: tests/bad-manifests/unknown-key.toml failed validation with 1 error\n"
    );
}

#[test]
fn check_json_carries_every_label_of_a_diagnostic() {
    // device-twice.toml gives /pl031@9010000 to `app` (line 14) and `two` (line 21).
    let (v, _) = check_json("tests/bad-manifests/device-twice.toml");
    let d = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["severity"] == "error")
        .unwrap();
    assert_eq!(d["code"], "E0210");
    let labels = d["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 2, "{d}");
    assert_eq!(labels[0]["primary"], true);
    assert_eq!(labels[0]["line"], 21);
    assert_eq!(labels[0]["message"], "claimed again here");
    assert_eq!(labels[1]["primary"], false);
    assert_eq!(labels[1]["line"], 14);
    assert_eq!(labels[1]["column"], 16);
    assert_eq!(labels[1]["text"], "\"/pl031@9010000\"");
    assert_eq!(labels[1]["message"], "first claimed here");
    assert_eq!(d["location"], labels[0]);
}

#[test]
fn check_json_is_json_when_the_manifest_cannot_be_read() {
    let (code, out, err) = domforge(&["check", "--json", "tests/no-such-manifest.toml"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["ok"], false);
    assert_eq!(v["diagnostics"], serde_json::json!([]));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot read manifest tests/no-such-manifest.toml: "),
        "{v}"
    );
    assert!(err.starts_with("error: cannot read manifest"), "{err}");
}

#[test]
fn a_binary_file_given_as_the_manifest_is_named_for_what_it_is() {
    let dir = scratch("binary-manifest");
    // A DTB compiled by dtc (the independent reference for what a DTB is), and the arm64 Image
    // fixture: neither is text, and the arm64 Image is valid UTF-8 (ASCII and NUL bytes).
    let dts = dir.join("t.dts");
    std::fs::write(&dts, "/dts-v1/;\n/ { model = \"t\"; };\n").unwrap();
    let dtb = dir.join("board.dtb");
    let ok = Command::new("dtc")
        .args(["-I", "dts", "-O", "dtb", "-o"])
        .arg(&dtb)
        .arg(&dts)
        .status()
        .is_ok_and(|s| s.success());
    let mut cases = vec![(
        "tests/bad-manifests/fixtures/Image".to_string(),
        "an arm64 Image (a Linux or Xen kernel)",
    )];
    if ok {
        cases.push((dtb.display().to_string(), "a device tree blob (DTB)"));
    } else {
        eprintln!("SKIPPED the DTB case: dtc (device-tree-compiler) is not installed");
    }
    for (path, what) in cases {
        let (code, _, err) = domforge(&["check", &path]);
        assert_eq!(code, 1);
        assert!(
            err.starts_with(&format!(
                "error[E0019]: the manifest is not text: this is {what}\n --> {path}:1:1\n"
            )),
            "{err}"
        );
        assert!(
            err.contains("= help: give the manifest (a .toml file) here; kernels, ramdisks and DTBs are named inside it"),
            "{err}"
        );
        let (v, err) = check_json(&path);
        let d = &v["diagnostics"][0];
        assert_eq!(d["code"], "E0019");
        assert_eq!(
            d["message"],
            format!("the manifest is not text: this is {what}")
        );
        assert_eq!(d["location"]["line"], 1);
        assert_eq!(
            err,
            format!("error: {path} failed validation with 1 error\n")
        );
    }
}

#[test]
fn a_manifest_with_a_latin1_byte_points_at_it() {
    let dir = scratch("latin1");
    let path = dir.join("m.toml");
    // "é" in Latin-1 is the single byte 0xE9, offset 14 = after "[system]\n# caf".
    std::fs::write(&path, b"[system]\n# caf\xe9\nname = \"x\"\n").unwrap();
    let path = path.display().to_string();
    let (code, _, err) = domforge(&["check", &path]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "error[E0019]: the manifest is not UTF-8 text: byte 0xe9 at offset 14 is not UTF-8\n --> {path}:2:6\n"
        )),
        "{err}"
    );
    let (v, _) = check_json(&path);
    assert_eq!(v["diagnostics"][0]["location"]["line"], 2);
    assert_eq!(v["diagnostics"][0]["location"]["column"], 6);
    assert_eq!(
        v["diagnostics"][0]["help"],
        "TOML files are UTF-8: save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
    );
}

#[test]
fn inspect_refuses_a_cut_image_with_the_size_its_header_promises() {
    // fixtures/Image-cut: 4096 bytes of an EFI-stub Image whose PE header places `.text` at
    // 0x10000 for 0x1000000 bytes (see tests/bad-manifests/fixtures/README.md).
    let path = "tests/bad-manifests/fixtures/Image-cut";
    let (code, out, err) = domforge(&["inspect", path]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        err,
        format!(
            "error: {path}: an arm64 Image cut short or damaged: its PE header places section `.text` up to byte 16842752, the file has 4096\n"
        )
    );
    let (code, out, _) = domforge(&["inspect", "--json", path]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert!(
        v["error"].as_str().unwrap().contains("the file has 4096"),
        "{v}"
    );
    // The whole fixture is described as usual.
    let (code, out, err) = domforge(&["inspect", "tests/bad-manifests/fixtures/Image"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("format:       arm64 Image"), "{out}");
}

#[test]
fn kernel_truncated_json_names_the_broken_promise() {
    let (v, _) = check_json("tests/bad-manifests/kernel-truncated.toml");
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "E0251");
    assert_eq!(
        d["message"],
        "kernel of `app` `fixtures/Image-cut` is an arm64 Image cut short or damaged"
    );
    assert_eq!(d["location"]["line"], 13);
    assert_eq!(
        d["location"]["message"],
        "its PE header places section `.text` up to byte 16842752, the file has 4096"
    );
}

/// Issue 15's defects, in `--json` form: the code, the primary line, the message and the hint each
/// fixture's `# expect` line promises for the text form, exactly.
#[test]
fn issue_15_messages_in_json() {
    let cases: &[(&str, &str, u64, &str, Option<&str>)] = &[
        (
            "passthrough-intc",
            "E0232",
            14,
            "`/intc@8000000` belongs to Xen",
            Some("pass another device; Xen needs this one itself"),
        ),
        (
            "memory-without-unit",
            "E0011",
            12,
            "domain memory must be at least 1 MiB, a whole number of 4 KiB pages",
            Some("a bare number is bytes, not MiB as in xl.cfg: did you mean \"128M\"?"),
        ),
        (
            "xl-cpus",
            "E0002",
            14,
            "unknown key `cpus`",
            Some(
                "xl's `cpus` pins vCPUs to physical CPUs; here that is `vcpu_affinity`, one cpu list per vCPU: `cpus = \"1\"` becomes `vcpu_affinity = [\"1\"]`",
            ),
        ),
        (
            "domain-single-table",
            "E0005",
            9,
            "wrong type: `[domain]` is one table, but `domain` is an array of tables",
            Some("write `[[domain]]`: each `[[domain]]` header starts one entry"),
        ),
        (
            "passthrough-not-a-list",
            "E0005",
            14,
            "wrong type: `passthrough` takes a list, not a string",
            Some("a list, even of one: write `[\"/pl031@9010000\"]`"),
        ),
        (
            "key-of-another-table",
            "E0002",
            14,
            "unknown key `xen_cmdline`",
            Some("`xen_cmdline` is a key of `[system]`, not of this table; move it there"),
        ),
        (
            "no-system-table",
            "E0004",
            1,
            "missing required key `system`",
            Some(
                "`system` is a table: add `[system]` with `name` and `board`; see docs/manifest.md",
            ),
        ),
        (
            "memory-just-over",
            "E0203",
            13,
            "the system needs 2112016 KiB but board `qemu-virt-arm64` has 2 GiB of usable RAM",
            Some("free 14864 KiB by shrinking domains"),
        ),
        (
            "shm-unknown-borrower",
            "E0233",
            27,
            "no domain is named `raeder`",
            Some("did you mean `reader`?"),
        ),
        (
            "size-fraction",
            "E0013",
            14,
            "invalid size: `1.5G`: fractions are not accepted; write \"1536M\"",
            Some("units are binary: K = 1024, M = 1024 K, G = 1024 M"),
        ),
        (
            "kernel-missing",
            "E0216",
            13,
            "kernel of `app` `fixtures/nope` cannot be used: no file at tests/bad-manifests/fixtures/nope",
            Some(
                "paths are relative to the manifest's directory; the other sources are `debian:kernel`, `debian:xen`, `builtin:probe` and `builtin:xen-static-memory` (docs/manifest.md, \"Artifact sources\")",
            ),
        ),
        (
            "kernel-truncated",
            "E0251",
            13,
            "kernel of `app` `fixtures/Image-cut` is an arm64 Image cut short or damaged",
            Some(
                "the file is not the whole image (an interrupted download or copy?): fetch, build or copy it again",
            ),
        ),
    ];
    for (name, code, line, message, help) in cases {
        let path = format!("tests/bad-manifests/{name}.toml");
        let (v, err) = check_json(&path);
        let errors: Vec<&serde_json::Value> = v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["severity"] == "error")
            .collect();
        assert_eq!(errors.len(), 1, "{name}: {v}");
        let d = errors[0];
        assert_eq!(d["code"], *code, "{name}");
        assert_eq!(d["location"]["line"], *line, "{name}");
        assert_eq!(d["message"], *message, "{name}");
        assert_eq!(d["help"].as_str(), *help, "{name}");
        assert_eq!(
            err,
            format!("error: {path} failed validation with 1 error\n")
        );
    }
}

#[test]
fn a_dependency_cycle_in_json_carries_each_edge() {
    // dependency-cycle.toml: `app` depends on `two` (line 14), `two` on `app` (line 20).
    let (v, _) = check_json("tests/bad-manifests/dependency-cycle.toml");
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "E0224");
    assert_eq!(
        d["message"],
        "`depends_on` forms a cycle: app -> two -> app"
    );
    let labels: Vec<(u64, &str, &str)> = d["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["line"].as_u64().unwrap(),
                l["text"].as_str().unwrap(),
                l["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        labels,
        [
            (20, "\"app\"", "`two` depends on `app`"),
            (14, "\"two\"", "`app` depends on `two`"),
        ]
    );
    assert_eq!(
        d["help"],
        "remove one edge of the cycle, e.g. `\"app\"` from the `depends_on` of `two`"
    );
}

#[test]
fn test_refuses_a_domain_without_a_console_before_booting() {
    let dir = scratch("console-none");
    let image =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-manifests/fixtures/Image");
    let manifest = dir.join("silent.toml");
    std::fs::write(
        &manifest,
        format!(
            "[system]\nname = \"silent\"\nboard = \"qemu-virt-arm64\"\n\n[[domain]]\nname = \"app\"\nkind = \"arm64\"\nmemory = \"128M\"\nkernel = \"{}\"\nconsole = \"none\"\n",
            image.display()
        ),
    )
    .unwrap();
    let path = manifest.display().to_string();
    // `check` accepts the system: only observing it is impossible.
    let (code, _, err) = domforge(&["check", &path]);
    assert_eq!(code, 0, "{err}");
    let started = std::time::Instant::now();
    let (code, _, err) = domforge(&["test", &path]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "error[E0252]: domain `app` has no console, so `domforge test` and `domforge run` can never hear from it\n  --> {path}:10:11\n"
        )),
        "{err}"
    );
    assert!(
        err.contains("^^^^^^ this domain prints nothing anywhere"),
        "{err}"
    );
    // Refused before QEMU: nowhere near the 180 s deadline.
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let (code, out, _) = domforge(&["test", "--json", &path]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["diagnostics"][0]["code"], "E0252");
    assert_eq!(v["diagnostics"][0]["location"]["line"], 10);
    let (code, _, err) = domforge(&["run", &path]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error[E0252]"), "{err}");
}

#[test]
fn every_json_command_prints_json_when_it_fails() {
    for args in [
        &["plan", "--json", "tests/bad-manifests/device-twice.toml"][..],
        &["inspect", "--json", "--board", "no-such-board"][..],
        &[
            "inspect",
            "--json",
            "tests/bad-manifests/fixtures/README.md",
        ][..],
        &["test", "--json", "tests/bad-manifests/unknown-key.toml"][..],
    ] {
        let (code, out, err) = domforge(args);
        assert_eq!(code, 1, "{args:?}");
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}): {out:?}"));
        assert_eq!(v["ok"], false, "{args:?}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one summary line: {err}");
    }
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
