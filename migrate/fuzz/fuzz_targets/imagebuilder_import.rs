//! Bytes → UTF-8 → the bash reader → `imagebuilder::import` (board chosen as a user would, or QEMU
//! virt) → export → read back: never panics; a syntax error points inside the text; what the
//! importer writes is TOML; an exported config reads back as data.
#![no_main]

use firmware_config::board::{Board, builtin_board};
use firmware_config::manifest::Manifest;
use libfuzzer_sys::fuzz_target;
use migrate::InputFile;
use migrate::imagebuilder::{self, ImageBuilderOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = InputFile::new("config", text);
    let parsed = match imagebuilder::read_config(&f) {
        Ok(d) => d,
        Err(e) => {
            assert!(e.span.end <= text.len() && e.span.start <= e.span.end);
            return;
        }
    };
    let opts = ImageBuilderOptions::default();
    let board = Board::parse(builtin_board("qemu-virt-arm64").unwrap()).unwrap();
    for explicit in [None, Some("qemu-virt-arm64")] {
        let Ok(choice) = imagebuilder::choose_board(&f, &parsed, explicit, "fuzz", &opts.paths)
        else {
            continue;
        };
        if let Some(derived) = &choice.derived {
            let _ = Board::parse(derived);
        }
        let Ok(out) = imagebuilder::import(&f, &parsed, &choice, &board, None, &opts) else {
            continue;
        };
        let written = out.manifest.to_toml("header");
        toml::from_str::<toml::Table>(&written).expect("the importer writes TOML");
        if let Ok(m) = Manifest::parse(&written)
            && let Ok((config, _)) = imagebuilder::export("m.toml", &written, &m, &board, None)
        {
            imagebuilder::read_config(&InputFile::new("exported", config))
                .expect("an exported config reads back");
        }
    }
});
