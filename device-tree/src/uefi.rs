//! The UEFI variant of the host device tree (issue 18).
//!
//! When Xen boots as an EFI application on ARM, nothing has loaded the dom0less modules, so each
//! `/chosen` module node names its file instead: `xen,uefi-binary = "<file>"` (Xen's
//! docs/misc/arm/device-tree/booting.txt, "UEFI boot and dom0less"; read by `handle_module_node` in
//! xen/arch/arm/efi/efi-boot.h). Xen's stub loads the file from the directory of xen.efi on the ESP
//! and writes the node's `reg` itself, so the node carries no `reg` of ours (a stale address would
//! describe memory the firmware never filled). A file named by several nodes is loaded once
//! (`get_module_file_index` in efi-boot.h), so a kernel shared by domUs appears once on the ESP.
//!
//! The direct/U-Boot tree is never touched: this is a pure function of that tree, so the direct
//! blob stays byte-identical.

use std::collections::BTreeMap;

use crate::{DeviceTree, Node, value};

/// Xen's EFI stub keeps at most `MAX_UEFI_MODULES = MAX_MODULES - 2` binaries (efi-boot.h; ARM's
/// `MAX_MODULES` is 32 in 4.17 and 4.20, one slot for Xen and one for the DTB).
pub const MAX_UEFI_MODULES: usize = 30;

/// FAT long names hold at most 255 UTF-16 units; we keep to a portable ASCII subset.
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UefiDtbError {
    #[error(
        "module file name `{0}` cannot be written on the ESP: use 1-{MAX_NAME_LEN} characters from A-Z a-z 0-9 . _ - (no leading dot, no path separator)"
    )]
    BadName(String),
    #[error("the host tree has module node {0} but no ESP file was given for it")]
    Unnamed(String),
    #[error(
        "{0} distinct module files: Xen's EFI loader loads at most {MAX_UEFI_MODULES} (MAX_UEFI_MODULES in xen/arch/arm/efi/efi-boot.h)"
    )]
    TooMany(usize),
    #[error("module node {0} has no readable `reg`")]
    NoReg(String),
}

/// Whether `name` can be a file next to BOOTAA64.EFI on the FAT ESP and a `xen,uefi-binary` value.
pub fn valid_esp_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The UEFI variant of `direct`: every `multiboot,module` node under `/chosen` (dom0's and each
/// `xen,domain`'s) gets `xen,uefi-binary = files[module address]` and loses `reg`. `files` maps the
/// address the direct tree gives each module to its ESP file name.
pub fn uefi_variant(
    direct: &DeviceTree,
    files: &BTreeMap<u64, String>,
) -> Result<DeviceTree, UefiDtbError> {
    for name in files.values() {
        if !valid_esp_name(name) {
            return Err(UefiDtbError::BadName(name.clone()));
        }
    }
    let mut tree = direct.clone();
    let mut used = std::collections::BTreeSet::new();
    if let Some(chosen) = tree.root.child_mut("chosen") {
        rewrite(chosen, "/chosen", files, &mut used)?;
    }
    if used.len() > MAX_UEFI_MODULES {
        return Err(UefiDtbError::TooMany(used.len()));
    }
    Ok(tree)
}

fn rewrite(
    node: &mut Node,
    path: &str,
    files: &BTreeMap<u64, String>,
    used: &mut std::collections::BTreeSet<String>,
) -> Result<(), UefiDtbError> {
    for child in &mut node.children {
        let p = format!("{path}/{}", child.name);
        if child.is_compatible("multiboot,module") {
            // /chosen and xen,domain nodes use #address-cells = #size-cells = 2 (dom0less.rs).
            let addr = child
                .prop("reg")
                .filter(|r| r.len() == 16)
                .map(|r| u64::from_be_bytes(r[..8].try_into().expect("8 bytes")))
                .ok_or_else(|| UefiDtbError::NoReg(p.clone()))?;
            let file = files
                .get(&addr)
                .ok_or_else(|| UefiDtbError::Unnamed(p.clone()))?;
            child.remove_prop("reg");
            child.set_prop("xen,uefi-binary", value::string(file));
            used.insert(file.clone());
        } else if child.is_compatible("xen,domain") {
            rewrite(child, &p, files, used)?;
        }
    }
    Ok(())
}
