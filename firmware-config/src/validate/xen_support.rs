//! Rules about what the target Xen release can drive on the board (`crate::xen_drivers`).
//!
//! - **E0260**: Xen's console UART (the board's `[console] uart`, else the DTB's `stdout-path`) must
//!   match one of the release's UART drivers. When none does, `dt_uart_init`
//!   (`xen/drivers/char/arm-uart.c`) prints "Unable to initialize dtuart" into a console that does
//!   not exist and Xen boots silently: nothing Xen or the guests print through it reaches the serial
//!   line. Checked for Debian's and the built-in Xen builds only — a hypervisor built elsewhere may
//!   carry more drivers.
//! - **E0262**: `xen_features = ["static-memory"]` declares a hypervisor built with
//!   `CONFIG_STATIC_MEMORY`; Debian's `xen-hypervisor-*-arm64` packages are built without it (their
//!   `/boot/xen-*.config`), so declaring it for `debian:xen` promises what the boot will not have.

use std::format;
use std::string::String;
use std::vec::Vec;

use crate::board::Arch;
use crate::diag::Diagnostic;
use crate::xen_drivers::{self, UART_DRIVERS};

use super::Validator;

impl Validator<'_> {
    /// E0260: Xen has a driver for the board's console UART in the target release.
    pub(super) fn console_driver(&mut self) {
        let m = self.m();
        let board = self.input.board;
        if board.arch != Arch::Arm64 || board.xen_console != "dtuart" {
            return;
        }
        let custom =
            m.system.hypervisor.as_ref().is_some_and(|h| {
                !h.value.starts_with("debian:") && !h.value.starts_with("builtin:")
            });
        if custom || !m.system.xen.value.is_supported() {
            return;
        }
        let inv = self.input.inventory;
        let Some(path) = board
            .console_uart
            .clone()
            .or_else(|| inv.stdout_path.clone())
        else {
            return;
        };
        let Some(dev) = inv.device(&path) else {
            return;
        };
        let xen = m.system.xen.value;
        if xen_drivers::find(UART_DRIVERS, xen, &dev.compatible).is_some() {
            return;
        }
        let compatibles = dev
            .compatible
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut d = Diagnostic::error(
            "E0260",
            format!(
                "Xen {xen} has no driver for the board's console UART {path} (compatible {compatibles})"
            ),
        )
        .at(
            m.system.board.span.clone(),
            format!("board `{}` has its Xen console on {path}", board.name),
        )
        .also(m.system.xen.span.clone(), format!("Xen {xen} here"))
        .note(format!(
            "Xen {xen}'s UART drivers match: {}",
            drivers_in(xen).join(", ")
        ));
        d = match xen_drivers::first_release_matching(UART_DRIVERS, &dev.compatible) {
            Some(v) if v > xen && v.is_supported() => d.help(format!(
                "Xen {v} drives this UART: set `xen = \"{v}\"` in [system]"
            )),
            _ => d.help(
                "no Xen release domforge supports drives it: give the board file a `[console] uart` \
                 that one of those drivers matches, or boot a Xen built with a driver for it \
                 (`hypervisor = \"path/to/xen\"`)",
            ),
        };
        self.d.push(d);
    }
}

impl Validator<'_> {
    /// E0262: `static-memory` is declared only for a hypervisor that can have it.
    pub(super) fn static_memory_build(&mut self) {
        let m = self.m();
        let Some(feature) = m
            .system
            .xen_features
            .iter()
            .find(|f| f.value == "static-memory")
        else {
            return;
        };
        let debian = m
            .system
            .hypervisor
            .as_ref()
            .is_none_or(|h| h.value == "debian:xen");
        if !debian {
            return;
        }
        let xen = m.system.xen.value;
        let mut d = Diagnostic::error(
            "E0262",
            format!("Debian's Xen {xen} is built without CONFIG_STATIC_MEMORY"),
        )
        .at(
            feature.span.clone(),
            "declares a hypervisor built with static memory",
        );
        if let Some(h) = &m.system.hypervisor {
            d = d.also(h.span.clone(), "the hypervisor is Debian's package");
        }
        self.d.push(
            d.note(format!(
                "`xen_features` says what the hypervisor was built with; the boot would use Debian's xen-hypervisor-{xen}-arm64"
            ))
            .help(
                "set `hypervisor = \"builtin:xen-static-memory\"` in [system] (Debian's Xen source rebuilt with CONFIG_STATIC_MEMORY), or point `hypervisor` at your own build",
            ),
        );
    }
}

/// `compatible (driver.c)` for every UART driver match of release `xen`.
fn drivers_in(xen: crate::xen::XenVersion) -> Vec<String> {
    UART_DRIVERS
        .iter()
        .filter(|d| d.in_release(xen))
        .map(|d| format!("{} ({})", d.compatible, d.driver))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::format;
    use std::string::ToString;
    use std::vec;
    use std::vec::Vec;

    use crate::board::{DeviceNode, HardwareInventory, Region};
    use crate::diag::Diagnostic;
    use crate::testing;

    fn uart_inventory(compatible: &[&str]) -> HardwareInventory {
        let mut inv = HardwareInventory {
            stdout_path: Some("/soc/serial@2800000".into()),
            ..HardwareInventory::default()
        };
        inv.devices.push(DeviceNode {
            path: "/soc/serial@2800000".into(),
            compatible: compatible.iter().map(ToString::to_string).collect(),
            enabled: true,
            regions: vec![Region::new(0x0280_0000, 0x100)],
            interrupts: vec![],
            behind_iommu: false,
            dma_capable: false,
            dependencies: vec![],
            phandle: None,
            nested_mmio: Vec::new(),
        });
        inv
    }

    fn e0260(xen: &str, compatible: &[&str]) -> Option<Diagnostic> {
        let text = format!(
            "[system]\nname = \"t\"\nboard = \"qemu-virt-arm64\"\nxen = \"{xen}\"\n\n[[domain]]\nname = \"a\"\nkind = \"arm64\"\nmemory = \"64M\"\nkernel = \"Image\"\n"
        );
        let artifacts = testing::arm64_artifacts(&["Image", "debian:xen"], 4096);
        testing::check_on_virt(&text, &uart_inventory(compatible), &artifacts)
            .0
            .into_iter()
            .find(|d| d.code == "E0260")
    }

    fn codes_of(text: &str) -> Vec<Diagnostic> {
        let artifacts = testing::arm64_artifacts(&["Image", "debian:xen", "xen-static"], 4096);
        testing::check_on_virt(text, &uart_inventory(&["arm,pl011"]), &artifacts).0
    }

    #[test]
    fn static_memory_is_not_in_debians_xen() {
        let head = "[system]\nname = \"t\"\nboard = \"qemu-virt-arm64\"\nxen = \"4.17\"\n";
        let tail = "xen_features = [\"static-memory\"]\n\n[[domain]]\nname = \"a\"\nkind = \"arm64\"\nmemory = \"64M\"\nkernel = \"Image\"\n";
        let d = codes_of(&format!("{head}{tail}"));
        let e = d.iter().find(|d| d.code == "E0262").expect("E0262");
        assert_eq!(
            e.message,
            "Debian's Xen 4.17 is built without CONFIG_STATIC_MEMORY"
        );
        assert!(
            e.help
                .as_deref()
                .is_some_and(|h| h.contains("builtin:xen-static-memory"))
        );
        let own = codes_of(&format!("{head}hypervisor = \"xen-static\"\n{tail}"));
        assert!(!own.iter().any(|d| d.code == "E0262"), "{own:?}");
    }

    #[test]
    fn am625_console_needs_xen_4_19() {
        let am62 = ["ti,am64-uart", "ti,am654-uart"];
        let d = e0260("4.17", &am62).expect("refused on 4.17");
        assert_eq!(
            d.message,
            "Xen 4.17 has no driver for the board's console UART /soc/serial@2800000 (compatible \"ti,am64-uart\", \"ti,am654-uart\")"
        );
        assert_eq!(
            d.help.as_deref(),
            Some("Xen 4.19 drives this UART: set `xen = \"4.19\"` in [system]")
        );
        assert!(d.notes[0].contains("ti,omap4-uart (char/omap-uart.c)"));
        assert!(e0260("4.19", &am62).is_none());
    }

    #[test]
    fn imx_uart_has_no_xen_driver_and_known_uarts_pass() {
        let d = e0260("4.22", &["fsl,imx8mp-uart", "fsl,imx6q-uart"]).expect("refused");
        assert!(
            d.help
                .as_deref()
                .is_some_and(|h| h.contains("no Xen release"))
        );
        for ok in [
            &["arm,pl011", "arm,primecell"][..],
            &["rockchip,rk3399-uart", "snps,dw-apb-uart"],
            &[
                "renesas,scif-r8a774a1",
                "renesas,rcar-gen3-scif",
                "renesas,scif",
            ],
            &["brcm,bcm2835-aux-uart"],
            &["xlnx,xuartps", "cdns,uart-r1p8"],
        ] {
            assert!(e0260("4.17", ok).is_none(), "{ok:?}");
        }
    }
}
