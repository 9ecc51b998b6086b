//! Kernels prepared on the host for domforge-init (issue 14): the kernels domforge-init loads at
//! boot go into dom0's initramfs in the form it loads fastest, so no xz or gzip runs in dom0 at
//! every boot (under TCG, decompressing Debian's xz bzImage was 8.0 of domforge-init's 8.7 s).
//!
//! A PVH kernel becomes its ELF `vmlinux` (the bzImage's payload, decompressed here with the same
//! decoder domforge-init has, `pvh_boot::kernel::pvh_elf_bytes`), rewritten by [`loadable_elf`] so
//! its headers and notes come first and its zero tails are left to the loader; an arm64 kernel its
//! raw `Image`.
//! The result is stored LZ4-compressed as a Linux kernel payload is: the legacy framing Linux's
//! own `unlz4` reads (magic 0x184C2102, blocks of `u32 length` + LZ4 block decoding to at most
//! 8 MiB, lib/decompress_unlz4.c) and a 4-byte size trailer, which domforge-init's loaders accept
//! like any compressed kernel and decode at memory speed.
//! Kernels already in that form, or in none domforge knows, are left as they are: domforge-init
//! still accepts every compressed kernel at boot, for bundles made elsewhere.

use firmware_config::board::Arch;
use pvh_boot::kernel::Compression;
use pvh_boot::kernel::KernelImage;
use pvh_boot::stream::LZ4_LEGACY_MAGIC;

/// The prepared form's version, part of every cache entry's name: a change to [`prepare`]'s
/// output must change it, so no entry of the old form is served. v2: 1 MiB blocks, PVH kernels
/// rewritten by [`loadable_elf`].
const FORMAT: &str = "v2";

/// The LZ4 legacy block size used here: 1 MiB rather than the format's 8 MiB bound, so
/// domforge-init's streaming loader (`pvh_boot::stream`) holds 1 MiB of decoded kernel at a time,
/// and the first block holds the ELF headers and notes. Linux's `unlz4` and `lz4 -d` read smaller
/// blocks (each decodes "to at most 8 MiB"). Costs ~1% of compression.
const LZ4_LEGACY_BLOCK: usize = 1 << 20;

/// ELF64 header and program header sizes (`Elf64_Ehdr`, `Elf64_Phdr`, the System V gABI).
const EHDR64: usize = 64;
const PHDR64: usize = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PAGE: u64 = 4096;

/// The PVH kernel `elf` rewritten for loading: the ELF header, program headers (its `PT_LOAD`s and
/// `PT_NOTE`s, nothing else) and the notes first, then each segment's file bytes without their
/// trailing zeros (the loader zero-fills `p_memsz`, as for BSS: Linux's `vmlinux` carries `.bss`
/// and `.init.scratch` as ~21 MB of zeros inside the last segment's `p_filesz`). No section
/// headers: loaders read program headers (Xen's libelf and ours fall back to sections only without
/// a `PT_NOTE`). Segment offsets are page-aligned with `p_align` 4096, so `p_offset ≡ p_vaddr`
/// (mod `p_align`) holds. `None` for anything but a little-endian ELF64 (kept as it is).
pub fn loadable_elf(elf: &[u8]) -> Option<Vec<u8>> {
    let k = pvh_boot::kernel::ElfKernel::parse(elf).ok()?;
    if k.class != pvh_boot::kernel::ElfClass::Elf64 || elf.get(5) != Some(&1) {
        return None;
    }
    let notes: Vec<(&pvh_boot::kernel::LoadSegment, &[u8])> = k
        .note_segments
        .iter()
        .map(|n| {
            Some((
                n,
                elf.get(n.offset as usize..(n.offset + n.filesz) as usize)?,
            ))
        })
        .collect::<Option<_>>()?;
    let phnum = k.segments.len() + notes.len();
    let mut out = vec![0u8; EHDR64 + phnum * PHDR64];
    // e_ident, e_type, e_machine, e_version, e_entry as they were; e_flags too.
    out[..32].copy_from_slice(elf.get(..32)?);
    out[48..52].copy_from_slice(elf.get(48..52)?);
    out[32..40].copy_from_slice(&(EHDR64 as u64).to_le_bytes()); // e_phoff
    out[52..54].copy_from_slice(&(EHDR64 as u16).to_le_bytes()); // e_ehsize
    out[54..56].copy_from_slice(&(PHDR64 as u16).to_le_bytes()); // e_phentsize
    out[56..58].copy_from_slice(&u16::try_from(phnum).ok()?.to_le_bytes()); // e_phnum
    let mut phdrs = Vec::with_capacity(phnum);
    for (n, bytes) in &notes {
        phdrs.push((PT_NOTE, **n, out.len() as u64, bytes.len() as u64));
        out.extend_from_slice(bytes);
    }
    for seg in &k.segments {
        let data = k.segment_data(seg).ok()?;
        let kept = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let offset = (out.len() as u64).next_multiple_of(PAGE) + seg.vaddr % PAGE;
        out.resize(offset as usize, 0);
        out.extend_from_slice(&data[..kept]);
        phdrs.push((PT_LOAD, *seg, offset, kept as u64));
    }
    for (i, (kind, seg, offset, filesz)) in phdrs.iter().enumerate() {
        let at = EHDR64 + i * PHDR64;
        let ph = &mut out[at..at + PHDR64];
        ph[0..4].copy_from_slice(&kind.to_le_bytes());
        ph[4..8].copy_from_slice(&seg.flags.to_le_bytes());
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[16..24].copy_from_slice(&seg.vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&seg.paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&filesz.to_le_bytes());
        let memsz = if *kind == PT_LOAD { seg.memsz } else { *filesz };
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        let align = if *kind == PT_LOAD { PAGE } else { seg.align };
        ph[48..56].copy_from_slice(&align.to_le_bytes());
    }
    Some(out)
}

/// `bytes` as LZ4 legacy frames followed by the 4-byte little-endian uncompressed size, the form
/// of a Linux kernel's compressed payload (`lz4 -l` then kbuild's `size_append`,
/// scripts/Makefile.lib), which domforge-init's loaders decode (`pvh_boot::decompress::decompress`).
/// `None` for 4 GiB or more, which that trailer cannot state.
pub fn lz4_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    let size = u32::try_from(bytes.len()).ok()?;
    let mut out = Vec::with_capacity(bytes.len() / 2);
    out.extend_from_slice(&LZ4_LEGACY_MAGIC.to_le_bytes());
    for block in bytes.chunks(LZ4_LEGACY_BLOCK) {
        let compressed = lz4_flex::block::compress(block);
        out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        out.extend_from_slice(&compressed);
    }
    out.extend_from_slice(&size.to_le_bytes());
    Some(out)
}

/// The form of `kernel` domforge-init loads fastest for a domain of `arch`, or `None` to keep the
/// file (already fast to load, or not a kernel this stage knows: validation decides about those).
pub fn prepare(kernel: &[u8], arch: Arch) -> Option<Vec<u8>> {
    let decoded = match (arch, KernelImage::parse(kernel).ok()?) {
        (
            _,
            KernelImage::Compressed {
                compression: Compression::Lz4,
                ..
            },
        ) => {
            return None;
        }
        (Arch::X86_64, KernelImage::BzImage(_) | KernelImage::Compressed { .. }) => {
            let elf = pvh_boot::kernel::pvh_elf_bytes(kernel).ok()?;
            loadable_elf(&elf).unwrap_or_else(|| elf.into_owned())
        }
        (Arch::X86_64, KernelImage::Elf(_)) => loadable_elf(kernel)?,
        (Arch::Arm64, KernelImage::Compressed { compression, data }) => {
            let image = pvh_boot::decompress::decompress(
                data,
                compression,
                pvh_boot::decompress::DEFAULT_LIMIT,
            )
            .ok()?;
            image.get(56..60).filter(|m| *m == b"ARMd")?;
            image
        }
        // An ELF vmlinux or a raw Image: nothing to decompress at boot.
        _ => return None,
    };
    lz4_payload(&decoded)
}

/// The prepared form of a kernel whose examined digest is `source_sha256`, from the derived-file
/// cache (`<cache>/prepared/<source sha256>-<arch>-<FORMAT>.lz4`, [`crate::derived`]) when an
/// earlier command prepared it, else prepared now from `read()` and remembered. So `check` does not
/// decompress a kernel at every run (issue 14: nothing is decompressed twice, `check` stays
/// instant); `verify` re-hashes the entry (a build).
pub fn prepared_cached(
    cache: Option<&std::path::Path>,
    source_sha256: &str,
    arch: Arch,
    verify: bool,
    read: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let what = derivation(arch);
    crate::derived::cached(cache, &what, source_sha256, verify, read, |k| {
        prepare(k, arch)
    })
}

/// The length of [`prepared_cached`]'s result, from the cache entry's record when there is one
/// (`check` sizes dom0's initramfs without reading a 17 MB kernel), else by preparing it.
pub fn prepared_len_cached(
    cache: &std::path::Path,
    source_sha256: &str,
    arch: Arch,
    read: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<u64, String> {
    if let Some(len) = crate::derived::cached_len(cache, &derivation(arch), source_sha256) {
        return Ok(len);
    }
    prepared_cached(Some(cache), source_sha256, arch, false, read).map(|b| b.len() as u64)
}

fn derivation(arch: Arch) -> crate::derived::Derivation<'static> {
    crate::derived::Derivation {
        kind: "prepared",
        variant: format!("{}-{FORMAT}.lz4", arch.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lz4_legacy_frames_decode_with_the_boot_decoder() {
        // Three blocks: two full 8 MiB ones and a tail, compressible and not.
        let mut data: Vec<u8> = (0..(2 * LZ4_LEGACY_BLOCK + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        data[100..200].copy_from_slice(&[7; 100]);
        let framed = lz4_payload(&data).unwrap();
        assert_eq!(
            pvh_boot::decompress::detect(&framed),
            Some(Compression::Lz4)
        );
        let back = pvh_boot::decompress::decompress(
            &framed,
            Compression::Lz4,
            pvh_boot::decompress::DEFAULT_LIMIT,
        )
        .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn the_cache_serves_its_entry_and_ignores_a_corrupt_one() {
        let dir = std::env::temp_dir().join(format!("kernel-prep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // A "kernel" prepare() changes: a gzip'd arm64 Image header.
        let mut image = vec![0u8; 4096];
        image[56..60].copy_from_slice(b"ARMd");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &image).unwrap();
        let gz = gz.finish().unwrap();
        let first =
            prepared_cached(Some(&dir), "abc", Arch::Arm64, true, || Ok(gz.clone())).unwrap();
        assert_eq!(first, lz4_payload(&image).unwrap());
        // A hit does not read the source.
        let hit = prepared_cached(Some(&dir), "abc", Arch::Arm64, true, || Err("read".into()));
        assert_eq!(hit.unwrap(), first);
        // A corrupted entry of the same size fails verification and is prepared again.
        let entry = dir.join(format!("prepared/abc-arm64-{FORMAT}.lz4"));
        let mut bad = first.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        std::fs::write(&entry, &bad).unwrap();
        let again = prepared_cached(Some(&dir), "abc", Arch::Arm64, true, || Ok(gz.clone()));
        assert_eq!(again.unwrap(), first);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_is_already_fast_is_kept() {
        let framed = lz4_payload(b"\x7fELF not really").unwrap();
        assert_eq!(prepare(&framed, Arch::X86_64), None);
        assert_eq!(prepare(b"\x7fELF\x02\x01\x01", Arch::X86_64), None);
        assert_eq!(prepare(b"no kernel at all", Arch::Arm64), None);
    }
}
