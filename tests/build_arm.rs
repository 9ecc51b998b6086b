//! `domforge build` for the built-in ARM64 example, checked against the bindings with independent
//! tools — never against a blob domforge produced earlier.
//!
//! - `dtc -I dtb -O dts` (device-tree-compiler) must accept the host DTB and every fragment;
//! - `fdtget` (libfdt, also from device-tree-compiler) reads the properties back, and they are compared
//!   with what Xen's `docs/misc/arm/device-tree/booting.txt` and `passthrough.txt` require: `/chosen`
//!   with 2/2 cells and `xen,xen-bootargs`; one `compatible = "xen,domain"` node per domain with
//!   `memory` as a 64-bit KiB count, `cpus`, `vpl011`; module nodes whose `reg` is the plan's address
//!   and the *size of the file on disk*; `xen,passthrough` on the host device; a fragment with
//!   `/passthrough` (`simple-bus`, `ranges`), `xen,reg` = the board DTB's own `reg` (read with fdtget
//!   from QEMU's dump) plus the guest address, `xen,path`, the board's `interrupts` and
//!   `interrupt-parent = <65000>` (GUEST_PHANDLE_GIC, xen/include/public/device_tree_defs.h);
//! - `sha256sum -c SHA256SUMS` passes;
//! - the QEMU command line loads every module at the address its DTB node names;
//! - building twice (into two directories, and again into the first) gives byte-identical files.
//!
//! Prerequisites: QEMU (for the board's `dumpdtb`), dtc/fdtget, and the Debian packages the example
//! names (cached under `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/`). When one is missing the tests
//! skip with the reason printed, except in CI (`CI=true`), where that is a failure.

use firmware_config::plan::{ModuleKind, SystemPlan};
use pipeline::{self, Loaded, Options, PipelineError};
use pipeline::{BuildOutput, build};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Built {
    loaded: Loaded,
    plan: SystemPlan,
    first: BuildOutput,
    second_dir: PathBuf,
    board_dtb: PathBuf,
}

enum Setup {
    Ready(Box<Built>),
    Skipped(String),
    Broken(String),
}

fn tool_present(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        for tool in ["dtc", "fdtget", "sha256sum"] {
            if !tool_present(tool) {
                return Setup::Skipped(format!(
                    "`{tool}` is not installed (apt-get install device-tree-compiler coreutils)"
                ));
            }
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/qemu-arm64.toml");
        let mut opts = match Options::from_env() {
            Ok(o) => o,
            Err(e) => return Setup::Broken(e.to_string()),
        };
        opts.quiet = true;
        let loaded = match pipeline::load(&manifest, &opts) {
            Ok(l) => l,
            Err(PipelineError::Other(msg)) => return Setup::Skipped(msg),
            Err(e) => return Setup::Broken(format!("{e:?}")),
        };
        let plan = match loaded.plan() {
            Ok((p, _)) => p,
            Err(e) => return Setup::Broken(format!("{e:?}")),
        };
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_arm");
        let (a, b) = (tmp.join("a"), tmp.join("b"));
        let first = match build(&loaded, &plan, &a, true) {
            Ok(o) => o,
            Err(e) => return Setup::Broken(format!("first build: {e}")),
        };
        if let Err(e) = build(&loaded, &plan, &b, true) {
            return Setup::Broken(format!("second build: {e}"));
        }
        let board_dtb = tmp.join("board.dtb");
        let Some(bytes) = &loaded.board_dtb else {
            return Setup::Broken("the qemu-virt-arm64 board has no DTB".into());
        };
        if let Err(e) = std::fs::write(&board_dtb, bytes) {
            return Setup::Broken(format!("{}: {e}", board_dtb.display()));
        }
        Setup::Ready(Box::new(Built {
            loaded,
            plan,
            first,
            second_dir: b,
            board_dtb,
        }))
    })
}

/// The build, or `None` after printing why the test is skipped (a failure in CI).
fn built() -> Option<&'static Built> {
    match setup() {
        Setup::Ready(b) => Some(b),
        Setup::Skipped(why) => {
            assert!(!test_support::strict(), "prerequisite missing in CI: {why}");
            eprintln!("SKIPPED: {why}");
            None
        }
        Setup::Broken(why) => panic!("{why}"),
    }
}

fn run(cmd: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `fdtget -t <ty> FILE NODE PROP`.
fn fdtget(file: &Path, ty: &str, node: &str, prop: &str) -> String {
    let f = file.display().to_string();
    run("fdtget", &["-t", ty, &f, node, prop], Path::new("."))
}

/// Property names of a node (`fdtget -p`).
fn props(file: &Path, node: &str) -> Vec<String> {
    let f = file.display().to_string();
    run("fdtget", &["-p", &f, node], Path::new("."))
        .lines()
        .map(str::to_string)
        .collect()
}

/// Sub-node names of a node (`fdtget -l`).
fn subnodes(file: &Path, node: &str) -> Vec<String> {
    let f = file.display().to_string();
    run("fdtget", &["-l", &f, node], Path::new("."))
        .lines()
        .map(str::to_string)
        .collect()
}

/// `fdtget -t x` output as numbers.
fn hex_cells(s: &str) -> Vec<u64> {
    s.split_whitespace()
        .map(|w| u64::from_str_radix(w, 16).unwrap_or_else(|e| panic!("{w}: {e}")))
        .collect()
}

fn pair(hi: u64, lo: u64) -> u64 {
    (hi << 32) | lo
}

#[test]
fn dtc_accepts_every_generated_blob() {
    let Some(b) = built() else { return };
    let dir = &b.first.dir;
    let mut blobs = vec![dir.join("host.dtb")];
    for d in &b.plan.domains {
        if d.passthrough_dtb.is_some() {
            blobs.push(dir.join(format!("passthrough-{}.dtb", d.name)));
        }
    }
    assert_eq!(blobs.len(), 2, "the example has one driver domain");
    for blob in &blobs {
        let f = blob.display().to_string();
        let dts = run("dtc", &["-q", "-I", "dtb", "-O", "dts", &f], dir);
        assert!(dts.starts_with("/dts-v1/;"), "{f}");
        // The DTS files written for review must compile back with dtc too.
        let text = blob.with_extension("dts").display().to_string();
        run(
            "dtc",
            &["-q", "-I", "dts", "-O", "dtb", "-o", "/dev/null", &text],
            dir,
        );
    }
}

#[test]
fn chosen_follows_booting_txt() {
    let Some(b) = built() else { return };
    let host = b.first.dir.join("host.dtb");
    assert_eq!(fdtget(&host, "u", "/chosen", "#address-cells"), "2");
    assert_eq!(fdtget(&host, "u", "/chosen", "#size-cells"), "2");
    assert_eq!(
        fdtget(&host, "s", "/chosen", "xen,xen-bootargs"),
        b.plan.xen_cmdline
    );
    assert!(b.plan.xen_cmdline.contains("dtuart=/pl011@9000000"));
    // No dom0 in this example.
    assert!(!props(&host, "/chosen").contains(&"xen,dom0-bootargs".to_string()));

    // The manifest's domains, by name, with the sizes the manifest text states.
    let expected: BTreeMap<&str, (u64, u32)> = [
        ("app-1", (256 * 1024, 2)),
        ("app-2", (192 * 1024, 1)),
        ("rtc-driver", (128 * 1024, 1)),
    ]
    .into_iter()
    .collect();
    let nodes = subnodes(&host, "/chosen");
    for (name, (kib, cpus)) in &expected {
        assert!(
            nodes.contains(&name.to_string()),
            "/chosen/{name} in {nodes:?}"
        );
        let path = format!("/chosen/{name}");
        assert_eq!(fdtget(&host, "s", &path, "compatible"), "xen,domain");
        assert_eq!(fdtget(&host, "u", &path, "#address-cells"), "2");
        assert_eq!(fdtget(&host, "u", &path, "#size-cells"), "2");
        // booting.txt: memory is a 64-bit KiB count: two cells, high word first.
        let mem = hex_cells(&fdtget(&host, "x", &path, "memory"));
        assert_eq!(mem.len(), 2, "memory must be <hi lo>");
        assert_eq!(pair(mem[0], mem[1]), *kib, "{name} memory");
        assert_eq!(fdtget(&host, "u", &path, "cpus"), cpus.to_string());
        let p = props(&host, &path);
        assert!(p.contains(&"vpl011".to_string()), "{name}: vpl011 in {p:?}");
        // No xenstore domain: xen,enhanced must be absent (Xen panics otherwise on 4.17).
        assert!(!p.contains(&"xen,enhanced".to_string()), "{name}: {p:?}");
    }
}

#[test]
fn module_nodes_name_the_files_at_the_plan_addresses() {
    let Some(b) = built() else { return };
    let dir = &b.first.dir;
    let host = dir.join("host.dtb");
    let by_id: BTreeMap<&str, _> = b.first.modules.iter().map(|m| (m.id.as_str(), m)).collect();
    for d in &b.plan.domains {
        let path = format!("/chosen/{}", d.name);
        let mut wanted: Vec<(&str, &str)> = vec![("multiboot,kernel", d.kernel.as_str())];
        if let Some(r) = &d.ramdisk {
            wanted.push(("multiboot,ramdisk", r));
        }
        if let Some(p) = &d.passthrough_dtb {
            wanted.push(("multiboot,device-tree", p));
        }
        let children = subnodes(&host, &path);
        let modules: Vec<&String> = children
            .iter()
            .filter(|c| c.starts_with("module@"))
            .collect();
        assert_eq!(modules.len(), wanted.len(), "{path}: {children:?}");
        for (kind, id) in wanted {
            let built = by_id[id];
            let plan_addr = b
                .plan
                .module(id)
                .and_then(|m| m.load)
                .map(|r| r.base)
                .unwrap_or_else(|| panic!("{id} has no planned address"));
            let node = format!("{path}/module@{plan_addr:x}");
            let compat = fdtget(&host, "s", &node, "compatible");
            assert_eq!(compat, format!("{kind} multiboot,module"), "{node}");
            let reg = hex_cells(&fdtget(&host, "x", &node, "reg"));
            assert_eq!(
                reg.len(),
                4,
                "{node}: reg is <addr-hi addr-lo size-hi size-lo>"
            );
            let on_disk = std::fs::metadata(&built.path)
                .unwrap_or_else(|e| panic!("{}: {e}", built.path.display()))
                .len();
            assert_eq!(pair(reg[0], reg[1]), plan_addr, "{node} address");
            assert_eq!(pair(reg[2], reg[3]), on_disk, "{node} size = file size");
            if kind == "multiboot,kernel" {
                assert_eq!(fdtget(&host, "s", &node, "bootargs"), d.cmdline);
                assert!(d.cmdline.contains(&format!("domforge.name={}", d.name)));
            }
        }
    }
    // Sharing: the three domains use one kernel and one ramdisk module (one copy loaded).
    let kernels = b
        .first
        .modules
        .iter()
        .filter(|m| m.kind == ModuleKind::Kernel)
        .count();
    assert_eq!(kernels, 1);
}

#[test]
fn passthrough_marks_and_fragment_follow_passthrough_txt() {
    let Some(b) = built() else { return };
    let dir = &b.first.dir;
    let host = dir.join("host.dtb");
    assert!(props(&host, "/pl031@9010000").contains(&"xen,passthrough".to_string()));
    assert!(!props(&host, "/pl011@9000000").contains(&"xen,passthrough".to_string()));

    let frag = dir.join("passthrough-rtc-driver.dtb");
    assert_eq!(
        fdtget(&frag, "s", "/passthrough", "compatible"),
        "simple-bus"
    );
    assert!(props(&frag, "/passthrough").contains(&"ranges".to_string()));
    let pcells: u64 = fdtget(&frag, "u", "/passthrough", "#address-cells")
        .parse()
        .unwrap_or(0);
    let scells: u64 = fdtget(&frag, "u", "/passthrough", "#size-cells")
        .parse()
        .unwrap_or(0);
    assert_eq!((pcells, scells), (2, 2));
    let dev = "/passthrough/pl031@9010000";
    // xen,reg = <host size guest>: host range from QEMU's own DTB, guest = host (not relocated).
    let board_reg = hex_cells(&fdtget(&b.board_dtb, "x", "/pl031@9010000", "reg"));
    assert_eq!(board_reg.len(), 4);
    let (host_base, size) = (
        pair(board_reg[0], board_reg[1]),
        pair(board_reg[2], board_reg[3]),
    );
    let xen_reg = hex_cells(&fdtget(&frag, "x", dev, "xen,reg"));
    assert_eq!(
        xen_reg,
        vec![
            host_base >> 32,
            host_base & 0xffff_ffff,
            size >> 32,
            size & 0xffff_ffff,
            host_base >> 32,
            host_base & 0xffff_ffff
        ]
    );
    assert_eq!(host_base % 0x1000, 0, "xen,reg must be page aligned");
    assert_eq!(fdtget(&frag, "s", dev, "xen,path"), "/pl031@9010000");
    assert_eq!(
        fdtget(&frag, "u", dev, "interrupts"),
        fdtget(&b.board_dtb, "u", "/pl031@9010000", "interrupts")
    );
    assert_eq!(fdtget(&frag, "u", dev, "interrupt-parent"), "65000");
    assert!(props(&frag, dev).contains(&"xen,force-assign-without-iommu".to_string()));
    // The guest sees the same compatible as the host node.
    assert_eq!(
        fdtget(&frag, "s", dev, "compatible"),
        fdtget(&b.board_dtb, "s", "/pl031@9010000", "compatible")
    );
}

#[test]
fn digests_verify_with_sha256sum() {
    let Some(b) = built() else { return };
    let out = run("sha256sum", &["-c", "SHA256SUMS"], &b.first.dir);
    let ok: Vec<&str> = out.lines().filter_map(|l| l.strip_suffix(": OK")).collect();
    // Every file of the bundle but SHA256SUMS itself, as `find` sees the directory.
    let find = run(
        "find",
        &[".", "-type", "f", "-printf", "%P\\n"],
        &b.first.dir,
    );
    let mut files: Vec<&str> = find.lines().filter(|f| *f != "SHA256SUMS").collect();
    files.sort();
    let mut listed = ok.clone();
    listed.sort();
    assert_eq!(listed, files, "{out}");
    for must in [
        "host.dtb",
        "modules/xen",
        "boot.scr",
        "run-qemu.sh",
        "build.json",
    ] {
        assert!(ok.contains(&must), "{must} not in SHA256SUMS: {out}");
    }
}

#[test]
fn qemu_loads_each_module_where_the_dtb_says() {
    let Some(b) = built() else { return };
    let dir = &b.first.dir;
    let host = dir.join("host.dtb");
    let q = b
        .first
        .qemu(bundle::BootTarget::QemuDirect)
        .expect("a QEMU board gets a QEMU boot");
    assert_eq!(q.program, "qemu-system-aarch64");
    let args = &q.args;
    let after = |flag: &str| -> &str {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} missing in {args:?}"));
        &args[i + 1]
    };
    assert_eq!(Path::new(after("-kernel")), dir.join("modules/xen"));
    assert_eq!(Path::new(after("-dtb")), host);
    assert_eq!(after("-machine"), "virt,virtualization=on,gic-version=3");
    assert!(args.contains(&"-no-reboot".to_string()));
    // Every module node's address in the DTB has a loader device with the file of that size.
    let mut loaders: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for a in args.iter().filter(|a| a.starts_with("loader,")) {
        let mut file = None;
        let mut addr = None;
        for kv in a.trim_start_matches("loader,").split(',') {
            match kv.split_once('=') {
                Some(("file", f)) => file = Some(PathBuf::from(f)),
                Some(("addr", x)) => {
                    addr = u64::from_str_radix(x.trim_start_matches("0x"), 16).ok();
                }
                Some(("force-raw", v)) => assert_eq!(v, "on"),
                _ => panic!("unexpected loader option {kv}"),
            }
        }
        loaders.insert(addr.expect("addr"), file.expect("file"));
    }
    for d in &b.plan.domains {
        let path = format!("/chosen/{}", d.name);
        for m in subnodes(&host, &path)
            .iter()
            .filter(|c| c.starts_with("module@"))
        {
            let reg = hex_cells(&fdtget(&host, "x", &format!("{path}/{m}"), "reg"));
            let addr = pair(reg[0], reg[1]);
            let file = loaders
                .get(&addr)
                .unwrap_or_else(|| panic!("no loader at {addr:#x} for {path}/{m}"));
            let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            assert_eq!(len, pair(reg[2], reg[3]), "{}", file.display());
        }
    }
    // The script runs the same line from its own directory, and is valid sh.
    let script = std::fs::read_to_string(dir.join("run-qemu.sh")).expect("run-qemu.sh");
    run("sh", &["-n", "run-qemu.sh"], dir);
    assert!(script.contains("cd \"$(dirname \"$0\")\""));
    assert!(script.contains("-kernel modules/xen"));
    assert!(script.contains("-dtb host.dtb"));
    // The U-Boot script ends by starting Xen with the host DTB.
    let boot = std::fs::read_to_string(dir.join("boot.source")).expect("boot.source");
    assert!(
        boot.trim_end()
            .ends_with(&format!("booti {:#x} - 0x48000000", 0x4000_0000))
    );
    // boot.scr is domforge's own legacy image; U-Boot's mkimage must read it as a script image and
    // make the very same bytes from boot.source.
    if tool_present("mkimage") {
        let listed = run("mkimage", &["-l", "boot.scr"], dir);
        assert!(
            listed.contains("AArch64 Linux Script (uncompressed)"),
            "{listed}"
        );
        let theirs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_arm/mkimage-boot.scr");
        let out = Command::new("mkimage")
            .current_dir(dir)
            .env("SOURCE_DATE_EPOCH", "0")
            .args([
                "-A",
                "arm64",
                "-T",
                "script",
                "-C",
                "none",
                "-d",
                "boot.source",
            ])
            .arg(&theirs)
            .output()
            .expect("mkimage");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(dir.join("boot.scr")).expect("boot.scr"),
            std::fs::read(&theirs).expect("mkimage's boot.scr"),
            "boot.scr differs from mkimage's"
        );
    } else if test_support::strict() {
        panic!("mkimage (u-boot-tools) is needed in CI");
    }
    // The marker disk is a test fixture: `domforge test` attaches it, a build never has one.
    assert!(!dir.join("disk0.img").exists());
    let _ = &b.loaded;
}

fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("inside").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

#[test]
fn builds_are_byte_identical() {
    let Some(b) = built() else { return };
    let a = files(&b.first.dir);
    let second = files(&b.second_dir);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (k, v) in &a {
        assert!(
            second[k] == *v,
            "{} differs between two builds",
            k.display()
        );
    }
    // And rebuilding into the same directory changes nothing (a third directory, so the other tests
    // can keep reading the first one while this runs).
    let c = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_arm/c");
    let once = build(&b.loaded, &b.plan, &c, false).expect("build c");
    let before = files(&c);
    let twice = build(&b.loaded, &b.plan, &c, false).expect("rebuild c");
    assert_eq!(once.qemu_boots, twice.qemu_boots);
    assert!(
        before == files(&c),
        "a rebuild into the same directory changed files"
    );
    // Without --dts only the DTS files are missing.
    let mut without_dts: Vec<&PathBuf> = a
        .keys()
        .filter(|k| k.extension().is_none_or(|e| e != "dts"))
        .collect();
    without_dts.sort();
    assert_eq!(before.keys().collect::<Vec<_>>(), without_dts);
}

/// A kernel used by one domain only is stored gzip'd (Xen gunzips it, booting.txt "only gzip"),
/// still at the plan's address, and its `reg` size is the compressed file's size. `gzip -dc` (an
/// independent decompressor) must give back the original kernel byte for byte.
#[test]
fn a_kernel_with_one_user_is_gzipped_in_place() {
    let Some(b) = built() else { return };
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_arm/single");
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let manifest = tmp.join("single.toml");
    std::fs::write(
        &manifest,
        "[system]\nname = \"single\"\nboard = \"qemu-virt-arm64\"\nxen = \"4.17\"\n\n\
         [[domain]]\nname = \"solo\"\nkind = \"arm64\"\nvcpus = 1\nmemory = \"128M\"\n\
         kernel = \"debian:kernel\"\nramdisk = \"builtin:probe\"\n\
         cmdline = \"console=ttyAMA0 domforge.name=solo\"\n",
    )
    .expect("write manifest");
    let mut opts = Options::from_env().expect("options");
    opts.quiet = true;
    let loaded = pipeline::load(&manifest, &opts).expect("load");
    let (plan, _) = loaded.plan().expect("plan");
    let out = build(&loaded, &plan, &tmp.join("out"), false).expect("build");
    let kernel = out
        .modules
        .iter()
        .find(|m| m.kind == ModuleKind::Kernel)
        .expect("kernel module");
    assert!(kernel.gzip, "an uncompressed Image with one user is gzip'd");
    assert!(kernel.path.extension().is_some_and(|e| e == "gz"));
    let planned = plan.module(&kernel.id).expect("planned");
    assert_eq!(Some(kernel.addr), planned.load.map(|r| r.base));
    let original_size = planned.size.expect("size");
    assert!(kernel.size < original_size);
    let original = b
        .loaded
        .artifacts
        .get("debian:kernel")
        .and_then(|r| r.as_ref().ok())
        .map(|f| PathBuf::from(&f.path))
        .expect("kernel path");
    let f = kernel.path.display().to_string();
    let unpacked = Command::new("gzip")
        .args(["-dc", &f])
        .output()
        .expect("gzip -dc");
    assert!(unpacked.status.success());
    assert!(unpacked.stdout == std::fs::read(&original).expect("read kernel"));
    let host = out.host_dtb.clone();
    let node = format!("/chosen/solo/module@{:x}", kernel.addr);
    let reg = hex_cells(&fdtget(&host, "x", &node, "reg"));
    assert_eq!(pair(reg[2], reg[3]), kernel.size);
}

/// Scenario 7 (one dom0less domain, two built by domforge-init): Xen's `/chosen` names only the
/// dom0less one; the init-built driver domain's device is still marked `xen,passthrough` (so dom0
/// leaves it alone); dom0's ramdisk is the generated initramfs, whose `reg` is its file size and
/// whose contents GNU `cpio` lists: the static AArch64 `domforge-init` as `/init` (`readelf`: no
/// program interpreter), the boot blob, and the init-built domains' kernel, ramdisk and fragment
/// (`dtc` accepts it, `fdtget` finds the PL031 under `/passthrough`).
#[test]
fn mixed_builders_pack_init_built_domains_into_dom0() {
    if built().is_none() {
        return;
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build_arm/mixed");
    let _ = std::fs::remove_dir_all(&tmp);
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/7-mixed-builders-arm.toml");
    let mut opts = Options::from_env().expect("options");
    opts.quiet = true;
    let loaded = pipeline::load(&manifest, &opts).expect("load");
    let (plan, _) = loaded.plan().expect("plan");
    let out = build(&loaded, &plan, &tmp.join("out"), false).expect("build");
    let host = out.host_dtb.clone();

    let domains: Vec<String> = subnodes(&host, "/chosen")
        .into_iter()
        .filter(|n| {
            let node = format!("/chosen/{n}");
            props(&host, &node).contains(&"compatible".to_string())
                && fdtget(&host, "s", &node, "compatible") == "xen,domain"
        })
        .collect();
    assert_eq!(domains, ["boot-app"], "only the dom0less domain is Xen's");
    assert!(
        props(&host, "/pl031@9010000").contains(&"xen,passthrough".to_string()),
        "the init-built driver domain's device must be kept from dom0"
    );

    let initramfs = out
        .modules
        .iter()
        .find(|m| m.kind == ModuleKind::Dom0Ramdisk)
        .expect("dom0's generated initramfs is a boot module");
    let ramdisk_node = subnodes(&host, "/chosen")
        .into_iter()
        .map(|n| format!("/chosen/{n}"))
        .find(|node| {
            props(&host, node).contains(&"compatible".to_string())
                && fdtget(&host, "s", node, "compatible").contains("multiboot,ramdisk")
        })
        .expect("dom0's ramdisk module node");
    let reg = hex_cells(&fdtget(&host, "x", &ramdisk_node, "reg"));
    assert_eq!(pair(reg[0], reg[1]), initramfs.addr);
    assert_eq!(
        pair(reg[2], reg[3]),
        std::fs::metadata(&initramfs.path).expect("initramfs").len()
    );

    let unpacked = tmp.join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("dir");
    let archive = std::fs::File::open(&initramfs.path).expect("open initramfs");
    let status = Command::new("cpio")
        .args(["-i", "-d", "--quiet", "--no-absolute-filenames"])
        .current_dir(&unpacked)
        .stdin(archive)
        .status()
        .expect("cpio");
    assert!(status.success(), "GNU cpio cannot read dom0's initramfs");
    for f in [
        "init",
        "domforge/boot.blob",
        "domforge/modules/kernel-0",
        "domforge/modules/ramdisk-0",
        "domforge/modules/passthrough-rtc-driver",
    ] {
        assert!(
            unpacked.join(f).is_file(),
            "{f} missing from dom0's initramfs"
        );
    }
    let header = run("readelf", &["-h", "init"], &unpacked);
    assert!(header.contains("AArch64"), "{header}");
    let program = run("readelf", &["-l", "init"], &unpacked);
    assert!(
        !program.contains("INTERP"),
        "/init must be static: {program}"
    );
    let fragment = unpacked.join("domforge/modules/passthrough-rtc-driver");
    let f = fragment.display().to_string();
    run("dtc", &["-I", "dtb", "-O", "dts", &f], Path::new("."));
    assert!(subnodes(&fragment, "/passthrough").contains(&"pl031@9010000".to_string()));
    // The blob domforge-init will read names exactly those files.
    let blob = std::fs::read(unpacked.join("domforge/boot.blob")).expect("blob");
    let config = firmware_config::blob::decode(&blob).expect("blob decodes");
    let init_built: Vec<_> = config
        .domains
        .iter()
        .filter(|d| d.builder == firmware_config::blob::BootBuilder::Init)
        .map(|d| {
            (
                d.name.as_str(),
                d.passthrough_dtb.as_ref().map(|p| p.as_str()),
            )
        })
        .collect();
    assert_eq!(
        init_built,
        [
            ("app", None),
            (
                "rtc-driver",
                Some("/domforge/modules/passthrough-rtc-driver")
            )
        ]
    );
    assert_eq!(config.arm_gic, Some(firmware_config::blob::BootGic::V3));
}
