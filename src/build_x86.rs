//! `domforge build` for x86_64: Xen, dom0's kernel and a generated dom0 initramfs whose `/init` is
//! `domforge-init`, which builds the PVH guests at boot (upstream Xen has no dom0less on x86).
//!
//! | File | What |
//! |---|---|
//! | `modules/xen` | Xen as an ELF (Debian ships `xen.gz`; QEMU's multiboot loader cannot read gzip) |
//! | `modules/dom0-kernel` | dom0's kernel (a PV-capable bzImage, e.g. Debian's) |
//! | `modules/dom0-initramfs.cpio` | `images::dom0`: `/init` = static `domforge-init`, `/domforge/boot.blob`, the guests' kernels and ramdisks under `/domforge/modules/<id>`, Xen driver modules |
//! | `boot.blob` | the compiled manifest (also inside the initramfs), for `domforge inspect` |
//! | `run-qemu.sh` | `qemu-system-x86_64 … -kernel modules/xen -append "<Xen cmdline>" -initrd "<dom0 kernel> <dom0 cmdline>,<initramfs>"` ([`qemu_tests::command_x86`]) |
//! | `SHA256SUMS`, `build.json` | digests; [`BuildOutput`] with paths relative to the directory |
//!
//! Boot modules have no fixed address on x86: QEMU's multiboot loader (or GRUB) places them, so
//! [`BuiltModule::addr`] is 0 and `BuildOutput::host_dtb` is empty (x86 has no device tree).
//!
//! **Where `domforge-init` comes from** ([`find_domforge_init`], also for ARM builds). It must be a
//! static executable for the control domain's architecture ([`init_target`]:
//! `x86_64-unknown-linux-musl` or `aarch64-unknown-linux-musl`). In order: `$DOMFORGE_INIT_X86_64`
//! (or `$DOMFORGE_INIT`) / `$DOMFORGE_INIT_AARCH64`; when this `domforge` was built from a source
//! tree that is still there, `cargo build -p domforge-init --release --target <target>` into
//! `domforge-init/` inside this `domforge`'s target directory (a no-op when up to date; aarch64 links
//! with `rust-lld`); else a binary next to this `domforge` in a Cargo target directory
//! (`<target dir>/<target>/{release,debug}/domforge-init`).

use std::path::{Path, PathBuf};
use std::process::Command;

use firmware_config::board::Arch;
use firmware_config::plan::{self, ModuleKind, SystemPlan};
use images::dom0::Dom0Initramfs;
use qemu_tests::command_x86::x86_multiboot;

use crate::build::{
    BuildError, BuildOutput, BuiltModule, facts, io, read_source, sha256_hex, write,
};
use crate::pipeline::Loaded;

/// The Rust target `domforge-init` is built for on each architecture: static musl binaries, so the
/// control domain's initramfs needs no libc.
pub fn init_target(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-unknown-linux-musl",
        Arch::Arm64 => "aarch64-unknown-linux-musl",
    }
}

/// The variable naming a ready-made `domforge-init` for `arch` (`DOMFORGE_INIT` also works for
/// x86_64, as before ARM joined).
fn init_env(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "DOMFORGE_INIT_X86_64",
        Arch::Arm64 => "DOMFORGE_INIT_AARCH64",
    }
}

/// `lib/modules/<release>` of a Debian kernel package, from its `boot/vmlinuz-<release>`.
pub fn debian_modules_dir(kernel: &Path) -> Option<PathBuf> {
    let name = kernel.file_name()?.to_str()?;
    let release = name.strip_prefix("vmlinuz-")?;
    let root = kernel.parent()?.parent()?;
    let dir = root.join("lib/modules").join(release);
    dir.is_dir().then_some(dir)
}

/// Finds (or builds) the static `domforge-init` for `arch`; see the module docs for the order.
pub fn find_domforge_init(arch: Arch) -> Result<PathBuf, BuildError> {
    let target = init_target(arch);
    let given = std::env::var_os(init_env(arch)).or_else(|| {
        (arch == Arch::X86_64)
            .then(|| std::env::var_os("DOMFORGE_INIT"))
            .flatten()
    });
    if let Some(p) = given {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(BuildError::Tool(format!(
                "DOMFORGE_INIT={} is not a file",
                p.display()
            )))
        };
    }
    // <target>/<profile>/domforge (or <target>/<profile>/deps/<test binary>).
    let exe = std::env::current_exe().map_err(|e| BuildError::Tool(e.to_string()))?;
    let target_dir = exe
        .ancestors()
        .find(|a| a.join(target).is_dir() || a.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf);
    // From the source tree, let cargo decide whether the binary is up to date (a stale one would
    // read another boot blob format).
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    if source.join("domforge-init/Cargo.toml").is_file() {
        // Its own target directory: never waits on the lock of the cargo that may be running us.
        let target_dir = target_dir
            .unwrap_or_else(|| source.join("target"))
            .join("domforge-init");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(source)
            .args([
                "build",
                "-q",
                "-p",
                "domforge-init",
                "--release",
                "--target",
                target,
            ])
            .arg("--target-dir")
            .arg(&target_dir);
        if arch == Arch::Arm64 {
            // No aarch64 cross gcc needed: Rust's own LLD links a static musl binary
            // (shared/notes/crates.md).
            cargo.env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld");
        }
        let status = cargo
            .status()
            .map_err(|e| BuildError::Tool(format!("running cargo: {e}")))?;
        let p = target_dir.join(target).join("release/domforge-init");
        if status.success() && p.is_file() {
            return Ok(p);
        }
        return Err(BuildError::Tool(format!(
            "cargo build -p domforge-init --target {target} failed ({status}); is the target \
             installed (`rustup target add {target}`, which scripts/setup does)?"
        )));
    }
    if let Some(t) = target_dir {
        for profile in ["release", "debug"] {
            let p = t.join(target).join(profile).join("domforge-init");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(BuildError::Tool(format!(
        "no domforge-init found: set {} to a static {target} build of it",
        init_env(arch)
    )))
}

/// The boot blob of `plan` (the compiled manifest domforge-init reads), framed.
pub(crate) fn encode_boot_blob(plan: &SystemPlan) -> Result<Vec<u8>, BuildError> {
    plan::boot_config(plan)
        .map_err(|d| BuildError::Unsupported(d.message.clone()))
        .and_then(|c| {
            firmware_config::blob::encode(&c)
                .map_err(|e| BuildError::Tool(format!("encoding the boot blob: {e}")))
        })
}

/// The Xen drivers dom0 needs for domforge-init (privcmd, evtchn) from its kernel's own Debian
/// package; another kernel must have them built in (said on stderr, not an error).
pub(crate) fn add_dom0_xen_drivers(
    initramfs: &mut Dom0Initramfs,
    dom0_kernel: Option<&Path>,
) -> Result<(), BuildError> {
    match dom0_kernel.and_then(debian_modules_dir) {
        Some(mdir) => {
            initramfs
                .add_xen_drivers(&mdir)
                .map_err(|e| BuildError::Tool(format!("dom0's Xen drivers: {e}")))?;
        }
        None => eprintln!(
            "note: dom0's kernel is not from a Debian package with modules; it must have \
             xen-evtchn and xen-privcmd built in"
        ),
    }
    Ok(())
}

/// Builds an x86_64 `plan` into `out`. See the module docs.
pub fn build(loaded: &Loaded, plan: &SystemPlan, out: &Path) -> Result<BuildOutput, BuildError> {
    if plan.arch != Arch::X86_64 {
        return Err(BuildError::Unsupported(format!(
            "`{}` is not an x86_64 system",
            plan.name
        )));
    }
    let dom0 = plan.dom0.as_ref().ok_or_else(|| {
        BuildError::Unsupported(
            "an x86 system needs a dom0: it runs domforge-init, which builds the PVH guests \
             (upstream Xen has no dom0less on x86)"
                .into(),
        )
    })?;
    let machine = loaded.board.qemu.as_ref().ok_or_else(|| {
        BuildError::Unsupported(format!(
            "board `{}` has no [qemu] table; `build` boots through QEMU for now",
            loaded.board.name
        ))
    })?;
    if let Some(d) = plan
        .domains
        .iter()
        .find(|d| d.builder != firmware_config::manifest::Builder::Init)
    {
        return Err(BuildError::Unsupported(format!(
            "domain `{}` is to be built by Xen, which x86 Xen cannot do at boot; let domforge-init \
             build it (builder = \"init\")",
            d.name
        )));
    }
    if plan
        .modules
        .iter()
        .any(|m| m.kind == ModuleKind::Dom0Ramdisk)
    {
        return Err(BuildError::Unsupported(
            "a [dom0] ramdisk is not supported on x86: domforge generates dom0's initramfs \
             (domforge-init, the boot blob and the guests' images); remove `ramdisk` from [dom0]"
                .into(),
        ));
    }

    std::fs::create_dir_all(out).map_err(io(out))?;
    let dir = std::fs::canonicalize(out).map_err(io(out))?;
    let modules_dir = dir.join("modules");
    if modules_dir.is_dir() {
        std::fs::remove_dir_all(&modules_dir).map_err(io(&modules_dir))?;
    }
    std::fs::create_dir_all(&modules_dir).map_err(io(&modules_dir))?;

    let blob = encode_boot_blob(plan)?;
    write(&dir.join("boot.blob"), &blob)?;

    let init_path = find_domforge_init(Arch::X86_64)?;
    let init = std::fs::read(&init_path).map_err(io(&init_path))?;
    let mut initramfs = Dom0Initramfs::new(&init, &blob)
        .map_err(|e| BuildError::Tool(format!("{}: {e}", init_path.display())))?;

    let mut built: Vec<BuiltModule> = Vec::new();
    let mut record =
        |id: &str, kind: ModuleKind, rel: PathBuf, bytes: &[u8]| -> Result<(), BuildError> {
            write(&dir.join(&rel), bytes)?;
            built.push(BuiltModule {
                id: id.to_string(),
                kind,
                path: rel,
                addr: 0,
                size: bytes.len() as u64,
                sha256: sha256_hex(bytes),
                gzip: false,
            });
            Ok(())
        };
    let mut dom0_kernel_file = None;
    for m in &plan.modules {
        match m.kind {
            ModuleKind::Xen => {
                let bytes = read_source(loaded, m)?.0;
                if !images::formats::is_elf(&bytes) {
                    return Err(BuildError::Module {
                        id: m.id.clone(),
                        source_name: m.source.clone(),
                        reason: "QEMU's multiboot loader needs Xen as an ELF (gunzip xen.gz)"
                            .into(),
                    });
                }
                record(&m.id, m.kind, PathBuf::from("modules/xen"), &bytes)?;
            }
            ModuleKind::Dom0Kernel => {
                let bytes = read_source(loaded, m)?.0;
                dom0_kernel_file = Some(PathBuf::from(&facts(loaded, m)?.path));
                record(&m.id, m.kind, PathBuf::from("modules/dom0-kernel"), &bytes)?;
            }
            ModuleKind::Kernel | ModuleKind::Ramdisk => {
                let bytes = read_source(loaded, m)?.0;
                initramfs
                    .add_module(&m.id, bytes)
                    .map_err(|e| BuildError::Module {
                        id: m.id.clone(),
                        source_name: m.source.clone(),
                        reason: e.to_string(),
                    })?;
            }
            ModuleKind::HostDtb | ModuleKind::PassthroughDtb | ModuleKind::Dom0Ramdisk => {}
        }
    }
    add_dom0_xen_drivers(&mut initramfs, dom0_kernel_file.as_deref())?;
    let cpio = initramfs
        .to_cpio()
        .map_err(|e| BuildError::Tool(format!("dom0 initramfs: {e}")))?;
    record(
        "dom0-initramfs",
        ModuleKind::Dom0Ramdisk,
        PathBuf::from("modules/dom0-initramfs.cpio"),
        &cpio,
    )?;

    let path_of = |kind: ModuleKind| -> Result<PathBuf, BuildError> {
        built
            .iter()
            .find(|m| m.kind == kind)
            .map(|m| m.path.clone())
            .ok_or_else(|| BuildError::Unsupported(format!("the plan has no {kind:?} module")))
    };
    let (xen, kernel, rd) = (
        path_of(ModuleKind::Xen)?,
        path_of(ModuleKind::Dom0Kernel)?,
        path_of(ModuleKind::Dom0Ramdisk)?,
    );
    let qemu = |base: &Path| {
        x86_multiboot(
            machine,
            &base.join(&xen),
            &plan.xen_cmdline,
            &base.join(&kernel),
            &dom0.cmdline,
            &base.join(&rd),
        )
        .map_err(|e| BuildError::Unsupported(e.to_string()))
    };
    let qemu_rel = qemu(Path::new(""))?;
    let qemu_abs = qemu(&dir)?;
    let script = dir.join("run-qemu.sh");
    write(
        &script,
        qemu_rel
            .shell_script(&format!(
                "Boots `{}` (Xen {}, board {}) in QEMU: Xen by multiboot, dom0 runs domforge-init, which \
                 builds the PVH guests. Generated by `domforge build`.\nExtra arguments go to QEMU; \
                 quit with Ctrl-A X.",
                plan.name, plan.xen, plan.board
            ))
            .as_bytes(),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&script))?;
    }

    let mut sums = format!("{}  boot.blob\n", sha256_hex(&blob));
    for m in &built {
        sums.push_str(&format!("{}  {}\n", m.sha256, m.path.display()));
    }
    write(&dir.join("SHA256SUMS"), sums.as_bytes())?;

    let relative = BuildOutput {
        dir: PathBuf::from("."),
        host_dtb: PathBuf::new(),
        qemu: qemu_rel,
        modules: built.clone(),
        plan: plan.clone(),
    };
    let mut json = serde_json::to_string_pretty(&relative)
        .map_err(|e| BuildError::Tool(format!("encoding build.json: {e}")))?;
    json.push('\n');
    write(&dir.join("build.json"), json.as_bytes())?;

    // x86 has no device tree.
    Ok(BuildOutput::in_dir(
        dir,
        PathBuf::new(),
        qemu_abs,
        built,
        plan,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_modules_dir_follows_the_package_layout() {
        let t = tempdir();
        let boot = t.join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::create_dir_all(t.join("lib/modules/6.1.0-56-amd64")).unwrap();
        let k = boot.join("vmlinuz-6.1.0-56-amd64");
        std::fs::write(&k, b"x").unwrap();
        assert_eq!(
            debian_modules_dir(&k),
            Some(t.join("lib/modules/6.1.0-56-amd64"))
        );
        assert_eq!(debian_modules_dir(&boot.join("bzImage")), None);
        std::fs::remove_dir_all(&t).unwrap();
    }

    fn tempdir() -> PathBuf {
        let p = std::env::temp_dir().join(format!("domforge-build-x86-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}
