//! # system-map
//!
//! [`render_svg`] draws a [`SystemPlan`] as one SVG page, for people:
//!
//! - **host physical memory** (left): every range the plan places, in address order — RAM banks,
//!   Xen, boot modules, reserved memory, each domain's static memory, shared memory, passed-through
//!   MMIO — each with its owner's colour, size and address, and the free RAM between them;
//! - **the RAM budget** (a stacked bar): Xen, dom0, each domain's RAM that Xen allocates at boot
//!   (it has no fixed host address, so it appears here and not in the map), P2M pools, free;
//! - **one card per domain** (right, in boot order): kind and builder, vCPUs (one square each),
//!   RAM, its guest physical map (RAM, device windows, shared memory, Xen's fixed regions such as
//!   the vpl011 UART), devices with their interrupts, raw grants;
//! - a **legend** of the domain colours.
//!
//! Colours are spread around the hue circle by the golden angle, so 1 to 64 domains stay distinct
//! and each keeps its colour wherever it appears. The layout is computed from the plan alone, in a
//! fixed order, so the same plan always gives the same bytes. Text is escaped for XML.

use firmware_config::board::{Arch, Region};
use firmware_config::guest_map;
use firmware_config::manifest::Console;
use firmware_config::plan::{DomainPlan, ModuleKind, SystemPlan};
use firmware_config::units::human_size;
use std::fmt::Write as _;

const FONT: &str = "DejaVu Sans Mono, Menlo, Consolas, monospace";
const ROW: u32 = 16;
const MARGIN: u32 = 20;
const HOST_W: u32 = 560;
const CARD_W: u32 = 330;
const GAP: u32 = 16;
const XEN_COLOUR: &str = "#5b6770";
const RESERVED_COLOUR: &str = "#9aa0a6";
const FREE_COLOUR: &str = "#eef1f3";
const MODULE_COLOUR: &str = "#c9b37e";
const SHARED_COLOUR: &str = "#e8c547";

/// A domain's colour: hue by the golden angle from its boot index, fixed saturation and lightness.
pub fn domain_colour(index: usize) -> String {
    let hue = (index as f64 * 137.507_764) % 360.0;
    hsl_hex(hue, 0.62, 0.48)
}

fn hsl_hex(h: f64, s: f64, l: f64) -> String {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = h / 60.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let to = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    format!("#{:02x}{:02x}{:02x}", to(r), to(g), to(b))
}

/// Escapes text for XML character data and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

fn range(r: &Region) -> String {
    format!("{:#011x}-{:#011x}", r.base, r.base.saturating_add(r.size))
}

/// One row of the host map.
struct HostRow {
    region: Region,
    colour: String,
    label: String,
    /// Drawn indented: inside a RAM bank.
    inner: bool,
}

fn owner_colour(plan: &SystemPlan, name: &str) -> String {
    plan.domains
        .iter()
        .position(|d| d.name == name)
        .map_or_else(|| XEN_COLOUR.to_string(), domain_colour)
}

fn host_rows(plan: &SystemPlan) -> Vec<HostRow> {
    let mut placed: Vec<HostRow> = Vec::new();
    for m in &plan.modules {
        let Some(load) = m.load else { continue };
        let (colour, what) = match m.kind {
            ModuleKind::Xen => (XEN_COLOUR.to_string(), "Xen".to_string()),
            ModuleKind::HostDtb => (MODULE_COLOUR.to_string(), "host DTB".to_string()),
            _ => {
                let users = m.users.join(", ");
                let colour = match m.users.as_slice() {
                    [one] => owner_colour(plan, one),
                    _ => MODULE_COLOUR.to_string(),
                };
                (colour, format!("{:?} of {users}", m.kind))
            }
        };
        placed.push(HostRow {
            region: load,
            colour,
            label: format!("module {}: {what}", m.id),
            inner: true,
        });
    }
    for r in &plan.reserved {
        placed.push(HostRow {
            region: *r,
            colour: RESERVED_COLOUR.into(),
            label: "reserved".into(),
            inner: true,
        });
    }
    for (i, d) in plan.domains.iter().enumerate() {
        for s in &d.static_memory {
            placed.push(HostRow {
                region: *s,
                colour: domain_colour(i),
                label: format!(
                    "{} static memory{}",
                    d.name,
                    if d.direct_map { " (direct-mapped)" } else { "" }
                ),
                inner: true,
            });
        }
        for dev in &d.devices {
            for m in &dev.mappings {
                placed.push(HostRow {
                    region: Region::new(m.host, m.size),
                    colour: domain_colour(i),
                    label: format!("{} MMIO {}", d.name, dev.path),
                    inner: false,
                });
            }
        }
        for m in &d.iomem {
            placed.push(HostRow {
                region: Region::new(m.host, m.size),
                colour: domain_colour(i),
                label: format!("{} iomem grant", d.name),
                inner: false,
            });
        }
    }
    for s in &plan.shared_memory {
        if let Some(host) = s.host {
            placed.push(HostRow {
                region: Region::new(host, s.size),
                colour: SHARED_COLOUR.into(),
                label: format!(
                    "shared memory {} ({})",
                    s.id,
                    s.owner
                        .clone()
                        .into_iter()
                        .chain(s.borrowers.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                inner: true,
            });
        }
    }
    placed.sort_by(|a, b| {
        (a.region.base, a.region.size, &a.label).cmp(&(b.region.base, b.region.size, &b.label))
    });
    // RAM banks, with the free gaps between what is placed inside them.
    let mut rows = Vec::new();
    let mut banks = plan.ram.clone();
    banks.sort();
    let mut outside: Vec<HostRow> = Vec::new();
    let in_bank =
        |r: &Region, b: &Region| r.base >= b.base && r.base < b.base.saturating_add(b.size);
    let mut used = vec![false; placed.len()];
    let mut bank_rows: Vec<(Region, Vec<HostRow>)> = Vec::new();
    for b in &banks {
        let mut inner = Vec::new();
        let mut cursor = b.base;
        let end = b.base.saturating_add(b.size);
        for (k, p) in placed.iter().enumerate() {
            if used[k] || !in_bank(&p.region, b) {
                continue;
            }
            used[k] = true;
            if p.region.base > cursor {
                inner.push(HostRow {
                    region: Region::new(cursor, p.region.base - cursor),
                    colour: FREE_COLOUR.into(),
                    label: "free RAM".into(),
                    inner: true,
                });
            }
            cursor = cursor.max(p.region.base.saturating_add(p.region.size));
            inner.push(HostRow {
                region: p.region,
                colour: p.colour.clone(),
                label: p.label.clone(),
                inner: true,
            });
        }
        if end > cursor {
            inner.push(HostRow {
                region: Region::new(cursor, end - cursor),
                colour: FREE_COLOUR.into(),
                label: "free RAM".into(),
                inner: true,
            });
        }
        bank_rows.push((*b, inner));
    }
    for (k, p) in placed.into_iter().enumerate() {
        if !used[k] {
            outside.push(HostRow { inner: false, ..p });
        }
    }
    // Merge: MMIO rows and banks in address order.
    let mut items: Vec<(u64, Vec<HostRow>)> = outside
        .into_iter()
        .map(|r| (r.region.base, vec![r]))
        .collect();
    for (b, inner) in bank_rows {
        let mut v = vec![HostRow {
            region: b,
            colour: "none".into(),
            label: format!("RAM bank, {}", human_size(b.size)),
            inner: false,
        }];
        v.extend(inner);
        items.push((b.base, v));
    }
    items.sort_by_key(|(base, _)| *base);
    for (_, v) in items {
        rows.extend(v);
    }
    rows
}

/// Lines of a domain card after its title.
fn card_lines(plan: &SystemPlan, d: &DomainPlan) -> Vec<String> {
    let mut l = Vec::new();
    l.push(format!(
        "{:?}, built by {:?}, boot #{}",
        d.kind, d.builder, d.boot_index
    ));
    l.push(format!(
        "RAM {}  p2m {}  on_crash {:?}",
        human_size(d.memory),
        human_size(d.p2m_pool),
        d.on_crash
    ));
    if let Some(p) = &d.cpupool {
        l.push(format!("cpupool {p}"));
    }
    if !d.roles.is_empty() {
        l.push(format!(
            "roles {}",
            d.roles
                .iter()
                .map(|r| format!("{r:?}").to_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    l.push("guest physical map:".into());
    let mut guest: Vec<(u64, String)> = Vec::new();
    for r in &d.guest_ram {
        guest.push((r.base, format!("  {} RAM {}", range(r), human_size(r.size))));
    }
    for dev in &d.devices {
        for m in &dev.mappings {
            guest.push((
                m.guest,
                format!("  {} {}", range(&Region::new(m.guest, m.size)), dev.path),
            ));
        }
    }
    for m in &d.iomem {
        guest.push((
            m.guest,
            format!(
                "  {} iomem {:#x}",
                range(&Region::new(m.guest, m.size)),
                m.host
            ),
        ));
    }
    for s in &plan.shared_memory {
        if s.owner.as_deref() == Some(&d.name) || s.borrowers.iter().any(|b| b == &d.name) {
            guest.push((
                s.guest,
                format!("  {} shm {}", range(&Region::new(s.guest, s.size)), s.id),
            ));
        }
    }
    if plan.arch == Arch::Arm64 && d.console == Console::Vpl011 {
        guest.push((
            guest_map::VPL011.base,
            format!(
                "  {} vpl011 (SPI {})",
                range(&guest_map::VPL011),
                guest_map::VPL011_SPI
            ),
        ));
    }
    guest.sort();
    l.extend(guest.into_iter().map(|(_, s)| s));
    for dev in &d.devices {
        let mark = if dev.behind_iommu {
            " [iommu]"
        } else if dev.forced {
            " [forced]"
        } else {
            ""
        };
        l.push(format!("device {}{mark}", dev.path));
        if !dev.irqs.is_empty() {
            l.push(format!(
                "  irqs {}",
                dev.irqs
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
    }
    // The domain's interrupts that no device above already lists (e.g. `irqs` given by hand), so
    // a passed-through device's SPI is shown once.
    let other: Vec<String> = d
        .irqs
        .iter()
        .filter(|i| !d.devices.iter().any(|dev| dev.irqs.contains(i)))
        .map(u32::to_string)
        .collect();
    if !other.is_empty() {
        l.push(format!("other interrupts {}", other.join(" ")));
    }
    l
}

fn text(o: &mut String, x: u32, y: u32, size: u32, weight: &str, s: &str) {
    let _ = writeln!(
        o,
        r#"<text x="{x}" y="{y}" font-size="{size}" font-weight="{weight}">{}</text>"#,
        xml_escape(s)
    );
}

/// Characters that fit in `width` pixels at font size `size` (monospace, ~0.6 em per character).
fn fit(s: &str, width: u32, size: u32) -> String {
    let max = (width as f64 / (size as f64 * 0.6)) as usize;
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The whole system as one SVG document.
pub fn render_svg(plan: &SystemPlan) -> String {
    let n = plan.domains.len();
    let cols: u32 = match n {
        0..=3 => 1,
        4..=12 => 2,
        13..=30 => 3,
        _ => 4,
    };
    let cards_x = MARGIN + HOST_W + GAP * 2;
    let width = cards_x + cols * CARD_W + (cols - 1) * GAP + MARGIN;
    let mut body = String::new();

    // Title.
    let mut y = MARGIN + 18;
    text(
        &mut body,
        MARGIN,
        y,
        18,
        "bold",
        &format!(
            "{} — {} ({}), Xen {}",
            plan.name,
            plan.board,
            plan.arch.as_str(),
            plan.xen
        ),
    );
    y += ROW + 4;
    text(
        &mut body,
        MARGIN,
        y,
        11,
        "normal",
        &fit(
            &format!("Xen command line: {}", plan.xen_cmdline),
            width - 2 * MARGIN,
            11,
        ),
    );
    y += ROW;

    // Legend.
    let legend_top = y + 4;
    let per_row = ((width - 2 * MARGIN) / 150).max(1) as usize;
    let mut entries: Vec<(String, String)> = vec![
        (XEN_COLOUR.into(), "Xen".into()),
        (MODULE_COLOUR.into(), "shared boot module".into()),
        (RESERVED_COLOUR.into(), "reserved".into()),
        (SHARED_COLOUR.into(), "shared memory".into()),
        (FREE_COLOUR.into(), "free RAM".into()),
    ];
    if plan.dom0.is_some() {
        entries.push(("#2f3b45".into(), "dom0".into()));
    }
    entries.extend(
        plan.domains
            .iter()
            .enumerate()
            .map(|(i, d)| (domain_colour(i), d.name.clone())),
    );
    let _ = writeln!(body, r#"<g id="legend">"#);
    for (k, (colour, name)) in entries.iter().enumerate() {
        let lx = MARGIN + (k % per_row) as u32 * 150;
        let ly = legend_top + (k / per_row) as u32 * ROW;
        let _ = writeln!(
            body,
            r##"<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}" stroke="#333" stroke-width="0.5"/>"##
        );
        text(
            &mut body,
            lx + 16,
            ly + 10,
            11,
            "normal",
            &fit(name, 130, 11),
        );
    }
    let _ = writeln!(body, "</g>");
    y = legend_top + (entries.len().div_ceil(per_row) as u32) * ROW + GAP;

    // RAM budget bar.
    let m = &plan.memory;
    let top = y;
    text(
        &mut body,
        MARGIN,
        top + 10,
        12,
        "bold",
        &format!(
            "RAM {} (reserved {}), free {}",
            human_size(m.ram),
            human_size(m.reserved),
            human_size(m.free)
        ),
    );
    let bar_y = top + 16;
    let bar_w = (width - 2 * MARGIN) as f64;
    let total = m.ram.max(1) as f64;
    let mut parts: Vec<(String, u64, String)> = vec![(XEN_COLOUR.into(), m.xen, "Xen".into())];
    if let Some(d0) = &plan.dom0 {
        parts.push(("#2f3b45".into(), d0.memory, "dom0".into()));
    }
    for (i, d) in plan.domains.iter().enumerate() {
        let dynamic = if d.static_memory.is_empty() {
            d.memory
        } else {
            0
        };
        let stat: u64 = d.static_memory.iter().map(|r| r.size).sum();
        parts.push((domain_colour(i), dynamic + stat, d.name.clone()));
    }
    parts.push((
        RESERVED_COLOUR.into(),
        m.p2m_pools + m.reserved,
        "P2M pools + reserved".into(),
    ));
    parts.push((
        SHARED_COLOUR.into(),
        m.shared_memory,
        "shared memory".into(),
    ));
    parts.push((FREE_COLOUR.into(), m.free, "free".into()));
    let _ = writeln!(body, r#"<g id="budget">"#);
    let mut x = MARGIN as f64;
    for (colour, bytes, name) in &parts {
        if *bytes == 0 {
            continue;
        }
        let w = bar_w * *bytes as f64 / total;
        let _ = writeln!(
            body,
            r#"<rect x="{x:.1}" y="{bar_y}" width="{w:.1}" height="14" fill="{colour}"><title>{}: {}</title></rect>"#,
            xml_escape(name),
            human_size(*bytes)
        );
        x += w;
    }
    let _ = writeln!(
        body,
        r##"<rect x="{MARGIN}" y="{bar_y}" width="{bar_w:.0}" height="14" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(body, "</g>");
    text(
        &mut body,
        MARGIN,
        bar_y + 28,
        11,
        "normal",
        "Domain RAM without static memory comes from Xen's heap (free RAM) at boot, at no fixed host address: its share is in this bar.",
    );
    y = bar_y + 28 + GAP + 8;

    // Host map.
    let map_top = y;
    text(
        &mut body,
        MARGIN,
        map_top,
        14,
        "bold",
        "Host physical memory",
    );
    let mut hy = map_top + 8;
    let _ = writeln!(body, r#"<g id="host-map">"#);
    for r in host_rows(plan) {
        let indent = if r.inner { 14 } else { 0 };
        if r.colour == "none" {
            let _ = writeln!(
                body,
                r##"<rect x="{}" y="{hy}" width="{}" height="{ROW}" fill="#ffffff" stroke="#333"/>"##,
                MARGIN, HOST_W
            );
            text(
                &mut body,
                MARGIN + 4,
                hy + 12,
                11,
                "bold",
                &fit(&format!("{} {}", range(&r.region), r.label), HOST_W - 8, 11),
            );
        } else {
            let _ = writeln!(
                body,
                r##"<rect x="{}" y="{hy}" width="10" height="{ROW}" fill="{}" stroke="#333" stroke-width="0.5"/>"##,
                MARGIN + indent,
                r.colour
            );
            text(
                &mut body,
                MARGIN + indent + 14,
                hy + 12,
                11,
                "normal",
                &fit(
                    &format!(
                        "{} {:>9} {}",
                        range(&r.region),
                        human_size(r.region.size),
                        r.label
                    ),
                    HOST_W - indent - 18,
                    11,
                ),
            );
        }
        hy += ROW;
    }
    let _ = writeln!(body, "</g>");
    let host_bottom = hy;

    // Domain cards.
    let mut col_y = vec![map_top - 12; cols as usize];
    let _ = writeln!(body, r#"<g id="domains">"#);
    if let Some(d0) = &plan.dom0 {
        let lines = [
            format!("{} vCPU, RAM {}", d0.vcpus, human_size(d0.memory)),
            fit(&format!("kernel {}", d0.kernel), CARD_W - 16, 11),
        ];
        let h = 26 + ROW * lines.len() as u32 + 6;
        let cy = col_y[0];
        let _ = writeln!(
            body,
            r##"<g id="dom0"><rect x="{cards_x}" y="{cy}" width="{CARD_W}" height="{h}" rx="6" fill="#ffffff" stroke="#2f3b45" stroke-width="2"/>"##
        );
        text(&mut body, cards_x + 8, cy + 18, 13, "bold", "dom0");
        for (k, l) in lines.iter().enumerate() {
            text(
                &mut body,
                cards_x + 8,
                cy + 36 + k as u32 * ROW,
                11,
                "normal",
                l,
            );
        }
        let _ = writeln!(body, "</g>");
        col_y[0] += h + GAP;
    }
    for (i, d) in plan.domains.iter().enumerate() {
        let c = (0..cols as usize)
            .min_by_key(|&c| (col_y[c], c))
            .unwrap_or(0);
        let cx = cards_x + c as u32 * (CARD_W + GAP);
        let cy = col_y[c];
        let colour = domain_colour(i);
        let lines = card_lines(plan, d);
        let vcpu_rows = d.vcpus.div_ceil(16).max(1);
        let h = 24 + vcpu_rows * 12 + 4 + ROW * lines.len() as u32 + 6;
        let _ = writeln!(body, r#"<g id="domain-{}">"#, xml_escape(&d.name));
        let _ = writeln!(
            body,
            r#"<rect x="{cx}" y="{cy}" width="{CARD_W}" height="{h}" rx="6" fill="{colour}" fill-opacity="0.10" stroke="{colour}" stroke-width="2"/>"#
        );
        let _ = writeln!(
            body,
            r#"<rect x="{cx}" y="{cy}" width="8" height="{h}" rx="3" fill="{colour}"/>"#
        );
        text(
            &mut body,
            cx + 14,
            cy + 18,
            13,
            "bold",
            &fit(&format!("{} — {} vCPU", d.name, d.vcpus), CARD_W - 20, 13),
        );
        for v in 0..d.vcpus {
            let vx = cx + 14 + (v % 16) * 12;
            let vy = cy + 24 + (v / 16) * 12;
            let _ = writeln!(
                body,
                r#"<rect x="{vx}" y="{vy}" width="9" height="9" fill="{colour}"><title>vCPU {v}</title></rect>"#
            );
        }
        let ty = cy + 24 + vcpu_rows * 12 + 4;
        for (k, l) in lines.iter().enumerate() {
            text(
                &mut body,
                cx + 14,
                ty + 11 + k as u32 * ROW,
                11,
                "normal",
                &fit(l, CARD_W - 20, 11),
            );
        }
        let _ = writeln!(body, "</g>");
        col_y[c] += h + GAP;
    }
    let _ = writeln!(body, "</g>");
    let height = host_bottom.max(col_y.iter().copied().max().unwrap_or(0)) + MARGIN;

    let mut o = String::new();
    let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="{FONT}">"#
    );
    let _ = writeln!(
        o,
        "<title>{}</title>",
        xml_escape(&format!("domforge system map: {}", plan.name))
    );
    let _ = writeln!(
        o,
        r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#fafbfc"/>"##
    );
    o.push_str(&body);
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_distinct_for_64_domains() {
        let c: std::collections::BTreeSet<String> = (0..64).map(domain_colour).collect();
        assert_eq!(c.len(), 64);
        assert_eq!(hsl_hex(0.0, 1.0, 0.5), "#ff0000");
        assert_eq!(hsl_hex(120.0, 1.0, 0.5), "#00ff00");
        assert_eq!(hsl_hex(240.0, 1.0, 0.5), "#0000ff");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            xml_escape("a<b & \"c\"'"),
            "a&lt;b &amp; &quot;c&quot;&apos;"
        );
    }
}
