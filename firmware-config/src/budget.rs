//! The memory budget: what the system needs from the board's RAM, computed once and used by both
//! validation (does it fit?) and the plan (what is left?).

use crate::manifest::Manifest;
use crate::validate::{CheckInput, DEFAULT_DOM0_MEMORY, default_pool, has_dom0};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemoryBudget {
    /// All RAM banks.
    pub ram: u64,
    /// Reserved regions that lie in RAM.
    pub reserved: u64,
    /// What Xen keeps for itself (board default or `[system] xen_memory`).
    pub xen: u64,
    pub dom0: u64,
    /// Guests allocated from Xen's heap.
    pub domains: u64,
    /// Guests placed in static memory ranges.
    pub static_memory: u64,
    /// P2M (ARM) or HAP paging (x86) pools of all guests.
    pub p2m_pools: u64,
    /// Static shared memory with a host address.
    pub shared_memory: u64,
    /// Boot modules placed by the plan (0 until then): they occupy RAM while Xen builds the guests.
    pub modules: u64,
    /// RAM left over.
    pub free: u64,
}

impl MemoryBudget {
    /// Everything the system takes from RAM, modules aside.
    pub fn needed(&self) -> u64 {
        [
            self.xen,
            self.dom0,
            self.domains,
            self.static_memory,
            self.p2m_pools,
            self.shared_memory,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// RAM minus the reserved regions.
    pub fn usable(&self) -> u64 {
        self.ram.saturating_sub(self.reserved)
    }
}

/// Sums what the manifest asks of the board's RAM.
pub fn memory_budget(input: CheckInput<'_>) -> MemoryBudget {
    let m: &Manifest = input.manifest;
    let inv = input.inventory;
    let ram = inv
        .memory
        .iter()
        .fold(0u64, |a, b| a.saturating_add(b.size));
    let reserved = inv
        .reserved
        .iter()
        .filter(|r| inv.memory.iter().any(|b| b.overlaps(&r.region)))
        .fold(0u64, |a, r| a.saturating_add(r.region.size));
    let xen = m
        .system
        .xen_memory
        .as_ref()
        .map_or(input.board.xen_memory, |x| x.value);
    let dom0 = if has_dom0(m) {
        m.dom0
            .as_ref()
            .and_then(|d| d.memory.as_ref())
            .map_or(DEFAULT_DOM0_MEMORY, |x| x.value)
    } else {
        0
    };
    let mut b = MemoryBudget {
        ram,
        reserved,
        xen,
        dom0,
        domains: 0,
        static_memory: 0,
        p2m_pools: 0,
        shared_memory: 0,
        modules: 0,
        free: 0,
    };
    for d in &m.domains {
        if d.static_memory.is_empty() {
            b.domains = b.domains.saturating_add(d.memory.value);
        } else {
            b.static_memory = b.static_memory.saturating_add(d.memory.value);
        }
        let pool = d.p2m_pool.as_ref().map_or_else(
            || default_pool(d.kind.value, d.vcpus.value, d.memory.value),
            |p| p.value,
        );
        b.p2m_pools = b.p2m_pools.saturating_add(pool);
    }
    b.shared_memory = m
        .shared_memory
        .iter()
        .filter(|s| s.host_address.is_some())
        .fold(0u64, |a, s| a.saturating_add(s.size.value));
    b.free = b.usable().saturating_sub(b.needed());
    b
}
