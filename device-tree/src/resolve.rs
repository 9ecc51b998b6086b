//! Reading a tree's meaning: address translation through `ranges`, interrupt decoding through
//! `interrupt-parent`/`interrupts-extended`, and phandle lists (`clocks`, `resets`, ...).
//!
//! References: Devicetree Specification v0.4 §2.3.8 (`ranges`), §2.4 (interrupts and
//! `interrupt-parent`), §2.3.5 (`#address-cells`/`#size-cells`, defaults 2 and 1); Linux
//! `drivers/of/address.c` (`of_translate_address`: a bus without `ranges` is not translatable, an empty
//! `ranges` is the identity) and `drivers/of/irq.c` (`of_irq_find_parent`); the GIC binding
//! (`Documentation/devicetree/bindings/interrupt-controller/arm,gic.yaml`, `arm,gic-v3.yaml`: first
//! cell 0 = SPI, 1 = PPI, GICv3 2 = extended SPI; second cell the number; third the flags).

use std::collections::{BTreeMap, HashMap};

use firmware_config::board::{DeviceInterrupt, Region};

use crate::tree::{DeviceTree, Node};

/// Default `#address-cells` when a node omits it (Devicetree Specification v0.4 §2.3.5).
pub const DEFAULT_ADDRESS_CELLS: u32 = 2;
/// Default `#size-cells` (§2.3.5).
pub const DEFAULT_SIZE_CELLS: u32 = 1;

/// GIC interrupt specifier type cell values (`arm,gic.yaml`, `arm,gic-v3.yaml`).
pub const GIC_SPI: u32 = 0;
pub const GIC_PPI: u32 = 1;
/// GICv3 extended SPI range (`arm,gic-v3.yaml`); INTIDs start at 4096.
pub const GIC_ESPI: u32 = 2;

/// `compatible` strings of ARM GICv2-family distributors (Linux `irq-gic.c` `IRQCHIP_DECLARE`s).
pub const GICV2_COMPATIBLES: &[&str] = &[
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,arm11mp-gic",
    "arm,arm1176jzf-devchip-gic",
    "arm,eb11mp-gic",
    "arm,tc11mp-gic",
    "arm,pl390",
    "qcom,msm-8660-qgic",
    "qcom,msm-qgic2",
];
/// GICv3 (`irq-gic-v3.c`).
pub const GICV3_COMPATIBLES: &[&str] = &["arm,gic-v3"];
/// GICv3 extended PPI range (`arm,gic-v3.yaml`, type cell 3); INTIDs start at 1056.
pub const GIC_EPPI: u32 = 3;

/// Interrupt controllers that forward every interrupt to their parent GIC unchanged: the specifier a
/// device gives them is a GIC specifier (type, number, flags) and the GIC sees the same SPI. They exist
/// for wake-up masking only, so a guest can use the GIC interrupt directly. Each entry is checked
/// against its Linux driver, whose `.alloc` passes the device's fwspec to the parent domain as is:
/// - `fsl,imx8mq-gpc`, `fsl,imx7d-gpc` (`drivers/irqchip/irq-imx-gpcv2.c`, `imx_gpcv2_domain_alloc`;
///   binding `fsl,imx7d-gpc.yaml`: "the GPC ... acts as a wakeup source ... 1:1 with the GIC");
/// - `fsl,imx6q-gpc`, `fsl,imx6sx-gpc`, `fsl,imx6ul-gpc` (`arch/arm/mach-imx/gpc.c`,
///   `imx_gpc_domain_alloc`);
/// - `nvidia,tegra210-ictlr`, `nvidia,tegra30-ictlr` (`drivers/irqchip/irq-tegra.c`,
///   `tegra_ictlr_domain_alloc`).
///
/// Xen itself does not follow them (`map_device_irqs_to_domain` skips any interrupt whose controller is
/// not the primary GIC), so whoever resolves through one must also point the host node at the GIC
/// (see [`crate::passthrough::Fragment::host_fixups`]).
pub const GIC_FORWARDER_COMPATIBLES: &[&str] = &[
    "fsl,imx8mq-gpc",
    "fsl,imx7d-gpc",
    "fsl,imx6q-gpc",
    "fsl,imx6sx-gpc",
    "fsl,imx6ul-gpc",
    "nvidia,tegra210-ictlr",
    "nvidia,tegra30-ictlr",
];

/// Number of specifier cells of the guest GIC Xen builds for a dom0less or toolstack guest
/// (`xen/arch/arm/domain_build.c`, 4.17 `make_gicv2_domU_node` / `make_gicv3_domU_node`; later
/// `xen/common/device-tree/dom0less-build.c`: `#interrupt-cells = <3>`).
pub const GUEST_GIC_INTERRUPT_CELLS: usize = 3;

/// The kind of a GIC interrupt, from the first specifier cell (`arm,gic.yaml`, `arm,gic-v3.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicKind {
    Spi,
    Ppi,
    /// GICv3 extended SPI range (INTID 4096 + n).
    ExtendedSpi,
    /// GICv3 extended PPI range (INTID 1056 + n).
    ExtendedPpi,
}

/// A GIC interrupt in its parsed form, independent of how many cells the host GIC uses.
///
/// `arm,gic.yaml`: `#interrupt-cells = <3>`: type, number, flags (bits\[3:0\] trigger: 1 rising edge,
/// 2 falling edge, 4 level high, 8 level low; bits\[15:8\] the PPI CPU mask). `arm,gic-v3.yaml`:
/// `#interrupt-cells` is 3 or 4; with 4, the fourth cell is the phandle of a `ppi-partitions` child
/// naming the CPUs a PPI is affine to, and "must be zero" for anything but PPIs (RK3399 uses 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GicInterrupt {
    pub kind: GicKind,
    /// The number cell as written (SPI n is INTID n + 32).
    pub number: u32,
    pub flags: u32,
    /// The PPI partition phandle of a 4-cell specifier (0 or absent: none).
    pub partition: u32,
}

impl GicInterrupt {
    /// Parses one GIC specifier of `cells.len()` = the GIC's `#interrupt-cells` (3 or 4).
    pub fn parse(cells: &[u32]) -> Result<Self, String> {
        let (ty, number, flags, partition) = match *cells {
            [t, n, f] => (t, n, f, 0),
            [t, n, f, p] => (t, n, f, p),
            _ => {
                return Err(format!(
                    "a GIC specifier has 3 or 4 cells (arm,gic.yaml, arm,gic-v3.yaml), not {}",
                    cells.len()
                ));
            }
        };
        let kind = match ty {
            GIC_SPI => GicKind::Spi,
            GIC_PPI => GicKind::Ppi,
            GIC_ESPI => GicKind::ExtendedSpi,
            GIC_EPPI => GicKind::ExtendedPpi,
            other => return Err(format!("GIC interrupt type {other} is not 0-3")),
        };
        if partition != 0 && !matches!(kind, GicKind::Ppi | GicKind::ExtendedPpi) {
            return Err(format!(
                "the 4th cell (PPI partition) is {partition:#x}; arm,gic-v3.yaml requires 0 for SPIs"
            ));
        }
        Ok(Self {
            kind,
            number,
            flags,
            partition,
        })
    }

    /// The GIC INTID (what Xen routes and `irqs` grants).
    pub fn intid(&self) -> u32 {
        match self.kind {
            GicKind::Spi => self.number.saturating_add(32),
            GicKind::Ppi => self.number.saturating_add(16),
            GicKind::ExtendedSpi => self.number.saturating_add(4096),
            GicKind::ExtendedPpi => self.number.saturating_add(1056),
        }
    }

    /// The trigger bits (`flags` bits\[3:0\]); the PPI CPU mask in bits\[15:8\] means nothing for SPIs.
    pub fn trigger(&self) -> u32 {
        self.flags & 0xf
    }

    /// The specifier for a GIC with `cells` specifier cells (3 for Xen's guest GIC, 3 or 4 for a host).
    pub fn encode(&self, cells: usize) -> Vec<u32> {
        let ty = match self.kind {
            GicKind::Spi => GIC_SPI,
            GicKind::Ppi => GIC_PPI,
            GicKind::ExtendedSpi => GIC_ESPI,
            GicKind::ExtendedPpi => GIC_EPPI,
        };
        let mut v = vec![ty, self.number, self.flags];
        if cells >= 4 {
            v.push(self.partition);
        }
        v
    }

    /// The specifier under the guest GIC: type, number and trigger (3 cells).
    pub fn guest_cells(&self) -> [u32; GUEST_GIC_INTERRUPT_CELLS] {
        let ty = match self.kind {
            GicKind::Spi => GIC_SPI,
            GicKind::Ppi => GIC_PPI,
            GicKind::ExtendedSpi => GIC_ESPI,
            GicKind::ExtendedPpi => GIC_EPPI,
        };
        [ty, self.number, self.trigger()]
    }
}

/// Why an address could not be brought into the CPU address space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("`reg` of {path} is malformed: {reason}")]
    BadReg { path: String, reason: String },
    #[error("{path} is not CPU-addressable: bus {bus} has no `ranges`")]
    NoRanges { path: String, bus: String },
    #[error("{path}: address {addr:#x} is not covered by the `ranges` of {bus}")]
    NotInRanges {
        path: String,
        bus: String,
        addr: u128,
    },
    #[error("{path}: translated address does not fit in 64 bits")]
    Overflow { path: String },
}

/// One decoded interrupt specifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedInterrupt {
    /// Path of the interrupt controller (or nexus) it goes to.
    pub controller: String,
    pub controller_phandle: Option<u32>,
    /// The specifier cells as written (for a GIC: type, number, flags and maybe a PPI partition).
    pub cells: Vec<u32>,
    pub interrupt: DeviceInterrupt,
    /// The parsed GIC form, when the interrupt reaches a GIC (directly or through a forwarder).
    pub gic: Option<GicInterrupt>,
    /// Path of the GIC the interrupt reaches (`controller` itself, or the GIC behind a forwarder).
    pub gic_path: Option<String>,
    /// The 1:1 forwarder ([`GIC_FORWARDER_COMPATIBLES`]) the specifier went through, if any.
    pub forwarded_by: Option<String>,
    /// Why a specifier sent to a GIC could not be parsed (then `interrupt` is `Nested`).
    pub gic_error: Option<String>,
}

/// Why an interrupt specifier could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterruptError {
    #[error("{path}: `{property}` references phandle {phandle:#x}, which no node has")]
    DanglingPhandle {
        path: String,
        property: String,
        phandle: u32,
    },
    #[error("{path}: interrupt parent {controller} has no usable `#interrupt-cells`")]
    NoInterruptCells { path: String, controller: String },
    #[error("{path}: `{property}` is malformed: {reason}")]
    Malformed {
        path: String,
        property: String,
        reason: String,
    },
    #[error("{path} has interrupts but no interrupt parent")]
    NoParent { path: String },
}

/// A phandle reference found in a property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhandleRef {
    pub property: String,
    /// Index of the phandle cell in the property's cells.
    pub cell_index: usize,
    pub phandle: u32,
    /// Provider path, `None` if no node has that phandle.
    pub provider: Option<String>,
    /// Number of argument cells after the phandle.
    pub args: usize,
}

/// How the cells of a phandle-list property are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `<&p arg...>...` with the argument count in the provider's `#...-cells` property.
    WithCells(&'static str),
    /// Like `WithCells` but a missing cells property means 0 (`#msi-cells`).
    WithCellsDefault0(&'static str),
    /// A list of bare phandles (`pinctrl-N`, `memory-region`, syscon links).
    Bare,
    /// `<&p arg...>...` with a fixed number of argument cells (`gpio-ranges`: 3).
    Fixed(usize),
}

/// Single-phandle links to system controllers ("syscon" nodes) that the bindings of the built-in
/// boards' SoCs define, each typed `$ref: /schemas/types.yaml#/definitions/phandle` in its binding:
/// `rockchip,grf` / `rockchip,pmu` (`net/rockchip-dwmac.yaml`, `phy/rockchip-*`, `pinctrl/rockchip,
/// pinctrl.yaml`, `power/rockchip,power-controller.yaml`...), `arasan,soc-ctl-syscon`
/// (`mmc/arasan,sdhci.yaml`), `fsl,gpr` / `gpr` / `fsl,iomuxc-gpr` (i.MX `phy/fsl,imx8mq-usb-phy.yaml`,
/// `net/fsl,fec.yaml`, `pci/fsl,imx6q-pcie.yaml`), `ti,syscon-*` and `ti,ctrl-mmr` (TI K3
/// `phy/ti,phy-gmii-sel.yaml`...), `renesas,...-syscon` (none on RZ/G2M), `xlnx,zynqmp-...` none.
/// Vendor properties not named here are copied verbatim; extend the list when a board's binding
/// defines another phandle (the rule is the binding's type, never the value).
pub const SYSCON_PHANDLE_PROPERTIES: &[&str] = &[
    "rockchip,grf",
    "rockchip,pmu",
    "rockchip,pmugrf",
    "rockchip,usbgrf",
    "rockchip,php-grf",
    "rockchip,pipe-grf",
    "rockchip,pipe-phy-grf",
    "rockchip,vo-grf",
    "arasan,soc-ctl-syscon",
    "fsl,gpr",
    "gpr",
    "fsl,iomuxc-gpr",
    "fsl,imx-src",
    "ti,ctrl-mmr",
    "ti,syscon-pcie-ctrl",
    "ti,syscon-pcie-mode",
    "ti,syscon-phy-power",
    "ti,syscon-pcs",
    "ti,syscon-efuse",
    "ti,syscon-acspcie-proxy-ctrl",
    "renesas,pfc",
];

/// Properties that reference other nodes by phandle, and how to parse them. The list follows the
/// Devicetree conventions: the `#<name>-cells` provider properties (Devicetree Specification v0.4
/// §2.4.3 for interrupts, and the generic "phandle + specifier" lists of
/// `dt-schema/dtschema/schemas/*.yaml`: clocks, resets, power-domains, phys, dmas, iommus, mboxes,
/// interconnects, pwms, io-channels, hwlocks, thermal-sensors, sound-dai, cooling-device,
/// mux-controls, `*-gpios`), the bare-phandle properties of the same schemas (`pinctrl-N`,
/// `*-supply`, `memory-region`, `nvmem-cells`, `phy-handle`, `mmc-pwrseq`, `remote-endpoint`...),
/// `gpio-ranges` (`gpio/gpio.txt`: phandle plus 3 cells), and the syscon links of
/// [`SYSCON_PHANDLE_PROPERTIES`]. `interrupt-parent`, `interrupts-extended` and `phandle` are handled
/// separately.
pub fn dependency_kind(name: &str) -> Option<ListKind> {
    use ListKind::*;
    let k = match name {
        "clocks" | "assigned-clocks" | "assigned-clock-parents" => WithCells("#clock-cells"),
        "resets" => WithCells("#reset-cells"),
        "power-domains" => WithCells("#power-domain-cells"),
        "phys" => WithCells("#phy-cells"),
        "dmas" => WithCells("#dma-cells"),
        "iommus" => WithCells("#iommu-cells"),
        "mboxes" => WithCells("#mbox-cells"),
        "interconnects" => WithCells("#interconnect-cells"),
        "pwms" => WithCells("#pwm-cells"),
        "io-channels" => WithCells("#io-channel-cells"),
        "hwlocks" => WithCells("#hwlock-cells"),
        "thermal-sensors" => WithCells("#thermal-sensor-cells"),
        "sound-dai" => WithCells("#sound-dai-cells"),
        "cooling-device" => WithCells("#cooling-cells"),
        "mux-controls" => WithCells("#mux-control-cells"),
        "nvmem-cells"
        | "memory-region"
        | "phy-handle"
        | "operating-points-v2"
        | "syscon"
        | "firmware"
        | "mmc-pwrseq"
        | "remote-endpoint"
        | "sram"
        | "nvmem" => Bare,
        "gpio-ranges" => Fixed(3),
        // `net/fsl,fec.yaml`: phandle of the GPR syscon, register offset, bit.
        "fsl,stop-mode" => Fixed(2),
        "msi-parent" => WithCellsDefault0("#msi-cells"),
        "gpios" | "gpio" => WithCells("#gpio-cells"),
        _ if SYSCON_PHANDLE_PROPERTIES.contains(&name) => Bare,
        _ => {
            if let Some(n) = name.strip_prefix("pinctrl-") {
                if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() {
                    return Some(Bare);
                }
                return None;
            }
            if name.ends_with("-supply") {
                return Some(Bare);
            }
            if (name.ends_with("-gpios") || name.ends_with("-gpio")) && !name.starts_with('#') {
                return Some(WithCells("#gpio-cells"));
            }
            return None;
        }
    };
    Some(k)
}

/// [`dependency_kind`] for property `name` **of `node`**: the same, except where a binding gives the
/// name another meaning on some nodes. A GPIO hog (`gpio-hog;`, `gpio/gpio.txt` "GPIO hogging") has
/// `gpios = <offset flags>...` without phandles: the controller is the hog's parent.
pub fn node_dependency_kind(node: &Node, name: &str) -> Option<ListKind> {
    if name == "gpios" && node.has_prop("gpio-hog") {
        return None;
    }
    dependency_kind(name)
}

/// An index over one tree: parents, phandles and the interrupt-controller facts.
pub struct Resolver<'a> {
    pub tree: &'a DeviceTree,
    nodes: HashMap<String, (&'a Node, Option<String>)>,
    order: Vec<String>,
    phandles: BTreeMap<u32, String>,
}

impl<'a> Resolver<'a> {
    pub fn new(tree: &'a DeviceTree) -> Self {
        let mut nodes = HashMap::new();
        let mut order = Vec::new();
        let mut stack: Vec<(String, &'a Node, Option<String>)> =
            vec![("/".to_owned(), &tree.root, None)];
        while let Some((path, node, parent)) = stack.pop() {
            for child in node.children.iter().rev() {
                let p = if path == "/" {
                    format!("/{}", child.name)
                } else {
                    format!("{path}/{}", child.name)
                };
                stack.push((p, child, Some(path.clone())));
            }
            order.push(path.clone());
            nodes.entry(path).or_insert((node, parent));
        }
        let mut phandles = BTreeMap::new();
        for p in &order {
            if let Some((n, _)) = nodes.get(p)
                && let Some(h) = n.phandle()
            {
                phandles.entry(h).or_insert_with(|| p.clone());
            }
        }
        Self {
            tree,
            nodes,
            order,
            phandles,
        }
    }

    /// Paths of all nodes in tree order.
    pub fn paths(&self) -> &[String] {
        &self.order
    }

    pub fn node(&self, path: &str) -> Option<&'a Node> {
        self.nodes.get(path).map(|(n, _)| *n)
    }

    pub fn parent(&self, path: &str) -> Option<&str> {
        self.nodes.get(path).and_then(|(_, p)| p.as_deref())
    }

    pub fn by_phandle(&self, phandle: u32) -> Option<&str> {
        self.phandles.get(&phandle).map(String::as_str)
    }

    pub fn phandle_map(&self) -> &BTreeMap<u32, String> {
        &self.phandles
    }

    /// Whether the node at `path` is an ARM GIC distributor (v2 or v3).
    pub fn is_gic(&self, path: &str) -> bool {
        self.node(path).is_some_and(|n| {
            n.has_prop("interrupt-controller")
                && GICV2_COMPATIBLES
                    .iter()
                    .chain(GICV3_COMPATIBLES)
                    .any(|c| n.is_compatible(c))
        })
    }

    fn address_cells(&self, path: &str) -> u32 {
        self.node(path)
            .and_then(|n| n.prop_u32("#address-cells"))
            .unwrap_or(DEFAULT_ADDRESS_CELLS)
    }

    fn size_cells(&self, path: &str) -> u32 {
        self.node(path)
            .and_then(|n| n.prop_u32("#size-cells"))
            .unwrap_or(DEFAULT_SIZE_CELLS)
    }

    /// The raw `(address, size)` pairs of `reg`, in the parent bus's address space.
    pub fn raw_reg(&self, path: &str) -> Result<Option<Vec<(u128, u128)>>, AddressError> {
        let Some(node) = self.node(path) else {
            return Ok(None);
        };
        let Some(reg) = node.prop("reg") else {
            return Ok(None);
        };
        let parent = self.parent(path).unwrap_or("/");
        let ac = self.address_cells(parent);
        let sc = self.size_cells(parent);
        let bad = |reason: String| AddressError::BadReg {
            path: path.to_owned(),
            reason,
        };
        if ac > 4 || sc > 4 || ac == 0 {
            return Err(bad(format!(
                "parent has #address-cells = {ac}, #size-cells = {sc}"
            )));
        }
        let entry = usize::try_from((ac + sc) * 4).unwrap_or(usize::MAX);
        if reg.len() % entry != 0 {
            return Err(bad(format!(
                "{} bytes is not a multiple of ({ac} + {sc}) cells",
                reg.len()
            )));
        }
        let mut out = Vec::new();
        for chunk in reg.chunks_exact(entry) {
            let (a, s) = chunk.split_at(usize::try_from(ac * 4).unwrap_or(0));
            out.push((be_uint(a), be_uint(s)));
        }
        Ok(Some(out))
    }

    /// Translates an address of the bus at `bus_path` (a child address of that node) up to the CPU
    /// address space (Linux `of_translate_address`).
    pub fn translate(&self, path: &str, bus_path: &str, addr: u128) -> Result<u64, AddressError> {
        let mut addr = addr;
        let mut bus = bus_path.to_owned();
        loop {
            if bus == "/" {
                return u64::try_from(addr).map_err(|_| AddressError::Overflow {
                    path: path.to_owned(),
                });
            }
            let node = self.node(&bus).ok_or_else(|| AddressError::NoRanges {
                path: path.to_owned(),
                bus: bus.clone(),
            })?;
            let parent = self.parent(&bus).unwrap_or("/").to_owned();
            let Some(ranges) = node.prop("ranges") else {
                return Err(AddressError::NoRanges {
                    path: path.to_owned(),
                    bus,
                });
            };
            if !ranges.is_empty() {
                let cac = node
                    .prop_u32("#address-cells")
                    .unwrap_or(DEFAULT_ADDRESS_CELLS);
                let csc = node.prop_u32("#size-cells").unwrap_or(DEFAULT_SIZE_CELLS);
                let pac = self.address_cells(&parent);
                if cac > 4 || csc > 4 || pac > 4 {
                    return Err(AddressError::BadReg {
                        path: bus.clone(),
                        reason: "`ranges` cells larger than 4".into(),
                    });
                }
                let pci = matches!(node.prop_str("device_type"), Some("pci" | "pciex"));
                let cb = usize::try_from(cac * 4).unwrap_or(0);
                let pb = usize::try_from(pac * 4).unwrap_or(0);
                let sb = usize::try_from(csc * 4).unwrap_or(0);
                let entry = cb + pb + sb;
                if entry == 0 || ranges.len() % entry != 0 {
                    return Err(AddressError::BadReg {
                        path: bus.clone(),
                        reason: "`ranges` length is not a multiple of its entry size".into(),
                    });
                }
                let mut found = None;
                for e in ranges.chunks_exact(entry) {
                    let (c, rest) = e.split_at(cb);
                    let (p, s) = rest.split_at(pb);
                    let (mut child, mut a) = (be_uint(c), addr);
                    if pci && cac == 3 {
                        // PCI: the high cell holds flags; only the space code (bits 24-25) must
                        // match (Linux `of_bus_pci_map`).
                        let space = |v: u128| (v >> 88) & 0x3;
                        if space(child) != space(a) {
                            continue;
                        }
                        child &= (1u128 << 64) - 1;
                        a &= (1u128 << 64) - 1;
                    }
                    let size = be_uint(s);
                    if a >= child && a - child < size {
                        found = Some(be_uint(p).checked_add(a - child));
                        break;
                    }
                }
                match found {
                    Some(Some(v)) => addr = v,
                    Some(None) => {
                        return Err(AddressError::Overflow {
                            path: path.to_owned(),
                        });
                    }
                    None => {
                        return Err(AddressError::NotInRanges {
                            path: path.to_owned(),
                            bus,
                            addr,
                        });
                    }
                }
            }
            bus = parent;
        }
    }

    /// `reg` translated to CPU physical addresses. `Ok(None)`: no `reg`.
    pub fn regions(&self, path: &str) -> Result<Option<Vec<Region>>, AddressError> {
        let Some(raw) = self.raw_reg(path)? else {
            return Ok(None);
        };
        let parent = self.parent(path).unwrap_or("/").to_owned();
        let mut out = Vec::new();
        for (a, s) in raw {
            let base = self.translate(path, &parent, a)?;
            let size = u64::try_from(s).map_err(|_| AddressError::Overflow {
                path: path.to_owned(),
            })?;
            out.push(Region::new(base, size));
        }
        Ok(Some(out))
    }

    /// The interrupt parent of `path` (Linux `of_irq_find_parent`): the node's own or an ancestor's
    /// `interrupt-parent`, else the parent node, until a node with `#interrupt-cells` is reached.
    pub fn interrupt_parent(&self, path: &str) -> Result<Option<String>, InterruptError> {
        let mut cur = path.to_owned();
        for _ in 0..crate::tree::MAX_DEPTH * 4 {
            let node = match self.node(&cur) {
                Some(n) => n,
                None => return Ok(None),
            };
            let next = match node.prop("interrupt-parent") {
                Some(v) => {
                    let b: [u8; 4] = v.try_into().map_err(|_| InterruptError::Malformed {
                        path: cur.clone(),
                        property: "interrupt-parent".into(),
                        reason: "not one cell".into(),
                    })?;
                    let h = u32::from_be_bytes(b);
                    self.by_phandle(h)
                        .ok_or_else(|| InterruptError::DanglingPhandle {
                            path: cur.clone(),
                            property: "interrupt-parent".into(),
                            phandle: h,
                        })?
                        .to_owned()
                }
                None => match self.parent(&cur) {
                    Some(p) => p.to_owned(),
                    None => return Ok(None),
                },
            };
            if next == cur {
                // A controller that names itself (the root GIC often does).
                return Ok(Some(next));
            }
            if self
                .node(&next)
                .is_some_and(|n| n.has_prop("#interrupt-cells"))
            {
                return Ok(Some(next));
            }
            cur = next;
        }
        Ok(None)
    }

    /// Whether `path` is a known 1:1 forwarder to a GIC ([`GIC_FORWARDER_COMPATIBLES`]); returns the
    /// GIC it forwards to. The forwarder's own interrupt parent must be a GIC.
    pub fn gic_behind_forwarder(&self, path: &str) -> Option<String> {
        let n = self.node(path)?;
        if !n.has_prop("interrupt-controller")
            || !GIC_FORWARDER_COMPATIBLES.iter().any(|c| n.is_compatible(c))
        {
            return None;
        }
        let parent = self.interrupt_parent(path).ok().flatten()?;
        (parent != path && self.is_gic(&parent)).then_some(parent)
    }

    fn decode_one(&self, controller: &str, cells: Vec<u32>) -> DecodedInterrupt {
        let ctrl = self.node(controller);
        let phandle = ctrl.and_then(Node::phandle);
        let (gic_path, forwarded_by) = if self.is_gic(controller) {
            (Some(controller.to_owned()), None)
        } else {
            match self.gic_behind_forwarder(controller) {
                Some(g) => (Some(g), Some(controller.to_owned())),
                None => (None, None),
            }
        };
        let parsed = gic_path.as_ref().map(|_| GicInterrupt::parse(&cells));
        let (gic, gic_error) = match parsed {
            Some(Ok(g)) => (Some(g), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let interrupt = match gic {
            Some(g) => match g.kind {
                GicKind::Spi | GicKind::ExtendedSpi => DeviceInterrupt::Spi(g.intid()),
                GicKind::Ppi | GicKind::ExtendedPpi => DeviceInterrupt::Ppi(g.intid()),
            },
            None => DeviceInterrupt::Nested(phandle.unwrap_or(0)),
        };
        DecodedInterrupt {
            controller: controller.to_owned(),
            controller_phandle: phandle,
            cells,
            interrupt,
            gic,
            gic_path: if gic.is_some() { gic_path } else { None },
            forwarded_by: if gic.is_some() { forwarded_by } else { None },
            gic_error,
        }
    }

    /// Every interrupt of `path`, from `interrupts-extended` if present, else `interrupts`.
    pub fn interrupts(&self, path: &str) -> Result<Vec<DecodedInterrupt>, InterruptError> {
        let Some(node) = self.node(path) else {
            return Ok(Vec::new());
        };
        let malformed = |property: &str, reason: &str| InterruptError::Malformed {
            path: path.to_owned(),
            property: property.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(v) = node.prop("interrupts-extended") {
            let cells = crate::tree::bytes_to_cells(v)
                .ok_or_else(|| malformed("interrupts-extended", "length not a multiple of 4"))?;
            let mut out = Vec::new();
            let mut i = 0;
            while i < cells.len() {
                let h = cells[i];
                let ctrl = self
                    .by_phandle(h)
                    .ok_or_else(|| InterruptError::DanglingPhandle {
                        path: path.to_owned(),
                        property: "interrupts-extended".into(),
                        phandle: h,
                    })?
                    .to_owned();
                let n = self.interrupt_cells(&ctrl, path)?;
                let spec = cells
                    .get(i + 1..i + 1 + n)
                    .ok_or_else(|| malformed("interrupts-extended", "specifier cut short"))?
                    .to_vec();
                out.push(self.decode_one(&ctrl, spec));
                i += 1 + n;
            }
            return Ok(out);
        }
        let Some(v) = node.prop("interrupts") else {
            return Ok(Vec::new());
        };
        let cells = crate::tree::bytes_to_cells(v)
            .ok_or_else(|| malformed("interrupts", "length not a multiple of 4"))?;
        let ctrl = self
            .interrupt_parent(path)?
            .ok_or_else(|| InterruptError::NoParent {
                path: path.to_owned(),
            })?;
        let n = self.interrupt_cells(&ctrl, path)?;
        if cells.len() % n != 0 {
            return Err(malformed(
                "interrupts",
                &format!(
                    "{} cells is not a multiple of #interrupt-cells = {n}",
                    cells.len()
                ),
            ));
        }
        Ok(cells
            .chunks_exact(n)
            .map(|c| self.decode_one(&ctrl, c.to_vec()))
            .collect())
    }

    fn interrupt_cells(&self, controller: &str, path: &str) -> Result<usize, InterruptError> {
        self.node(controller)
            .and_then(|n| n.prop_u32("#interrupt-cells"))
            .filter(|n| (1..=8).contains(n))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| InterruptError::NoInterruptCells {
                path: path.to_owned(),
                controller: controller.to_owned(),
            })
    }

    /// The phandle references in property `name` of `path`, parsed per [`node_dependency_kind`]. Stops at
    /// the first entry it cannot parse and reports it as an error string.
    pub fn phandle_refs(&self, path: &str, name: &str) -> Result<Vec<PhandleRef>, String> {
        let Some(node) = self.node(path) else {
            return Ok(Vec::new());
        };
        let Some(kind) = node_dependency_kind(node, name) else {
            return Ok(Vec::new());
        };
        let Some(v) = node.prop(name) else {
            return Ok(Vec::new());
        };
        let cells = crate::tree::bytes_to_cells(v)
            .ok_or_else(|| format!("`{name}` length is not a multiple of 4"))?;
        let mut out = Vec::new();
        let mut i = 0;
        while i < cells.len() {
            let h = cells[i];
            if h == 0 {
                // An empty entry (allowed by several bindings, e.g. `gpios = <0>`).
                i += 1;
                continue;
            }
            let provider = self.by_phandle(h).map(str::to_owned);
            let args = match kind {
                ListKind::Bare => 0,
                ListKind::Fixed(n) => n,
                ListKind::WithCells(c) | ListKind::WithCellsDefault0(c) => {
                    let pn = provider.as_deref().and_then(|p| self.node(p));
                    match pn.and_then(|n| n.prop_u32(c)) {
                        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                        None if matches!(kind, ListKind::WithCellsDefault0(_)) => 0,
                        None => {
                            return Err(format!(
                                "`{name}` entry {} references {} which has no `{c}`",
                                out.len(),
                                provider.unwrap_or_else(|| format!("phandle {h:#x}"))
                            ));
                        }
                    }
                }
            };
            if i.saturating_add(1).saturating_add(args) > cells.len() {
                return Err(format!("`{name}` entry {} is cut short", out.len()));
            }
            out.push(PhandleRef {
                property: name.to_owned(),
                cell_index: i,
                phandle: h,
                provider,
                args,
            });
            i += 1 + args;
        }
        Ok(out)
    }
}

/// Big-endian unsigned integer of up to 16 bytes.
pub fn be_uint(b: &[u8]) -> u128 {
    b.iter().fold(0u128, |acc, x| (acc << 8) | u128::from(*x))
}
