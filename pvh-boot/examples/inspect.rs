//! `cargo run -p pvh-boot --example inspect --features serde -- IMAGE [--json]`: what
//! `domforge inspect` will print, until the CLI wires it.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: inspect IMAGE [--json]");
        std::process::exit(2);
    };
    let json = args.any(|a| a == "--json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    match pvh_boot::inspect::inspect_kernel(&bytes) {
        Ok(report) => {
            if json {
                #[cfg(feature = "serde")]
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
                #[cfg(not(feature = "serde"))]
                eprintln!("--json needs --features serde");
            } else {
                print!("{report}");
                eprintln!("(inspected in {:.2?})", started.elapsed());
            }
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}
