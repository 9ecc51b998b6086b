//! Which device-tree `compatible` strings Xen's own ARM drivers match, per release.
//!
//! Read from the `DT_MATCH_COMPATIBLE(...)` / `.compatible = ...` tables of each release tag
//! (`RELEASE-4.17.0` … `RELEASE-4.22.0` of xen.git):
//! - console UARTs: `xen/drivers/char/{pl011,ns16550,cadence-uart,exynos4210-uart,imx-lpuart,
//!   meson-uart,mvebu-uart,omap-uart,scif-uart,linflex-uart}.c`;
//! - IOMMUs: `xen/drivers/passthrough/arm/{smmu,smmu-v3,ipmmu-vmsa}.c`.
//!
//! A board whose console UART matches none of a release's UART drivers has no Xen console on that
//! release; a device whose IOMMU matches none of the IOMMU drivers is not protected by Xen, whatever
//! Linux can do with that IOMMU (Rockchip's `rockchip,iommu`, and Renesas RZ/G2's
//! `renesas,ipmmu-r8a774a1`, which Xen's IPMMU driver does not list: it drives R-Car H3/M3-W/M3-N/S4
//! and, from 4.20, V4H only).

use crate::xen::XenVersion;

/// One `compatible` string a Xen driver matches, and the first release that matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverMatch {
    pub compatible: &'static str,
    /// The driver's source file under `xen/drivers/`.
    pub driver: &'static str,
    pub since: XenVersion,
    /// The last release that matches it (`None`: still matched in the newest supported release).
    pub until: Option<XenVersion>,
}

const fn m(compatible: &'static str, driver: &'static str, since: XenVersion) -> DriverMatch {
    DriverMatch {
        compatible,
        driver,
        since,
        until: None,
    }
}

/// Console UART drivers (`xen/drivers/char/`).
pub const UART_DRIVERS: &[DriverMatch] = &[
    m("arm,pl011", "char/pl011.c", XenVersion::V4_17),
    m("arm,sbsa-uart", "char/pl011.c", XenVersion::V4_18),
    m("ns16550", "char/ns16550.c", XenVersion::V4_17),
    m("ns16550a", "char/ns16550.c", XenVersion::V4_17),
    m("snps,dw-apb-uart", "char/ns16550.c", XenVersion::V4_17),
    m("brcm,bcm2835-aux-uart", "char/ns16550.c", XenVersion::V4_17),
    m("cdns,uart-r1p8", "char/cadence-uart.c", XenVersion::V4_17),
    m("cdns,uart-r1p12", "char/cadence-uart.c", XenVersion::V4_17),
    m(
        "samsung,exynos4210-uart",
        "char/exynos4210-uart.c",
        XenVersion::V4_17,
    ),
    // imx-lpuart.c matched "fsl,imx8qm-lpuart" in 4.17 and 4.18, "fsl,imx8qxp-lpuart" from 4.19.
    DriverMatch {
        compatible: "fsl,imx8qm-lpuart",
        driver: "char/imx-lpuart.c",
        since: XenVersion::V4_17,
        until: Some(XenVersion::V4_18),
    },
    m("fsl,imx8qxp-lpuart", "char/imx-lpuart.c", XenVersion::V4_19),
    m("amlogic,meson-uart", "char/meson-uart.c", XenVersion::V4_17),
    m(
        "amlogic,meson6-uart",
        "char/meson-uart.c",
        XenVersion::V4_17,
    ),
    m(
        "amlogic,meson8-uart",
        "char/meson-uart.c",
        XenVersion::V4_17,
    ),
    m(
        "amlogic,meson8b-uart",
        "char/meson-uart.c",
        XenVersion::V4_17,
    ),
    m(
        "amlogic,meson-gx-uart",
        "char/meson-uart.c",
        XenVersion::V4_17,
    ),
    m(
        "marvell,armada-3700-uart",
        "char/mvebu-uart.c",
        XenVersion::V4_17,
    ),
    m("ti,omap4-uart", "char/omap-uart.c", XenVersion::V4_17),
    m("ti,am654-uart", "char/omap-uart.c", XenVersion::V4_19),
    m("renesas,scif", "char/scif-uart.c", XenVersion::V4_17),
    m("renesas,scifa", "char/scif-uart.c", XenVersion::V4_17),
    m("renesas,hscif", "char/scif-uart.c", XenVersion::V4_17),
    m(
        "nxp,s32g2-linflexuart",
        "char/linflex-uart.c",
        XenVersion::V4_20,
    ),
    m(
        "nxp,s32g3-linflexuart",
        "char/linflex-uart.c",
        XenVersion::V4_20,
    ),
    m(
        "fsl,s32v234-linflexuart",
        "char/linflex-uart.c",
        XenVersion::V4_20,
    ),
];

/// IOMMU drivers (`xen/drivers/passthrough/arm/`).
pub const IOMMU_DRIVERS: &[DriverMatch] = &[
    m("arm,smmu-v1", "passthrough/arm/smmu.c", XenVersion::V4_17),
    m("arm,smmu-v2", "passthrough/arm/smmu.c", XenVersion::V4_17),
    m("arm,mmu-400", "passthrough/arm/smmu.c", XenVersion::V4_17),
    m("arm,mmu-401", "passthrough/arm/smmu.c", XenVersion::V4_17),
    m("arm,mmu-500", "passthrough/arm/smmu.c", XenVersion::V4_17),
    m(
        "arm,smmu-v3",
        "passthrough/arm/smmu-v3.c",
        XenVersion::V4_17,
    ),
    m(
        "renesas,ipmmu-r8a7795",
        "passthrough/arm/ipmmu-vmsa.c",
        XenVersion::V4_17,
    ),
    m(
        "renesas,ipmmu-r8a7796",
        "passthrough/arm/ipmmu-vmsa.c",
        XenVersion::V4_17,
    ),
    m(
        "renesas,ipmmu-r8a77961",
        "passthrough/arm/ipmmu-vmsa.c",
        XenVersion::V4_17,
    ),
    m(
        "renesas,ipmmu-r8a77965",
        "passthrough/arm/ipmmu-vmsa.c",
        XenVersion::V4_17,
    ),
    m(
        "renesas,ipmmu-r8a779f0",
        "passthrough/arm/ipmmu-vmsa.c",
        XenVersion::V4_17,
    ),
    m(
        "renesas,ipmmu-r8a779g0",
        "passthrough/arm/ipmmu-vmsa.c",
        XenVersion::V4_20,
    ),
];

impl DriverMatch {
    /// Whether release `xen` matches this entry.
    pub fn in_release(&self, xen: XenVersion) -> bool {
        self.since <= xen && self.until.is_none_or(|u| xen <= u)
    }
}

/// The first driver of `table` in release `xen` that matches one of `compatibles`.
pub fn find<'t, S: AsRef<str>>(
    table: &'t [DriverMatch],
    xen: XenVersion,
    compatibles: &[S],
) -> Option<&'t DriverMatch> {
    compatibles.iter().find_map(|c| {
        table
            .iter()
            .find(|d| d.in_release(xen) && d.compatible == c.as_ref())
    })
}

/// The earliest supported release after `xen` whose `table` matches one of `compatibles`.
pub fn first_release_matching<S: AsRef<str>>(
    table: &[DriverMatch],
    compatibles: &[S],
) -> Option<XenVersion> {
    compatibles
        .iter()
        .filter_map(|c| {
            table
                .iter()
                .filter(|d| d.compatible == c.as_ref())
                .map(|d| d.since)
                .min()
        })
        .min()
}

/// Whether every supported release (4.17 … 4.22) matches `compatible` in `table`: what a reader that
/// does not know the target release may rely on.
pub fn in_every_release(table: &[DriverMatch], compatible: &str) -> bool {
    let mut v = XenVersion::OLDEST;
    loop {
        if !table
            .iter()
            .any(|d| d.compatible == compatible && d.in_release(v))
        {
            return false;
        }
        if v == XenVersion::NEWEST {
            return true;
        }
        v = XenVersion::new(v.major, v.minor + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_respected() {
        let am62 = ["ti,am64-uart", "ti,am654-uart"];
        assert!(find(UART_DRIVERS, XenVersion::V4_17, &am62).is_none());
        assert_eq!(
            find(UART_DRIVERS, XenVersion::V4_19, &am62).map(|d| d.driver),
            Some("char/omap-uart.c")
        );
        assert_eq!(
            first_release_matching(UART_DRIVERS, &am62),
            Some(XenVersion::V4_19)
        );
        let lpuart = ["fsl,imx8qm-lpuart"];
        assert!(find(UART_DRIVERS, XenVersion::V4_18, &lpuart).is_some());
        assert!(find(UART_DRIVERS, XenVersion::V4_19, &lpuart).is_none());
        assert!(in_every_release(IOMMU_DRIVERS, "arm,mmu-500"));
        assert!(!in_every_release(IOMMU_DRIVERS, "renesas,ipmmu-r8a779g0"));
        assert!(!in_every_release(IOMMU_DRIVERS, "renesas,ipmmu-r8a774a1"));
    }
}
