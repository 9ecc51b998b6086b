//! Write the ACPI tables for N vCPUs as `<sig>.dat` files into a directory, for `iasl -d`:
//! `cargo run -p pvh-boot --example dump_acpi -- 4 /tmp/acpi`.

fn main() {
    let mut args = std::env::args().skip(1);
    let vcpus: u32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| String::from(".")));
    let tables = match pvh_boot::acpi::build_tables(vcpus, pvh_boot::layout::ACPI_BASE) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    for (sig, bytes) in tables.tables() {
        let path = dir.join(format!("{}.dat", sig.to_lowercase()));
        if let Err(e) = std::fs::write(&path, bytes) {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
        println!("{}", path.display());
    }
}
