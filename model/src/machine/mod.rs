//! The simulated machine and the core mm both kernels share ("physics"): frames,
//! `struct page`, the buddy allocator, kernel page tables, the direct map, CPA and
//! the CPU. It knows nothing of the kernels built on it.

pub mod buddy;
pub mod consts;
pub mod cpa;
pub mod cpu;
pub mod direct_map;
pub mod frames;
pub mod lazy;
pub mod list;
pub mod oops;
pub mod page;
pub mod page_alloc;
pub mod pgtable;
pub mod prot;
pub mod text;

use buddy::Buddy;
use direct_map::{DirectMap, DmapLeaf};
use frames::Frames;
use oops::Oops;
use page::Memmap;
use pgtable::PageTables;

pub use page_alloc::Gfp;
pub use prot::Prot;

/// The hardware a run is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MachineConfig {
    /// NUMA nodes (1 or 2), each with an equal share of memory.
    pub nodes: u8,
    /// Memory size in MiB (a multiple of 4 MiB per node).
    pub mem_mib: u32,
    /// The boot leaf size of the direct map.
    pub dmap_leaf: DmapLeaf,
    /// Which design the optimised kernel boots as. The machine does not read
    /// it; it travels with the machine's config so that traces (`config:`),
    /// fuzz inputs (the config byte) and the CLI can choose it.
    pub design: Design,
}

/// The optimised kernel's designs of executable memory for BPF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Design {
    /// `pack-2m`: `PMD_SIZE × nodes` packs on huge (PMD-mapped, order-9
    /// backed) `module_alloc` memory, the design the 5.18 merge aimed at.
    #[default]
    Pack2m,
    /// `linux-6.1`: x86 as 6.1 ships it — `PMD_SIZE × nodes` packs from a
    /// `module_alloc()` that is never huge (order-0 pages, PTE-mapped, since
    /// 559089e0a93d made huge vmalloc opt-in), `set_memory_ro` + `_x`,
    /// `VM_FLUSH_RESET_PERMS`.
    Linux61,
    /// `execmem`: x86 of 2026 — BPF packs and larger programs from
    /// `execmem_alloc()` over the ROX cache of `mm/execmem.c` (2 MiB blocks
    /// of huge vmalloc, trap-filled and `set_memory_rox`ed once, invalidated
    /// on free, released when a whole PMD is free), and `set_memory_rox()`
    /// collapsing split PMDs (41d88484c71c).
    Execmem,
}

impl Design {
    pub const ALL: [Design; 3] = [Design::Pack2m, Design::Linux61, Design::Execmem];

    pub fn name(self) -> &'static str {
        match self {
            Design::Pack2m => "pack-2m",
            Design::Linux61 => "linux-6.1",
            Design::Execmem => "execmem",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }
}

impl Default for MachineConfig {
    fn default() -> Self {
        Self {
            nodes: 1,
            mem_mib: 64,
            dmap_leaf: DmapLeaf::M2,
            design: Design::Pack2m,
        }
    }
}

impl MachineConfig {
    /// Memory sizes a fuzz input's config byte can name (traces and `frag
    /// --mem` may ask for any size up to [`MachineConfig::MAX_MEM_MIB`]).
    pub const MEM_SIZES_MIB: [u32; 4] = [16, 32, 64, 128];
    /// The largest machine: 4 GiB, lazily materialised (a frame, a `struct
    /// page`, a buddy link exists only once something touched it).
    pub const MAX_MEM_MIB: u32 = 4096;

    pub fn nr_pages(&self) -> u64 {
        self.mem_mib as u64 * 256
    }

    /// Checks the configuration; the error names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=2).contains(&self.nodes) {
            return Err(format!("nodes must be 1 or 2, not {}", self.nodes));
        }
        let per_node_mib = 4 * u32::from(self.nodes);
        if !(16..=Self::MAX_MEM_MIB).contains(&self.mem_mib) || self.mem_mib % per_node_mib != 0 {
            return Err(format!(
                "mem must be 16M to {}M, a multiple of {per_node_mib}M, not {}M",
                Self::MAX_MEM_MIB,
                self.mem_mib
            ));
        }
        Ok(())
    }
}

/// Counters of work done, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineStats {
    /// `set_memory_*()` calls.
    pub set_memory_calls: u64,
    /// `set_direct_map_*_noflush()` calls.
    pub set_direct_map_calls: u64,
}

/// The machine.
#[derive(Clone)]
pub struct Machine {
    /// Every frame's `struct page`.
    pub mm: Memmap,
    /// Every frame's contents.
    pub frames: Frames,
    buddy: Buddy,
    /// Page tables of the vmalloc and module ranges.
    pub pgtables: PageTables,
    /// The direct map.
    pub dmap: DirectMap,
    kdata: [u64; list::KDATA_WORDS],
    oopses: Vec<Oops>,
    leaked: Vec<(u64, u32)>,
    pub stats: MachineStats,
    /// `free_pages_prepare()` clears `page->private` (the 2026 fix, "mm/
    /// page_alloc: clear page->private in free_pages_prepare()"); the
    /// optimised kernel's `split-keeps-private` quirk turns it off.
    pub free_clears_private: bool,
    /// `set_memory_rox()` collapses PTE tables back into PMD leaves
    /// (`CPA_COLLAPSE`, 41d88484c71c, v6.15): on for kernels from then on
    /// (the optimised kernel's `execmem` design), off before.
    pub cpa_collapse: bool,
}

impl Machine {
    /// Boots a machine: all memory free in max-order blocks, the direct map in
    /// boot leaves, the driver's list head initialised.
    pub fn new(cfg: MachineConfig) -> Self {
        cfg.validate().expect("invalid machine config");
        let nr = cfg.nr_pages();
        let mm = Memmap::new(nr);
        let buddy = Buddy::new(&mm, cfg.nodes as usize);
        let mut m = Self {
            mm,
            frames: Frames::new(nr),
            buddy,
            pgtables: PageTables::default(),
            dmap: DirectMap::new(nr, cfg.dmap_leaf),
            kdata: [0; list::KDATA_WORDS],
            oopses: Vec::new(),
            leaked: Vec::new(),
            stats: MachineStats::default(),
            free_clears_private: true,
            cpa_collapse: false,
        };
        m.init_list_head(list::DRIVER_LIST)
            .expect("driver list head is in kernel data");
        m
    }

    /// Whether the buddy allocator holds a free block of `order` or larger
    /// (on any node).
    pub fn has_free_block(&self, order: u32) -> bool {
        (order..consts::MAX_ORDER).any(|o| self.buddy.nr_free(o) > 0)
    }

    pub fn nr_pages(&self) -> u64 {
        self.mm.nr_pages()
    }

    pub fn nr_nodes(&self) -> usize {
        self.buddy.nr_nodes()
    }

    /// The machine's change log as the region checks read it: leaves that
    /// appeared or disappeared in the vmalloc page tables, and blocks the
    /// buddy allocator handed out or took back, each counted since boot. A
    /// kernel cannot make, move or drop a mapped region without changing
    /// one of them, whichever call it was in.
    pub fn region_epoch(&self) -> (u64, u64) {
        (self.pgtables.presence_changes(), self.buddy.events())
    }

    /// Records an oops.
    pub fn oops(&mut self, o: Oops) {
        self.oopses.push(o);
    }

    /// Every oops so far, oldest first.
    pub fn oopses(&self) -> &[Oops] {
        &self.oopses
    }
}
