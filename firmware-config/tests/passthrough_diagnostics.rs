//! Passthrough diagnostics on hand-made inventories (issue 13): E0243 names the secondary interrupt
//! controller by path, once per controller; E0240's hint suggests passing a provider only when
//! `passthrough` would accept it (an enabled device), never a pinctrl state or a regulator (E0209).
//! The expected texts are written here from the rules in docs/manifest.md.

use firmware_config::board::{DeviceDependency, DeviceInterrupt, DeviceNode, HardwareInventory};
use firmware_config::diag::Diagnostic;
use firmware_config::testing::{self, device};

fn inventory(devices: Vec<DeviceNode>) -> HardwareInventory {
    testing::gic_v3_inventory("/intc", devices)
}

fn diagnostics(passthrough: &str, inv: &HardwareInventory) -> Vec<Diagnostic> {
    let text = format!(
        "[system]\nname = \"t\"\nboard = \"qemu-virt-arm64\"\nxen = \"4.17\"\n\n[[domain]]\nname = \"drv\"\nkind = \"arm64\"\nmemory = \"64M\"\nkernel = \"Image\"\npassthrough = [{passthrough}]\n"
    );
    let artifacts = testing::arm64_artifacts(&["Image", "debian:xen"], 4096);
    testing::check_on_virt(&text, inv, &artifacts).0
}

#[test]
fn e0243_names_the_controller_once() {
    let mut gpio = device(
        "/soc/gpio@1000000",
        0x100_0000,
        vec![DeviceInterrupt::Spi(40)],
    );
    gpio.phandle = Some(0x27);
    let dev = device(
        "/soc/keys@2000000",
        0x200_0000,
        vec![DeviceInterrupt::Nested(0x27), DeviceInterrupt::Nested(0x27)],
    );
    let d = diagnostics("\"/soc/keys@2000000\"", &inventory(vec![gpio, dev]));
    let e: Vec<&Diagnostic> = d.iter().filter(|d| d.code == "E0243").collect();
    assert_eq!(e.len(), 1, "once per controller: {d:?}");
    assert_eq!(
        e[0].message,
        "`/soc/keys@2000000` raises interrupts through `/soc/gpio@1000000`, not the GIC"
    );
    assert_eq!(
        e[0].help.as_deref(),
        Some("choose a device wired to the GIC, or one whose controller forwards 1:1 to it")
    );
}

#[test]
fn e0240_suggests_passing_only_what_passthrough_accepts() {
    let mut dev = device(
        "/soc/uart@2000000",
        0x200_0000,
        vec![DeviceInterrupt::Spi(41)],
    );
    let dep = |property: &str, provider: &str| DeviceDependency {
        property: property.into(),
        provider: provider.into(),
        copyable: false,
    };
    dev.dependencies = vec![
        dep("clocks", "/soc/clock-controller@3000000"),
        dep("pinctrl-0", "/soc/pinctrl/uart0-pins"),
    ];
    let cru = device("/soc/clock-controller@3000000", 0x300_0000, vec![]);
    let d = diagnostics("\"/soc/uart@2000000\"", &inventory(vec![dev, cru]));
    let help_for = |provider: &str| {
        d.iter()
            .find(|x| x.code == "E0240" && x.message.contains(provider))
            .and_then(|x| x.help.clone())
            .unwrap_or_else(|| panic!("E0240 for {provider}: {d:?}"))
    };
    assert_eq!(
        help_for("clock-controller"),
        "pass `/soc/clock-controller@3000000` to this domain too, or set `drop_device_dependencies = true` if firmware already set it up"
    );
    assert_eq!(
        help_for("uart0-pins"),
        "`/soc/pinctrl/uart0-pins` is not a device a domain can own (no MMIO of its own, or disabled); set `drop_device_dependencies = true` if firmware already set it up"
    );
}

#[test]
fn e0261_refuses_a_node_with_mmio_below_it() {
    let mut syscon = device("/bus/syscon@100000", 0x10_0000, vec![]);
    syscon.nested_mmio = vec![
        "/bus/syscon@100000/phy@4044".into(),
        "/bus/syscon@100000/clock@4130".into(),
    ];
    let d = diagnostics("\"/bus/syscon@100000\"", &inventory(vec![syscon]));
    let e = d
        .iter()
        .find(|x| x.code == "E0261")
        .unwrap_or_else(|| panic!("E0261 expected: {d:?}"));
    assert_eq!(
        e.message,
        "`/bus/syscon@100000` has nodes with MMIO of their own below it (`/bus/syscon@100000/phy@4044` and 1 more)"
    );
    assert_eq!(
        e.help.as_deref(),
        Some(
            "pass the devices inside it instead: /bus/syscon@100000/phy@4044, /bus/syscon@100000/clock@4130"
        )
    );
}
