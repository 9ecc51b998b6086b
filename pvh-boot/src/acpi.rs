//! The ACPI tables a PVH guest needs to bring up more than one vCPU.
//!
//! A PVH guest has no firmware, so Linux finds its CPUs only through ACPI: it follows
//! `hvm_start_info.rsdp_paddr` to the RSDP, the XSDT, and the MADT, which lists one Processor
//! Local APIC per vCPU. Xen gives vCPU *n* the local APIC ID `2 * n`
//! (`xen/arch/x86/hvm/vlapic.c`, `vlapic_init`; libacpi writes the same in its MADT), and PVH
//! has neither an IO-APIC nor an 8259 PIC (libxl creates PVH domains with
//! `XEN_X86_EMU_LAPIC` only), so the MADT carries no IO-APIC entry and `PCAT_COMPAT = 0`.
//! The FADT sets `HW_REDUCED_ACPI` (ACPI 5.0, FADT flags bit 20): there are no PM1/GPE
//! blocks, SCI or FACS. The DSDT declares one `ACPI0007` processor device per vCPU whose
//! `_UID` matches the MADT's ACPI Processor UID.
//!
//! Layout at `base` (all 16-byte aligned): RSDP (ACPI 2.0, 36 bytes), RSDT, XSDT, FADT
//! (revision 5, 268 bytes), MADT, DSDT. Field offsets are those of the ACPI 6.5
//! specification, §5.2.5.3 (RSDP), §5.2.6 (header), §5.2.7/8 (RSDT/XSDT), §5.2.9 (FADT),
//! §5.2.12 (MADT), §20 (AML encoding).

use alloc::vec::Vec;

use crate::layout::{ACPI_PAGES, MAX_VCPUS};
use crate::memory::PAGE_SIZE;

/// OEM ID in every table header.
pub const OEM_ID: &[u8; 6] = b"DOMFRG";
/// OEM Table ID in every table header.
pub const OEM_TABLE_ID: &[u8; 8] = b"DOMFORGE";
/// Creator ID.
pub const CREATOR_ID: &[u8; 4] = b"DMFG";
/// Default local APIC base (`APIC_DEFAULT_PHYS_BASE`), where Xen emulates the LAPIC.
pub const LAPIC_BASE: u32 = 0xFEE0_0000;
/// FADT flag `HW_REDUCED_ACPI` (bit 20).
pub const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;

const HEADER_LEN: usize = 36;
const FADT_LEN: usize = 268;

/// Why tables could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcpiError {
    /// vCPU count outside 1..=128.
    #[error("{vcpus} vCPUs: ACPI tables describe 1 to {max}")]
    BadVcpuCount {
        /// Requested.
        vcpus: u32,
        /// Limit.
        max: u32,
    },
    /// Base not usable.
    #[error("ACPI base {base:#x} must be 16-byte aligned and the tables must end below 4 GiB")]
    BadBase {
        /// Requested base.
        base: u64,
    },
}

/// Built tables: one contiguous blob to write at [`AcpiTables::base`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    /// Guest-physical address of the blob.
    pub base: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// RSDP address (`hvm_start_info.rsdp_paddr`).
    pub rsdp: u64,
    /// RSDT address.
    pub rsdt: u64,
    /// XSDT address.
    pub xsdt: u64,
    /// FADT address.
    pub fadt: u64,
    /// MADT address.
    pub madt: u64,
    /// DSDT address.
    pub dsdt: u64,
}

impl AcpiTables {
    /// Bytes of the table at guest-physical address `gpa` whose header says its length
    /// (the RSDP is 36 bytes).
    pub fn table_at(&self, gpa: u64) -> Option<&[u8]> {
        let off = usize::try_from(gpa.checked_sub(self.base)?).ok()?;
        let len = if gpa == self.rsdp {
            36
        } else {
            let l = self.bytes.get(off + 4..off + 8)?;
            u32::from_le_bytes(l.try_into().ok()?) as usize
        };
        self.bytes.get(off..off.checked_add(len)?)
    }

    /// Named tables, for dumping: `(signature, bytes)`.
    pub fn tables(&self) -> Vec<(&'static str, &[u8])> {
        [
            ("RSDP", self.rsdp),
            ("RSDT", self.rsdt),
            ("XSDT", self.xsdt),
            ("FACP", self.fadt),
            ("APIC", self.madt),
            ("DSDT", self.dsdt),
        ]
        .into_iter()
        .filter_map(|(n, a)| Some((n, self.table_at(a)?)))
        .collect()
    }
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

/// A standard 36-byte table header with the checksum left zero.
fn header(signature: &[u8; 4], len: usize, revision: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(len);
    t.extend_from_slice(signature);
    t.extend_from_slice(&(len as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, filled by `finish`
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(CREATOR_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t
}

/// Fix the length field and checksum of a table whose body is complete.
fn finish(mut t: Vec<u8>) -> Vec<u8> {
    let len = (t.len() as u32).to_le_bytes();
    if let Some(l) = t.get_mut(4..8) {
        l.copy_from_slice(&len);
    }
    if let Some(c) = t.get_mut(9) {
        *c = 0;
    }
    let sum = checksum(&t);
    if let Some(c) = t.get_mut(9) {
        *c = sum;
    }
    t
}

/// AML `PkgLength` (ACPI §20.2.4) for a package whose content (after the PkgLength) is
/// `content` bytes long.
fn pkg_length(content: usize) -> Vec<u8> {
    if content < 0x3f {
        return alloc::vec![(content + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = content + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut out = alloc::vec![((extra as u8) << 6) | (total & 0xf) as u8];
            for i in 0..extra {
                out.push(((total >> (4 + 8 * i)) & 0xff) as u8);
            }
            return out;
        }
    }
    // Packages here are a few KiB; unreachable in practice, yet well-formed in type.
    alloc::vec![0xff, 0xff, 0xff, 0xff]
}

/// AML integer: ZeroOp, OneOp, BytePrefix or WordPrefix.
fn aml_integer(v: u32) -> Vec<u8> {
    match v {
        0 => alloc::vec![0x00],
        1 => alloc::vec![0x01],
        2..=0xff => alloc::vec![0x0a, v as u8],
        0x100..=0xffff => alloc::vec![0x0b, v as u8, (v >> 8) as u8],
        _ => {
            let mut o = alloc::vec![0x0c];
            o.extend_from_slice(&v.to_le_bytes());
            o
        }
    }
}

/// NameSeg `Pxxx` for processor `i` (hex, upper case).
fn processor_name(i: u32) -> [u8; 4] {
    let hex = |n: u32| b"0123456789ABCDEF"[(n & 0xf) as usize];
    [b'P', hex(i >> 8), hex(i >> 4), hex(i)]
}

fn dsdt(vcpus: u32) -> Vec<u8> {
    // Scope (\_SB) { Device (Pxxx) { Name (_HID, "ACPI0007") Name (_UID, i) } ... }
    let mut devices = Vec::new();
    for i in 0..vcpus {
        let mut body = Vec::new();
        body.extend_from_slice(&processor_name(i));
        body.push(0x08); // NameOp
        body.extend_from_slice(b"_HID");
        body.push(0x0d); // StringPrefix
        body.extend_from_slice(b"ACPI0007\0");
        body.push(0x08);
        body.extend_from_slice(b"_UID");
        body.extend_from_slice(&aml_integer(i));
        devices.extend_from_slice(&[0x5b, 0x82]); // DeviceOp
        devices.extend_from_slice(&pkg_length(body.len()));
        devices.extend_from_slice(&body);
    }
    let mut scope_body = Vec::new();
    scope_body.extend_from_slice(b"\\_SB_");
    scope_body.extend_from_slice(&devices);
    let mut t = header(b"DSDT", 0, 2);
    t.push(0x10); // ScopeOp
    t.extend_from_slice(&pkg_length(scope_body.len()));
    t.extend_from_slice(&scope_body);
    finish(t)
}

fn madt(vcpus: u32) -> Vec<u8> {
    let mut t = header(b"APIC", 0, 3);
    t.extend_from_slice(&LAPIC_BASE.to_le_bytes()); // Local Interrupt Controller Address
    t.extend_from_slice(&0u32.to_le_bytes()); // Flags: no PCAT_COMPAT (no 8259 in PVH)
    for i in 0..vcpus {
        // Processor Local APIC structure (type 0, length 8).
        t.push(0);
        t.push(8);
        t.push(i as u8); // ACPI Processor UID (matches the DSDT _UID)
        t.push((2 * i) as u8); // APIC ID: Xen uses vcpu_id * 2
        t.extend_from_slice(&1u32.to_le_bytes()); // Flags: Enabled
    }
    finish(t)
}

fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut t = header(b"FACP", FADT_LEN, 5);
    t.resize(FADT_LEN, 0);
    let put32 = |t: &mut Vec<u8>, off: usize, v: u32| {
        if let Some(d) = t.get_mut(off..off + 4) {
            d.copy_from_slice(&v.to_le_bytes());
        }
    };
    put32(&mut t, 40, dsdt_addr as u32); // DSDT (32-bit)
    // IAPC_BOOT_ARCH (offset 109): bit 2 VGA Not Present, bit 5 CMOS RTC Not Present;
    // bit 1 (8042) stays clear: PVH has no keyboard controller.
    if let Some(d) = t.get_mut(109..111) {
        d.copy_from_slice(&((1u16 << 2) | (1u16 << 5)).to_le_bytes());
    }
    // Flags (offset 112): WBINVD (bit 0), PWR_BUTTON/SLP_BUTTON "not present as fixed
    // features" (bits 4, 5), HW_REDUCED_ACPI (bit 20).
    put32(&mut t, 112, 1 | (1 << 4) | (1 << 5) | FADT_HW_REDUCED_ACPI);
    // X_DSDT (offset 140).
    if let Some(d) = t.get_mut(140..148) {
        d.copy_from_slice(&dsdt_addr.to_le_bytes());
    }
    finish(t)
}

fn rsdt(entries: &[u64]) -> Vec<u8> {
    let mut t = header(b"RSDT", 0, 1);
    for e in entries {
        t.extend_from_slice(&(*e as u32).to_le_bytes());
    }
    finish(t)
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let mut t = header(b"XSDT", 0, 1);
    for e in entries {
        t.extend_from_slice(&e.to_le_bytes());
    }
    finish(t)
}

fn rsdp(rsdt: u64, xsdt: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(36);
    t.extend_from_slice(b"RSD PTR ");
    t.push(0); // checksum of the first 20 bytes
    t.extend_from_slice(OEM_ID);
    t.push(2); // revision: ACPI 2.0+ (XSDT present)
    t.extend_from_slice(&(rsdt as u32).to_le_bytes());
    t.extend_from_slice(&36u32.to_le_bytes());
    t.extend_from_slice(&xsdt.to_le_bytes());
    t.push(0); // extended checksum
    t.extend_from_slice(&[0, 0, 0]);
    let c = checksum(t.get(..20).unwrap_or(&[]));
    if let Some(b) = t.get_mut(8) {
        *b = c;
    }
    let c = checksum(&t);
    if let Some(b) = t.get_mut(32) {
        *b = c;
    }
    t
}

fn align16(v: usize) -> usize {
    (v + 15) & !15
}

/// Build RSDP, RSDT, XSDT, FADT, MADT and DSDT for `vcpus` vCPUs at guest address `base`.
pub fn build_tables(vcpus: u32, base: u64) -> Result<AcpiTables, AcpiError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(AcpiError::BadVcpuCount {
            vcpus,
            max: MAX_VCPUS,
        });
    }
    if !base.is_multiple_of(16)
        || base
            .checked_add(ACPI_PAGES * PAGE_SIZE)
            .is_none_or(|e| e > 1 << 32)
    {
        return Err(AcpiError::BadBase { base });
    }
    let dsdt_t = dsdt(vcpus);
    let madt_t = madt(vcpus);
    // Offsets: RSDP 0, RSDT 0x30, XSDT after, FADT, MADT, DSDT.
    let rsdp_off = 0usize;
    let rsdt_off = 0x30usize;
    let rsdt_len = HEADER_LEN + 2 * 4;
    let xsdt_off = align16(rsdt_off + rsdt_len);
    let xsdt_len = HEADER_LEN + 2 * 8;
    let fadt_off = align16(xsdt_off + xsdt_len);
    let madt_off = align16(fadt_off + FADT_LEN);
    let dsdt_off = align16(madt_off + madt_t.len());
    let total = dsdt_off + dsdt_t.len();
    let at = |off: usize| base + off as u64;
    let fadt_t = fadt(at(dsdt_off));
    let rsdt_t = rsdt(&[at(fadt_off), at(madt_off)]);
    let xsdt_t = xsdt(&[at(fadt_off), at(madt_off)]);
    let rsdp_t = rsdp(at(rsdt_off), at(xsdt_off));

    let mut bytes = alloc::vec![0u8; total];
    for (off, t) in [
        (rsdp_off, &rsdp_t),
        (rsdt_off, &rsdt_t),
        (xsdt_off, &xsdt_t),
        (fadt_off, &fadt_t),
        (madt_off, &madt_t),
        (dsdt_off, &dsdt_t),
    ] {
        if let Some(d) = bytes.get_mut(off..off + t.len()) {
            d.copy_from_slice(t);
        }
    }
    // 128 vCPUs need about 6 KiB; the reserved area is 64 KiB.
    debug_assert!(total as u64 <= ACPI_PAGES * PAGE_SIZE);
    Ok(AcpiTables {
        base,
        bytes,
        rsdp: at(rsdp_off),
        rsdt: at(rsdt_off),
        xsdt: at(xsdt_off),
        fadt: at(fadt_off),
        madt: at(madt_off),
        dsdt: at(dsdt_off),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkg_length_encodings_follow_the_aml_spec() {
        // One byte up to 63 total; two bytes with the low nibble in byte 0 (ACPI §20.2.4).
        assert_eq!(pkg_length(10), [11]);
        assert_eq!(pkg_length(62), [63]);
        assert_eq!(pkg_length(63), [0x40 | (65 & 0xf), (65 >> 4) as u8]);
        assert_eq!(
            pkg_length(5000),
            [
                0x80 | (5003 & 0xf) as u8,
                ((5003 >> 4) & 0xff) as u8,
                (5003 >> 12) as u8
            ]
        );
    }

    #[test]
    fn every_table_sums_to_zero() {
        let t = build_tables(8, 0xFC00_0000).unwrap();
        for (name, bytes) in t.tables() {
            let sum = bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b));
            assert_eq!(sum, 0, "{name}");
        }
        let rsdp = t.table_at(t.rsdp).unwrap();
        assert_eq!(rsdp[..20].iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
    }
}
