use super::*;
use crate::diag::SourceFile;

const GOOD: &str = r#"
[system]
name = "demo"
board = "qemu-virt-arm64"
xen = "4.17"

[[domain]]
name = "app-1"
kind = "arm64"
memory = "256M"
vcpus = 2
kernel = "Image"
extra = "console=ttyAMA0"
console = "vpl011"
passthrough = ["/pl031@9010000"]
iomem = ["9030,1@9030"]
vcpu_affinity = ["0", "1"]
"#;

#[test]
fn parses_a_good_manifest() {
    let m = Manifest::parse(GOOD).expect("valid");
    assert_eq!(m.system.name.value, "demo");
    assert_eq!(m.system.xen.value, XenVersion::V4_17);
    let d = &m.domains[0];
    assert_eq!(d.memory.value, 256 << 20);
    assert_eq!(d.vcpus.value, 2);
    assert_eq!(
        d.cmdline.as_ref().unwrap().value,
        "console=ttyAMA0",
        "`extra` is xl's name for cmdline"
    );
    assert_eq!(
        d.iomem[0].value,
        IomemGrant {
            first_mfn: 0x9030,
            nr_pages: 1,
            guest_frame: 0x9030
        }
    );
    assert_eq!(d.vcpu_affinity[1].value, CpuSet(std::vec![1]));
    assert_eq!(d.roles[0].value, Role::App);
    assert_eq!(d.builder(), Builder::Xen);
    // Spans point at the value text.
    assert_eq!(&GOOD[d.memory.span.clone()], "\"256M\"");
}

fn first_error(text: &str) -> (Diagnostic, usize) {
    let diags = Manifest::parse(text).expect_err("must fail");
    let d = diags.errors().next().expect("an error").clone();
    let file = SourceFile::new("m.toml", text);
    let line = d.line(&file).expect("has a span");
    (d, line)
}

#[test]
fn unknown_key_suggests_the_right_one() {
    let text = GOOD.replace("vcpus = 2", "vcpu = 2");
    let (d, line) = first_error(&text);
    assert_eq!(d.code, "E0002");
    assert_eq!(line, 11);
    assert_eq!(d.help.as_deref(), Some("did you mean `vcpus`?"));
}

#[test]
fn bad_variant_suggests() {
    let text = GOOD.replace("\"vpl011\"", "\"vpl01\"");
    let (d, line) = first_error(&text);
    assert_eq!(d.code, "E0003");
    assert_eq!(line, 14);
    assert_eq!(d.help.as_deref(), Some("did you mean `vpl011`?"));
}

#[test]
fn all_field_errors_are_reported_together() {
    let text = GOOD
        .replace("\"256M\"", "\"256Q\"")
        .replace("app-1", "App_1");
    let diags = Manifest::parse(&text).expect_err("must fail");
    let codes: Vec<&str> = diags.errors().map(|d| d.code).collect();
    assert!(
        codes.contains(&"E0012") && codes.contains(&"E0013"),
        "{codes:?}"
    );
}

#[test]
fn syntax_errors_have_a_location() {
    let (d, line) = first_error("[system]\nname = \"x\nboard = \"y\"\n");
    assert_eq!(d.code, "E0006");
    assert_eq!(line, 2);
}

#[test]
fn pci_and_iomem_syntax() {
    assert_eq!(
        parse_pci("0000:00:02.0"),
        Some(PciAddress {
            segment: 0,
            bus: 0,
            device: 2,
            function: 0
        })
    );
    assert_eq!(
        parse_pci("03:1f.7"),
        Some(PciAddress {
            segment: 0,
            bus: 3,
            device: 0x1f,
            function: 7
        })
    );
    assert_eq!(parse_pci("03:20.0"), None, "device numbers stop at 31");
    assert_eq!(parse_pci("03:1f.8"), None);
    assert!(parse_iomem("ffffffffffffffff,2").is_err());
    assert!(parse_iomem("9010").is_err());
    assert!(parse_iomem("9010,0").is_err());
    assert_eq!(
        parse_cpu_list("1,4-6").unwrap(),
        CpuSet(std::vec![1, 4, 5, 6])
    );
    assert!(parse_cpu_list("3-1").is_err());
}
