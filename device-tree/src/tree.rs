//! The tree model, the FDT reader and the FDT writer.
//!
//! Layout of a flattened device tree (Devicetree Specification v0.4, chapter 5; libfdt `fdt.h`):
//! a 40-byte big-endian header, the memory reservation block (16-byte `{address, size}` pairs ending
//! with a zero pair), the structure block (32-bit tokens `FDT_BEGIN_NODE` 1, `FDT_END_NODE` 2,
//! `FDT_PROP` 3, `FDT_NOP` 4, `FDT_END` 9) and the strings block (NUL-terminated property names).
//!
//! The reader never trusts the blob: every offset and length is checked before use, arithmetic is
//! checked, nesting depth is bounded, and every failure is a [`DtError`] naming what was wrong and where.

use std::collections::{BTreeMap, HashMap};

use crate::DtError;

/// `FDT_MAGIC` (Devicetree Specification v0.4 §5.2).
pub const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Size of the version-17 header (ten 32-bit fields).
const HEADER_LEN: usize = 40;
/// The version we write, and the oldest version whose layout we read (`size_dt_struct` appeared in 17,
/// 16 is the oldest version libfdt reads).
const FDT_VERSION: u32 = 17;
const FDT_LAST_COMP_VERSION: u32 = 16;
/// Nesting bound. Real trees are < 10 deep; libfdt's `FDT_MAX_DEPTH` is 32 for its path functions.
/// The bound keeps recursion in the DTS printer and in users' walks safe on hostile input.
pub const MAX_DEPTH: usize = 64;

/// One `/memreserve/` entry of the header's memory reservation block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemReservation {
    pub address: u64,
    pub size: u64,
}

/// A property: a name and raw big-endian bytes, exactly as in the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub value: Vec<u8>,
}

/// A node with its properties and children, both in blob order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// `name@unit-address`; empty for the root.
    pub name: String,
    pub properties: Vec<Property>,
    pub children: Vec<Node>,
}

/// A whole device tree in memory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceTree {
    pub root: Node,
    pub reservations: Vec<MemReservation>,
    /// Header field `boot_cpuid_phys`.
    pub boot_cpuid_phys: u32,
}

impl Node {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            properties: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The part of the name before `@`.
    pub fn base_name(&self) -> &str {
        self.name.split('@').next().unwrap_or("")
    }

    /// The unit address after `@`, if any.
    pub fn unit_address(&self) -> Option<&str> {
        self.name.split_once('@').map(|(_, a)| a)
    }

    pub fn property(&self, name: &str) -> Option<&Property> {
        self.properties.iter().find(|p| p.name == name)
    }

    pub fn prop(&self, name: &str) -> Option<&[u8]> {
        self.property(name).map(|p| p.value.as_slice())
    }

    pub fn has_prop(&self, name: &str) -> bool {
        self.property(name).is_some()
    }

    /// A property that is exactly one 32-bit cell.
    pub fn prop_u32(&self, name: &str) -> Option<u32> {
        let v = self.prop(name)?;
        let b: [u8; 4] = v.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    /// A property that is exactly one 64-bit value (two cells).
    pub fn prop_u64(&self, name: &str) -> Option<u64> {
        let v = self.prop(name)?;
        let b: [u8; 8] = v.try_into().ok()?;
        Some(u64::from_be_bytes(b))
    }

    /// The property as 32-bit cells; `None` when absent or not a multiple of 4 bytes.
    pub fn prop_cells(&self, name: &str) -> Option<Vec<u32>> {
        bytes_to_cells(self.prop(name)?)
    }

    /// The first string of a string or string-list property.
    pub fn prop_str(&self, name: &str) -> Option<&str> {
        self.prop_strings(name)?.into_iter().next()
    }

    /// A string-list property (`compatible`, `clock-names`...). Invalid UTF-8 entries are skipped.
    pub fn prop_strings(&self, name: &str) -> Option<Vec<&str>> {
        let v = self.prop(name)?;
        let v = v.strip_suffix(&[0]).unwrap_or(v);
        if v.is_empty() {
            return Some(Vec::new());
        }
        Some(
            v.split(|b| *b == 0)
                .filter_map(|s| std::str::from_utf8(s).ok())
                .collect(),
        )
    }

    /// Whether `compatible` lists `c`.
    pub fn is_compatible(&self, c: &str) -> bool {
        self.prop_strings("compatible")
            .is_some_and(|l| l.contains(&c))
    }

    /// `phandle` (or the legacy `linux,phandle`).
    pub fn phandle(&self) -> Option<u32> {
        self.prop_u32("phandle")
            .or_else(|| self.prop_u32("linux,phandle"))
    }

    /// `status` absent, `"okay"` or `"ok"` (Devicetree Specification v0.4 §2.3.4).
    pub fn is_enabled(&self) -> bool {
        match self.prop_str("status") {
            None => true,
            Some(s) => s == "okay" || s == "ok",
        }
    }

    /// Sets (replacing in place, or appending) a property.
    pub fn set_prop(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        match self.properties.iter_mut().find(|p| p.name == name) {
            Some(p) => p.value = value,
            None => self.properties.push(Property {
                name: name.to_owned(),
                value,
            }),
        }
    }

    pub fn remove_prop(&mut self, name: &str) -> Option<Property> {
        let i = self.properties.iter().position(|p| p.name == name)?;
        Some(self.properties.remove(i))
    }

    /// Child by exact name, or — when `name` has no unit address — the first child whose base name
    /// matches (libfdt's `fdt_subnode_offset` rule).
    pub fn child(&self, name: &str) -> Option<&Node> {
        let i = self.child_index(name)?;
        self.children.get(i)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Node> {
        let i = self.child_index(name)?;
        self.children.get_mut(i)
    }

    fn child_index(&self, name: &str) -> Option<usize> {
        if let Some(i) = self.children.iter().position(|c| c.name == name) {
            return Some(i);
        }
        if name.contains('@') {
            return None;
        }
        self.children.iter().position(|c| c.base_name() == name)
    }

    /// Adds a child, replacing an existing child of the same full name. Returns it.
    pub fn add_child(&mut self, child: Node) -> &mut Node {
        let i = match self.children.iter().position(|c| c.name == child.name) {
            Some(i) => {
                if let Some(slot) = self.children.get_mut(i) {
                    *slot = child;
                }
                i
            }
            None => {
                self.children.push(child);
                self.children.len() - 1
            }
        };
        // The index is valid by construction; fall back to the last child rather than panic.
        let last = self.children.len().saturating_sub(1);
        let i = i.min(last);
        &mut self.children[i]
    }

    pub fn remove_child(&mut self, name: &str) -> Option<Node> {
        let i = self.children.iter().position(|c| c.name == name)?;
        Some(self.children.remove(i))
    }
}

/// Splits bytes into big-endian cells; `None` if the length is not a multiple of 4.
pub fn bytes_to_cells(v: &[u8]) -> Option<Vec<u32>> {
    if !v.len().is_multiple_of(4) {
        return None;
    }
    Some(
        v.chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Encoders for property values.
pub mod value {
    /// `<a b c>`.
    pub fn cells(cells: &[u32]) -> Vec<u8> {
        cells.iter().flat_map(|c| c.to_be_bytes()).collect()
    }

    /// One 32-bit cell.
    pub fn u32(v: u32) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    /// One 64-bit value as two cells (`<hi lo>`).
    pub fn u64(v: u64) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    /// A NUL-terminated string.
    pub fn string(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// A string list (`"a", "b"`).
    pub fn strings(list: &[&str]) -> Vec<u8> {
        list.iter().flat_map(|s| string(s)).collect()
    }

    /// An empty (boolean) property.
    pub fn empty() -> Vec<u8> {
        Vec::new()
    }

    /// `n` cells holding `v` (n = 1 or 2, as `#address-cells`/`#size-cells` say). `None` when `v`
    /// does not fit.
    pub fn sized(v: u64, n: u32) -> Option<Vec<u8>> {
        match n {
            1 => Some(u32(u32::try_from(v).ok()?)),
            2 => Some(u64(v)),
            _ => None,
        }
    }
}

/// A bounded big-endian reader over the blob.
struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn u32_at(&self, offset: usize, what: &'static str) -> Result<u32, DtError> {
        let end = offset
            .checked_add(4)
            .ok_or(DtError::Truncated { what, offset })?;
        let b = self
            .data
            .get(offset..end)
            .ok_or(DtError::Truncated { what, offset })?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_at(&self, offset: usize, what: &'static str) -> Result<u64, DtError> {
        let hi = self.u32_at(offset, what)?;
        let lo = self.u32_at(offset.saturating_add(4), what)?;
        Ok((u64::from(hi) << 32) | u64::from(lo))
    }
}

fn align4(v: usize) -> Option<usize> {
    v.checked_add(3).map(|x| x & !3)
}

fn usize_of(v: u32) -> usize {
    // u32 always fits in usize on the 32- and 64-bit hosts we support.
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl DeviceTree {
    /// An empty tree (root only).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a flattened device tree blob. Bytes after the header's `totalsize` are ignored (QEMU's
    /// `dumpdtb` pads its output). Every malformation is reported as a [`DtError`]; nothing panics.
    pub fn from_dtb(data: &[u8]) -> Result<Self, DtError> {
        if data.len() < HEADER_LEN {
            return Err(DtError::Truncated {
                what: "header",
                offset: 0,
            });
        }
        let r = Reader { data };
        let magic = r.u32_at(0, "magic")?;
        if magic != FDT_MAGIC {
            return Err(DtError::BadMagic(magic));
        }
        let totalsize = usize_of(r.u32_at(4, "totalsize")?);
        let off_struct = usize_of(r.u32_at(8, "off_dt_struct")?);
        let off_strings = usize_of(r.u32_at(12, "off_dt_strings")?);
        let off_rsvmap = usize_of(r.u32_at(16, "off_mem_rsvmap")?);
        let version = r.u32_at(20, "version")?;
        let last_comp = r.u32_at(24, "last_comp_version")?;
        let boot_cpuid_phys = r.u32_at(28, "boot_cpuid_phys")?;
        let size_strings = usize_of(r.u32_at(32, "size_dt_strings")?);
        if version < FDT_LAST_COMP_VERSION || last_comp > FDT_VERSION {
            return Err(DtError::UnsupportedVersion { version, last_comp });
        }
        if totalsize < HEADER_LEN || totalsize > data.len() {
            return Err(DtError::BadHeader(format!(
                "totalsize {totalsize:#x} outside the {:#x} bytes given",
                data.len()
            )));
        }
        let blob = data.get(..totalsize).ok_or(DtError::Truncated {
            what: "blob",
            offset: 0,
        })?;
        let r = Reader { data: blob };
        let size_struct = if version >= 17 {
            usize_of(r.u32_at(36, "size_dt_struct")?)
        } else {
            totalsize.saturating_sub(off_struct)
        };
        let struct_end = off_struct
            .checked_add(size_struct)
            .filter(|e| *e <= totalsize)
            .ok_or_else(|| DtError::BadHeader("structure block outside the blob".into()))?;
        let strings_end = off_strings
            .checked_add(size_strings)
            .filter(|e| *e <= totalsize)
            .ok_or_else(|| DtError::BadHeader("strings block outside the blob".into()))?;
        if off_struct < HEADER_LEN || !off_struct.is_multiple_of(4) {
            return Err(DtError::BadHeader(format!(
                "structure block offset {off_struct:#x} is not an aligned offset after the header"
            )));
        }
        if off_rsvmap < HEADER_LEN || !off_rsvmap.is_multiple_of(8) {
            return Err(DtError::BadHeader(format!(
                "memory reservation block offset {off_rsvmap:#x} is not an 8-byte aligned offset after the header"
            )));
        }
        let strings = blob
            .get(off_strings..strings_end)
            .ok_or_else(|| DtError::BadHeader("strings block outside the blob".into()))?;

        // Memory reservation block: pairs until the {0, 0} terminator.
        let mut reservations = Vec::new();
        let mut off = off_rsvmap;
        loop {
            let address = r.u64_at(off, "memory reservation")?;
            let size = r.u64_at(off.saturating_add(8), "memory reservation")?;
            off = off.checked_add(16).ok_or(DtError::Truncated {
                what: "memory reservation",
                offset: off,
            })?;
            if address == 0 && size == 0 {
                break;
            }
            reservations.push(MemReservation { address, size });
        }

        let sr = Reader {
            data: blob.get(..struct_end).unwrap_or_default(),
        };
        let root = parse_struct(&sr, off_struct, strings)?;
        Ok(Self {
            root,
            reservations,
            boot_cpuid_phys,
        })
    }

    /// The node at `path` (`/`, `/soc/serial@7e201000`, or unit-less components as in libfdt).
    pub fn node(&self, path: &str) -> Option<&Node> {
        let rest = path.strip_prefix('/')?;
        let mut cur = &self.root;
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            cur = cur.child(comp)?;
        }
        Some(cur)
    }

    pub fn node_mut(&mut self, path: &str) -> Option<&mut Node> {
        let rest = path.strip_prefix('/')?;
        let mut cur = &mut self.root;
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            cur = cur.child_mut(comp)?;
        }
        Some(cur)
    }

    /// The canonical full path of the node `path` names (resolving unit-less components), or `None`.
    pub fn canonical_path(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix('/')?;
        let mut cur = &self.root;
        let mut out = String::new();
        for comp in rest.split('/').filter(|c| !c.is_empty()) {
            cur = cur.child(comp)?;
            out.push('/');
            out.push_str(&cur.name);
        }
        if out.is_empty() {
            out.push('/');
        }
        Some(out)
    }

    /// Adds `node` under `parent_path` (replacing a child of the same name) and returns it.
    pub fn add_node(&mut self, parent_path: &str, node: Node) -> Result<&mut Node, DtError> {
        let parent = self
            .node_mut(parent_path)
            .ok_or_else(|| DtError::NodeNotFound(parent_path.to_owned()))?;
        Ok(parent.add_child(node))
    }

    /// Gets a property of the node at `path`.
    pub fn get_prop(&self, path: &str, name: &str) -> Option<&[u8]> {
        self.node(path)?.prop(name)
    }

    /// Sets a property of the node at `path`.
    pub fn set_prop(
        &mut self,
        path: &str,
        name: &str,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), DtError> {
        let node = self
            .node_mut(path)
            .ok_or_else(|| DtError::NodeNotFound(path.to_owned()))?;
        node.set_prop(name, value);
        Ok(())
    }

    /// Every node with its full path, in tree (pre-)order.
    pub fn walk(&self) -> Vec<(String, &Node)> {
        let mut out = Vec::new();
        let mut stack: Vec<(String, &Node)> = vec![("/".to_owned(), &self.root)];
        while let Some((path, node)) = stack.pop() {
            for child in node.children.iter().rev() {
                let p = if path == "/" {
                    format!("/{}", child.name)
                } else {
                    format!("{path}/{}", child.name)
                };
                stack.push((p, child));
            }
            out.push((path, node));
        }
        out
    }

    /// phandle → node path, for every node that has one.
    pub fn phandles(&self) -> BTreeMap<u32, String> {
        self.walk()
            .into_iter()
            .filter_map(|(p, n)| n.phandle().map(|h| (h, p)))
            .collect()
    }

    /// The largest phandle in use (0 when none).
    pub fn max_phandle(&self) -> u32 {
        self.phandles().keys().next_back().copied().unwrap_or(0)
    }

    /// Serialises to a version-17 FDT blob (libfdt layout: header, reservations, structure, strings).
    pub fn to_dtb(&self) -> Vec<u8> {
        let mut strings: Vec<u8> = Vec::new();
        let mut string_offsets: HashMap<&str, u32> = HashMap::new();
        let mut st: Vec<u8> = Vec::new();

        fn put(st: &mut Vec<u8>, v: u32) {
            st.extend_from_slice(&v.to_be_bytes());
        }
        fn pad(st: &mut Vec<u8>) {
            while !st.len().is_multiple_of(4) {
                st.push(0);
            }
        }
        // Iterative pre-order emission: Enter(node) / Exit markers.
        enum Step<'a> {
            Enter(&'a Node),
            Exit,
        }
        let mut stack = vec![Step::Enter(&self.root)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Exit => put(&mut st, FDT_END_NODE),
                Step::Enter(node) => {
                    put(&mut st, FDT_BEGIN_NODE);
                    st.extend_from_slice(node.name.as_bytes());
                    st.push(0);
                    pad(&mut st);
                    for p in &node.properties {
                        let off = *string_offsets.entry(p.name.as_str()).or_insert_with(|| {
                            let off = u32::try_from(strings.len()).unwrap_or(u32::MAX);
                            strings.extend_from_slice(p.name.as_bytes());
                            strings.push(0);
                            off
                        });
                        put(&mut st, FDT_PROP);
                        put(&mut st, u32::try_from(p.value.len()).unwrap_or(u32::MAX));
                        put(&mut st, off);
                        st.extend_from_slice(&p.value);
                        pad(&mut st);
                    }
                    stack.push(Step::Exit);
                    for c in node.children.iter().rev() {
                        stack.push(Step::Enter(c));
                    }
                }
            }
        }
        put(&mut st, FDT_END);

        let off_rsvmap = HEADER_LEN; // 40 is a multiple of 8
        let rsv_len = (self.reservations.len() + 1) * 16;
        let off_struct = off_rsvmap + rsv_len;
        let off_strings = off_struct + st.len();
        let total = off_strings + strings.len();
        let to32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);

        let mut out = Vec::with_capacity(total);
        for v in [
            FDT_MAGIC,
            to32(total),
            to32(off_struct),
            to32(off_strings),
            to32(off_rsvmap),
            FDT_VERSION,
            FDT_LAST_COMP_VERSION,
            self.boot_cpuid_phys,
            to32(strings.len()),
            to32(st.len()),
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for r in &self.reservations {
            out.extend_from_slice(&r.address.to_be_bytes());
            out.extend_from_slice(&r.size.to_be_bytes());
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&st);
        out.extend_from_slice(&strings);
        out
    }
}

/// A NUL-terminated string starting at `offset` in `data`.
fn cstr_at<'a>(data: &'a [u8], offset: usize, what: &'static str) -> Result<&'a [u8], DtError> {
    let tail = data
        .get(offset..)
        .ok_or(DtError::Truncated { what, offset })?;
    let len = tail
        .iter()
        .position(|b| *b == 0)
        .ok_or(DtError::Truncated { what, offset })?;
    tail.get(..len).ok_or(DtError::Truncated { what, offset })
}

fn parse_struct(r: &Reader<'_>, start: usize, strings: &[u8]) -> Result<Node, DtError> {
    let mut off = start;
    // Stack of open nodes; the root is pushed by the first BEGIN_NODE.
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let token = r.u32_at(off, "structure token")?;
        let tok_off = off;
        off = off.checked_add(4).ok_or(DtError::Truncated {
            what: "structure token",
            offset: off,
        })?;
        match token {
            FDT_NOP => {}
            FDT_BEGIN_NODE => {
                if root.is_some() {
                    return Err(DtError::BadToken {
                        token,
                        offset: tok_off,
                    });
                }
                let raw = cstr_at(r.data, off, "node name")?;
                let name = std::str::from_utf8(raw)
                    .map_err(|_| DtError::BadName { offset: off })?
                    .to_owned();
                if stack.is_empty() && !name.is_empty() {
                    return Err(DtError::BadName { offset: off });
                }
                if !stack.is_empty() && name.is_empty() {
                    return Err(DtError::BadName { offset: off });
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(DtError::TooDeep { max: MAX_DEPTH });
                }
                off =
                    off.checked_add(raw.len() + 1)
                        .and_then(align4)
                        .ok_or(DtError::Truncated {
                            what: "node name",
                            offset: off,
                        })?;
                stack.push(Node::new(name));
            }
            FDT_END_NODE => {
                let node = stack.pop().ok_or(DtError::BadToken {
                    token,
                    offset: tok_off,
                })?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            FDT_PROP => {
                let len = usize_of(r.u32_at(off, "property length")?);
                let nameoff = usize_of(r.u32_at(off.saturating_add(4), "property name offset")?);
                let vstart = off.checked_add(8).ok_or(DtError::Truncated {
                    what: "property",
                    offset: off,
                })?;
                let vend = vstart.checked_add(len).ok_or(DtError::Truncated {
                    what: "property value",
                    offset: vstart,
                })?;
                let value = r.data.get(vstart..vend).ok_or(DtError::Truncated {
                    what: "property value",
                    offset: vstart,
                })?;
                let raw_name = cstr_at(strings, nameoff, "property name")?;
                let name = std::str::from_utf8(raw_name)
                    .ok()
                    .filter(|n| !n.is_empty())
                    .ok_or(DtError::BadName { offset: nameoff })?;
                let node = stack.last_mut().ok_or(DtError::BadToken {
                    token,
                    offset: tok_off,
                })?;
                node.properties.push(Property {
                    name: name.to_owned(),
                    value: value.to_vec(),
                });
                off = align4(vend).ok_or(DtError::Truncated {
                    what: "property value",
                    offset: vend,
                })?;
            }
            FDT_END => {
                if !stack.is_empty() {
                    return Err(DtError::BadToken {
                        token,
                        offset: tok_off,
                    });
                }
                return root.ok_or(DtError::BadToken {
                    token,
                    offset: tok_off,
                });
            }
            other => {
                return Err(DtError::BadToken {
                    token: other,
                    offset: tok_off,
                });
            }
        }
    }
}
