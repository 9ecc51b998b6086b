//! The supervisor against domctl's `FakeXen`, the fake event channel device and a recording host:
//! restart budgets (exact rebuild counts, the give-up message), policy per shutdown reason, the
//! console relay (bytes in the guest's ring → lines out, consumer index, notifications) and the
//! demultiplexing of several guests' consoles onto one.
//!
//! Ring offsets below are typed from `struct xencons_interface` (`xen/include/public/io/console.h`:
//! `out[2048]` @1024, `out_cons` @3080, `out_prod` @3084), HVM param numbers from
//! `xen/include/public/hvm/params.h` (`HVM_PARAM_CONSOLE_PFN 17`, `HVM_PARAM_CONSOLE_EVTCHN 18`) and
//! shutdown codes from `xen/include/public/sched.h` — not taken from the code under test.

use super::*;
use crate::evtchn::fake::{Binding, FakeEvtchn};
use crate::host::{Record, RecordingHost};
use domctl::fake::FakeXen;
use domctl::{ForeignMapping, InterfaceVersion, Op, XenArch};
use firmware_config::blob::{BootConsole, BootOnCrash};

const SHUTDOWN_POWEROFF: u32 = 0;
const SHUTDOWN_REBOOT: u32 = 1;
const SHUTDOWN_SUSPEND: u32 = 2;
const SHUTDOWN_CRASH: u32 = 3;
const CONSOLE_PFN: u32 = 17;
const CONSOLE_EVTCHN: u32 = 18;
const OUT: usize = 1024;
const OUT_CONS: usize = 3080;
const OUT_PROD: usize = 3084;

type Sup = Supervisor<FakeXen, FakeEvtchn, RecordingHost>;

/// A minimal x86-64 ELF PVH kernel: ELF header (64 bytes), two program headers (56 bytes each,
/// System V gABI) — a PT_LOAD at 16 MiB and a PT_NOTE holding `XEN_ELFNOTE_PHYS32_ENTRY` (18,
/// `xen/include/public/elfnote.h`).
fn pvh_elf() -> Vec<u8> {
    const PADDR: u64 = 0x100_0000;
    let mut f = vec![0u8; 0x1000];
    f[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    f[24..32].copy_from_slice(&PADDR.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f[56..58].copy_from_slice(&2u16.to_le_bytes()); // e_phnum
    // (p_type, p_offset, p_paddr, p_filesz, p_memsz, p_align)
    let phdrs = [
        (1u32, 0x1000u64, PADDR, 0x1000u64, 0x2000u64, 0x1000u64),
        (4, 0x200, 0, 24, 24, 4),
    ];
    for (i, (ty, off, addr, filesz, memsz, align)) in phdrs.into_iter().enumerate() {
        let b = 64 + i * 56;
        f[b..b + 4].copy_from_slice(&ty.to_le_bytes());
        f[b + 4..b + 8].copy_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
        for (at, v) in [
            (8, off),
            (16, addr),
            (24, addr),
            (32, filesz),
            (40, memsz),
            (48, align),
        ] {
            f[b + at..b + at + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz
    note.extend_from_slice(&8u32.to_le_bytes()); // descsz
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&(PADDR + 0x40).to_le_bytes());
    f[0x200..0x200 + note.len()].copy_from_slice(&note);
    f.extend((0..0x1000).map(|i| (i % 251) as u8));
    f
}

fn domain(name: &str, on_crash: BootOnCrash) -> BootDomain {
    BootDomain {
        name: name.try_into().unwrap(),
        kind: BootKind::Pvh,
        builder: BootBuilder::Init,
        vcpus: 1,
        memory_kib: 32 * 1024,
        kernel: "/domforge/modules/vmlinux".try_into().unwrap(),
        ramdisk: None,
        cmdline: "console=hvc0".try_into().unwrap(),
        console: BootConsole::Hvc,
        on_crash,
        depends_on: Default::default(),
        iomem: Default::default(),
        irqs: Default::default(),
        dt_devices: Default::default(),
        p2m_pool_kib: 0,
        passthrough_dtb: None,
        pv_disks: Default::default(),
        pv_nics: Default::default(),
    }
}

/// A scratch root holding the kernel every test domain boots.
fn root(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "domforge-init-supervisor-{test}-{}",
        std::process::id()
    ));
    let modules = dir.join("domforge/modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::write(modules.join("vmlinux"), pvh_elf()).unwrap();
    dir
}

struct World {
    sup: Sup,
    xen: FakeXen,
    evtchn: FakeEvtchn,
    t0: Instant,
}

fn world(test: &str, domains: Vec<BootDomain>) -> World {
    let xen = FakeXen::new(XenArch::X86_64, InterfaceVersion::V16);
    let evtchn = FakeEvtchn::new(xen.clone());
    let mut config = BootConfig {
        system: "t".try_into().unwrap(),
        xen_major: 4,
        xen_minor: 18,
        domctl_interface: 0x16,
        arm_gic: None,
        domains: Default::default(),
        xenstore: false,
    };
    for d in domains {
        config.domains.push(d);
    }
    let (typed, _) = Xen::open(xen.clone()).unwrap();
    let sup = Supervisor::new(
        typed,
        evtchn.clone(),
        RecordingHost::default(),
        config,
        root(test),
    );
    World {
        sup,
        xen,
        evtchn,
        t0: Instant::now(),
    }
}

impl World {
    fn domid(&self, name: &str) -> u16 {
        let running = self.sup.running();
        let (_, d) = running.iter().find(|(n, _)| n == name).expect(name);
        d.get()
    }

    fn creates(&self) -> usize {
        self.xen
            .ops()
            .iter()
            .filter(|o| **o == Op::CreateDomain)
            .count()
    }

    /// The guest `name` crashes (or stops with `code`); the supervisor wakes on `VIRQ_DOM_EXC`
    /// at `t0 + at`.
    fn stop(&mut self, name: &str, code: u32, at: Duration) {
        let domid = self.domid(name);
        assert!(self.xen.shutdown_domain(domid, code));
        assert!(self.evtchn.fire_virq(VIRQ_DOM_EXC).is_some());
        assert!(self.sup.turn(Duration::ZERO, self.t0 + at, false));
    }

    /// The guest `name` writes `bytes` into its console ring as `hvc_xen`'s `__write_console` does
    /// (bytes at `out[MASK(out_prod)]`, then `out_prod += n`) and notifies its event channel.
    fn guest_writes(&mut self, name: &str, bytes: &[u8]) {
        let domid = self.domid(name);
        let d = self.xen.domain(domid).unwrap();
        let pfn = d.hvm_params[&CONSOLE_PFN];
        let port = u32::try_from(d.hvm_params[&CONSOLE_EVTCHN]).unwrap();
        let mut page = Hypercalls::map_foreign(&mut self.xen, domid, &[pfn]).unwrap();
        let mut prod = [0u8; 4];
        page.read_page(0, OUT_PROD, &mut prod).unwrap();
        let mut prod = u32::from_le_bytes(prod);
        for b in bytes {
            page.write_page(0, OUT + (prod & 2047) as usize, &[*b])
                .unwrap();
            prod = prod.wrapping_add(1);
        }
        page.write_page(0, OUT_PROD, &prod.to_le_bytes()).unwrap();
        self.evtchn.fire_remote(domid, port).unwrap();
    }

    fn out_cons(&self, name: &str) -> u32 {
        let domid = self.domid(name);
        let pfn = self.xen.domain(domid).unwrap().hvm_params[&CONSOLE_PFN];
        let b = self
            .xen
            .read_guest(domid, (pfn << 12) + OUT_CONS as u64, 4)
            .unwrap();
        u32::from_le_bytes(b.try_into().unwrap())
    }

    fn events(&self) -> Vec<String> {
        self.sup
            .host()
            .events()
            .into_iter()
            .map(|e| {
                // Timings vary; keep the event kind and the fields a test can know.
                e.split(' ')
                    .filter(|f| !f.ends_with("_ms") && !f.contains("_ms="))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    fn count_events(&self, prefix: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }
}

#[test]
fn crashes_within_the_budget_are_restarted_and_the_next_one_is_left_down() {
    let mut w = world("budget", vec![domain("web", BootOnCrash::Restart)]);
    w.sup = w
        .sup
        .with_restart_budget(RestartBudget::new(3, Duration::from_secs(60)));
    assert_eq!(w.sup.start_all(), 1);
    let first = w.domid("web");
    for i in 1..=3u64 {
        let before = w.domid("web");
        w.stop("web", SHUTDOWN_CRASH, Duration::from_secs(i));
        let after = w.domid("web");
        assert_ne!(before, after, "restart {i} is a new domain");
        assert!(
            w.xen.domain(before).is_none(),
            "the crashed domain was destroyed"
        );
        assert_eq!(w.creates(), 1 + i as usize);
    }
    assert_eq!(w.count_events("DOMFORGE-INIT event=restarted name=web"), 3);
    // The fourth crash inside the same minute exceeds the budget.
    let last = w.domid("web");
    w.stop("web", SHUTDOWN_CRASH, Duration::from_secs(4));
    assert_eq!(w.creates(), 4, "no fifth build");
    assert!(w.sup.running().is_empty());
    assert_eq!(
        w.xen.domain_ids(),
        vec![0],
        "left down: destroyed, not kept"
    );
    assert!(w.xen.destroyed_domain(last).is_some());
    assert!(w.xen.destroyed_domain(first).is_some());
    assert!(
        w.sup
            .host()
            .infos()
            .contains(&"'web' restarted too often (3 times within 60 s); leaving it stopped"),
        "{:?}",
        w.sup.host().infos()
    );
    let events = w.events();
    assert_eq!(
        &events[events.len() - 2..],
        [
            format!(
                "DOMFORGE-INIT event=shutdown name=web domid={last} reason=crash action=restart"
            ),
            "DOMFORGE-INIT event=gave-up name=web".to_string(),
        ]
    );
    // Nothing left to supervise: further turns do not build anything.
    assert!(
        w.sup
            .turn(Duration::ZERO, w.t0 + Duration::from_secs(5), true)
    );
    assert_eq!(w.creates(), 4);
    // Only VIRQ_DOM_EXC stays bound; every console port was unbound with its domain.
    assert_eq!(
        w.evtchn.bindings().into_values().collect::<Vec<_>>(),
        vec![Binding::Virq(VIRQ_DOM_EXC)]
    );
}

#[test]
fn the_budget_recovers_once_old_restarts_leave_the_window() {
    let mut w = world("window", vec![domain("web", BootOnCrash::Restart)]);
    w.sup = w
        .sup
        .with_restart_budget(RestartBudget::new(1, Duration::from_secs(10)));
    w.sup.start_all();
    w.stop("web", SHUTDOWN_CRASH, Duration::from_secs(0));
    assert_eq!(w.creates(), 2);
    // 11 s later the first restart has left the 10 s window.
    w.stop("web", SHUTDOWN_CRASH, Duration::from_secs(11));
    assert_eq!(w.creates(), 3);
    // 1 s after that the budget (1 per 10 s) is spent.
    w.stop("web", SHUTDOWN_CRASH, Duration::from_secs(12));
    assert_eq!(w.creates(), 3);
    assert_eq!(w.count_events("DOMFORGE-INIT event=gave-up name=web"), 1);
}

#[test]
fn budgets_are_per_domain() {
    let mut w = world(
        "per-domain",
        vec![
            domain("a", BootOnCrash::Restart),
            domain("b", BootOnCrash::Restart),
        ],
    );
    w.sup = w
        .sup
        .with_restart_budget(RestartBudget::new(1, Duration::from_secs(60)));
    assert_eq!(w.sup.start_all(), 2);
    w.stop("a", SHUTDOWN_CRASH, Duration::from_secs(1));
    w.stop("a", SHUTDOWN_CRASH, Duration::from_secs(2));
    // a has given up; b's budget is untouched.
    w.stop("b", SHUTDOWN_CRASH, Duration::from_secs(3));
    let names: Vec<String> = w.sup.running().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["b".to_string()]);
    assert_eq!(w.count_events("DOMFORGE-INIT event=gave-up"), 1);
    assert_eq!(w.count_events("DOMFORGE-INIT event=restarted name=b"), 1);
}

#[test]
fn each_shutdown_reason_gets_its_policy() {
    // (on_crash, SHUTDOWN_* code) → builds after the first, domain kept, reboots.
    let cases = [
        (BootOnCrash::Destroy, SHUTDOWN_CRASH, 0, false, 0),
        (BootOnCrash::Restart, SHUTDOWN_CRASH, 1, false, 0),
        (BootOnCrash::RebootPlatform, SHUTDOWN_CRASH, 0, false, 1),
        // libxl defaults: on_poweroff = destroy, on_reboot = restart, whatever on_crash says.
        (BootOnCrash::Restart, SHUTDOWN_POWEROFF, 0, false, 0),
        (BootOnCrash::Destroy, SHUTDOWN_REBOOT, 1, false, 0),
        // Suspended domains are kept (nothing here resumes them).
        (BootOnCrash::Restart, SHUTDOWN_SUSPEND, 0, true, 0),
    ];
    for (i, (on_crash, code, rebuilds, kept, reboots)) in cases.into_iter().enumerate() {
        let mut w = world(&format!("policy{i}"), vec![domain("g", on_crash)]);
        w.sup.start_all();
        let domid = w.domid("g");
        w.stop("g", code, Duration::from_secs(1));
        let case = format!("case {i}: {on_crash:?} code {code}");
        assert_eq!(w.creates(), 1 + rebuilds, "{case}");
        assert_eq!(w.xen.domain(domid).is_some(), kept, "{case}");
        let reboot_count = w
            .sup
            .host()
            .records
            .iter()
            .filter(|r| **r == Record::Reboot)
            .count();
        assert_eq!(reboot_count, reboots, "{case}");
    }
}

#[test]
fn console_bytes_are_relayed_as_lines_and_the_ring_is_freed() {
    let mut w = world("relay", vec![domain("web", BootOnCrash::Destroy)]);
    w.sup.start_all();
    let local = w
        .evtchn
        .bindings()
        .into_iter()
        .find(|(_, b)| matches!(b, Binding::Interdomain { .. }))
        .map(|(p, _)| p)
        .unwrap();
    w.guest_writes("web", b"hello\r\nwor");
    w.sup.turn(Duration::ZERO, w.t0, false);
    assert_eq!(w.sup.host().console(), ["[web] hello"]);
    // All 10 bytes were consumed, the partial line is held back.
    assert_eq!(w.out_cons("web"), 10);
    assert_eq!(
        w.evtchn.notified(),
        [local],
        "space freed: the guest is told"
    );
    w.guest_writes("web", b"ld\n\x1b[2J\n");
    w.sup.turn(Duration::ZERO, w.t0, false);
    assert_eq!(
        w.sup.host().console(),
        ["[web] hello", "[web] world", "[web] ?[2J"]
    );
    assert_eq!(w.out_cons("web"), 18, "10 + 8 bytes consumed");
    // A turn with nothing written relays nothing and notifies nobody.
    w.sup.turn(Duration::ZERO, w.t0, false);
    assert_eq!(w.sup.host().console().len(), 3);
    assert_eq!(w.evtchn.notified().len(), 2);
}

#[test]
fn a_wrapping_ring_is_relayed_whole() {
    let mut w = world("wrap", vec![domain("web", BootOnCrash::Destroy)]);
    w.sup.start_all();
    // 3 × 1500 bytes: the second and third writes cross the end of out[2048].
    let mut expected = Vec::new();
    for chunk in 0..3u8 {
        let line: Vec<u8> = (0..1499usize)
            .map(|i| b'a' + ((i + usize::from(chunk)) % 26) as u8)
            .collect();
        w.guest_writes("web", &[line.as_slice(), b"\n"].concat());
        w.sup.turn(Duration::ZERO, w.t0, false);
        expected.push(format!("[web] {}", String::from_utf8(line).unwrap()));
    }
    assert_eq!(w.sup.host().console(), expected);
    assert_eq!(w.out_cons("web"), 4500);
}

#[test]
fn consoles_of_several_guests_are_demultiplexed_by_name() {
    let mut w = world(
        "demux",
        vec![
            domain("web", BootOnCrash::Destroy),
            domain("db", BootOnCrash::Destroy),
        ],
    );
    assert_eq!(w.sup.start_all(), 2);
    let port_of = |w: &World, name: &str| {
        let domid = w.domid(name);
        let remote = w.xen.domain(domid).unwrap().hvm_params[&CONSOLE_EVTCHN];
        w.evtchn
            .local_port(Binding::Interdomain {
                domid,
                port: u32::try_from(remote).unwrap(),
            })
            .unwrap()
    };
    let (web, db) = (port_of(&w, "web"), port_of(&w, "db"));
    assert_ne!(web, db);
    // Interleaved partial lines must not mix: each guest's line is assembled on its own.
    w.guest_writes("web", b"GET /in");
    w.guest_writes("db", b"checkpoint ");
    w.sup.turn(Duration::ZERO, w.t0, false);
    assert!(w.sup.host().console().is_empty());
    w.guest_writes("db", b"done\n");
    w.sup.turn(Duration::ZERO, w.t0, false);
    w.guest_writes("web", b"dex\nGET /a\n");
    w.sup.turn(Duration::ZERO, w.t0, false);
    assert_eq!(
        w.sup.host().console(),
        ["[db] checkpoint done", "[web] GET /index", "[web] GET /a"]
    );
    // Each notification went to the guest whose ring was read, once per read.
    assert_eq!(w.evtchn.notified(), [web, db, db, web]);
}

#[test]
fn a_stopping_guest_s_last_words_come_before_its_shutdown() {
    let mut w = world("last-words", vec![domain("web", BootOnCrash::Destroy)]);
    w.sup.start_all();
    w.guest_writes("web", b"Kernel panic - not syncing\nend Kernel panic");
    let domid = w.domid("web");
    // No relay turn in between: the crash is noticed first; the ring is drained before the
    // domain is destroyed, and the unterminated tail is flushed.
    assert!(w.xen.shutdown_domain(domid, SHUTDOWN_CRASH));
    w.sup.check_domains(w.t0);
    let tail: Vec<&Record> = w.sup.host().records.iter().rev().take(3).collect();
    assert_eq!(
        tail.into_iter().rev().cloned().collect::<Vec<_>>(),
        [
            Record::Console("[web] Kernel panic - not syncing".into()),
            Record::Console("[web] end Kernel panic".into()),
            Record::Event(format!(
                "DOMFORGE-INIT event=shutdown name=web domid={domid} reason=crash action=destroy"
            )),
        ]
    );
}

#[test]
fn a_domain_that_vanished_counts_as_crashed() {
    let mut w = world("vanished", vec![domain("web", BootOnCrash::Restart)]);
    w.sup.start_all();
    let domid = w.domid("web");
    // Someone else destroys it (xl destroy from a debug shell): getdomaininfo answers ESRCH.
    let mut other = Xen::with_version(w.xen.clone(), InterfaceVersion::V16);
    other.destroy(DomId::new(domid).unwrap()).unwrap();
    // No VIRQ: found by the periodic check.
    assert!(w.sup.turn(Duration::ZERO, w.t0, true));
    assert_eq!(w.creates(), 2);
    assert!(w.events().iter().any(|e| e
        == &format!(
            "DOMFORGE-INIT event=shutdown name=web domid={domid} reason=vanished action=restart"
        )));
}

#[test]
fn without_virq_dom_exc_domains_are_still_checked_when_due() {
    let mut w = world("no-virq", vec![domain("web", BootOnCrash::Restart)]);
    // Rebuild the supervisor over an event channel that refuses the VIRQ.
    let evtchn = FakeEvtchn::new(w.xen.clone());
    evtchn.refuse_virq();
    let (typed, _) = Xen::open(w.xen.clone()).unwrap();
    let config = BootConfig {
        system: "t".try_into().unwrap(),
        xen_major: 4,
        xen_minor: 18,
        domctl_interface: 0x16,
        arm_gic: None,
        domains: [domain("web", BootOnCrash::Restart)].into_iter().collect(),
        xenstore: false,
    };
    w.sup = Supervisor::new(
        typed,
        evtchn.clone(),
        RecordingHost::default(),
        config,
        root("no-virq"),
    );
    w.evtchn = evtchn;
    assert!(w.sup.host().infos()[0].starts_with("cannot bind VIRQ_DOM_EXC"));
    w.sup.start_all();
    let domid = w.domid("web");
    assert!(w.xen.shutdown_domain(domid, SHUTDOWN_CRASH));
    assert!(!w.sup.turn(Duration::ZERO, w.t0, false), "not due: no look");
    assert_eq!(w.creates(), 1);
    assert!(w.sup.turn(Duration::ZERO, w.t0, true));
    assert_eq!(w.creates(), 2);
}

#[test]
fn with_xenstore_the_dom_exc_virq_is_left_to_xenstored_and_states_are_polled() {
    let mut w = world("give-virq", vec![domain("web", BootOnCrash::Restart)]);
    use crate::evtchn::fake::Binding;
    assert!(w.evtchn.local_port(Binding::Virq(VIRQ_DOM_EXC)).is_some());
    w.sup = w.sup.without_dom_exc();
    // xenstored can bind it now (the kernel allows one binding of a global VIRQ per domain).
    assert_eq!(w.evtchn.local_port(Binding::Virq(VIRQ_DOM_EXC)), None);
    w.sup.start_all();
    let domid = w.domid("web");
    assert!(w.xen.shutdown_domain(domid, SHUTDOWN_CRASH));
    assert!(!w.sup.turn(Duration::ZERO, w.t0, false));
    assert!(w.sup.turn(Duration::ZERO, w.t0, true));
    assert_eq!(
        w.creates(),
        2,
        "the crash was seen by polling and web restarted"
    );
}

#[test]
fn a_failed_unpause_destroys_the_domain_and_unbinds_its_console() {
    let mut w = world("attach", vec![domain("web", BootOnCrash::Restart)]);
    w.xen.fail_nth(Op::UnpauseDomain, 1, Errno::EINVAL);
    assert_eq!(w.sup.start_all(), 0);
    assert!(w.sup.running().is_empty());
    assert_eq!(w.xen.domain_ids(), vec![0]);
    assert_eq!(
        w.evtchn.bindings().into_values().collect::<Vec<_>>(),
        vec![Binding::Virq(VIRQ_DOM_EXC)]
    );
    let infos = w.sup.host().infos();
    assert!(
        infos.iter().any(|m| m.starts_with("domain 'web' (")
            && m.contains("unpausing")
            && m.ends_with("the domain was destroyed")),
        "{infos:?}"
    );
    assert_eq!(
        w.count_events("DOMFORGE-INIT event=build-failed name=web"),
        1
    );
}

/// dom0's side of the hotplug work, recorded.
#[derive(Default, Clone)]
struct SharedHotplug(Rc<std::cell::RefCell<Vec<String>>>);

impl HotplugHost for SharedHotplug {
    fn attach_disk(&mut self, target: &str, ro: bool) -> Result<(u32, u32, String), String> {
        self.0.borrow_mut().push(format!("attach {target} ro={ro}"));
        Ok((7, 0, "/dev/loop0".into()))
    }
    fn interface_exists(&mut self, name: &str) -> bool {
        self.0.borrow_mut().push(format!("exists? {name}"));
        true
    }
    fn rename_interface(&mut self, from: &str, to: &str) -> Result<(), String> {
        self.0.borrow_mut().push(format!("rename {from} {to}"));
        Ok(())
    }
    fn join_bridge(&mut self, bridge: &str, ifname: &str, mtu: u32) -> Result<(), String> {
        self.0
            .borrow_mut()
            .push(format!("bridge {bridge} {ifname} mtu={mtu}"));
        Ok(())
    }
}

fn pv_world(test: &str) -> (World, xenstore_client::fake::FakeXenstored, SharedHotplug) {
    pv_world_served_by(test, None)
}

/// [`pv_world`] with `app`'s disk served by domain index `disk_backend` (a `storage` domain at
/// index 0 is added then).
fn pv_world_served_by(
    test: &str,
    disk_backend: Option<u8>,
) -> (World, xenstore_client::fake::FakeXenstored, SharedHotplug) {
    let mut app = domain("app", BootOnCrash::Restart);
    app.pv_disks
        .push(firmware_config::blob::BootDisk {
            vdev: "xvda".try_into().unwrap(),
            devid: 51712,
            backend: disk_backend,
            target: "/srv/app.img".try_into().unwrap(),
            read_only: true,
            cdrom: false,
        })
        .unwrap();
    app.pv_nics
        .push(firmware_config::blob::BootNic {
            handle: 0,
            mac: [0, 0x16, 0x3e, 0, 0, 1],
            backend: None,
            bridge: "xenbr0".try_into().unwrap(),
            vifname: None,
            mtu: 1500,
        })
        .unwrap();
    let domains = match disk_backend {
        Some(_) => vec![domain("storage", BootOnCrash::Restart), app],
        None => vec![app],
    };
    let mut w = world(test, domains);
    w.sup.config.xenstore = true;
    let xs = xenstore_client::fake::FakeXenstored::new();
    let stream: Box<dyn crate::store::Stream> = Box::new(xs.clone());
    let hotplug = SharedHotplug::default();
    let World {
        sup,
        xen,
        evtchn,
        t0,
    } = w;
    let sup = sup.with_xenstore(
        xenstore_client::Client::new(stream),
        Box::new(hotplug.clone()),
    );
    (
        World {
            sup,
            xen,
            evtchn,
            t0,
        },
        xs,
        hotplug,
    )
}

/// HVM_PARAM_STORE_PFN 1, HVM_PARAM_STORE_EVTCHN 2 (xen/include/public/hvm/params.h).
const STORE_PFN: u32 = 1;
const STORE_EVTCHN: u32 = 2;

#[test]
fn with_xenstore_a_domain_is_introduced_with_its_devices_before_it_runs() {
    let (mut w, xs, hotplug) = pv_world("pv-intro");
    assert_eq!(w.sup.start_all(), 1);
    let domid = w.domid("app");
    let d = w.xen.domain(domid).unwrap();
    let (pfn, port) = (d.hvm_params[&STORE_PFN], d.hvm_params[&STORE_EVTCHN]);
    assert!(pfn != 0, "the guest got a xenstore ring");
    assert_eq!(
        xs.introduced().get(&domid),
        Some(&(pfn, u32::try_from(port).unwrap()))
    );
    assert_eq!(
        xs.value(&format!("/local/domain/{domid}/name")).as_deref(),
        Some("app")
    );
    let be = format!("/local/domain/0/backend/vbd/{domid}/51712");
    assert_eq!(
        xs.value(&format!("{be}/params")).as_deref(),
        Some("/srv/app.img")
    );
    assert_eq!(
        xs.value(&format!("/local/domain/{domid}/device/vif/0/mac"))
            .as_deref(),
        Some("00:16:3e:00:00:01")
    );
    // The domain was unpaused only after all of it was written: the unpause is the last domctl.
    assert_eq!(w.xen.ops().last(), Some(&Op::UnpauseDomain));
    // dom0's hotplug runs on the next turn.
    w.sup.turn(Duration::ZERO, w.t0, false);
    let done = hotplug.0.borrow().clone();
    assert!(
        done.contains(&"attach /srv/app.img ro=true".to_string()),
        "{done:?}"
    );
    assert!(
        done.contains(&format!("bridge xenbr0 vif{domid}.0 mtu=1500")),
        "{done:?}"
    );
    assert_eq!(
        xs.value(&format!("{be}/physical-device")).as_deref(),
        Some("7:0")
    );
    // A backend that reaches Connected (4) is reported.
    xs.poke(&format!("{be}/state"), "4");
    w.sup.turn(Duration::ZERO, w.t0, false);
    let events = w.sup.host().events().join("\n");
    assert!(
        events.contains("event=device-connected name=app device=xvda backend=0"),
        "{events}"
    );
}

/// The driver domain `name` says it serves, as its domforge-init does (`serve::Server::announce`).
fn serves(w: &World, xs: &xenstore_client::fake::FakeXenstored, name: &str) {
    let domid = w.domid(name);
    xs.poke(&xenstore_layout::serving_node(domid), "1");
}

fn is_running(w: &World, name: &str) -> bool {
    w.sup.running().iter().any(|(n, _)| n == name)
}

#[test]
fn a_frontend_is_built_once_its_driver_domain_serves() {
    let (mut w, xs, _) = pv_world_served_by("pv-wait", Some(0));
    assert_eq!(w.sup.start_all(), 1, "storage now, app once storage serves");
    assert!(!is_running(&w, "app"));
    assert_eq!(w.sup.waiting(), 1);
    assert_eq!(
        w.count_events("DOMFORGE-INIT event=waiting name=app for=storage"),
        1
    );
    // Booting, not serving yet: app still waits.
    w.sup
        .turn(Duration::ZERO, w.t0 + Duration::from_secs(10), false);
    assert!(!is_running(&w, "app"));
    serves(&w, &xs, "storage");
    w.sup
        .turn(Duration::ZERO, w.t0 + Duration::from_secs(11), false);
    assert!(is_running(&w, "app"));
    assert_eq!(w.sup.waiting(), 0);
    let (storage, app) = (w.domid("storage"), w.domid("app"));
    assert_eq!(
        xs.value(&format!("/local/domain/{app}/device/vbd/51712/backend-id"))
            .as_deref(),
        Some(storage.to_string().as_str())
    );
    // Built once: a first build is not a restart.
    assert_eq!(w.creates(), 2);
    assert_eq!(w.count_events("DOMFORGE-INIT event=restarted"), 0);
}

#[test]
fn a_driver_domain_that_goes_down_before_it_serves_takes_no_frontend_with_it() {
    let (mut w, xs, _) = pv_world_served_by("pv-early-crash", Some(0));
    w.sup.start_all();
    // Nested TCG's early triple fault, twice.
    w.stop("storage", SHUTDOWN_REBOOT, Duration::from_secs(1));
    w.stop("storage", SHUTDOWN_REBOOT, Duration::from_secs(2));
    assert!(!is_running(&w, "app"));
    serves(&w, &xs, "storage");
    w.sup
        .turn(Duration::ZERO, w.t0 + Duration::from_secs(3), false);
    assert!(is_running(&w, "app"));
    // storage three times, app once, and none of app's restart budget spent.
    assert_eq!(w.creates(), 4);
    assert_eq!(w.count_events("DOMFORGE-INIT event=restarted name=app"), 0);
}

#[test]
fn a_frontend_whose_driver_domain_never_serves_is_built_after_the_wait() {
    let (mut w, _xs, _) = pv_world_served_by("pv-wait-timeout", Some(0));
    w.sup.start_all();
    let late = w.t0 + boot_order::BACKEND_WAIT + Duration::from_secs(1);
    w.sup.turn(Duration::ZERO, late, false);
    assert!(is_running(&w, "app"));
    assert_eq!(
        w.count_events("DOMFORGE-INIT event=wait-timeout name=app"),
        1
    );
    let infos = w.sup.host().infos();
    assert!(
        infos
            .iter()
            .any(|m| m.starts_with("'app' is built without waiting longer for 'storage'")),
        "{infos:?}"
    );
}

#[test]
fn a_rebuilt_driver_domain_takes_the_frontends_it_serves_with_it() {
    let (mut w, xs, _) = pv_world_served_by("pv-driver-restart", Some(0));
    w.sup.start_all();
    serves(&w, &xs, "storage");
    w.sup.turn(Duration::ZERO, w.t0, false);
    let (storage, app) = (w.domid("storage"), w.domid("app"));
    assert!(
        xs.node(&format!("/local/domain/{storage}/backend/vbd/{app}/51712"))
            .is_some()
    );
    w.stop("storage", SHUTDOWN_CRASH, Duration::from_secs(1));
    assert!(w.xen.domain(app).is_none(), "the old app is destroyed");
    assert!(
        !is_running(&w, "app"),
        "the new app waits for the new storage"
    );
    serves(&w, &xs, "storage");
    w.sup
        .turn(Duration::ZERO, w.t0 + Duration::from_secs(2), false);
    let (storage2, app2) = (w.domid("storage"), w.domid("app"));
    assert_ne!(storage, storage2);
    assert_ne!(app, app2, "app follows its rebuilt backend");
    // The new app's disk names the new backend, on both sides.
    assert_eq!(
        xs.value(&format!("/local/domain/{app2}/device/vbd/51712/backend-id"))
            .as_deref(),
        Some(storage2.to_string().as_str())
    );
    assert!(
        xs.node(&format!(
            "/local/domain/{storage2}/backend/vbd/{app2}/51712"
        ))
        .is_some()
    );
    assert_eq!(w.count_events("DOMFORGE-INIT event=restarted name=app"), 1);
    // Building order: storage, app, then storage again and app after it.
    assert_eq!(w.creates(), 4);
}

#[test]
fn a_stopped_domain_leaves_xenstore_and_its_restart_is_introduced_again() {
    let (mut w, xs, _) = pv_world("pv-restart");
    w.sup.start_all();
    let first = w.domid("app");
    w.stop("app", SHUTDOWN_CRASH, Duration::from_secs(1));
    assert!(xs.node(&format!("/local/domain/{first}/name")).is_none());
    assert!(
        xs.node(&format!("/local/domain/0/backend/vbd/{first}/51712"))
            .is_none()
    );
    let second = w.domid("app");
    assert_ne!(first, second);
    assert!(xs.introduced().contains_key(&second));
    assert_eq!(
        xs.value(&format!("/local/domain/{second}/name")).as_deref(),
        Some("app")
    );
}
