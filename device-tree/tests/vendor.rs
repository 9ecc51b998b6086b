//! Passthrough fragments on vendor SoCs (Debian 6.1 DTBs): a 4-cell GICv3 (Rockchip RK3399, Radxa
//! Rock Pi 4B), interrupts forwarded by the i.MX8MQ GPC, phandle re-linking, IOMMUs Xen has no driver
//! for, and the guest memory map (i.MX8MQ peripherals inside `GUEST_VPCI_MEM`), plus `interrupts-extended` and `interrupt-parent`
//! chains on a small tree compiled by dtc.
//!
//! Every expectation comes from an **independent reading** of the host DTB: `fdtget` for property
//! cells and dtc's decompiled source for phandles, and a reference translator written here (interrupt
//! parent walk per Devicetree Specification v0.4 §2.4, GIC specifiers per Linux
//! `Documentation/devicetree/bindings/interrupt-controller/arm,gic-v3.yaml`: cells type, number,
//! flags and on 4-cell GICs a PPI-partition phandle; `reg` through every `ranges`, §2.3.8), not
//! from the code under test.

mod support;

use std::collections::BTreeMap;

use device_tree::DeviceTree;
use device_tree::passthrough::{FragmentOptions, PassthroughError, PassthroughRequest, fragment};

fn forced(path: &str) -> PassthroughRequest {
    PassthroughRequest {
        force_without_iommu: true,
        ..PassthroughRequest::new(path)
    }
}

fn dropping() -> FragmentOptions {
    FragmentOptions {
        drop_dependencies: true,
        ..Default::default()
    }
}

/// The reference reader: fdtget and dtc only.
struct Host<'a> {
    dtb: &'a [u8],
    phandles: BTreeMap<u32, String>,
}

impl<'a> Host<'a> {
    fn new(dtb: &'a [u8], name: &str) -> Self {
        Self {
            dtb,
            phandles: support::dtc_phandle_paths(dtb, name),
        }
    }

    fn cells(&self, node: &str, prop: &str) -> Option<Vec<u32>> {
        support::fdt_cells(self.dtb, node, prop)
    }

    fn has(&self, node: &str, prop: &str) -> bool {
        support::fdt_props(self.dtb, node).iter().any(|p| p == prop)
    }

    fn compatible(&self, node: &str) -> String {
        support::fdtget(self.dtb, node, "compatible", "s").unwrap_or_default()
    }

    fn parent(path: &str) -> String {
        match path.rfind('/') {
            Some(0) | None => "/".to_owned(),
            Some(i) => path[..i].to_owned(),
        }
    }

    /// §2.4.1: the node's `interrupt-parent`, else its tree parent, until a node with
    /// `#interrupt-cells`.
    fn interrupt_parent(&self, path: &str) -> String {
        let mut cur = path.to_owned();
        loop {
            let next = match self.cells(&cur, "interrupt-parent") {
                Some(c) => self.phandles[&c[0]].clone(),
                None => {
                    assert_ne!(cur, "/", "no interrupt parent for {path}");
                    Self::parent(&cur)
                }
            };
            if self.has(&next, "#interrupt-cells") {
                return next;
            }
            cur = next;
        }
    }

    /// The device's interrupts as (GIC, type, number, flags) after the known i.MX GPC forwarder
    /// (`fsl,imx7d-gpc.yaml`: a wake-up controller whose specifiers are the GIC's own).
    fn gic_interrupts(&self, path: &str) -> Vec<(String, [u32; 3])> {
        let mut ctrl = self.interrupt_parent(path);
        if self.compatible(&ctrl).contains("fsl,imx8mq-gpc") {
            ctrl = self.interrupt_parent(&ctrl);
        }
        assert!(self.compatible(&ctrl).contains("arm,gic"), "{ctrl}");
        let n = self.cells(&ctrl, "#interrupt-cells").expect("cells")[0] as usize;
        let cells = self.cells(path, "interrupts").unwrap_or_default();
        cells
            .chunks_exact(n)
            .map(|c| (ctrl.clone(), [c[0], c[1], c[2] & 0xf]))
            .collect()
    }

    /// `reg` of `path` translated to CPU addresses (§2.3.8; a bus without `ranges` is not
    /// translatable, an empty `ranges` is the identity).
    fn cpu_regs(&self, path: &str) -> Vec<(u64, u64)> {
        let cells_of = |n: &str, p: &str, d: u32| self.cells(n, p).map_or(d, |c| c[0]) as usize;
        let parent = Self::parent(path);
        let (ac, sc) = (
            cells_of(&parent, "#address-cells", 2),
            cells_of(&parent, "#size-cells", 1),
        );
        let join = |c: &[u32]| c.iter().fold(0u64, |a, x| (a << 32) | u64::from(*x));
        let reg = self.cells(path, "reg").expect("reg");
        reg.chunks_exact(ac + sc)
            .map(|e| {
                let (mut addr, size) = (join(&e[..ac]), join(&e[ac..]));
                let mut bus = parent.clone();
                while bus != "/" {
                    let ranges = self.cells(&bus, "ranges").expect("bus has ranges");
                    if !ranges.is_empty() {
                        let up = Self::parent(&bus);
                        let (cac, csc, pac) = (
                            cells_of(&bus, "#address-cells", 2),
                            cells_of(&bus, "#size-cells", 1),
                            cells_of(&up, "#address-cells", 2),
                        );
                        let hit = ranges
                            .chunks_exact(cac + pac + csc)
                            .find_map(|r| {
                                let (c, p, s) = (
                                    join(&r[..cac]),
                                    join(&r[cac..cac + pac]),
                                    join(&r[cac + pac..]),
                                );
                                (addr >= c && addr - c < s).then(|| p + (addr - c))
                            })
                            .expect("address inside the bus ranges");
                        addr = hit;
                    }
                    bus = Self::parent(&bus);
                }
                (addr, size)
            })
            .collect()
    }
}

fn page_triples(regs: &[(u64, u64)], guest_of: impl Fn(u64) -> u64) -> Vec<u32> {
    let mut out = Vec::new();
    for (a, s) in regs {
        let base = a & !0xfff;
        let end = (a + s + 0xfff) & !0xfff;
        for v in [base, end - base, guest_of(base)] {
            out.extend([(v >> 32) as u32, v as u32]);
        }
    }
    out
}

/// The fragment node a fragment phandle names, mapped back to the host path it was copied from.
fn fragment_target_as_host(
    frag: &[u8],
    h: u32,
    device_frag: &str,
    device_host: &str,
    name: &str,
) -> String {
    let paths = support::dtc_phandle_paths(frag, name);
    let p = paths
        .get(&h)
        .unwrap_or_else(|| panic!("fragment phandle {h:#x} names no fragment node: {paths:?}"));
    match p.strip_prefix(device_frag) {
        Some(rest) => format!("{device_host}{rest}"),
        None => p.clone(),
    }
}

#[test]
fn rk3399_four_cell_gic_interrupts_are_reencoded_for_the_guest_gic() {
    let Some(blob) = support::rock_pi_4b() else {
        return;
    };
    let host_ref = Host::new(&blob, "rk3399.dtb");
    let gic = "/interrupt-controller@fee00000";
    // The point of the test: the host GIC uses 4 cells (arm,gic-v3.yaml: PPI partitions).
    assert_eq!(host_ref.cells(gic, "#interrupt-cells"), Some(vec![4]));
    let host = DeviceTree::from_dtb(&blob).expect("parse");

    for dev in ["/dma-controller@ff6d0000", "/video-codec@ff650000"] {
        let f = fragment(&host, &[forced(dev)], &dropping()).expect(dev);
        support::dtc_decompile(&f.dtb, "rk-frag.dtb");
        let node = format!("/passthrough/{}", dev.trim_start_matches('/'));
        let expected: Vec<u32> = host_ref
            .gic_interrupts(dev)
            .iter()
            .flat_map(|(_, c)| *c)
            .collect();
        assert_eq!(expected.len() % 3, 0);
        assert!(expected.len() >= 6, "{dev} has two interrupts");
        assert_eq!(
            support::fdt_cells(&f.dtb, &node, "interrupts"),
            Some(expected.clone()),
            "{dev}: 3-cell guest specifiers"
        );
        assert_eq!(
            support::fdt_cells(&f.dtb, &node, "interrupt-parent"),
            Some(vec![65000])
        );
        // INTIDs: SPI n = n + 32.
        let intids: Vec<u32> = expected.chunks(3).map(|c| c[1] + 32).collect();
        let mut sorted = intids.clone();
        sorted.sort_unstable();
        assert_eq!(f.irqs, sorted, "{dev}");
        assert_eq!(
            support::fdt_cells(&f.dtb, &node, "xen,reg"),
            Some(page_triples(&host_ref.cpu_regs(dev), |g| g))
        );
        assert!(f.host_fixups.is_empty(), "no forwarder on RK3399");
    }
}

#[test]
fn rk3399_rockchip_iommu_is_not_protection() {
    let Some(blob) = support::rock_pi_4b() else {
        return;
    };
    let host = DeviceTree::from_dtb(&blob).expect("parse");
    // video-codec@ff650000 { iommus = <0x92>; }  iommu@ff650800 { compatible = "rockchip,iommu"; }
    let e = fragment(
        &host,
        &[PassthroughRequest::new("/video-codec@ff650000")],
        &dropping(),
    )
    .expect_err("Xen has no rockchip,iommu driver");
    assert!(matches!(e, PassthroughError::NoIommu { .. }));
    assert_eq!(
        e.to_string(),
        "/video-codec@ff650000 is not behind an IOMMU Xen can drive (its IOMMU /iommu@ff650800 is a \
         `rockchip,iommu`, which Xen has no driver for (Xen drives arm,smmu-v1, arm,smmu-v2, \
         arm,mmu-400, arm,mmu-401, arm,mmu-500, arm,smmu-v3, renesas,ipmmu-r8a7795, \
         renesas,ipmmu-r8a7796, renesas,ipmmu-r8a77961, renesas,ipmmu-r8a77965, \
         renesas,ipmmu-r8a779f0)), so Xen refuses to assign it; set force_without_iommu to assign \
         it anyway (unsafe if it masters DMA)"
    );
    // The inventory (and so validation) agrees: not behind an IOMMU.
    let inv = device_tree::inventory::read_inventory(&host).expect("inventory");
    let dev = inv.device("/video-codec@ff650000").expect("device");
    assert!(!dev.behind_iommu);
    assert!(dev.dma_capable, "a video codec behind an IOMMU masters DMA");
    assert!(
        inv.iommus.is_empty(),
        "no IOMMU of this board counts: {:?}",
        inv.iommus
    );
}

#[test]
fn rk3399_phandles_are_relinked_or_refused() {
    let Some(blob) = support::rock_pi_4b() else {
        return;
    };
    let host_ref = Host::new(&blob, "rk3399-ph.dtb");
    let host = DeviceTree::from_dtb(&blob).expect("parse");

    // ethernet@fe300000: clocks/resets/power-domains to the CRU and PMU, rockchip,grf = <&grf>,
    // snps,reset-gpio = <&gpio3 15 1>, phy-supply, pinctrl-0. None is carried: refused by default.
    let gmac = "/ethernet@fe300000";
    match fragment(&host, &[forced(gmac)], &FragmentOptions::default()) {
        Err(PassthroughError::Dependency {
            device, property, ..
        }) => {
            assert_eq!(device, gmac);
            assert_eq!(property, "clocks");
        }
        other => panic!("expected a dependency refusal, got {other:?}"),
    }
    let f = fragment(&host, &[forced(gmac)], &dropping()).expect("gmac with drop");
    let props = support::fdt_props(&f.dtb, "/passthrough/ethernet@fe300000");
    for gone in [
        "rockchip,grf",
        "snps,reset-gpio",
        "phy-supply",
        "clocks",
        "clock-names",
        "resets",
        "reset-names",
        "power-domains",
        "assigned-clocks",
        "assigned-clock-parents",
        "pinctrl-0",
        "pinctrl-names",
    ] {
        assert!(!props.iter().any(|p| p == gone), "{gone}: {props:?}");
    }
    assert!(props.iter().any(|p| p == "snps,txpbl"));
    let dropped: Vec<&str> = f
        .dropped_dependencies
        .iter()
        .map(|d| d.property.as_str())
        .collect();
    assert!(dropped.contains(&"rockchip,grf"), "{dropped:?}");

    // i2s@ff880000 { dmas = <0x5e 0x00 0x5e 0x01>; } with its DMA engine dma-controller@ff6d0000
    // (phandle 0x5e, #dma-cells = <1>) passed too: both `dmas` phandle cells name the copy.
    let i2s = "/i2s@ff880000";
    let pl330 = "/dma-controller@ff6d0000";
    let f = fragment(&host, &[forced(i2s), forced(pl330)], &dropping()).expect("i2s + pl330");
    let host_dmas = host_ref.cells(i2s, "dmas").expect("dmas");
    let frag_dmas =
        support::fdt_cells(&f.dtb, "/passthrough/i2s@ff880000", "dmas").expect("dmas kept");
    assert_eq!(host_dmas.len(), frag_dmas.len());
    let dma_cells = host_ref.cells(pl330, "#dma-cells").expect("#dma-cells")[0] as usize;
    for (i, chunk) in host_dmas.chunks(1 + dma_cells).enumerate() {
        let fchunk = &frag_dmas[i * (1 + dma_cells)..(i + 1) * (1 + dma_cells)];
        assert_eq!(&chunk[1..], &fchunk[1..], "specifier arguments unchanged");
        let host_target = &host_ref.phandles[&chunk[0]];
        assert_eq!(host_target, pl330);
        assert!(fchunk[0] > 0 && fchunk[0] < 65000);
        assert_eq!(
            &fragment_target_as_host(&f.dtb, fchunk[0], "/passthrough", "", "i2s-frag.dtb"),
            host_target,
            "dmas entry {i}"
        );
    }
}

#[test]
fn imx8mq_gpc_forwarded_interrupts_vpci_window_and_internal_phandles() {
    let Some(blob) = support::imx8mq_evk() else {
        return;
    };
    let host_ref = Host::new(&blob, "imx8mq.dtb");
    let host = DeviceTree::from_dtb(&blob).expect("parse");
    let fec = "/soc@0/bus@30800000/ethernet@30be0000";
    // The root's interrupt-parent is the GPC, an interrupt-controller forwarding to the GIC.
    let gpc = host_ref.interrupt_parent(fec);
    assert!(
        host_ref.compatible(&gpc).contains("fsl,imx8mq-gpc"),
        "{gpc}"
    );

    // At its host address the FEC lies inside GUEST_VPCI_MEM (0x23000000-0x33000000), a window no
    // domain domforge builds has (no vPCI for domUs): the one guest map lets it stay 1:1, as the
    // planner does.
    let f = fragment(&host, &[forced(fec)], &dropping()).expect("1:1 FEC");
    let regs = host_ref.cpu_regs(fec);
    assert_eq!(
        support::fdt_cells(&f.dtb, "/passthrough/ethernet@30be0000", "xen,reg"),
        Some(page_triples(&regs, |g| g))
    );
    // A guest address on Xen's magic pages is refused, naming the region and the header.
    let mut onto_magic = forced(fec);
    onto_magic.guest_base = Some(0x3900_0000);
    let e = fragment(&host, &[onto_magic], &dropping()).expect_err("magic pages");
    assert_eq!(
        e.to_string(),
        "/soc@0/bus@30800000/ethernet@30be0000: guest range 0x39000000-0x39010000 overlaps the \
         guest magic pages (xen/include/public/arch-arm.h)"
    );

    // Relocated (as the planner does for a collision) into the hole below GUEST_VPCI_ECAM.
    let mut req = forced(fec);
    req.guest_base = Some(0x0500_0000);
    let f = fragment(&host, &[req], &dropping()).expect("relocated FEC");
    support::dtc_decompile(&f.dtb, "imx-frag.dtb");
    let node = "/passthrough/ethernet@5000000";
    assert_eq!(
        support::fdt_cells(&f.dtb, node, "xen,reg"),
        Some(page_triples(&regs, |g| g - regs[0].0 + 0x0500_0000))
    );
    let expected: Vec<[u32; 3]> = host_ref
        .gic_interrupts(fec)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(expected.len(), 4);
    assert_eq!(
        support::fdt_cells(&f.dtb, node, "interrupts"),
        Some(expected.concat())
    );
    assert_eq!(f.irqs, vec![150, 151, 152, 153]);

    // Xen does not follow the GPC: the host node is pointed at the GIC.
    let gic = host_ref.interrupt_parent(&gpc);
    let gic_phandle = *host_ref
        .phandles
        .iter()
        .find(|(_, p)| **p == gic)
        .expect("GIC phandle")
        .0;
    let fix = f.host_fixups.first().expect("a host fix-up");
    assert_eq!(fix.path, fec);
    assert_eq!(fix.forwarder, gpc);
    let mut patched = host.clone();
    fix.apply(&mut patched).expect("apply");
    let patched_dtb = patched.to_dtb();
    assert_eq!(
        support::fdt_cells(&patched_dtb, fec, "interrupt-parent"),
        Some(vec![gic_phandle])
    );
    let patched_ref = Host::new(&patched_dtb, "imx8mq-patched.dtb");
    assert_eq!(patched_ref.interrupt_parent(fec), gic);
    assert_eq!(
        patched_ref
            .gic_interrupts(fec)
            .into_iter()
            .map(|(_, c)| c)
            .collect::<Vec<_>>(),
        expected
    );

    // soc@0 { #address-cells = <1>; dma-ranges = <0x40000000 0x0 0x40000000 0xc0000000>; }: the FEC
    // (a DMA master) sees RAM only from 0x40000000 for 3 GiB; /passthrough carries that window in its
    // 2 + 2 cells, read here from the host with fdtget.
    let soc_dma = host_ref
        .cells("/soc@0", "dma-ranges")
        .expect("soc dma-ranges");
    assert_eq!(soc_dma.len(), 4, "1 child + 2 parent + 1 size cells");
    let join = |hi: u32, lo: u32| (u64::from(hi) << 32) | u64::from(lo);
    let (bus, cpu, size) = (
        u64::from(soc_dma[0]),
        join(soc_dma[1], soc_dma[2]),
        u64::from(soc_dma[3]),
    );
    let split = |v: u64| [(v >> 32) as u32, v as u32];
    assert_eq!(
        support::fdt_cells(&f.dtb, "/passthrough", "dma-ranges"),
        Some([split(bus), split(cpu), split(size)].concat())
    );

    // Phandles inside the copied subtree are re-linked to their copies: phy-handle -> the PHY,
    // the PHY's vddio-supply -> its vddh-regulator child.
    let frag_node_to_host = |prop: &str, at: &str| {
        let h = support::fdt_cells(&f.dtb, &format!("{node}{at}"), prop)
            .unwrap_or_else(|| panic!("{prop} kept"))[0];
        fragment_target_as_host(&f.dtb, h, node, fec, "imx-ph.dtb")
    };
    for (prop, at) in [("phy-handle", ""), ("vddio-supply", "/mdio/ethernet-phy@0")] {
        let host_h = host_ref.cells(&format!("{fec}{at}"), prop).expect("host")[0];
        assert_eq!(
            frag_node_to_host(prop, at),
            host_ref.phandles[&host_h],
            "{prop}"
        );
    }
    // `fsl,stop-mode = <&gpr 0x10 3>` (net/fsl,fec.yaml) names the GPR syscon: dropped, not stale.
    let props = support::fdt_props(&f.dtb, node);
    assert!(!props.iter().any(|p| p == "fsl,stop-mode"), "{props:?}");
    assert!(
        !support::fdt_props(&f.dtb, &format!("{node}/mdio/ethernet-phy@0"))
            .iter()
            .any(|p| p == "reset-gpios")
    );
}

/// A 4-cell GICv3 with a PPI partition, a nested bus inheriting `interrupt-parent`, and
/// `interrupts-extended`, compiled by dtc.
const SYNTHETIC: &str = r#"
/dts-v1/;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    interrupt-parent = <&gic>;
    gic: interrupt-controller@8000000 {
        compatible = "arm,gic-v3";
        #interrupt-cells = <4>;
        interrupt-controller;
        reg = <0 0x8000000 0 0x10000>, <0 0x80a0000 0 0xf60000>;
        ppi-partitions {
            part0: interrupt-partition-0 { affinity = <&cpu0>; };
        };
    };
    cpus {
        #address-cells = <1>;
        #size-cells = <0>;
        cpu0: cpu@0 { device_type = "cpu"; reg = <0>; };
    };
    bus@40000000 {
        compatible = "simple-bus";
        #address-cells = <1>;
        #size-cells = <1>;
        ranges = <0 0 0x40000000 0x1000000>;
        interrupt-parent = <&gic>;
        uart@10000 {
            compatible = "ns16550a";
            reg = <0x10000 0x100>;
            interrupts = <0 17 4 0>, <0 18 0x104 0>;
        };
        spi@20000 {
            compatible = "test,spi";
            reg = <0x20000 0x1000>;
            interrupts-extended = <&gic 0 40 1 0>, <&gic 0 41 4 0>;
        };
        pmu@30000 {
            compatible = "test,pmu";
            reg = <0x30000 0x1000>;
            interrupts = <1 7 4 &part0>;
        };
    };
};
"#;

#[test]
fn interrupts_extended_and_parent_chains_on_a_four_cell_gic() {
    let dtb = support::dtc_compile(SYNTHETIC, "synthetic.dtb").expect("dtc compiles");
    let host = DeviceTree::from_dtb(&dtb).expect("parse");
    let none = FragmentOptions::default();

    let f = fragment(&host, &[forced("/bus@40000000/uart@10000")], &none).expect("uart");
    // The node keeps its name (guest address = host address); `reg` is in /passthrough's 2+2 cells.
    let uart = "/passthrough/uart@10000";
    assert_eq!(
        support::fdt_cells(&f.dtb, uart, "xen,reg"),
        Some(vec![0, 0x4001_0000, 0, 0x1000, 0, 0x4001_0000])
    );
    assert_eq!(
        support::fdt_cells(&f.dtb, uart, "reg"),
        Some(vec![0, 0x4001_0000, 0, 0x100])
    );
    // The PPI CPU-mask byte (0x100) is not a trigger bit: the guest gets level-high (4).
    assert_eq!(
        support::fdt_cells(&f.dtb, uart, "interrupts"),
        Some(vec![0, 17, 4, 0, 18, 4])
    );
    assert_eq!(f.irqs, vec![49, 50]);

    let f = fragment(&host, &[forced("/bus@40000000/spi@20000")], &none).expect("spi");
    let spi = "/passthrough/spi@20000";
    let props = support::fdt_props(&f.dtb, spi);
    assert!(
        !props.iter().any(|p| p == "interrupts-extended"),
        "{props:?}"
    );
    assert_eq!(
        support::fdt_cells(&f.dtb, spi, "interrupts"),
        Some(vec![0, 40, 1, 0, 41, 4])
    );
    assert_eq!(
        support::fdt_cells(&f.dtb, spi, "interrupt-parent"),
        Some(vec![65000])
    );

    // A PPI (with its partition phandle) is never routed.
    assert!(matches!(
        fragment(&host, &[forced("/bus@40000000/pmu@30000")], &none),
        Err(PassthroughError::Interrupt { .. })
    ));
}

#[test]
fn rzg2m_ipmmu_is_not_driven_by_xen_and_dma_masters_are_recognised() {
    let Some(blob) = support::rzg2m() else {
        return;
    };
    let host_ref = Host::new(&blob, "rzg2m.dtb");
    let host = DeviceTree::from_dtb(&blob).expect("parse");
    // dma-controller@e6700000 (SYS-DMAC0) { iommus = <&ipmmu_ds0 0> ...; } and that IPMMU is a
    // `renesas,ipmmu-r8a774a1`, which Xen's ipmmu-vmsa.c does not list (R-Car H3/M3-W/M3-N/S4 only).
    let dmac = "/soc/dma-controller@e6700000";
    let ipmmu = &host_ref.phandles[&host_ref.cells(dmac, "iommus").expect("iommus")[0]];
    assert_eq!(host_ref.compatible(ipmmu), "renesas,ipmmu-r8a774a1");
    let e =
        fragment(&host, &[PassthroughRequest::new(dmac)], &dropping()).expect_err("no Xen IPMMU");
    assert!(
        e.to_string().contains(&format!(
            "its IOMMU {ipmmu} is a `renesas,ipmmu-r8a774a1`, which Xen has no driver for"
        )),
        "{e}"
    );
    let inv = device_tree::inventory::read_inventory(&host).expect("inventory");
    let dev = inv.device(dmac).expect("dmac");
    assert!(!dev.behind_iommu);
    assert!(dev.dma_capable);
    // The DMA master rules say why; a DMA *client* (a SCIF with `dmas`) is not a master.
    let node = host.node(dmac).expect("node");
    assert!(device_tree::inventory::dma_master_rule(node).is_some_and(|r| r.contains("iommus")),);
    let scif = host.node("/soc/serial@e6e88000").expect("scif2");
    assert!(support::fdt_props(&blob, "/soc/serial@e6e88000").contains(&"dmas".to_owned()));
    assert_eq!(device_tree::inventory::dma_master_rule(scif), None);
}

const TWO_DMA_BUSES: &str = r#"
/dts-v1/;
/ {
    #address-cells = <2>;
    #size-cells = <2>;
    interrupt-parent = <&gic>;
    gic: interrupt-controller@8000000 {
        compatible = "arm,gic-400";
        #interrupt-cells = <3>;
        interrupt-controller;
        reg = <0 0x8000000 0 0x1000>, <0 0x8010000 0 0x2000>;
    };
    low@40000000 {
        compatible = "simple-bus";
        #address-cells = <1>;
        #size-cells = <1>;
        ranges = <0 0 0x40000000 0x100000>;
        dma-ranges = <0 0 0x80000000 0x40000000>;
        mid@0 {
            compatible = "simple-bus";
            #address-cells = <1>;
            #size-cells = <1>;
            ranges;
            dma-ranges = <0x10000000 0x10000000 0x10000000>;
            ethernet@10000 {
                compatible = "test,mac";
                reg = <0x10000 0x1000>;
                interrupts = <0 10 4>;
            };
        };
        timer@20000 {
            compatible = "test,timer";
            reg = <0x20000 0x1000>;
            interrupts = <0 11 4>;
        };
    };
    high@50000000 {
        compatible = "simple-bus";
        #address-cells = <1>;
        #size-cells = <1>;
        ranges = <0 0 0x50000000 0x100000>;
        mmc@10000 {
            compatible = "test,mmc";
            reg = <0x10000 0x1000>;
            interrupts = <0 12 4>;
        };
    };
};
"#;

#[test]
fn dma_ranges_are_composed_carried_or_refused() {
    let dtb = support::dtc_compile(TWO_DMA_BUSES, "dma.dtb").expect("dtc compiles");
    let host = DeviceTree::from_dtb(&dtb).expect("parse");
    let none = FragmentOptions::default();
    let mac = "/low@40000000/mid@0/ethernet@10000";
    // mid@0: bus 0x10000000 -> 0x10000000 (256 MiB) inside low@40000000: bus 0 -> CPU 0x80000000
    // (1 GiB); composed: 0x10000000 -> 0x90000000, 256 MiB.
    let f = fragment(&host, &[forced(mac)], &none).expect("mac");
    assert_eq!(
        support::fdt_cells(&f.dtb, "/passthrough", "dma-ranges"),
        Some(vec![0, 0x1000_0000, 0, 0x9000_0000, 0, 0x1000_0000])
    );
    // A device that does not master DMA ignores its bus's dma-ranges.
    let f = fragment(&host, &[forced("/low@40000000/timer@20000")], &none).expect("timer");
    assert!(support::fdtget(&f.dtb, "/passthrough", "dma-ranges", "x").is_none());
    // Two DMA masters whose buses disagree cannot share one /passthrough.
    let e = fragment(
        &host,
        &[forced(mac), forced("/high@50000000/mmc@10000")],
        &none,
    )
    .expect_err("different DMA windows");
    assert!(matches!(e, PassthroughError::DmaRanges { .. }), "{e}");
    assert!(e.to_string().starts_with(
        "/high@50000000/mmc@10000 masters DMA through `dma-ranges` the fragment cannot carry"
    ));
}

/// Property name → how its cells hold phandles, written from the bindings here (the reference the
/// crate's own table is checked against): `None` = every cell is a phandle; `Some(cells)` = phandle
/// followed by the target's `cells` property count.
fn phandle_layout(name: &str) -> Option<Option<&'static str>> {
    Some(match name {
        "clocks" | "assigned-clocks" | "assigned-clock-parents" => Some("#clock-cells"),
        "resets" => Some("#reset-cells"),
        "power-domains" => Some("#power-domain-cells"),
        "phys" => Some("#phy-cells"),
        "dmas" => Some("#dma-cells"),
        "io-channels" => Some("#io-channel-cells"),
        "gpios" => Some("#gpio-cells"),
        n if n.ends_with("-gpios") || n.ends_with("-gpio") => Some("#gpio-cells"),
        n if n.ends_with("-supply") => None,
        n if n.starts_with("pinctrl-") && n[8..].chars().all(|c| c.is_ascii_digit()) => None,
        "phy-handle" | "remote-endpoint" | "mmc-pwrseq" | "memory-region" | "rockchip,grf" => None,
        _ => return None,
    })
}

/// Every node path of a blob, from dtc's decompiled source.
fn node_paths(dtb: &[u8], name: &str) -> Vec<String> {
    let dts = support::dtc_decompile(dtb, name);
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in dts.lines().map(str::trim) {
        if let Some(node) = line.strip_suffix(" {") {
            stack.push(node.to_owned());
            out.push(if stack.len() <= 1 {
                "/".to_owned()
            } else {
                format!("/{}", stack[1..].join("/"))
            });
        } else if line == "};" {
            stack.pop();
        }
    }
    out
}

/// No phandle cell of the fragment names a node the fragment does not carry (65000 is the guest
/// GIC), and every `interrupts` specifier has the guest GIC's 3 cells.
fn assert_fragment_self_contained(frag: &[u8], what: &str) {
    let phandles = support::dtc_phandle_paths(frag, "self.dtb");
    for node in node_paths(frag, "paths.dtb") {
        for prop in support::fdt_props(frag, &node) {
            if prop == "interrupt-parent" {
                let h = support::fdt_cells(frag, &node, &prop).expect("cells")[0];
                assert!(
                    h == 65000 || phandles.contains_key(&h),
                    "{what}: {node} {prop}"
                );
                continue;
            }
            if prop == "interrupts" {
                let n = support::fdt_cells(frag, &node, &prop).expect("cells").len();
                assert_eq!(n % 3, 0, "{what}: {node} interrupts is not 3-cell");
                continue;
            }
            let Some(layout) = phandle_layout(&prop) else {
                continue;
            };
            let cells = support::fdt_cells(frag, &node, &prop).expect("cells");
            let mut i = 0;
            while i < cells.len() {
                let h = cells[i];
                let target = phandles.get(&h).unwrap_or_else(|| {
                    panic!("{what}: {node} `{prop}` cell {i} = {h:#x} names no fragment node")
                });
                let args = match layout {
                    None => 0,
                    Some(c) => support::fdt_cells(frag, target, c)
                        .unwrap_or_else(|| panic!("{what}: {target} lacks {c}"))[0]
                        as usize,
                };
                i += 1 + args;
            }
        }
    }
}

/// Every example manifest of a Debian-DTB board: its fragment, read back against the host DTB.
#[test]
fn example_fragments_match_an_independent_reading_of_the_board_dtb() {
    use firmware_config::manifest::Manifest;
    let boards = [
        ("rock-pi-4b", "rockchip/rk3399-rock-pi-4b.dtb"),
        ("rzg2m", "renesas/r8a774a1-hihope-rzg2m-rev2.dtb"),
        ("am625-sk", "ti/k3-am625-sk.dtb"),
        ("rpi4", "broadcom/bcm2711-rpi-4-b.dtb"),
        ("zcu102", "xilinx/zynqmp-zcu102-rev1.0.dtb"),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (board, dtb) in boards {
        let Some(blob) = support::debian_dtb(dtb) else {
            return;
        };
        let host_ref = Host::new(&blob, &format!("{board}.dtb"));
        let host = DeviceTree::from_dtb(&blob).expect("parse");
        let text =
            std::fs::read_to_string(root.join(format!("examples/{board}.toml"))).expect("example");
        let m = Manifest::parse(&text).expect("example parses");
        for d in m.domains.iter().filter(|d| !d.passthrough.is_empty()) {
            let requests: Vec<PassthroughRequest> = d
                .passthrough
                .iter()
                .map(|p| PassthroughRequest {
                    force_without_iommu: d.force_without_iommu(),
                    ..PassthroughRequest::new(p.value.clone())
                })
                .collect();
            let opts = FragmentOptions {
                drop_dependencies: d.drop_device_dependencies.as_ref().is_some_and(|x| x.value),
                ..Default::default()
            };
            let f = fragment(&host, &requests, &opts)
                .unwrap_or_else(|e| panic!("{board}/{}: {e}", d.name.value));
            let what = format!("{board}/{}", d.name.value);
            assert_fragment_self_contained(&f.dtb, &what);
            for p in &d.passthrough {
                let path = &p.value;
                let name = path.rsplit('/').next().expect("name");
                let node = format!("/passthrough/{name}");
                assert_eq!(
                    support::fdt_cells(&f.dtb, &node, "xen,reg"),
                    Some(page_triples(&host_ref.cpu_regs(path), |g| g)),
                    "{what}: xen,reg of {path}"
                );
                let expected: Vec<u32> = host_ref
                    .gic_interrupts(path)
                    .into_iter()
                    .flat_map(|(_, c)| c)
                    .collect();
                assert_eq!(
                    support::fdt_cells(&f.dtb, &node, "interrupts").unwrap_or_default(),
                    expected,
                    "{what}: interrupts of {path}"
                );
                assert_eq!(
                    support::fdtget(&f.dtb, &node, "xen,path", "s").as_deref(),
                    Some(path.as_str())
                );
            }
        }
    }
}
