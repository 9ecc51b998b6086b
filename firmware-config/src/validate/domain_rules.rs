//! The rules for one domain at a time, each over a [`DomainCtx`] (what every rule of a domain
//! needs to know about it), run by [`Validator::domains`] in order.

use super::*;

/// One domain as the per-domain rules see it: its kind, who builds it, its effective console, and
/// whether the system has a dom0.
#[derive(Clone, Copy)]
pub(super) struct DomainCtx<'a> {
    d: &'a Domain,
    kind: DomainKind,
    builder: Builder,
    console: Console,
    dom0: bool,
}

impl<'a> Validator<'a> {
    /// Every per-domain rule. A domain of the wrong architecture gets E0204 and nothing else (every
    /// other rule would only repeat it).
    pub(super) fn domains(&mut self) {
        let m = self.m();
        for d in &m.domains {
            if !self.kind_fits_board(d) {
                continue;
            }
            let cx = DomainCtx {
                d,
                kind: d.kind.value,
                builder: d.builder(),
                console: console_of(d),
                dom0: has_dom0(m),
            };
            self.domain_vcpus(&cx);
            self.domain_builder(&cx);
            self.domain_images(&cx);
            self.domain_console(&cx);
            self.domain_pv_interfaces(&cx);
            self.domain_static_memory(&cx);
            self.domain_direct_map(&cx);
            self.domain_knobs(&cx);
            self.domain_affinity(&cx);
            self.domain_crash_policy(&cx);
            self.domain_passthrough_kind(&cx);
            self.domain_raw_grants(&cx);
        }
    }

    /// E0204: an arm64 guest on an arm64 board, a PVH guest on an x86_64 one.
    fn kind_fits_board(&mut self, d: &Domain) -> bool {
        let board_arch = self.input.board.arch;
        let kind = d.kind.value;
        let arch_ok = matches!(
            (kind, board_arch),
            (DomainKind::Arm64, Arch::Arm64) | (DomainKind::Pvh, Arch::X86_64)
        );
        if !arch_ok {
            self.d.push(
                Diagnostic::error(
                    "E0204",
                    format!(
                        "domain `{}` is {} but board `{}` is {}",
                        d.name.value,
                        kind_name(kind),
                        self.input.board.name,
                        board_arch.as_str()
                    ),
                )
                .at(d.kind.span.clone(), "domain kind")
                .help(match board_arch {
                    Arch::Arm64 => "use `kind = \"arm64\"` on an arm64 board",
                    Arch::X86_64 => "use `kind = \"pvh\"` on an x86_64 board",
                }),
            );
            return false;
        }
        true
    }

    /// E0206: vCPUs the board and Xen can give.
    fn domain_vcpus(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx { d, kind, .. } = *cx;
        if d.vcpus.value > self.cpus() {
            self.d.push(
                Diagnostic::error(
                    "E0206",
                    format!(
                        "domain `{}` asks for {} vCPUs; the board has {} CPUs",
                        d.name.value,
                        d.vcpus.value,
                        self.cpus()
                    ),
                )
                .at(d.vcpus.span.clone(), "too many vCPUs")
                .help("a dom0less guest's vCPUs should each have a physical CPU; lower `vcpus`"),
            );
        }
        if kind == DomainKind::Arm64 && d.vcpus.value > 128 {
            self.d.push(
                Diagnostic::error(
                    "E0206",
                    "ARM guests have at most 128 vCPUs (GUEST_MAX_VCPUS)",
                )
                .at(d.vcpus.span.clone(), "here"),
            );
        }
    }

    /// Who builds the domain: E0231 (no dom0less on x86), E0238 (domforge-init without dom0).
    fn domain_builder(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx {
            d,
            kind,
            builder,
            dom0,
            ..
        } = *cx;
        let board_arch = self.input.board.arch;
        if let Some(b) = &d.builder
            && kind == DomainKind::Pvh
            && b.value == Builder::Xen
        {
            self.d.push(
                Diagnostic::error("E0231", "Xen cannot build x86 guests at boot")
                    .at(b.span.clone(), "`builder = \"xen\"` is dom0less, which exists only on ARM")
                    .note("x86 Hyperlaunch is not merged upstream (Xen 4.22)")
                    .help("use `builder = \"init\"` (the default for PVH): domforge-init builds it from dom0"),
            );
        }
        // On x86 the missing dom0 is already reported once for the whole system (E0237).
        if builder == Builder::Init && !dom0 && board_arch != Arch::X86_64 {
            self.d.push(
                Diagnostic::error("E0238", format!("domain `{}` is built by domforge-init, which runs in dom0, but there is no dom0", d.name.value))
                    .at(
                        d.builder.as_ref().map_or(d.name.span.clone(), |b| b.span.clone()),
                        "built by domforge-init",
                    )
                    .help("add a [dom0] table (domforge-init runs in it), or `builder = \"xen\"` for a dom0less domain"),
            );
        }
    }

    /// The kernel's and ramdisk's formats for this kind and builder.
    fn domain_images(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx {
            d, kind, builder, ..
        } = *cx;
        let accept_kernel = match (kind, builder) {
            (DomainKind::Arm64, Builder::Xen) => std::vec![Accept::Arm64Image],
            (DomainKind::Arm64, Builder::Init) => std::vec![Accept::Arm64Image],
            (DomainKind::Pvh, _) => std::vec![Accept::PvhKernel],
        };
        self.artifact(
            &d.kernel,
            &accept_kernel,
            &format!("kernel of `{}`", d.name.value),
        );
        if let Some(r) = &d.ramdisk {
            self.artifact(
                r,
                &[Accept::Ramdisk],
                &format!("ramdisk of `{}`", d.name.value),
            );
        }
    }

    /// E0222 (a console the guest cannot have), W0203 (a command line that names no console).
    fn domain_console(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx {
            d,
            kind,
            builder,
            console,
            dom0,
        } = *cx;
        if let Some(c) = &d.console {
            if kind == DomainKind::Pvh && c.value == Console::Vpl011 {
                self.d.push(
                    Diagnostic::error("E0222", "vpl011 is an ARM console")
                        .at(c.span.clone(), "not available to x86 guests")
                        .help("use `console = \"hvc\"`: domforge-init serves the PV console"),
                );
            }
            if kind == DomainKind::Arm64
                && builder == Builder::Xen
                && c.value == Console::Hvc
                && !dom0
            {
                self.d.push(
                    Diagnostic::error("E0222", "`hvc` needs a console backend, and this system has no dom0")
                        .at(c.span.clone(), "nothing would read this console")
                        .note("Xen prints a dom0less guest's vpl011 output on its own serial line")
                        .help("use `console = \"vpl011\"` and `console=ttyAMA0` on the kernel command line"),
                );
            }
        }
        if let (Some(cmd), Console::Vpl011 | Console::Hvc) = (&d.cmdline, console)
            && !cmd
                .value
                .split_whitespace()
                .any(|w| w.starts_with("console="))
        {
            let dev = if console == Console::Vpl011 {
                "ttyAMA0"
            } else {
                "hvc0"
            };
            self.d.push(
                Diagnostic::warning(
                    "W0203",
                    format!(
                        "the kernel command line of `{}` names no console",
                        d.name.value
                    ),
                )
                .at(
                    cmd.span.clone(),
                    format!("add `console={dev}` to see kernel messages"),
                ),
            );
        }
    }

    /// `enhanced` (E0242, dom0less only, Xen features) and xenstore being served (E0223).
    fn domain_pv_interfaces(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx {
            d,
            kind,
            builder,
            dom0,
            ..
        } = *cx;
        let m = self.m();
        if let Some(e) = &d.enhanced {
            if kind == DomainKind::Pvh {
                self.d.push(
                    Diagnostic::error("E0242", "`enhanced` is a dom0less (ARM) setting")
                        .at(e.span.clone(), "PVH guests always have PV interfaces"),
                );
            } else if builder == Builder::Init {
                self.d
                    .push(dom0less_only(&d.name.value, "`enhanced`", e.span.clone()));
            } else {
                self.need(XenFeature::Enhanced, &e.span, "`enhanced`");
                if e.value == Enhanced::Legacy {
                    self.need(
                        XenFeature::EnhancedLegacy,
                        &e.span,
                        "`enhanced = \"legacy\"`",
                    );
                }
            }
        }
        let enhanced = enhanced_of(m, d);
        let xenstore_domain = dom0 || m.domains.iter().any(|o| o.has_role(Role::Xenstore));
        if kind == DomainKind::Arm64
            && matches!(enhanced, Enhanced::Enabled | Enhanced::Legacy)
            && !xenstore_domain
        {
            let span = d
                .enhanced
                .as_ref()
                .map_or(d.name.span.clone(), |e| e.span.clone());
            self.d.push(
                Diagnostic::error(
                    "E0223",
                    format!(
                        "domain `{}` asks for xenstore, but no domain serves it",
                        d.name.value
                    ),
                )
                .at(span, "xenstore requested")
                .note("Xen panics at boot: \"xenstore requested, but xenstore domain not present\"")
                .help("add a dom0, or use `enhanced = \"no-xenstore\"` or `\"disabled\"`"),
            );
        }
    }

    /// Static memory (ARM dom0less): the Xen build (E0228), each range (see `static_range`), the
    /// total against `memory` (E0230), no legacy xenstore page (E0234).
    fn domain_static_memory(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx {
            d, kind, builder, ..
        } = *cx;
        if d.static_memory.is_empty() {
            return;
        }
        let m = self.m();
        let span = d.static_memory[0].span.clone();
        if kind == DomainKind::Pvh {
            self.d.push(
                Diagnostic::error("E0242", "static memory is an ARM dom0less feature")
                    .at(span.clone(), "not available to PVH guests"),
            );
        } else if builder == Builder::Init {
            self.d
                .push(dom0less_only(&d.name.value, "static memory", span.clone()));
        }
        self.need(XenFeature::StaticMemory, &span, "static memory");
        if !m
            .system
            .xen_features
            .iter()
            .any(|f| f.value == "static-memory")
        {
            self.d.push(
                Diagnostic::error("E0228", "static memory needs a Xen built with CONFIG_STATIC_MEMORY")
                    .at(span.clone(), "Debian's Xen is built without it")
                    .help("build Xen with CONFIG_EXPERT=y CONFIG_UNSUPPORTED=y CONFIG_STATIC_MEMORY=y, point `hypervisor` at it and add `xen_features = [\"static-memory\"]` to [system]"),
            );
        }
        let mut total: u64 = 0;
        for r in &d.static_memory {
            total = total.saturating_add(r.value.size);
            self.static_range(r);
        }
        if total != d.memory.value {
            self.d.push(
                Diagnostic::error(
                    "E0230",
                    format!(
                        "static memory adds up to {}, but `memory` is {}",
                        human_size(total),
                        human_size(d.memory.value)
                    ),
                )
                .at(d.memory.span.clone(), "must equal the static ranges' total")
                .note("Xen does not mix static and heap memory in one domain (booting.txt)"),
            );
        }
        if d.enhanced
            .as_ref()
            .is_some_and(|e| e.value == Enhanced::Legacy)
        {
            self.d.push(
                Diagnostic::error(
                    "E0234",
                    "`enhanced = \"legacy\"` cannot be used with static memory",
                )
                .at(span, "static memory here")
                .note("the legacy xenstore page is allocated late from the heap (booting.txt)"),
            );
        }
    }

    /// E0207: one static range is 2 MiB aligned, non-empty, inside one RAM bank and clear of
    /// reserved memory.
    fn static_range(&mut self, r: &At<Region>) {
        if !r.value.base.is_multiple_of(2 * MIB)
            || !r.value.size.is_multiple_of(2 * MIB)
            || r.value.size == 0
        {
            self.d.push(
                Diagnostic::error("E0207", "static memory ranges must be 2 MiB aligned and non-empty")
                    .at(r.span.clone(), "misaligned range")
                    .note("Xen maps guest RAM with 2 MiB blocks; booting.txt requires page alignment, domforge requires 2 MiB so direct-mapped guests get block mappings"),
            );
        }
        if !self
            .input
            .inventory
            .memory
            .iter()
            .any(|bank| bank.contains(&r.value))
        {
            self.d.push(
                Diagnostic::error(
                    "E0207",
                    format!(
                        "static memory {} is not inside one RAM bank",
                        fmt_region(&r.value)
                    ),
                )
                .at(r.span.clone(), "outside RAM")
                .note(format!(
                    "RAM banks: {}",
                    self.input
                        .inventory
                        .memory
                        .iter()
                        .map(fmt_region)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
        for res in &self.input.inventory.reserved {
            if res.region.overlaps(&r.value) {
                self.d.push(
                    Diagnostic::error(
                        "E0207",
                        format!(
                            "static memory overlaps reserved memory `{}` {}",
                            res.name,
                            fmt_region(&res.region)
                        ),
                    )
                    .at(r.span.clone(), "overlaps a reserved region"),
                );
            }
        }
    }

    /// E0214: `direct_map` needs static memory.
    fn domain_direct_map(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx { d, .. } = *cx;
        if let Some(dm) = &d.direct_map
            && dm.value
        {
            self.need(XenFeature::DirectMap, &dm.span, "`direct_map`");
            if d.static_memory.is_empty() {
                self.d.push(
                    Diagnostic::error("E0214", "`direct_map` needs static memory")
                        .at(
                            dm.span.clone(),
                            "guest RAM can only equal host RAM when the host RAM is fixed",
                        )
                        .note("Xen panics on `direct-map` without `xen,static-mem`")
                        .help("add `static_memory = [{ base = \"0x...\", size = \"...\" }]`"),
                );
            }
        }
    }

    /// Per-domain knobs newer Xen releases added (`p2m_pool`, `sve` E0245, grant limits, LLC colours E0246).
    fn domain_knobs(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx { d, .. } = *cx;
        if let Some(p) = &d.p2m_pool {
            self.need(XenFeature::P2mPoolSize, &p.span, "`p2m_pool`");
        }
        if let Some(s) = &d.sve {
            self.need(XenFeature::Sve, &s.span, "`sve`");
            if s.value % 128 != 0 || s.value > 2048 {
                self.d.push(
                    Diagnostic::error(
                        "E0245",
                        "`sve` is a vector length in bits: a multiple of 128, at most 2048",
                    )
                    .at(s.span.clone(), "here"),
                );
            }
        }
        for g in [&d.max_grant_frames, &d.max_maptrack_frames]
            .into_iter()
            .flatten()
        {
            self.need(XenFeature::GrantLimits, &g.span, "grant limits");
        }
        if let Some(c) = &d.llc_colors {
            self.need(XenFeature::LlcColors, &c.span, "`llc_colors`");
            if !d.static_memory.is_empty() {
                self.d.push(
                    Diagnostic::error("E0246", "LLC colouring and static memory are incompatible")
                        .at(c.span.clone(), "colours here")
                        .note("Xen panics: \"LLC coloring and static memory are incompatible\""),
                );
            }
        }
    }

    /// E0226: vCPU pinning names existing CPUs, one entry per vCPU.
    fn domain_affinity(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx { d, .. } = *cx;
        if !d.vcpu_affinity.is_empty() {
            self.need(
                XenFeature::VcpuAffinity,
                &d.vcpu_affinity[0].span,
                "vCPU pinning",
            );
            if d.vcpu_affinity.len() as u64 > u64::from(d.vcpus.value) {
                self.d.push(
                    Diagnostic::error(
                        "E0226",
                        format!(
                            "{} affinity entries for {} vCPUs",
                            d.vcpu_affinity.len(),
                            d.vcpus.value
                        ),
                    )
                    .at(
                        d.vcpu_affinity[d.vcpu_affinity.len() - 1].span.clone(),
                        "one entry per vCPU, in order",
                    ),
                );
            }
            for a in &d.vcpu_affinity {
                if let Some(cpu) = a.value.0.iter().find(|c| **c >= self.cpus()) {
                    self.d.push(
                        Diagnostic::error(
                            "E0226",
                            format!(
                                "CPU {cpu} does not exist; the board has {} CPUs",
                                self.cpus()
                            ),
                        )
                        .at(a.span.clone(), "pins to a missing CPU"),
                    );
                } else if a.value.0.is_empty() {
                    self.d.push(
                        Diagnostic::error("E0226", "an affinity must name at least one CPU")
                            .at(a.span.clone(), "empty"),
                    );
                }
            }
        }
    }

    /// E0235: only a supervised domain can be restarted.
    fn domain_crash_policy(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx { d, builder, .. } = *cx;
        if let Some(oc) = &d.on_crash
            && builder == Builder::Xen
            && oc.value != OnCrash::Destroy
        {
            self.d.push(
                    Diagnostic::error("E0235", format!("a dom0less domain cannot be restarted; `on_crash = \"{}\"` needs a supervisor", on_crash_name(oc.value)))
                        .at(oc.span.clone(), "Xen builds dom0less guests once, at boot")
                        .note("Xen's dom0less documentation: \"If one of them crashes, the whole platform should be rebooted\"")
                        .help("use `on_crash = \"destroy\"` here; restartable ARM guests built by domforge-init are planned (`builder = \"init\"`)"),
                );
        }
    }

    /// Passthrough per architecture (E0219, E0220) and builder (E0247: no raw grants to dom0less domains).
    fn domain_passthrough_kind(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx {
            d, kind, builder, ..
        } = *cx;
        if let Some(p) = d.pci.first() {
            match kind {
                DomainKind::Pvh => self.d.push(
                    Diagnostic::error("E0219", "Xen cannot pass PCI devices through to PVH guests")
                        .at(p.span.clone(), format!("PCI device {} requested", p.value))
                        .note("libxl refuses it: \"passthrough not yet supported for x86 PVH guests\" (tools/libs/light/libxl_x86.c); Xen has no vPCI for x86 domUs")
                        .help("use a PV driver domain with pciback/pcifront or an HVM guest with QEMU (xl), or grant raw `iomem`/`irqs` if the device needs no DMA remapping"),
                ),
                DomainKind::Arm64 => self.d.push(
                    Diagnostic::error("E0220", "PCI passthrough is not available to dom0less guests")
                        .at(p.span.clone(), "ARM PCI passthrough is a tech preview reachable only through xl")
                        .help("pass platform devices with `passthrough = [\"/path/in/host/dt\"]`"),
                ),
            }
        }
        if kind == DomainKind::Pvh
            && let Some(p) = d.passthrough.first()
        {
            self.d.push(
                Diagnostic::error("E0220", "device-tree passthrough is ARM-only")
                    .at(p.span.clone(), "x86 has no device tree")
                    .help("use `iomem` and `irqs` grants for x86 platform devices"),
            );
        }
        if builder == Builder::Xen {
            let raw = d
                .iomem
                .first()
                .map(|g| (g.span.clone(), "iomem"))
                .or_else(|| d.irqs.first().map(|i| (i.span.clone(), "irqs")));
            if let Some((span, what)) = raw {
                self.d.push(
                    Diagnostic::error("E0247", format!("raw `{what}` grants cannot be given to a dom0less domain"))
                        .at(span, "Xen builds this domain from the device tree, which has no property for raw grants")
                        .help("pass the device by its device-tree path in `passthrough`; raw grants are for domains domforge-init builds"),
                );
            }
        }
    }

    /// Raw grants to toolstack-built domains: SPIs only (E0229), iomem clear of the guest's own map (E0221).
    fn domain_raw_grants(&mut self, cx: &DomainCtx<'a>) {
        let DomainCtx {
            d,
            kind,
            builder,
            console,
            ..
        } = *cx;
        for irq in d.irqs.iter().filter(|_| builder != Builder::Xen) {
            if irq.value < 32 {
                self.d.push(
                    Diagnostic::error(
                        "E0229",
                        format!(
                            "interrupt {} is private to a CPU (SGI/PPI) and cannot be granted",
                            irq.value
                        ),
                    )
                    .at(
                        irq.span.clone(),
                        "`irqs` takes GIC INTIDs of SPIs (32 and up)",
                    ),
                );
            }
        }
        for g in &d.iomem {
            if kind == DomainKind::Arm64 && !d.direct_map() {
                let (banks, n) = guest_map::ram_banks(d.memory.value);
                for (what, r) in guest_map::fixed_regions(self.gic_v3(), console == Console::Vpl011)
                    .chain(banks[..n].iter().map(|b| ("guest RAM", *b)))
                {
                    if r.overlaps(&g.value.guest_region()) {
                        self.d.push(
                            Diagnostic::error("E0221", format!("iomem maps onto the guest's {what} at {}", fmt_region(&r)))
                                .at(g.span.clone(), "guest frame collides with Xen's guest memory map")
                                .help("choose another guest frame with `@GFN`; see xen/include/public/arch-arm.h"),
                        );
                    }
                }
            }
        }
    }
}
