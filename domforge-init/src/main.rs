//! `domforge-init [--blob PATH] [--root DIR] [--build-once | --destroy DOMID]`: see the library docs.
//! As PID 1 it also sets up the control domain (mounts, modules) and never exits: an exiting init
//! panics the kernel, and the console would lose the reason.
//!
//! Two modes exist for the `xl` comparison benchmark (`benches/xl_vs_domforge_init.rs`), which
//! times one toolstack invocation per guest like `xl create` (returns after unpause) and
//! `xl destroy`: `--build-once` builds and unpauses every domain of the blob, prints the `started`
//! events and exits (0 if all started) leaving them running, without relaying or supervising;
//! `--destroy DOMID` destroys one domain (`XEN_DOMCTL_destroydomain`) and exits.

use domforge_init::host::StdHost;
use domforge_init::hotplug::StdHotplug;
use domforge_init::supervisor::{Supervisor, missing_files, ours};
use domforge_init::{BOOT_BLOB, compat, evtchn, info, log, serve, setup, store};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Args {
    blob: PathBuf,
    root: PathBuf,
    build_once: bool,
    destroy: Option<u16>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        blob: PathBuf::from(BOOT_BLOB),
        root: PathBuf::from("/"),
        build_once: false,
        destroy: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--blob" => args.blob = it.next().ok_or("--blob needs a path")?.into(),
            "--root" => args.root = it.next().ok_or("--root needs a directory")?.into(),
            "--build-once" => args.build_once = true,
            "--destroy" => {
                let id = it.next().ok_or("--destroy needs a domain id")?;
                args.destroy = Some(id.parse().map_err(|_| format!("bad domain id {id:?}"))?);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: domforge-init [--blob PATH] [--root DIR] [--build-once | --destroy DOMID]"
                        .into(),
                );
            }
            // The kernel passes unknown `key=value` boot parameters to init as arguments/environment.
            _ => {}
        }
    }
    Ok(args)
}

fn run(pid1: bool, t0: Instant) -> Result<std::convert::Infallible, String> {
    let args = parse_args()?;
    if pid1 {
        for p in setup::mount_basics() {
            info!("{p}");
        }
        for m in setup::load_modules(std::path::Path::new(setup::MODULE_LIST)) {
            match m.result {
                Ok(_) => {}
                Err(e) => info!("module {}: {e}", m.path),
            }
        }
        // xenfs is for the control domain (`xl`'s expectations); a driver domain has no use for it.
        if !serving()
            && let Err(e) = setup::mount_xenfs()
        {
            info!("{e}");
        }
        // From here the console carries domforge-init's events and the guests' lines; the
        // kernel's own informational messages (a backend connecting, a bridge port changing
        // state) would interleave with them. Warnings and worse still show.
        setup::quiet_console();
        log::event("setup", &[("ms", t0.elapsed().as_millis().to_string())]);
    }
    // A driver domain's generated initramfs: serve this domain's PV backends, build nothing.
    if serving() {
        return serve_backends();
    }
    for dev in [
        domctl::privcmd::PRIVCMD_PATH,
        domctl::privcmd::HYPERCALL_BUF_PATH,
        evtchn::EVTCHN_PATH,
    ] {
        if !setup::wait_for(dev, Duration::from_secs(5)) {
            return Err(format!(
                "{dev} did not appear within 5 s: is this a Xen control domain with the xen-privcmd \
                 and xen-evtchn drivers?"
            ));
        }
    }
    if let Some(id) = args.destroy {
        let domid = domctl::DomId::new(id).ok_or(format!("{id} is not an ordinary domain id"))?;
        let privcmd = domctl::privcmd::Privcmd::open().map_err(|e| e.to_string())?;
        let (mut xen, _) = domctl::Xen::open(privcmd).map_err(|e| e.to_string())?;
        xen.destroy(domid).map_err(|e| e.to_string())?;
        std::process::exit(0);
    }
    let blob = std::fs::read(&args.blob)
        .map_err(|e| format!("reading the boot blob {}: {e}", args.blob.display()))?;
    let config = firmware_config::blob::decode(&blob)
        .map_err(|e| format!("boot blob {}: {e}", args.blob.display()))?;
    info!(
        "system '{}': {} domain(s), built for Xen {}.{} (domctl 0x{:02x})",
        config.system,
        config.domains.len(),
        config.xen_major,
        config.xen_minor,
        config.domctl_interface
    );
    let missing = missing_files(&config, &args.root);
    if !missing.is_empty() {
        return Err(format!(
            "the boot blob names files missing from this initramfs: {}",
            missing.join(", ")
        ));
    }
    let privcmd = domctl::privcmd::Privcmd::open().map_err(|e| e.to_string())?;
    let (xen, report) = domctl::Xen::open(privcmd).map_err(|e| e.to_string())?;
    info!("{report}");
    let target = compat::check(&config, &report);
    info!("{}", target.message);
    log::event("xen", &target.fields);
    let ev = evtchn::Evtchn::open().map_err(|e| e.to_string())?;
    let ours = ours(&config).len();
    let xenstore = config.xenstore;
    let mut sup = Supervisor::new(xen, ev, StdHost, config, args.root.clone());
    // Kept for as long as init runs: dropping a Child neither kills nor reaps it, but holding it says
    // the daemon is ours.
    let _xenstored = if xenstore {
        sup = sup.without_dom_exc();
        let (child, store) = start_store(&args.root)?;
        sup = sup.with_xenstore(store, Box::new(StdHotplug::default()));
        Some(child)
    } else {
        None
    };
    let started = sup.start_all();
    sup.introduce_built_by_xen();
    log::event(
        "ready",
        &[
            ("started", started.to_string()),
            ("ms_since_init", t0.elapsed().as_millis().to_string()),
        ],
    );
    // Peak and current resident memory (issue 14 measures them in its benchmark): guest memory
    // mapped through privcmd is not counted, the kernels and ramdisks read and decoded here are.
    log::event("memory", &memory_fields());
    if args.build_once {
        std::process::exit(if started == ours { 0 } else { 1 });
    }
    sup.run()
}

/// Whether this is a driver domain's generated initramfs ([`serve::SERVE_MARKER`]).
fn serving() -> bool {
    std::path::Path::new(serve::SERVE_MARKER).exists()
}

/// Driver-domain mode ([`serve`]): the hotplug work for this domain's backends, forever.
fn serve_backends() -> Result<std::convert::Infallible, String> {
    let store = serve::open_xenbus(Duration::from_secs(30))?;
    let mut server = serve::Server::new(store, Box::new(StdHotplug::default()))
        .map_err(|e| format!("xenstore: {e}"))?;
    // Said on the console before it is said in xenstore: the control domain relays this console
    // before it looks for the node, so a reader of the whole console sees `serving` before the
    // frontends it lets the control domain build.
    log::event("serving", &[("domid", server.domid().to_string())]);
    if let Err(e) = server.announce() {
        // The control domain then builds the frontends after its bounded wait instead.
        info!("xenstore: announcing that this domain serves: {e}");
    }
    loop {
        for message in server.turn(Instant::now()) {
            info!("{message}");
        }
        std::thread::sleep(serve::SCAN);
    }
}

/// Starts Debian's xenstored and writes dom0's own nodes (PV devices need both before any domain
/// is built).
fn start_store(root: &std::path::Path) -> Result<(std::process::Child, store::Store), String> {
    let t = Instant::now();
    let (child, mut store) = store::start_xenstored(root, Duration::from_secs(10))
        .map_err(|e| format!("xenstore: {e}"))?;
    store::write_dom0(&mut store).map_err(|e| format!("xenstore: writing dom0's nodes: {e}"))?;
    log::event(
        "xenstored",
        &[
            ("pid", child.id().to_string()),
            ("ms", t.elapsed().as_millis().to_string()),
        ],
    );
    Ok((child, store))
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process in KiB, from `/proc/self/status`
/// (proc(5)); empty when it cannot be read.
fn memory_fields() -> Vec<(&'static str, String)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .map(|v| v.trim().to_string())
    };
    [("peak_rss_kib", "VmHWM:"), ("rss_kib", "VmRSS:")]
        .into_iter()
        .filter_map(|(name, key)| kib(key).map(|v| (name, v)))
        .collect()
}

fn main() {
    let t0 = Instant::now();
    let pid1 = std::process::id() == 1;
    let Err(e) = run(pid1, t0);
    info!("FATAL: {e}");
    log::event("fatal", &[]);
    if pid1 {
        // Keep the console (and the message) alive; there is nothing to fall back to.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    std::process::exit(1);
}
