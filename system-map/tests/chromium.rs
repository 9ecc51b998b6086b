//! The map as a person sees it: headless Chromium (Debian's `chromium`) renders the example's SVG
//! to a PNG, which must have the page's size and not be blank (many colours, the domains' among
//! them). `scripts/setup` installs Chromium (~290 MB, ~50 s); where it is missing the test is skipped
//! with a note, except under `scripts/test-all`/CI (`test_support::strict()`), where it fails.

#[path = "../../firmware-config/fuzz/common/fixtures.rs"]
mod fixtures;

use firmware_config::board::Arch;
use firmware_config::manifest::Manifest;
use firmware_config::plan;
use firmware_config::validate::CheckInput;
use std::collections::BTreeSet;
use std::process::Command;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn chromium_renders_the_example_map() {
    let Some(browser) = chromium() else {
        test_support::missing(
            "chromium_renders_the_example_map",
            "chromium is not installed (apt-get install chromium)",
        );
        return;
    };
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/qemu-arm64.toml"
    ))
    .unwrap();
    let m = Manifest::parse(&text).unwrap();
    let (board, inv) = (fixtures::qemu_virt_board(), fixtures::qemu_virt_inventory());
    let arts = fixtures::artifacts_for(&m, Arch::Arm64);
    let p = plan::plan(CheckInput {
        manifest: &m,
        board: &board,
        inventory: &inv,
        artifacts: &arts,
    })
    .unwrap()
    .0;
    let svg = system_map::render_svg(&p);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let attr = |a: &str| {
        doc.root_element()
            .attribute(a)
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    let (w, h) = (attr("width"), attr("height"));
    let dir = std::env::temp_dir().join(format!("system-map-chromium-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg_path = dir.join("system.svg");
    let png_path = dir.join("system.png");
    std::fs::write(&svg_path, &svg).unwrap();
    let status = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={w},{h}"))
        .arg(format!("--screenshot={}", png_path.display()))
        .arg(format!("file://{}", svg_path.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let decoder = png::Decoder::new(std::fs::File::open(&png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height),
        (w, h),
        "the screenshot has the page's size"
    );
    let px = info.color_type.samples();
    let colours: BTreeSet<&[u8]> = buf[..info.buffer_size()]
        .chunks(px)
        .map(|c| &c[..3.min(px)])
        .collect();
    assert!(
        colours.len() > 16,
        "a blank page: {} colours",
        colours.len()
    );
    let app1 = system_map::domain_colour(0);
    let rgb: Vec<u8> = (0..3)
        .map(|i| u8::from_str_radix(&app1[1 + 2 * i..3 + 2 * i], 16).unwrap())
        .collect();
    assert!(
        colours.contains(rgb.as_slice()),
        "app-1's colour {app1} is on the page"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
