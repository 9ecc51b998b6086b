//! Builds the boot blob's init-built domains (x86 PVH or arm64) in order, relays their consoles and
//! applies their shutdown policy. Both builders (`domctl::builder::{pvh, arm}`) return the same
//! `BuiltDomain`, so everything after the build — console ring, event channel, supervision,
//! restart — is one code path for both architectures.
//!
//! One thread, one wait on the event channel device: a guest's console event or `VIRQ_DOM_EXC` wakes
//! it; a timeout makes it look anyway (rings every wake-up, domain states every second), so a missed
//! event costs latency, never output or a restart.
//!
//! [`Supervisor`] is generic over its three seams — the hypercall transport ([`Hypercalls`]), the
//! event channels ([`EventChannel`]) and the [`Host`] (console, log, reboot) — so that restart
//! budgets, relay and the console demultiplexing are unit-tested against domctl's `FakeXen` (see the
//! tests at the end of this file); on the target they are `Privcmd`, `Evtchn` and `StdHost`.

use crate::evtchn::{EventChannel, VIRQ_DOM_EXC};
use crate::host::Host;
use crate::lines::LineRelay;
use crate::policy::{self, Action, RestartBudget};
use crate::ring::{ConsolePage, drain_out};
use crate::store::{self, Device, Hotplug, HotplugHost, HotplugJob, Rings, Store};
use domctl::builder::{
    ArmBuilder, ArmKernel, BuiltDomain, ConsoleKind, PvhBuilder, PvhKernel, arm, pvh,
};
use domctl::{DomId, Errno, Hypercalls, Xen, XenError};
use firmware_config::blob::{BootBuilder, BootConfig, BootDomain, BootKind, BootOnCrash};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often domain states are checked without a `VIRQ_DOM_EXC`.
const STATE_CHECK: Duration = Duration::from_secs(1);
/// Longest wait for an event (a guest whose ring is full spins with `SCHEDOP_yield` until it is read).
const POLL: Duration = Duration::from_millis(100);

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
    #[error("domain '{name}' ({domid}): xenstore: {detail}; the domain was destroyed")]
    Xenstore {
        name: String,
        domid: DomId,
        detail: String,
    },
}

/// How long dom0's hotplug work and a device's connection may take before the supervisor says
/// which backend never connected (the frontend keeps waiting; Linux's blkfront/netfront do).
const DEVICE_WAIT: Duration = Duration::from_secs(30);

/// A device whose backend has not reported `Connected` yet.
struct Connecting {
    /// The frontend domain's name.
    name: String,
    device: Device,
    since: Instant,
    /// When the timeout is reported (the device stays watched afterwards).
    deadline: Instant,
    timed_out: bool,
}

/// xenstore and what hangs off it: the connection, the devices written per domain index (removed
/// when the domain stops), dom0's pending hotplug work and the devices not connected yet.
struct XenstoreState {
    store: Store,
    hotplug: Box<dyn HotplugHost>,
    devices: HashMap<usize, Vec<Device>>,
    jobs: Vec<HotplugJob>,
    /// (frontend name, device, since, deadline)
    connecting: Vec<Connecting>,
}

/// A kernel decompressed and checked once, reused for every build from it (restarts, several guests).
enum Kernel {
    Pvh(PvhKernel),
    Arm(ArmKernel),
}

/// What one domain is built from.
struct Inputs {
    kernel: Rc<Kernel>,
    ramdisk: Option<Rc<Vec<u8>>>,
    passthrough: Option<Rc<Vec<u8>>>,
}

struct Guest<M: domctl::ForeignMapping> {
    index: usize,
    name: String,
    domid: DomId,
    local_port: u32,
    console: ConsolePage<M>,
    relay: LineRelay,
}

/// The running toolstack: over a hypercall transport `H`, an event channel device `E` and a host `O`.
pub struct Supervisor<H: Hypercalls, E: EventChannel, O: Host> {
    xen: Xen<H>,
    evtchn: E,
    host: O,
    virq_port: Option<u32>,
    config: BootConfig,
    root: PathBuf,
    kernels: HashMap<String, Rc<Kernel>>,
    ramdisks: HashMap<String, Rc<Vec<u8>>>,
    guests: Vec<Guest<H::Mapping>>,
    /// The budget every domain starts with.
    budget: RestartBudget,
    budgets: HashMap<usize, RestartBudget>,
    xenstore: Option<XenstoreState>,
    /// Domains built once the driver domains serving their devices serve ([`boot_order`]).
    waiting: Vec<boot_order::Waiting>,
}

fn now_ms(since: Instant) -> String {
    since.elapsed().as_millis().to_string()
}

impl<H: Hypercalls, E: EventChannel, O: Host> Supervisor<H, E, O> {
    /// `root` prefixes the paths in the blob (`/` when running as `/init`).
    pub fn new(xen: Xen<H>, mut evtchn: E, mut host: O, config: BootConfig, root: PathBuf) -> Self {
        let virq_port = match evtchn.bind_virq(VIRQ_DOM_EXC) {
            Ok(p) => Some(p),
            Err(e) => {
                host.info(&format!(
                    "cannot bind VIRQ_DOM_EXC ({e}); checking domains by polling only"
                ));
                None
            }
        };
        Self {
            xen,
            evtchn,
            host,
            virq_port,
            config,
            root,
            kernels: HashMap::new(),
            ramdisks: HashMap::new(),
            guests: Vec::new(),
            budget: RestartBudget::default(),
            budgets: HashMap::new(),
            xenstore: None,
            waiting: Vec::new(),
        }
    }

    /// Gives `VIRQ_DOM_EXC` up for xenstored, which must bind it (one binding per domain: a second
    /// `bind_virq` fails with `EEXIST`, and xenstored exits on it) to release dead domains' entries.
    /// Domain states are then checked by polling every [`STATE_CHECK`], as libxl itself does not
    /// use the VIRQ either (it watches `@releaseDomain`).
    pub fn without_dom_exc(mut self) -> Self {
        if let Some(port) = self.virq_port.take()
            && let Err(e) = self.evtchn.unbind(port)
        {
            self.host
                .info(&format!("releasing VIRQ_DOM_EXC for xenstored: {e}"));
        }
        self
    }

    /// Introduces every domain built from now on to xenstored over `store` and writes its PV
    /// devices; `hotplug` does dom0's part for the devices dom0 serves (see [`crate::store`]).
    pub fn with_xenstore(mut self, store: Store, hotplug: Box<dyn HotplugHost>) -> Self {
        self.xenstore = Some(XenstoreState {
            store,
            hotplug,
            devices: HashMap::new(),
            jobs: Vec::new(),
            connecting: Vec::new(),
        });
        self
    }

    /// Replaces the restart budget every domain gets (default: 5 restarts a minute).
    pub fn with_restart_budget(mut self, budget: RestartBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The host (what was relayed and logged, in tests).
    pub fn host(&self) -> &O {
        &self.host
    }

    /// The typed Xen API (its transport, in tests).
    pub fn xen(&self) -> &Xen<H> {
        &self.xen
    }

    /// The guests being relayed and supervised, as (name, domain id), in start order.
    pub fn running(&self) -> Vec<(String, DomId)> {
        self.guests
            .iter()
            .map(|g| (g.name.clone(), g.domid))
            .collect()
    }

    fn info(&mut self, message: String) {
        self.host.info(&message);
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
        let read_err = |source| StartError::Read {
            path: file.clone(),
            source,
        };
        let open_err = |e| match e {
            domctl::builder::OpenError::Read(source) => read_err(source),
            domctl::builder::OpenError::Image(source) => StartError::Kernel {
                path: file.clone(),
                source,
            },
        };
        let image_bytes = std::fs::metadata(&file).map_err(read_err)?.len();
        let k = match kind {
            BootKind::Pvh => Kernel::Pvh(PvhKernel::open(&file).map_err(open_err)?),
            BootKind::Arm64 => Kernel::Arm(ArmKernel::open(&file).map_err(open_err)?),
        };
        // `held`: decoded bytes kept for later builds; a streamed kernel keeps its headers and
        // is decoded into guest memory at each build (domctl's `builder::kernel_file`).
        let (held, streamed) = match &k {
            Kernel::Pvh(k) => (k.held_bytes(), k.is_streamed()),
            Kernel::Arm(k) => (k.held_bytes(), k.is_streamed()),
        };
        let form = if streamed { "streamed" } else { "in-memory" };
        let k = Rc::new(k);
        self.host.event(
            "kernel",
            &[
                ("path", path.to_string()),
                ("image_bytes", image_bytes.to_string()),
                ("held_bytes", held.to_string()),
                ("form", form.to_string()),
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

    /// Builds every domain in boot order; a failure is reported and the next domain still starts.
    /// A domain whose PV devices a driver domain serves waits until that one serves
    /// ([`boot_order`]); [`Self::turn`] builds it then. Returns how many were built now.
    pub fn start_all(&mut self) -> usize {
        let now = Instant::now();
        ours(&self.config)
            .into_iter()
            .filter(|&index| self.start_when_served(index, now, false))
            .count()
    }

    /// How many domains wait for their driver domains.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    fn domain(&self, index: usize) -> &BootDomain {
        &self.config.domains[index]
    }

    /// With xenstore: gives each domain Xen built at boot (dom0less, `xen,enhanced`) its store page
    /// and introduces it, with its devices, as `init-dom0less` does (see
    /// `domctl::builder::late_store`). Runs after [`start_all`](Self::start_all), so the driver
    /// domains serving them already run, and nothing else builds domains meanwhile (the race
    /// init-dom0less warns about cannot happen here). Returns how many were introduced.
    ///
    /// Xen gives dom0less domains the ids 1, 2, … in the order of the `/chosen` nodes
    /// (`create_domUs()`: `domain_create(++max_init_domid, …)`), which is the blob's order of its
    /// Xen-built domains; each id is checked against the domain's memory before it is used.
    pub fn introduce_built_by_xen(&mut self) -> usize {
        if self.xenstore.is_none() {
            return 0;
        }
        let xen_built: Vec<usize> = (0..self.config.domains.len())
            .filter(|&i| self.domain(i).builder == BootBuilder::Xen)
            .collect();
        let mut introduced = 0;
        for (k, index) in xen_built.into_iter().enumerate() {
            let d = self.domain(index).clone();
            let Ok(domid) = u16::try_from(k + 1) else {
                break;
            };
            match self.introduce_one(index, &d, domid) {
                Ok(true) => {
                    introduced += 1;
                    self.host.event(
                        "introduced",
                        &[("name", d.name.to_string()), ("domid", domid.to_string())],
                    );
                }
                Ok(false) => {}
                Err(e) => self.info(format!(
                    "'{}' (domain {domid}, built by Xen): not introduced to xenstore: {e}",
                    d.name
                )),
            }
        }
        introduced
    }

    /// [`introduce_built_by_xen`](Self::introduce_built_by_xen) for one domain; `false` when it has
    /// no xenstore (`xen,enhanced` without it).
    fn introduce_one(&mut self, index: usize, d: &BootDomain, domid: u16) -> Result<bool, String> {
        let id = DomId::new(domid).ok_or("not a domain id")?;
        let info = self.xen.getdomaininfo(id).map_err(|e| e.to_string())?;
        // The blob's memory in KiB against Xen's page count: a different domain at this id means
        // the `/chosen` order was not the blob's.
        if info.max_pages * 4 < d.memory_kib {
            return Err(format!(
                "domain {domid} has {} KiB, the blob says {} KiB: not the domain named",
                info.max_pages * 4,
                d.memory_kib
            ));
        }
        let store = domctl::builder::late_store::give_store_page(&mut self.xen, id, DomId::DOM0)
            .map_err(|e| e.to_string())?;
        let domctl::builder::late_store::LateStore::Ready { pfn, port, .. } = store else {
            return Ok(false);
        };
        let rings = Rings {
            console: None,
            store_pfn: pfn,
            store_port: port,
        };
        let Some(xs) = self.xenstore.as_mut() else {
            return Ok(false);
        };
        store::introduce(&mut xs.store, d, domid, rings).map_err(|e| e.to_string())?;
        self.write_devices(index, d, domid)?;
        Ok(true)
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
        let inputs = self.inputs(&d)?;
        let t_build = Instant::now();
        let built = self.build(&d, &inputs)?;
        let build_ms = now_ms(t_build);
        let domid = built.domid;
        if let Err(detail) = self.enter_xenstore(index, &d, &built) {
            let _ = self.xen.destroy(domid);
            return Err(StartError::Xenstore {
                name: d.name.to_string(),
                domid,
                detail,
            });
        }
        match self.attach(index, &d, &built) {
            Ok(g) => {
                self.host.event(
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

    /// The kernel and modules of `d`, read (and the kernel decompressed) once per path.
    fn inputs(&mut self, d: &BootDomain) -> Result<Inputs, StartError> {
        Ok(Inputs {
            kernel: self.kernel(&d.kernel, d.kind)?,
            ramdisk: match &d.ramdisk {
                Some(p) => Some(self.ramdisk(p)?),
                None => None,
            },
            passthrough: match &d.passthrough_dtb {
                Some(p) => Some(self.ramdisk(p)?),
                None => None,
            },
        })
    }

    /// Builds `d` from its inputs, paused.
    fn build(&mut self, d: &BootDomain, inputs: &Inputs) -> Result<BuiltDomain, StartError> {
        let ramdisk = inputs.ramdisk.as_deref().map(Vec::as_slice);
        let passthrough = inputs.passthrough.as_deref().map(Vec::as_slice);
        let built = match &*inputs.kernel {
            Kernel::Pvh(k) => {
                let mut cfg = pvh::config_from_boot(d, ramdisk, DomId::DOM0);
                cfg.xenstore = self.xenstore.is_some();
                PvhBuilder::new(&mut self.xen).build_paused(k, &cfg)
            }
            Kernel::Arm(k) => {
                let mut cfg =
                    arm::config_from_boot(&self.config, d, ramdisk, passthrough, DomId::DOM0)?;
                cfg.xenstore = self.xenstore.is_some();
                // libxl gives every ARM guest 128 fresh random bytes as `/chosen/rng-seed`
                // (`make_chosen_node()` in libxl_arm.c), which Linux mixes into its early entropy
                // pool; a guest without it waits for entropy. A new seed per (re)build.
                let seed = rng_seed();
                cfg.rng_seed = seed.as_ref().map(|s| s.as_slice());
                ArmBuilder::new(&mut self.xen).build_paused(k, &cfg)
            }
        };
        Ok(built.map_err(Box::new)?)
    }

    /// With xenstore: introduces the built (paused) domain, writes its devices and queues dom0's
    /// hotplug work, all before it runs. A device whose backend is not running is reported and
    /// left out; the domain still starts.
    fn enter_xenstore(
        &mut self,
        index: usize,
        d: &BootDomain,
        built: &BuiltDomain,
    ) -> Result<(), String> {
        let Some(xs) = self.xenstore.as_mut() else {
            return Ok(());
        };
        let ring = built
            .xenstore
            .as_ref()
            .ok_or("the builder gave the domain no xenstore ring")?;
        let rings = Rings {
            console: (built.console_kind == ConsoleKind::Pv)
                .then_some((built.console.pfn, built.console.port)),
            store_pfn: ring.pfn,
            store_port: ring.port,
        };
        let domid = built.domid.get();
        store::introduce(&mut xs.store, d, domid, rings).map_err(|e| e.to_string())?;
        self.write_devices(index, d, domid)
    }

    /// Writes `d`'s devices (it is domain `domid`, already introduced) and queues dom0's hotplug
    /// work and the connection watch for each. A device whose backend is not running is reported
    /// and left out.
    fn write_devices(&mut self, index: usize, d: &BootDomain, domid: u16) -> Result<(), String> {
        let running: HashMap<usize, u16> = self
            .guests
            .iter()
            .map(|g| (g.index, g.domid.get()))
            .collect();
        let Some(xs) = self.xenstore.as_mut() else {
            return Ok(());
        };
        let mut written = Vec::new();
        let now = Instant::now();
        for dev in store::devices(&self.config, d, domid, |i| running.get(&i).copied()) {
            let dev = match dev {
                Ok(dev) => dev,
                Err((device, backend)) => {
                    self.host.info(&format!(
                        "'{}': {device} is served by '{backend}', which is not running; left out",
                        d.name
                    ));
                    continue;
                }
            };
            store::write_all(&mut xs.store, dev.transaction().all())
                .map_err(|e| format!("writing {}: {e}", dev.describe()))?;
            if dev.backend == 0 {
                xs.jobs.push(HotplugJob {
                    device: dev.clone(),
                    deadline: now + DEVICE_WAIT,
                });
            }
            xs.connecting.push(Connecting {
                name: d.name.to_string(),
                device: dev.clone(),
                since: now,
                deadline: now + DEVICE_WAIT,
                timed_out: false,
            });
            written.push(dev);
        }
        xs.devices.insert(index, written);
        Ok(())
    }

    /// dom0's hotplug jobs that can run now, and the devices that connected or never did.
    fn tend_devices(&mut self, now: Instant) {
        let Some(xs) = self.xenstore.as_mut() else {
            return;
        };
        let jobs = std::mem::take(&mut xs.jobs);
        for job in jobs {
            match store::hotplug_step(&mut xs.store, xs.hotplug.as_mut(), &job) {
                Hotplug::Done(what) => self.host.info(&format!("hotplug: {what}")),
                Hotplug::Wait if now < job.deadline => xs.jobs.push(job),
                Hotplug::Wait => self.host.info(&format!(
                    "hotplug: {} of domain {} never appeared in dom0 within {} s",
                    job.device.describe(),
                    job.device.frontend,
                    DEVICE_WAIT.as_secs()
                )),
                Hotplug::Failed(e) => self.host.info(&format!("hotplug: {e}")),
            }
        }
        let connecting = std::mem::take(&mut xs.connecting);
        for mut c in connecting {
            let state = xs
                .store
                .read_opt(
                    xenstore_client::NO_TX,
                    &format!("{}/state", c.device.backend_path()),
                )
                .ok()
                .flatten()
                .unwrap_or_default();
            // XenbusStateConnected = 4 (xen/include/public/io/xenbus.h).
            if state == "4" {
                let mut fields = vec![
                    ("name", c.name),
                    ("device", c.device.describe()),
                    ("backend", c.device.backend.to_string()),
                    ("ms", c.since.elapsed().as_millis().to_string()),
                ];
                if c.timed_out {
                    fields.push(("late", "1".to_string()));
                }
                self.host.event("device-connected", &fields);
                continue;
            }
            if now >= c.deadline && !c.timed_out {
                // Said once; the device stays watched, so a backend that is only slow (a driver
                // domain still booting) is still reported when it connects.
                c.timed_out = true;
                self.host.info(&format!(
                    "'{}': {} served by domain {} did not connect within {} s (backend state {:?}); the frontend keeps waiting",
                    c.name,
                    c.device.describe(),
                    c.device.backend,
                    DEVICE_WAIT.as_secs(),
                    state
                ));
                self.host.event(
                    "device-timeout",
                    &[("name", c.name.clone()), ("device", c.device.describe())],
                );
            }
            xs.connecting.push(c);
        }
    }

    /// Removes a stopped domain from xenstore (its nodes, its devices' backend directories).
    fn leave_xenstore(&mut self, index: usize, domid: DomId) {
        let Some(xs) = self.xenstore.as_mut() else {
            return;
        };
        let devices = xs.devices.remove(&index).unwrap_or_default();
        let d = domid.get();
        xs.jobs.retain(|j| j.device.frontend != d);
        xs.connecting.retain(|c| c.device.frontend != d);
        if let Err(e) = store::forget(&mut xs.store, d, &devices) {
            self.host
                .info(&format!("xenstore: forgetting domain {domid}: {e}"));
        }
    }

    /// Maps the console ring, binds its event channel and unpauses the built domain. On failure
    /// whatever was bound is unbound again (the caller destroys the domain).
    fn attach(
        &mut self,
        index: usize,
        d: &BootDomain,
        built: &BuiltDomain,
    ) -> Result<Guest<H::Mapping>, (&'static str, String)> {
        let domid = built.domid;
        let mapping = self
            .xen
            .map_foreign(domid, &[built.console.pfn])
            .map_err(|e| ("mapping the console ring", e.to_string()))?;
        let local_port = self
            .evtchn
            .bind_interdomain(domid.get(), built.console.port)
            .map_err(|e| ("binding the console event channel", e.to_string()))?;
        if let Err(e) = self.xen.unpause(domid) {
            let _ = self.evtchn.unbind(local_port);
            return Err(("unpausing", e.to_string()));
        }
        Ok(Guest {
            index,
            name: d.name.to_string(),
            domid,
            local_port,
            console: ConsolePage::new(mapping, built.console.pfn),
            relay: LineRelay::new(&d.name),
        })
    }

    /// Copies every guest's pending console output to the host as `[name] line`.
    fn relay_consoles(&mut self) {
        for g in &mut self.guests {
            match drain_out(&mut g.console) {
                Ok(d) => {
                    if d.resynced {
                        self.host.console_line(&format!(
                            "[{}] <domforge-init: console ring index corrupt; output lost>",
                            g.name
                        ));
                    }
                    if !d.bytes.is_empty() {
                        for line in g.relay.push(&d.bytes) {
                            self.host.console_line(&line);
                        }
                        // Space was freed: tell the guest (hvc_xen waits for it when the ring is full).
                        let _ = self.evtchn.notify(g.local_port);
                    }
                }
                Err(e) => self.host.info(&format!("console of '{}': {e}", g.name)),
            }
        }
    }

    /// The guests that stopped, as (index into `guests`, `SHUTDOWN_*` code or `None` if it vanished).
    fn stopped_guests(&mut self) -> Vec<(usize, Option<u32>)> {
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
                Err(e) => self
                    .host
                    .info(&format!("getdomaininfo for '{}': {e}", g.name)),
            }
        }
        stopped
    }

    /// Looks at every guest's state and applies the policy to those that stopped; `now` is when,
    /// for the restart budgets.
    pub fn check_domains(&mut self, now: Instant) {
        // Highest index first so removal keeps the other indices valid.
        for (i, code) in self.stopped_guests().into_iter().rev() {
            let g = self.guests.remove(i);
            self.stopped(g, code, now);
        }
    }

    /// Relays what a stopped guest left in its ring (the unterminated tail too), logs the shutdown
    /// and applies its policy.
    fn stopped(&mut self, mut g: Guest<H::Mapping>, code: Option<u32>, now: Instant) {
        if let Ok(d) = drain_out(&mut g.console) {
            for line in g.relay.push(&d.bytes) {
                self.host.console_line(&line);
            }
        }
        if let Some(rest) = g.relay.flush() {
            self.host.console_line(&rest);
        }
        let on_crash = self.domain(g.index).on_crash;
        let action = policy::action(code, on_crash);
        let reason = code.map_or("vanished", policy::reason_name);
        self.host.event(
            "shutdown",
            &[
                ("name", g.name.clone()),
                ("domid", g.domid.to_string()),
                ("reason", reason.to_string()),
                ("action", format!("{action:?}").to_lowercase()),
            ],
        );
        if action == Action::Keep {
            self.info(format!(
                "'{}' suspended; kept (nothing here resumes it)",
                g.name
            ));
            return;
        }
        let (index, name) = (g.index, g.name.clone());
        self.tear_down(g);
        match action {
            Action::Restart => self.restart(index, &name, now),
            Action::RebootPlatform => {
                self.info(format!(
                    "'{name}' crashed and on_crash = reboot-platform: rebooting"
                ));
                self.host.reboot();
            }
            Action::Destroy | Action::Keep => {}
        }
    }

    /// Unbinds a stopped guest's console, destroys the domain and removes it from xenstore.
    fn tear_down(&mut self, g: Guest<H::Mapping>) {
        let _ = self.evtchn.unbind(g.local_port);
        if let Err(e) = self.xen.destroy(g.domid) {
            self.info(format!("destroying '{}' (domain {}): {e}", g.name, g.domid));
        }
        self.leave_xenstore(g.index, g.domid);
    }

    /// Rebuilds domain `index` if its restart budget allows.
    fn restart(&mut self, index: usize, name: &str, now: Instant) {
        let budget = self
            .budgets
            .entry(index)
            .or_insert_with(|| self.budget.clone());
        if !budget.try_take(now) {
            let limit = budget.describe();
            self.info(format!(
                "'{name}' restarted too often ({limit}); leaving it stopped"
            ));
            self.host.event("gave-up", &[("name", name.to_string())]);
            return;
        }
        self.start_when_served(index, now, true);
    }

    /// A rebuilt backend domain has a new domain id, and Linux's frontends do not follow it: the
    /// `backend` path they read at probe names the old one, and a closed backend leaves them
    /// closed (`drivers/xen/xenbus/xenbus_probe_frontend.c` reads the other end once). So the
    /// running domains it serves are destroyed and rebuilt (their restart budgets apply) once the
    /// new backend serves ([`boot_order`]), and their new device directories name it. Domains
    /// still waiting for it are not built yet and lose nothing.
    fn rebuild_frontends_of(&mut self, backend: usize, backend_name: &str, now: Instant) {
        let Ok(b) = u8::try_from(backend) else { return };
        let served: Vec<usize> = self
            .config
            .domains
            .iter()
            .enumerate()
            .filter(|(_, d)| d.backends().any(|x| x == b))
            .map(|(i, _)| i)
            .collect();
        for i in served {
            let Some(pos) = self.guests.iter().position(|g| g.index == i) else {
                continue;
            };
            let g = self.guests.remove(pos);
            self.info(format!(
                "'{}' is rebuilt to reconnect to its rebuilt backend '{backend_name}'",
                g.name
            ));
            let name = g.name.clone();
            self.tear_down(g);
            self.restart(i, &name, now);
        }
    }

    /// One turn of the loop: waits up to `timeout` for events, relays every console, and checks
    /// the domains' states if `VIRQ_DOM_EXC` fired or `check_due`. Returns whether it checked.
    pub fn turn(&mut self, timeout: Duration, now: Instant, check_due: bool) -> bool {
        let ports = self.evtchn.wait(timeout).unwrap_or_else(|e| {
            self.host.info(&e.to_string());
            Vec::new()
        });
        self.relay_consoles();
        self.tend_devices(now);
        self.start_waiting(now);
        let exc = self.virq_port.is_some_and(|v| ports.contains(&v));
        if exc || check_due {
            self.check_domains(now);
        }
        exc || check_due
    }

    /// Relays and supervises forever.
    pub fn run(&mut self) -> ! {
        let mut last_check = Instant::now();
        loop {
            let now = Instant::now();
            let due = now.duration_since(last_check) >= STATE_CHECK;
            if self.turn(POLL, now, due) {
                last_check = now;
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

/// Paths of the kernels and ramdisks the blob refers to, for a pre-flight check.
pub fn files(config: &BootConfig) -> Vec<String> {
    let mut v = Vec::new();
    for i in ours(config) {
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
    files(config)
        .into_iter()
        .filter(|p| !root.join(p.trim_start_matches('/')).exists())
        .collect()
}

mod boot_order;
#[cfg(test)]
mod tests;
