//! Messages that must not mislead (issue 15): nodes Xen keeps are named for what they are, a
//! `depends_on` cycle shows each of its edges, unknown names get the one "did you mean".

use super::*;
use crate::testing;

fn inventory() -> HardwareInventory {
    HardwareInventory {
        iommus: std::vec!["/smmu@9050000".into()],
        ..testing::gic_v3_inventory("/intc@8000000", Vec::new())
    }
}

fn errors(manifest: &str) -> Vec<Diagnostic> {
    all(manifest, &inventory(), 4096)
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect()
}

/// Every diagnostic of `check`, then of `plan` when `check` passes, with the kernel `Image`
/// `kernel_size` bytes long.
fn all(manifest: &str, inv: &HardwareInventory, kernel_size: u64) -> Vec<Diagnostic> {
    let m = Manifest::parse(manifest).expect("parses");
    let board = testing::virt_arm64();
    let artifacts = testing::arm64_artifacts(&["Image", "debian:xen"], kernel_size);
    let input = CheckInput {
        manifest: &m,
        board: &board,
        inventory: inv,
        artifacts: &artifacts,
    };
    let diags = check(input);
    if diags.has_errors() {
        return diags.0;
    }
    match crate::plan::plan(CheckInput {
        manifest: &m,
        board: &board,
        inventory: inv,
        artifacts: &artifacts,
    }) {
        Ok((_, warnings)) => warnings.0,
        Err(d) => d.0,
    }
}

fn device(path: &str, irq: DeviceInterrupt, behind_iommu: bool) -> crate::board::DeviceNode {
    crate::board::DeviceNode {
        path: path.into(),
        compatible: std::vec!["test,dev".into()],
        enabled: true,
        regions: std::vec![Region::new(0x0a00_0000, 0x1000)],
        interrupts: std::vec![irq],
        behind_iommu,
        dma_capable: false,
        dependencies: Vec::new(),
        phandle: None,
        nested_mmio: Default::default(),
    }
}

fn codes_and_messages(d: &[Diagnostic]) -> Vec<(&'static str, String)> {
    d.iter().map(|d| (d.code, d.message.clone())).collect()
}

/// Codes the QEMU boards cannot produce (no PPI or GPIO-routed device to pass, no huge kernel in
/// the fixtures), checked against hand-made inventories.
#[test]
fn rules_the_qemu_boards_cannot_trigger() {
    let pass = domain("one", "passthrough = [\"/dev@a000000\"]");
    let with = |irq, iommu| {
        let mut inv = inventory();
        inv.devices = std::vec![device("/dev@a000000", irq, iommu)];
        inv
    };
    let d = all(
        &format!("{HEAD}{pass}"),
        &with(DeviceInterrupt::Ppi(27), true),
        4096,
    );
    assert_eq!(codes_and_messages(&d)[0].0, "E0241", "{d:?}");
    let d = all(
        &format!("{HEAD}{pass}"),
        &with(DeviceInterrupt::Nested(7), true),
        4096,
    );
    assert_eq!(codes_and_messages(&d)[0].0, "E0243", "{d:?}");
    let forced = domain(
        "one",
        "passthrough = [\"/dev@a000000\"]\nforce_without_iommu = true",
    );
    let d = all(
        &format!("{HEAD}{forced}"),
        &with(DeviceInterrupt::Spi(40), false),
        4096,
    );
    assert_eq!(
        codes_and_messages(&d),
        [(
            "W0201",
            String::from(
                "`/dev@a000000` has no IOMMU: any DMA it does is not confined to its guest"
            )
        )]
    );
    // A command line without console= (W0203); the domain in `domain()` has none.
    let talk = domain("one", "cmdline = \"quiet\"").replace("console = \"none\"\n", "");
    let d = all(&format!("{HEAD}{talk}"), &inventory(), 4096);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].code, "W0203");
    // A kernel larger than the board's module window (0x37e00000 bytes on qemu-virt-arm64).
    let d = all(
        &format!("{HEAD}{}", domain("one", "")),
        &inventory(),
        0x4000_0000,
    );
    assert_eq!(codes_and_messages(&d)[0].0, "E0303", "{d:?}");
}

fn domain(name: &str, extra: &str) -> String {
    format!(
        "\n[[domain]]\nname = \"{name}\"\nkind = \"arm64\"\nmemory = \"64M\"\nkernel = \"Image\"\nconsole = \"none\"\n{extra}\n"
    )
}

const HEAD: &str = "[system]\nname = \"t\"\nboard = \"qemu-virt-arm64\"\n";

#[test]
fn nodes_xen_keeps_are_e0232_not_missing_devices() {
    for (path, label) in [
        (
            "/intc@8000000",
            "the interrupt controller: Xen drives it and gives each guest a virtual one",
        ),
        (
            "/intc@8000000/its@8080000",
            "the interrupt controller: Xen drives it and gives each guest a virtual one",
        ),
        (
            "/smmu@9050000",
            "an IOMMU: Xen programs it to confine the devices behind it",
        ),
        (
            "/cpus/cpu@1",
            "a physical CPU: guests get vCPUs (`vcpus`), and Xen schedules them",
        ),
    ] {
        let m = format!(
            "{HEAD}{}",
            domain("one", &format!("passthrough = [\"{path}\"]"))
        );
        let e = errors(&m);
        assert_eq!(e.len(), 1, "{path}: {e:?}");
        assert_eq!(e[0].code, "E0232", "{path}");
        assert_eq!(e[0].message, format!("`{path}` belongs to Xen"));
        assert_eq!(e[0].primary.as_ref().unwrap().message, label);
    }
    // A path that only starts like the controller's is not below it.
    let m = format!(
        "{HEAD}{}",
        domain("one", "passthrough = [\"/intc@80000001\"]")
    );
    assert_eq!(errors(&m)[0].code, "E0209");
}

#[test]
fn a_cycle_shows_every_edge_and_the_one_to_remove() {
    let m = format!(
        "{HEAD}{}{}{}",
        domain("a", "depends_on = [\"b\"]"),
        domain("b", "depends_on = [\"c\"]"),
        domain("c", "depends_on = [\"a\"]")
    );
    let e = errors(&m);
    assert_eq!(e.len(), 1, "{e:?}");
    let d = &e[0];
    assert_eq!(d.code, "E0224");
    assert_eq!(d.message, "`depends_on` forms a cycle: a -> b -> c -> a");
    let text = |span: &Span| &m[span.clone()];
    let primary = d.primary.as_ref().unwrap();
    // The edge written last, `c` -> `a`, is primary and proposed for removal.
    assert_eq!(primary.message, "`c` depends on `a`");
    assert_eq!(text(&primary.span), "\"a\"");
    assert!(m[..primary.span.start].ends_with("name = \"c\"\nkind = \"arm64\"\nmemory = \"64M\"\nkernel = \"Image\"\nconsole = \"none\"\ndepends_on = ["));
    let others: Vec<&str> = d.secondary.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(others, ["`a` depends on `b`", "`b` depends on `c`"]);
    assert_eq!(
        d.help.as_deref(),
        Some("remove one edge of the cycle, e.g. `\"a\"` from the `depends_on` of `c`")
    );
}

#[test]
fn every_name_reference_gets_a_did_you_mean() {
    let shm = "\n[[shared_memory]]\nid = \"r\"\nsize = \"64K\"\nhost_address = \"0x70000000\"\nguest_address = \"0x50000000\"\nowner = \"writr\"\nborrowers = [\"raeder\"]\n";
    let m = format!(
        "{HEAD}{}{}{shm}",
        domain("writer", "depends_on = [\"reder\"]"),
        domain("reader", "cpupool = \"pol\"")
    );
    let mut hints: Vec<(String, String)> = errors(&m)
        .iter()
        .map(|d| (d.message.clone(), d.help.clone().unwrap_or_default()))
        .collect();
    hints.sort();
    assert_eq!(
        hints,
        [
            (
                String::from("no cpupool is named `pol`"),
                String::from("declare it with a [[cpupool]] table")
            ),
            (
                "no domain is named `raeder`".into(),
                "did you mean `reader`?".into()
            ),
            (
                "no domain is named `reder`".into(),
                "did you mean `reader`?".into()
            ),
            (
                "no domain is named `writr`".into(),
                "did you mean `writer`?".into()
            ),
        ]
    );
}
