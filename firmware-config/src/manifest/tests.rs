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

/// One `[[domain]]` of GOOD with `line` added (or replacing the key it sets).
fn with_domain_line(line: &str) -> String {
    let key = line.split('=').next().unwrap().trim();
    let kept: std::vec::Vec<&str> = GOOD
        .lines()
        .filter(|l| l.split('=').next().unwrap().trim() != key)
        .collect();
    let mut text = kept.join("\n");
    text.push('\n');
    text.push_str(line);
    text.push('\n');
    text
}

/// The message, every label and the hint of the one error a manifest has.
fn error_parts(text: &str) -> (&'static str, String, String, Option<String>) {
    let (d, _) = first_error(text);
    let label = d
        .primary
        .as_ref()
        .map(|l| l.message.clone())
        .unwrap_or_default();
    (d.code, d.message, label, d.help)
}

#[test]
fn bare_memory_gets_the_mib_hint_the_docs_promise() {
    let (code, msg, label, help) = error_parts(&with_domain_line("memory = 256"));
    assert_eq!(code, "E0011");
    assert_eq!(
        msg,
        "domain memory must be at least 1 MiB, a whole number of 4 KiB pages"
    );
    assert_eq!(label, "not a whole number of 4 KiB pages");
    // docs/manifest.md: `memory = 256` is "refused by E0011 with the hint "did you mean "256M"?""
    assert_eq!(
        help.as_deref(),
        Some("a bare number is bytes, not MiB as in xl.cfg: did you mean \"256M\"?")
    );
    let (_, _, label, help) = error_parts(&with_domain_line("memory = 4096"));
    assert_eq!(label, "this is under 1 MiB");
    assert_eq!(
        help.as_deref(),
        Some("a bare number is bytes, not MiB as in xl.cfg: did you mean \"4096M\"?")
    );
    // With a unit there is nothing to guess.
    let (_, _, label, help) = error_parts(&with_domain_line("memory = \"512K\""));
    assert_eq!(label, "this is under 1 MiB");
    assert_eq!(help, None);
}

#[test]
fn a_space_before_the_unit_is_a_documented_form() {
    let m = Manifest::parse(&with_domain_line("memory = \"512 MB\"")).expect("documented form");
    assert_eq!(m.domains[0].memory.value, 512 << 20);
    let (code, msg, _, _) = error_parts(&with_domain_line("memory = \"1.5G\""));
    assert_eq!(code, "E0013");
    assert_eq!(
        msg,
        "invalid size: `1.5G`: fractions are not accepted; write \"1536M\""
    );
}

#[test]
fn xl_keys_map_to_their_domforge_names() {
    let (code, msg, _, help) = error_parts(&with_domain_line("cpus = \"1\""));
    assert_eq!((code, msg.as_str()), ("E0002", "unknown key `cpus`"));
    assert_eq!(
        help.as_deref(),
        Some(
            "xl's `cpus` pins vCPUs to physical CPUs; here that is `vcpu_affinity`, one cpu list per vCPU: `cpus = \"1\"` becomes `vcpu_affinity = [\"1\"]`"
        )
    );
    let (_, _, _, help) = error_parts(&with_domain_line("vfb = [\"vnc=1\"]"));
    assert_eq!(
        help.as_deref(),
        Some("xl's `vfb` has no domforge equivalent: there are no framebuffer backends")
    );
    let (_, _, _, help) = error_parts(&with_domain_line("DOMU_MEM = 256"));
    assert_eq!(
        help.as_deref(),
        Some(
            "ImageBuilder's `DOMU_MEM[n]` (MiB) is `memory` with a unit, e.g. `memory = \"256M\"`"
        )
    );
    let (_, _, _, help) = error_parts(&with_domain_line("type = \"pvh\""));
    assert_eq!(
        help.as_deref(),
        Some("xl's `type` is `kind` here: `kind = \"pvh\"` (x86_64) or `kind = \"arm64\"`")
    );
}

/// Every xl.cfg/ImageBuilder key with a domforge name points at a key that exists.
#[test]
fn foreign_keys_point_at_real_keys() {
    for (key, ours, why) in FOREIGN_KEYS {
        // (`cpus` is a key of `[[cpupool]]`, but where xl users write it, in a domain, it is not.)
        assert!(
            [SYSTEM_KEYS, DOM0_KEYS, DOMAIN_KEYS]
                .iter()
                .all(|l| !l.contains(key)),
            "`{key}` is a domforge key, not a foreign one"
        );
        if let Some(ours) = ours {
            let exists = ALL_KEY_LISTS.iter().any(|l| l.contains(ours))
                || ours.trim_matches(['[', ']']) == "shared_memory";
            assert!(exists, "`{key}` maps to `{ours}`, which is no key");
            assert!(why.contains(&std::format!("`{ours}")), "{key}: {why}");
        }
    }
}

#[test]
fn a_key_of_another_table_names_that_table() {
    let (_, _, _, help) = error_parts(&with_domain_line("xen_cmdline = \"x\""));
    assert_eq!(
        help.as_deref(),
        Some("`xen_cmdline` is a key of `[system]`, not of this table; move it there")
    );
    let (_, _, _, help) = error_parts(&with_domain_line("scheduler = \"x\""));
    assert_eq!(
        help.as_deref(),
        Some("`scheduler` is a key of `[[cpupool]]`, not of this table; move it there")
    );
}

#[test]
fn an_empty_manifest_is_told_system_is_a_table() {
    let (code, msg, label, help) = error_parts("");
    assert_eq!(
        (code, msg.as_str()),
        ("E0004", "missing required key `system`")
    );
    assert_eq!(label, "the manifest has no `[system]` table");
    assert_eq!(
        help.as_deref(),
        Some("`system` is a table: add `[system]` with `name` and `board`; see docs/manifest.md")
    );
}

#[test]
fn type_errors_are_explained_in_our_words() {
    let single = GOOD.replace("[[domain]]", "[domain]");
    let (code, msg, label, help) = error_parts(&single);
    assert_eq!(code, "E0005");
    assert_eq!(
        msg,
        "wrong type: `[domain]` is one table, but `domain` is an array of tables"
    );
    assert_eq!(label, "a table here");
    assert_eq!(
        help.as_deref(),
        Some("write `[[domain]]`: each `[[domain]]` header starts one entry")
    );
    for (line, msg, help) in [
        (
            "passthrough = \"/pl031@9010000\"",
            "wrong type: `passthrough` takes a list, not a string",
            "a list, even of one: write `[\"/pl031@9010000\"]`",
        ),
        (
            "vcpus = \"2\"",
            "wrong type: `vcpus` takes a whole number, not a string",
            "write `2` without quotes",
        ),
        (
            "direct_map = \"true\"",
            "wrong type: `direct_map` takes `true` or `false`, not a string",
            "write `true` without quotes",
        ),
        (
            "cmdline = 5",
            "wrong type: `cmdline` takes a string, not a number",
            "write it in quotes: `\"5\"`",
        ),
        (
            "cpupool = [\"a\"]",
            "wrong type: `cpupool` takes a string, not a list",
            "one value, not a list: remove the brackets",
        ),
        (
            "memory = 1.5",
            "wrong type: `memory` takes a size or address, not a floating-point number",
            "fractions are not accepted: write a whole number with a unit, e.g. \"1536M\" for 1.5 GiB",
        ),
        (
            "static_memory = { base = \"0x60000000\", size = \"128M\" }",
            "wrong type: `static_memory` takes a list, not a table",
            "a list of tables, even of one: write `[{ base = \"0x60000000\", size = \"128M\" }]`",
        ),
        (
            "irqs = 40",
            "wrong type: `irqs` takes a list, not a number",
            "a list, even of one: write `[40]`",
        ),
        (
            "force_without_iommu = 1",
            "wrong type: `force_without_iommu` takes `true` or `false`, not a number",
            "write `true` or `false`",
        ),
        (
            "vcpus = 2.0",
            "wrong type: `vcpus` takes a whole number, not a floating-point number",
            "write `2`",
        ),
        (
            "vcpus = -1",
            "wrong value: `vcpus` takes a whole number from 0 to 4294967295, not -1",
            "negative numbers mean nothing here",
        ),
    ] {
        let (code, m, _, h) = error_parts(&with_domain_line(line));
        assert_eq!(code, "E0005", "{line}");
        assert_eq!(m, msg, "{line}");
        assert_eq!(h.as_deref(), Some(help), "{line}");
    }
}

#[test]
fn a_manifest_over_1_mib_is_e0001() {
    let text = std::format!("{GOOD}# {}\n", "x".repeat(MAX_MANIFEST_BYTES));
    let diags = Manifest::parse(&text).expect_err("too big");
    let d = diags.errors().next().unwrap();
    assert_eq!(d.code, "E0001");
    assert_eq!(
        d.message,
        std::format!("the manifest is {} bytes, over the 1 MiB limit", text.len())
    );
}

#[test]
fn a_doubled_system_header_is_explained() {
    let text = GOOD.replace("[system]", "[[system]]");
    let (code, msg, _, help) = error_parts(&text);
    assert_eq!(code, "E0005");
    assert_eq!(
        msg,
        "wrong type: `[[system]]` makes a list of tables, but there is one `[system]`"
    );
    assert_eq!(help.as_deref(), Some("write `[system]`"));
}

#[test]
fn xl_values_under_domforge_keys_are_explained() {
    let (code, _, _, help) = error_parts(&with_domain_line("passthrough = \"enabled\""));
    assert_eq!(code, "E0005");
    assert_eq!(
        help.as_deref(),
        Some(
            "xl's `passthrough = \"enabled\"` sets up the IOMMU; here `passthrough` lists the devices, by DT path: `passthrough = [\"/pl031@9010000\"]`"
        )
    );
    let (code, _, _, help) = error_parts(&with_domain_line("builder = \"hvm\""));
    assert_eq!(code, "E0003");
    assert_eq!(
        help.as_deref(),
        Some(
            "xl's `builder` chose the guest type, which is `kind` here (`kind = \"pvh\"`); `builder` says who builds the domain: `\"xen\"` (dom0less) or `\"init\"` (domforge-init)"
        )
    );
    let (_, _, _, help) = error_parts(&with_domain_line("console = \"vpl01\""));
    assert_eq!(help.as_deref(), Some("did you mean `vpl011`?"));
}

/// docs/manifest.md names every xl.cfg and ImageBuilder key the parser maps or explains.
#[test]
fn docs_list_every_foreign_key() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/manifest.md"))
        .unwrap();
    let start = doc
        .find("**Keys from xl.cfg and ImageBuilder**")
        .expect("the section");
    let section = &doc[start..start + doc[start..].find("\n- ").unwrap_or(doc.len() - start)];
    for (key, ours, _) in FOREIGN_KEYS {
        let upper = key.to_ascii_uppercase();
        let shown = [std::format!("`{key}` → "), std::format!("`{upper}` → ")];
        let entry = shown
            .iter()
            .find_map(|s| section.find(s.as_str()).map(|i| &section[i + s.len()..]))
            .unwrap_or_else(|| panic!("docs do not list `{key}`"));
        let want = ours.map_or(std::string::String::from("none"), |o| std::format!("`{o}`"));
        assert!(
            entry.starts_with(&want),
            "docs map `{key}` otherwise than {want}"
        );
    }
}

#[test]
fn an_xl_mapping_applies_only_where_its_key_lives() {
    // `[dom0]` has no `vcpu_affinity`: xl's meaning of `cpus` would mislead there.
    let text = std::format!("{GOOD}\n[dom0]\nkernel = \"Image\"\ncpus = \"1\"\n");
    let (code, _, _, help) = error_parts(&text);
    assert_eq!(code, "E0002");
    assert_eq!(help.as_deref(), Some("did you mean `vcpus`?"));
}

#[test]
fn a_key_of_several_tables_names_them_all() {
    let text = std::format!("kernel = \"Image\"\n{GOOD}");
    let (code, _, _, help) = error_parts(&text);
    assert_eq!(code, "E0002");
    assert_eq!(
        help.as_deref(),
        Some("`kernel` is a key of `[dom0]` and `[[domain]]`, not of this table; move it there")
    );
    let (_, _, _, help) = error_parts(&with_domain_line("xen_cmdlin = \"x\""));
    assert_eq!(
        help.as_deref(),
        Some("did you mean `xen_cmdline`? It is a key of `[system]`, not of this table")
    );
}
