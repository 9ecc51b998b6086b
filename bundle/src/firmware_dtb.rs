//! The board DTB made complete for boards whose firmware finishes the device tree at boot.
//!
//! A vendor DTB can leave things to the firmware: the Raspberry Pi's `bcm2711-rpi-4-b.dtb` has
//! `/memory@0` with `reg = <0 0 0>`, which the Pi firmware fills in before starting the kernel it
//! loads. Under U-Boot, though, `boot.scr` hands Xen *our* host DTB, which that firmware never saw:
//! with an empty `/memory` Xen finds no RAM. So everything the board file knows goes into the tree
//! the host DTB is built from, before anything else reads it:
//!
//! - **RAM** (`[memory] banks`, which the board file may only give when the DTB has no sized
//!   bank — `Board::resolve_inventory`, E0109): written as the `reg` of the DTB's first
//!   `device_type = "memory"` node (one `/memory@<base>` node is added if there is none), in the
//!   root's `#address-cells`/`#size-cells` (devicetree specification 0.4, §3.4 "/memory node");
//!   any other empty memory node is removed.
//! - **Reserved ranges** (`[memory] reserved`, regions the firmware keeps that the DTB does not
//!   mark, e.g. OP-TEE or a TF-A carve-out): added as `/memreserve/` entries of the header
//!   (spec §5.3 "Memory Reservation Block"), which Xen honours (`early_print_info()` /
//!   `fdt_num_mem_rsv` in `xen/arch/arm/bootfdt.c`), unless the tree already reserves exactly
//!   that range.
//!
//! A DTB that needs none of it comes back unchanged, byte for byte.

use std::borrow::Cow;

use device_tree::DeviceTree;
use device_tree::tree::{MemReservation, Node, Property};
use firmware_config::board::{Board, Region};

fn cells_of(root: &Node, name: &str, default: u32) -> u32 {
    root.prop_u32(name).unwrap_or(default)
}

fn push_cells(out: &mut Vec<u8>, v: u64, cells: u32) -> Result<(), String> {
    match cells {
        1 => out.extend_from_slice(
            &u32::try_from(v)
                .map_err(|_| format!("{v:#x} does not fit one cell"))?
                .to_be_bytes(),
        ),
        2 => out.extend_from_slice(&v.to_be_bytes()),
        n => return Err(format!("#address-cells/#size-cells = {n} is not supported")),
    }
    Ok(())
}

fn is_memory(n: &Node) -> bool {
    n.prop_str("device_type") == Some("memory")
}

/// The `reg` of `n` is absent or all zero sizes.
fn is_empty_memory(n: &Node, ac: u32, sc: u32) -> bool {
    let Some(cells) = n.prop_cells("reg") else {
        return true;
    };
    let (ac, sc) = (ac as usize, sc as usize);
    if ac + sc == 0 {
        return true;
    }
    cells
        .chunks(ac + sc)
        .all(|c| c.get(ac..).is_none_or(|s| s.iter().all(|&x| x == 0)))
}

/// `board_dtb` with the board file's RAM banks and reserved ranges (see the module docs).
pub fn complete<'a>(board_dtb: &'a [u8], board: &Board) -> Result<Cow<'a, [u8]>, String> {
    if board.memory_banks.is_empty() && board.extra_reserved.is_empty() {
        return Ok(Cow::Borrowed(board_dtb));
    }
    let mut tree = DeviceTree::from_dtb(board_dtb).map_err(|e| e.to_string())?;
    let mut changed = false;
    if !board.memory_banks.is_empty() {
        let ac = cells_of(&tree.root, "#address-cells", 2);
        let sc = cells_of(&tree.root, "#size-cells", 1);
        let mut reg = Vec::new();
        for Region { base, size } in &board.memory_banks {
            push_cells(&mut reg, *base, ac)?;
            push_cells(&mut reg, *size, sc)
                .map_err(|e| format!("RAM bank at {base:#x}: size {e} (#size-cells = {sc})"))?;
        }
        let empty: Vec<String> = tree
            .root
            .children
            .iter()
            .filter(|n| is_memory(n) && is_empty_memory(n, ac, sc))
            .map(|n| n.name.clone())
            .collect();
        let sized = tree
            .root
            .children
            .iter()
            .any(|n| is_memory(n) && !is_empty_memory(n, ac, sc));
        if !sized {
            match empty.first() {
                Some(first) => {
                    for other in &empty[1..] {
                        tree.root.remove_child(other);
                    }
                    if let Some(n) = tree.root.child_mut(first) {
                        n.set_prop("reg", reg);
                    }
                }
                None => {
                    tree.root.add_child(Node {
                        name: format!("memory@{:x}", board.memory_banks[0].base),
                        properties: vec![
                            Property {
                                name: "device_type".into(),
                                value: b"memory\0".to_vec(),
                            },
                            Property {
                                name: "reg".into(),
                                value: reg,
                            },
                        ],
                        children: Vec::new(),
                    });
                }
            }
            changed = true;
        }
    }
    for r in &board.extra_reserved {
        let entry = MemReservation {
            address: r.base,
            size: r.size,
        };
        if !tree.reservations.contains(&entry) {
            tree.reservations.push(entry);
            changed = true;
        }
    }
    Ok(if changed {
        Cow::Owned(tree.to_dtb())
    } else {
        Cow::Borrowed(board_dtb)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_tree::tree::value;

    fn board(memory: &str) -> Board {
        let text = firmware_config::board::builtin_board("rpi4")
            .expect("rpi4 is built in")
            .replace(
                "xen = \"128M\"\n\n[load]",
                &format!("xen = \"128M\"\n{memory}\n\n[load]"),
            );
        Board::parse(&text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn dtb_with_empty_memory() -> Vec<u8> {
        let mut t = DeviceTree::new();
        t.root.set_prop("#address-cells", value::u32(2));
        t.root.set_prop("#size-cells", value::u32(1));
        t.root.add_child(Node {
            name: "memory@0".into(),
            properties: vec![
                Property {
                    name: "device_type".into(),
                    value: value::string("memory"),
                },
                Property {
                    name: "reg".into(),
                    value: value::cells(&[0, 0, 0]),
                },
            ],
            children: Vec::new(),
        });
        t.to_dtb()
    }

    #[test]
    fn ram_banks_and_reserved_ranges_of_the_board_file_reach_the_dtb() {
        let b = board("reserved = [{ base = \"0x3e000000\", size = \"0x1000000\" }]");
        let dtb = dtb_with_empty_memory();
        let out = complete(&dtb, &b).unwrap();
        let t = DeviceTree::from_dtb(&out).unwrap();
        assert_eq!(
            t.node("/memory@0").and_then(|n| n.prop_cells("reg")),
            Some(vec![0, 0, 0x3b40_0000, 0, 0x4000_0000, 0xbc00_0000])
        );
        assert_eq!(
            t.reservations,
            vec![MemReservation {
                address: 0x3e00_0000,
                size: 0x100_0000
            }]
        );
        // Idempotent: completing the completed tree changes nothing.
        assert_eq!(complete(&out, &b).unwrap().as_ref(), out.as_ref());
    }

    #[test]
    fn a_bank_too_large_for_the_size_cells_is_an_error() {
        let text = firmware_config::board::builtin_board("rpi4")
            .unwrap()
            .replace(
                "{ base = \"0x40000000\", size = \"0xbc000000\" }",
                "{ base = \"0x40000000\", size = \"0x1bc000000\" }",
            );
        let b = Board::parse(&text).unwrap_or_else(|e| panic!("{e:?}"));
        let e = complete(&dtb_with_empty_memory(), &b).unwrap_err();
        assert!(e.contains("#size-cells = 1"), "{e}");
    }
}
