//! The paging (P2M) pool sizes Xen and libxl give a domain by default, defined once for the
//! validator, the planner, the host DTB writer and domctl's builders (`no_std`).

use crate::units::MIB;

/// Xen's default P2M pool for a dom0less domain: 1 MiB per vCPU, plus 4 KiB per MiB of RAM, plus
/// 512 KiB (`domain_p2m_pages()` in xen/arch/arm/p2m.c; xen-landscape.md §1.3).
pub fn default_p2m_pool(vcpus: u32, memory: u64) -> u64 {
    u64::from(vcpus)
        .saturating_mul(MIB)
        .saturating_add((memory / MIB).saturating_mul(4096))
        .saturating_add(512 * 1024)
}

/// The pool libxl gives a guest it builds (`shadow_memkb` = `libxl_get_required_shadow_memory(
/// max_memkb, vcpus)`, `tools/libs/light/libxl_utils.c`): 4 KiB × (256 per vCPU + 2 per MiB of
/// RAM), i.e. 1 MiB per vCPU plus 8 KiB per MiB — always whole pages. Used for x86 HVM/PVH guests
/// (the HAP pool) and for ARM guests domforge-init builds the way libxl would.
pub fn libxl_paging_pool(vcpus: u32, memory: u64) -> u64 {
    4096u64.saturating_mul(
        256u64
            .saturating_mul(u64::from(vcpus))
            .saturating_add((memory / MIB).saturating_mul(2)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_match_their_sources() {
        // 2 vCPUs, 256 MiB: Xen 2 MiB + 1 MiB + 512 KiB; libxl 4 KiB * (512 + 512).
        assert_eq!(default_p2m_pool(2, 256 * MIB), 3 * MIB + 512 * 1024);
        assert_eq!(libxl_paging_pool(2, 256 * MIB), 4 * MIB);
    }
}
