//! docs/migrating.md's side-by-side examples are what the importers write: each input block is
//! imported and the manifest (comments aside) must equal the block beside it.

use firmware_config::board::{Board, builtin_board};
use migrate::imagebuilder::{self, ImageBuilderOptions};
use migrate::xl::{self, XlOptions};
use migrate::{InputFile, Paths};

fn blocks() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/migrating.md"))
            .unwrap();
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if let Some(lang) = l.strip_prefix("```")
            && !lang.is_empty()
        {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            out.push((lang.to_string(), body.join("\n") + "\n"));
        }
    }
    out
}

fn without_comments(t: &str) -> Vec<String> {
    t.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_side_by_side_examples_are_real_output() {
    let b = blocks();
    let xl_in = &b.iter().find(|(l, _)| l == "python").unwrap().1;
    let pos = b.iter().position(|(l, _)| l == "python").unwrap();
    let board = Board::parse(builtin_board("qemu-virt-arm64").unwrap()).unwrap();
    let opts = XlOptions {
        board_name: "qemu-virt-arm64".into(),
        system_name: Some("appliance".into()),
        paths: Paths::default(),
    };
    let out = xl::import(&[InputFile::new("rtc.cfg", xl_in.clone())], &board, &opts).unwrap();
    assert_eq!(
        without_comments(&out.manifest.to_toml("")),
        without_comments(&b[pos + 1].1)
    );

    let pos = b.iter().position(|(l, _)| l == "bash").unwrap();
    let f = InputFile::new("config", b[pos].1.clone());
    let data = imagebuilder::read_config(&f).unwrap();
    let opts = ImageBuilderOptions {
        system_name: Some("appliance".into()),
        paths: Paths::default(),
        ..Default::default()
    };
    let choice =
        imagebuilder::choose_board(&f, &data, Some("qemu-virt-arm64"), "appliance", &opts.paths)
            .unwrap();
    let out = imagebuilder::import(&f, &data, &choice, &board, None, &opts).unwrap();
    assert_eq!(
        without_comments(&out.manifest.to_toml("")),
        without_comments(&b[pos + 1].1)
    );
    let lost: Vec<String> = out
        .report
        .unsupported_items()
        .map(|i| format!("{}:{} {}", i.file, i.line, i.key))
        .collect();
    assert_eq!(lost, ["config:18 UBOOT_SCRIPT"]);
}
