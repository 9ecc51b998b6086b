//! Builds the boot blob's init-built domains (x86 PVH or arm64) in order, relays their consoles and
//! applies their shutdown policy. Both builders (`domctl::builder::{pvh, arm}`) return the same
//! `BuiltDomain`, so everything after the build — console ring, event channel, supervision,
//! restart — is one code path for both architectures.
//!
//! One thread, one `poll(2)` on `/dev/xen/evtchn`: a guest's console event or `VIRQ_DOM_EXC` wakes it;
//! a timeout makes it look anyway (rings every wake-up, domain states every second), so a missed event
//! costs latency, never output or a restart.

use crate::evtchn::{Evtchn, VIRQ_DOM_EXC};
use crate::lines::LineRelay;
use crate::policy::{self, Action, RestartBudget};
use crate::ring::{ConsolePage, drain_out};
use crate::{info, log};
use domctl::builder::{ArmBuilder, ArmKernel, PvhBuilder, PvhKernel, arm, pvh};
use domctl::privcmd::{Privcmd, PrivcmdMapping};
use domctl::{DomId, Errno, Xen, XenError};
use firmware_config::blob::{BootBuilder, BootConfig, BootDomain, BootKind, BootOnCrash};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often domain states are checked without a `VIRQ_DOM_EXC`.
const STATE_CHECK: Duration = Duration::from_secs(1);
/// Longest sleep in `poll` (a guest whose ring is full spins with `SCHEDOP_yield` until it is read).
const POLL_MS: u16 = 100;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel {path}: {source}")]
    Kernel {
        path: PathBuf,
        source: pvh_boot::kernel::ImageError,
    },
    #[error(transparent)]
    ArmConfig(#[from] arm::ArmConfigError),
    #[error(transparent)]
    Build(#[from] Box<domctl::builder::BuildError>),
    #[error("domain '{name}' ({domid}): {what}: {detail}; the domain was destroyed")]
    Attach {
        name: String,
        domid: DomId,
        what: &'static str,
        detail: String,
    },
    #[error("domain '{0}' is not built by domforge-init")]
    NotOurs(String),
}

/// A kernel decompressed and checked once, reused for every build from it (restarts, several guests).
enum Kernel {
    Pvh(PvhKernel),
    Arm(ArmKernel),
}

struct Guest {
    index: usize,
    name: String,
    domid: DomId,
    local_port: u32,
    console: ConsolePage<PrivcmdMapping>,
    relay: LineRelay,
}

/// The running toolstack.
pub struct Supervisor {
    xen: Xen<Privcmd>,
    evtchn: Evtchn,
    virq_port: Option<u32>,
    config: BootConfig,
    root: PathBuf,
    kernels: HashMap<String, Rc<Kernel>>,
    ramdisks: HashMap<String, Rc<Vec<u8>>>,
    guests: Vec<Guest>,
    budgets: HashMap<usize, RestartBudget>,
}

fn now_ms(since: Instant) -> String {
    since.elapsed().as_millis().to_string()
}

impl Supervisor {
    /// `root` prefixes the paths in the blob (`/` when running as `/init`).
    pub fn new(xen: Xen<Privcmd>, evtchn: Evtchn, config: BootConfig, root: PathBuf) -> Self {
        let virq_port = match evtchn.bind_virq(VIRQ_DOM_EXC) {
            Ok(p) => Some(p),
            Err(e) => {
                info!("cannot bind VIRQ_DOM_EXC ({e}); checking domains by polling only");
                None
            }
        };
        Self {
            xen,
            evtchn,
            virq_port,
            config,
            root,
            kernels: HashMap::new(),
            ramdisks: HashMap::new(),
            guests: Vec::new(),
            budgets: HashMap::new(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn kernel(&mut self, path: &str, kind: BootKind) -> Result<Rc<Kernel>, StartError> {
        if let Some(k) = self.kernels.get(path) {
            return Ok(Rc::clone(k));
        }
        let file = self.path(path);
        let t = Instant::now();
        let bytes = std::fs::read(&file).map_err(|source| StartError::Read {
            path: file.clone(),
            source,
        })?;
        let kernel_err = |source| StartError::Kernel {
            path: file.clone(),
            source,
        };
        let (k, loaded_bytes) = match kind {
            BootKind::Pvh => {
                let k = PvhKernel::from_image(&bytes).map_err(kernel_err)?;
                let n = k.elf_bytes().len();
                (Kernel::Pvh(k), n)
            }
            BootKind::Arm64 => {
                let k = ArmKernel::from_image(&bytes).map_err(kernel_err)?;
                let n = k.image_bytes().len();
                (Kernel::Arm(k), n)
            }
        };
        let k = Rc::new(k);
        log::event(
            "kernel",
            &[
                ("path", path.to_string()),
                ("image_bytes", bytes.len().to_string()),
                ("loaded_bytes", loaded_bytes.to_string()),
                ("decompress_ms", now_ms(t)),
            ],
        );
        self.kernels.insert(path.to_string(), Rc::clone(&k));
        Ok(k)
    }

    fn ramdisk(&mut self, path: &str) -> Result<Rc<Vec<u8>>, StartError> {
        if let Some(r) = self.ramdisks.get(path) {
            return Ok(Rc::clone(r));
        }
        let file = self.path(path);
        let bytes = Rc::new(
            std::fs::read(&file).map_err(|source| StartError::Read { path: file, source })?,
        );
        self.ramdisks.insert(path.to_string(), Rc::clone(&bytes));
        Ok(bytes)
    }

    /// The domains domforge-init builds (builder = init, PVH or arm64), in boot order.
    pub fn ours(config: &BootConfig) -> Vec<usize> {
        config
            .domains
            .iter()
            .enumerate()
            .filter(|(_, d)| d.builder == BootBuilder::Init)
            .map(|(i, _)| i)
            .collect()
    }

    /// Builds every domain in boot order; a failure is reported and the next domain still starts.
    pub fn start_all(&mut self) -> usize {
        let mut started = 0;
        for index in Self::ours(&self.config) {
            match self.start(index) {
                Ok(()) => started += 1,
                Err(e) => {
                    info!("{e}");
                    log::event(
                        "build-failed",
                        &[("name", self.domain(index).name.to_string())],
                    );
                }
            }
        }
        started
    }

    fn domain(&self, index: usize) -> &BootDomain {
        &self.config.domains[index]
    }

    /// Builds domain `index`, attaches its console, unpauses it.
    pub fn start(&mut self, index: usize) -> Result<(), StartError> {
        let d = self
            .config
            .domains
            .get(index)
            .cloned()
            .ok_or_else(|| StartError::NotOurs(format!("#{index}")))?;
        if d.builder != BootBuilder::Init {
            return Err(StartError::NotOurs(d.name.to_string()));
        }
        let t0 = Instant::now();
        let kernel = self.kernel(&d.kernel, d.kind)?;
        let ramdisk = match &d.ramdisk {
            Some(p) => Some(self.ramdisk(p)?),
            None => None,
        };
        let passthrough = match &d.passthrough_dtb {
            Some(p) => Some(self.ramdisk(p)?),
            None => None,
        };
        let ramdisk = ramdisk.as_deref().map(Vec::as_slice);
        let t_build = Instant::now();
        let built = match &*kernel {
            Kernel::Pvh(k) => {
                let cfg = pvh::config_from_boot(&d, ramdisk, DomId::DOM0);
                PvhBuilder::new(&mut self.xen).build_paused(k, &cfg)
            }
            Kernel::Arm(k) => {
                let mut cfg = arm::config_from_boot(
                    &self.config,
                    &d,
                    ramdisk,
                    passthrough.as_deref().map(Vec::as_slice),
                    DomId::DOM0,
                )?;
                // libxl gives every ARM guest 128 fresh random bytes as `/chosen/rng-seed`
                // (`make_chosen_node()` in libxl_arm.c), which Linux mixes into its early entropy
                // pool; a guest without it waits for entropy. A new seed per (re)build.
                let seed = rng_seed();
                cfg.rng_seed = seed.as_ref().map(|s| s.as_slice());
                ArmBuilder::new(&mut self.xen).build_paused(k, &cfg)
            }
        }
        .map_err(Box::new)?;
        let build_ms = now_ms(t_build);
        let domid = built.domid;
        let attach = |this: &mut Self| -> Result<Guest, (&'static str, String)> {
            let mapping = this
                .xen
                .map_foreign(domid, &[built.console.pfn])
                .map_err(|e| ("mapping the console ring", e.to_string()))?;
            let local_port = this
                .evtchn
                .bind_interdomain(domid.get(), built.console.port)
                .map_err(|e| ("binding the console event channel", e.to_string()))?;
            this.xen
                .unpause(domid)
                .map_err(|e| ("unpausing", e.to_string()))?;
            Ok(Guest {
                index,
                name: d.name.to_string(),
                domid,
                local_port,
                console: ConsolePage::new(mapping, built.console.pfn),
                relay: LineRelay::new(&d.name),
            })
        };
        match attach(self) {
            Ok(g) => {
                log::event(
                    "started",
                    &[
                        ("name", g.name.clone()),
                        ("domid", domid.to_string()),
                        ("vcpus", d.vcpus.to_string()),
                        ("memory_kib", d.memory_kib.to_string()),
                        ("build_ms", build_ms),
                        ("total_ms", now_ms(t0)),
                        ("mappings", built.mappings.to_string()),
                    ],
                );
                self.guests.push(g);
                Ok(())
            }
            Err((what, detail)) => {
                let _ = self.xen.destroy(domid);
                Err(StartError::Attach {
                    name: d.name.to_string(),
                    domid,
                    what,
                    detail,
                })
            }
        }
    }

    /// Copies every guest's pending console output to stdout as `[name] line`.
    fn relay_consoles(&mut self) {
        let mut out = std::io::stdout().lock();
        for g in &mut self.guests {
            match drain_out(&mut g.console) {
                Ok(d) => {
                    if d.resynced {
                        let _ = writeln!(
                            out,
                            "[{}] <domforge-init: console ring index corrupt; output lost>",
                            g.name
                        );
                    }
                    if !d.bytes.is_empty() {
                        for line in g.relay.push(&d.bytes) {
                            let _ = writeln!(out, "{line}");
                        }
                        // Space was freed: tell the guest (hvc_xen waits for it when the ring is full).
                        let _ = self.evtchn.notify(g.local_port);
                    }
                }
                Err(e) => info!("console of '{}': {e}", g.name),
            }
        }
        let _ = out.flush();
    }

    /// Looks at every guest's state and applies the policy to those that stopped.
    fn check_domains(&mut self) {
        let mut stopped = Vec::new();
        for (i, g) in self.guests.iter().enumerate() {
            match self.xen.getdomaininfo(g.domid) {
                Ok(info) if info.is_shutdown() => stopped.push((i, info.shutdown_reason())),
                Ok(info) if info.is_dying() => stopped.push((i, None)),
                Ok(_) => {}
                Err(XenError::Hypervisor {
                    errno: Errno::ESRCH,
                    ..
                }) => stopped.push((i, None)),
                Err(e) => info!("getdomaininfo for '{}': {e}", g.name),
            }
        }
        // Highest index first so removal keeps the other indices valid.
        for (i, code) in stopped.into_iter().rev() {
            let mut g = self.guests.remove(i);
            if let Ok(d) = drain_out(&mut g.console) {
                let mut out = std::io::stdout().lock();
                for line in g.relay.push(&d.bytes) {
                    let _ = writeln!(out, "{line}");
                }
                if let Some(rest) = g.relay.flush() {
                    let _ = writeln!(out, "{rest}");
                }
            }
            let on_crash = self.domain(g.index).on_crash;
            let action = policy::action(code, on_crash);
            let reason = code.map_or("vanished", policy::reason_name);
            log::event(
                "shutdown",
                &[
                    ("name", g.name.clone()),
                    ("domid", g.domid.to_string()),
                    ("reason", reason.to_string()),
                    ("action", format!("{action:?}").to_lowercase()),
                ],
            );
            if action == Action::Keep {
                info!("'{}' suspended; kept (nothing here resumes it)", g.name);
                continue;
            }
            let _ = self.evtchn.unbind(g.local_port);
            if let Err(e) = self.xen.destroy(g.domid) {
                info!("destroying '{}' (domain {}): {e}", g.name, g.domid);
            }
            drop(g.console);
            match action {
                Action::Restart => {
                    let budget = self.budgets.entry(g.index).or_default();
                    if !budget.try_take(Instant::now()) {
                        info!(
                            "'{}' restarted too often (5 times within a minute); leaving it stopped",
                            g.name
                        );
                        log::event("gave-up", &[("name", g.name.clone())]);
                        continue;
                    }
                    match self.start(g.index) {
                        Ok(()) => log::event("restarted", &[("name", g.name.clone())]),
                        Err(e) => info!("restarting '{}': {e}", g.name),
                    }
                }
                Action::RebootPlatform => {
                    info!(
                        "'{}' crashed and on_crash = reboot-platform: rebooting",
                        g.name
                    );
                    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
                }
                Action::Destroy | Action::Keep => {}
            }
        }
    }

    /// Relays and supervises forever.
    pub fn run(&mut self) -> ! {
        let mut last_check = Instant::now();
        loop {
            let mut fds = [PollFd::new(self.evtchn.fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(POLL_MS));
            let ports = self.evtchn.pending().unwrap_or_else(|e| {
                info!("{e}");
                Vec::new()
            });
            self.relay_consoles();
            let exc = self.virq_port.is_some_and(|v| ports.contains(&v));
            if exc || last_check.elapsed() >= STATE_CHECK {
                self.check_domains();
                last_check = Instant::now();
            }
        }
    }

    /// The on_crash policy of a domain by name (for tests and messages).
    pub fn on_crash(&self, name: &str) -> Option<BootOnCrash> {
        self.config
            .domains
            .iter()
            .find(|d| d.name.as_str() == name)
            .map(|d| d.on_crash)
    }

    /// Paths of the kernels and ramdisks the blob refers to, for a pre-flight check.
    pub fn files(config: &BootConfig) -> Vec<String> {
        let mut v = Vec::new();
        for i in Self::ours(config) {
            let d = &config.domains[i];
            v.push(d.kernel.to_string());
            if let Some(r) = &d.ramdisk {
                v.push(r.to_string());
            }
            if let Some(p) = &d.passthrough_dtb {
                v.push(p.to_string());
            }
        }
        v
    }
}

/// 128 bytes from the kernel's random pool (`getrandom(2)` through `/dev/urandom`), or none if it
/// cannot be read (the guest then seeds itself, only later).
fn rng_seed() -> Option<[u8; 128]> {
    use std::io::Read;
    let mut seed = [0u8; 128];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .ok()
        .map(|()| seed)
}

/// Checks that every file the blob names exists under `root`.
pub fn missing_files(config: &BootConfig, root: &Path) -> Vec<String> {
    Supervisor::files(config)
        .into_iter()
        .filter(|p| !root.join(p.trim_start_matches('/')).exists())
        .collect()
}
