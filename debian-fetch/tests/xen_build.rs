//! Debian's Xen 4.17 built from source with CONFIG_STATIC_MEMORY, checked with independent tools.
//!
//! The first run downloads the `xen` source package (about 5 MB) and compiles the hypervisor
//! (1–2 minutes on 2 cores); later runs take it from `${XDG_CACHE_HOME:-$HOME/.cache}/domforge/`.
//! Without the build tools (`scripts/setup` installs them) or the network the test is skipped
//! with the reason printed, except under `CI=true`, where it fails.
//!
//! References, none of them our own parsing code:
//! - the arm64 Image header: magic `ARM\x64` at byte 0x38 (Linux
//!   `Documentation/arch/arm64/booting.rst`; Xen's `xen/arch/arm/arm64/head.S` writes the
//!   same header), read directly from the file;
//! - the `.config` Xen embeds (`xen/common/Makefile`: `gzip -n -c .config`, included by
//!   `xen/tools/binfile` as `xen_config_data`): found with GNU `grep -obUaP` for the gzip
//!   magic and inflated with `gzip -dc`;
//! - Debian's own `xen-hypervisor-4.17-arm64` binary as the control: the same extraction must
//!   show `CONFIG_STATIC_MEMORY` absent there, so the check can fail.

use std::path::Path;
use std::process::Command;

use debian_fetch::xen_build::{STATIC_MEMORY_OPTIONS, XenBuildConfig, XenBuilder};
use debian_fetch::{Arch, Fetcher, default_cache_dir};

fn skip_or_fail(reason: &str) {
    assert!(!test_support::strict(), "{reason}");
    eprintln!("SKIPPED: {reason}");
}

/// The embedded `.config` of a Xen binary, extracted with grep and gzip only.
fn config_by_gzip(image: &Path) -> String {
    let script = r#"for off in $(LC_ALL=C grep -obUaP '\x1f\x8b\x08' "$1" | cut -d: -f1); do
  text=$(tail -c +"$((off + 1))" "$1" | gzip -dc 2>/dev/null)
  case "$text" in '#'*'Automatically generated file; DO NOT EDIT.'*) printf '%s\n' "$text"; exit 0 ;; esac
done
exit 1"#;
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(image)
        .output()
        .expect("sh, grep and gzip are needed for this test");
    assert!(
        out.status.success(),
        "grep+gzip found no embedded .config in {}",
        image.display()
    );
    String::from_utf8(out.stdout).expect("a .config is text")
}

fn set_lines(config: &str) -> Vec<&str> {
    config
        .lines()
        .filter(|l| {
            l.starts_with("CONFIG_EXPERT=")
                || l.contains("CONFIG_UNSUPPORTED")
                || l.contains("CONFIG_STATIC_MEMORY")
        })
        .collect()
}

#[test]
fn static_memory_xen_417_is_an_arm64_image_with_static_memory() {
    let Ok(cache) = default_cache_dir() else {
        skip_or_fail("no cache directory (HOME unset)");
        return;
    };
    let built = match XenBuilder::new(&cache).build(&XenBuildConfig::static_memory("4.17")) {
        Ok(b) => b,
        Err(e) => {
            skip_or_fail(&format!("building Xen 4.17 with static memory failed: {e}"));
            return;
        }
    };
    eprintln!(
        "Xen {} at {} ({})",
        built.source_version,
        built.image.display(),
        built.built_in.map_or("cached".to_owned(), |d| format!(
            "built in {:.1} s",
            d.as_secs_f64()
        ))
    );
    assert!(built.source_version.starts_with("4.17."));

    let bytes = std::fs::read(&built.image).unwrap();
    assert_eq!(
        bytes.get(0x38..0x3c),
        Some(&b"ARM\x64"[..]),
        "arm64 Image magic"
    );
    // Xen's arm64 header: `image_size` (u64 at 0x10) covers the file.
    let image_size = u64::from_le_bytes(bytes[0x10..0x18].try_into().unwrap());
    assert!(
        image_size >= bytes.len() as u64,
        "image_size {image_size:#x} < file size"
    );

    let embedded = config_by_gzip(&built.image);
    assert!(
        embedded.contains("# Xen/arm 4.17"),
        "header: {:?}",
        embedded.lines().take(4).collect::<Vec<_>>()
    );
    for option in STATIC_MEMORY_OPTIONS {
        assert!(
            embedded.lines().any(|l| l == format!("{option}=y")),
            "{option}=y missing from the embedded .config: {:?}",
            set_lines(&embedded)
        );
    }
    // The build tree's .config, kept next to the binary, is the same file.
    let kept = std::fs::read_to_string(&built.config).unwrap();
    assert_eq!(kept, embedded);
    // Debian's defaults survive: the hypervisor still has everything else Debian enables.
    assert!(embedded.lines().any(|l| l == "# CONFIG_DEBUG is not set"));

    // Our reader agrees with grep+gzip.
    assert_eq!(
        debian_fetch::xen_build::embedded_config(&bytes).as_deref(),
        Some(embedded.as_str())
    );

    // Control: Debian's binary package, same extraction, no static memory.
    match Fetcher::new(&cache).xen_hypervisor(Arch::Arm64, "4.17") {
        Ok(stock) => {
            let stock_config = config_by_gzip(&stock);
            assert!(
                !stock_config.lines().any(|l| l == "CONFIG_STATIC_MEMORY=y"),
                "Debian's stock Xen unexpectedly has static memory: {:?}",
                set_lines(&stock_config)
            );
            assert!(
                stock_config
                    .lines()
                    .any(|l| l == "# CONFIG_EXPERT is not set")
            );
        }
        Err(e) => skip_or_fail(&format!(
            "fetching Debian's Xen 4.17 for the control failed: {e}"
        )),
    }

    // A second request is answered from the cache, offline.
    let again = XenBuilder::new(&cache)
        .with_offline(true)
        .with_quiet(true)
        .build(&XenBuildConfig::static_memory("4.17"))
        .expect("the cached build is found offline");
    assert_eq!(again.image, built.image);
    assert_eq!(again.built_in, None);
}

#[test]
fn offline_without_a_cache_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = XenBuilder::new(dir.path())
        .with_offline(true)
        .build(&XenBuildConfig::static_memory("4.17"))
        .unwrap_err();
    assert!(err.to_string().contains("offline"), "{err}");
    let err = XenBuilder::new(dir.path())
        .build(&XenBuildConfig::static_memory("4.99"))
        .unwrap_err();
    assert!(err.to_string().contains("4.99"), "{err}");
}
