//! Bytes → UTF-8 → xl.cfg syntax → `xl::import` on QEMU virt (ARM) and QEMU x86: never panics; a
//! syntax error points inside the text; every setting read is in the report; what the importer
//! writes is TOML (the `toml` crate reads it back).
#![no_main]

use firmware_config::board::{Board, builtin_board};
use libfuzzer_sys::fuzz_target;
use migrate::xl::{self, XlOptions};
use migrate::{ImportError, InputFile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let settings = match migrate::xl_syntax::parse("f.cfg", text) {
        Ok(s) => s,
        Err(e) => {
            assert!(e.span.end <= text.len() && e.span.start <= e.span.end);
            return;
        }
    };
    for board in ["qemu-virt-arm64", "qemu-x86_64"] {
        let b = Board::parse(builtin_board(board).unwrap()).unwrap();
        let opts = XlOptions {
            board_name: board.into(),
            ..XlOptions::default()
        };
        match xl::import(&[InputFile::new("f.cfg", text)], &b, &opts) {
            Ok(out) => {
                for s in &settings {
                    assert!(
                        out.report.items.iter().any(|i| i.key == s.key),
                        "{} not reported",
                        s.key
                    );
                }
                let written = out.manifest.to_toml("header");
                toml::from_str::<toml::Table>(&written).expect("the importer writes TOML");
            }
            Err(ImportError::Syntax(e)) => assert!(e.span.end <= text.len()),
            Err(ImportError::Input(_)) => {}
        }
    }
});
