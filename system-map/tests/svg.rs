//! The system map read back by an independent XML parser (roxmltree): well-formed SVG, every
//! domain drawn with its own colour, everything inside the page, host rows in address order, the
//! passed-through device at the address the board's DT gives it (QEMU virt's PL031 at 0x9010000,
//! from QEMU's `dumpdtb`, typed in `fuzz/common/fixtures.rs`), and the same bytes every time —
//! for 1, 3 and 64 domains and for an x86 system.

#[path = "../../firmware-config/fuzz/common/fixtures.rs"]
mod fixtures;

use firmware_config::board::Arch;
use firmware_config::manifest::Manifest;
use firmware_config::plan::{self, SystemPlan};
use firmware_config::validate::CheckInput;
use std::fmt::Write as _;

fn plan_arm(text: &str) -> SystemPlan {
    let m = Manifest::parse(text).unwrap_or_else(|d| panic!("{d:?}"));
    let board = fixtures::qemu_virt_board();
    let inv = fixtures::qemu_virt_inventory();
    let arts = fixtures::artifacts_for(&m, Arch::Arm64);
    plan::plan(CheckInput {
        manifest: &m,
        board: &board,
        inventory: &inv,
        artifacts: &arts,
    })
    .unwrap_or_else(|d| panic!("{d:?}"))
    .0
}

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn many(n: usize) -> String {
    let mut t = String::from("[system]\nname = \"many\"\nboard = \"qemu-virt-arm64\"\n");
    for i in 0..n {
        let _ = write!(
            t,
            "\n[[domain]]\nname = \"guest-{i}\"\nkind = \"arm64\"\nmemory = \"16M\"\nkernel = \"kernels/a.Image\"\n"
        );
    }
    t
}

fn num(node: roxmltree::Node, attr: &str) -> f64 {
    node.attribute(attr)
        .map_or(0.0, |v| v.parse().unwrap_or_else(|_| panic!("{attr}={v}")))
}

/// Parses and checks what holds for every map; returns the page size.
fn check(plan: &SystemPlan) -> (f64, f64) {
    let svg = system_map::render_svg(plan);
    assert_eq!(svg, system_map::render_svg(plan), "deterministic");
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("not XML: {e}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let (w, h) = (num(root, "width"), num(root, "height"));
    assert_eq!(
        root.attribute("viewBox"),
        Some(format!("0 0 {w} {h}").as_str())
    );
    for n in doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") || n.has_tag_name("text"))
    {
        let (x, y) = (num(n, "x"), num(n, "y"));
        let (rw, rh) = (num(n, "width"), num(n, "height"));
        assert!(
            x >= 0.0 && y >= 0.0 && x + rw <= w + 0.5 && y + rh <= h + 0.5,
            "outside the page: {n:?}"
        );
    }
    let by_id = |id: &str| doc.descendants().find(|n| n.attribute("id") == Some(id));
    let legend = by_id("legend").expect("a legend");
    let legend_text: Vec<&str> = legend.descendants().filter_map(|n| n.text()).collect();
    for (i, d) in plan.domains.iter().enumerate() {
        let card = by_id(&format!("domain-{}", d.name))
            .unwrap_or_else(|| panic!("no card for {}", d.name));
        let colour = system_map::domain_colour(i);
        assert!(
            card.descendants()
                .any(|n| n.attribute("fill") == Some(colour.as_str())),
            "{} in its colour",
            d.name
        );
        let squares = card
            .descendants()
            .filter(|n| {
                n.has_tag_name("rect")
                    && n.children()
                        .any(|c| c.text().is_some_and(|t| t.starts_with("vCPU ")))
            })
            .count();
        assert_eq!(
            squares, d.vcpus as usize,
            "one square per vCPU of {}",
            d.name
        );
        assert!(
            legend_text
                .iter()
                .any(|t| t.starts_with(&d.name[..d.name.len().min(10)])),
            "{} in the legend",
            d.name
        );
    }
    // Host rows in address order.
    let host = by_id("host-map").unwrap();
    let bases: Vec<u64> = host
        .descendants()
        .filter_map(|n| n.text())
        .filter_map(|t| t.split(['-', ' ']).next())
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    assert!(!bases.is_empty());
    assert!(
        bases.windows(2).all(|w| w[0] <= w[1]),
        "host rows in address order: {bases:x?}"
    );
    (w, h)
}

#[test]
fn the_built_in_example_maps_the_rtc_at_its_dt_address() {
    let plan = plan_arm(&example("qemu-arm64.toml"));
    check(&plan);
    let svg = system_map::render_svg(&plan);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let rtc = doc
        .descendants()
        .filter_map(|n| n.text())
        .find(|t| t.contains("rtc-driver MMIO /pl031@9010000"))
        .expect("the RTC's MMIO in the host map");
    assert!(rtc.starts_with("0x009010000-0x009011000"), "{rtc}");
}

#[test]
fn one_dom0_and_sixty_four_domains_stay_readable() {
    let (w1, _) = check(&plan_arm(&many(1)));
    check(&plan_arm(&example("qemu-arm64-dom0.toml")));
    let (w64, h64) = check(&plan_arm(&many(64)));
    assert!(w64 > w1, "more columns for more domains");
    assert!(h64 < 4000.0, "64 domains in four columns, {h64} px high");
}

#[test]
fn an_x86_system_maps_too() {
    let (board, inv) = fixtures::qemu_x86_board();
    let m = Manifest::parse(&example("qemu-x86_64.toml")).unwrap();
    let arts = fixtures::artifacts_for(&m, Arch::X86_64);
    let plan = plan::plan(CheckInput {
        manifest: &m,
        board: &board,
        inventory: &inv,
        artifacts: &arts,
    })
    .unwrap()
    .0;
    check(&plan);
}
