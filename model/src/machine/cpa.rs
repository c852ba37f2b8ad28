//! Change of page attributes (`arch/x86/mm/pat/set_memory.c`, v5.18, plus
//! `set_memory_rox` of v6.2): `set_memory_ro/rw/x/nx/rox` on vmalloc and module
//! addresses, with the direct-map alias rule of `cpa_process_alias()`, and the
//! `set_direct_map_*_noflush` pair that `VM_FLUSH_RESET_PERMS` uses on free.
//!
//! The primary walk goes leaf by leaf (`__change_page_attr_set_clr`): a 4 KiB PTE
//! is changed alone; a PMD leaf is changed whole if the request covers it from
//! its first page or leaves its protection as it is, and is split into 512 PTEs
//! otherwise. After each primary unit the same change is applied to the direct-map
//! alias of the frames that unit maps — one 2 MiB block for a whole PMD leaf, one
//! page for a PTE — unless the change is NX-only (`checkalias`); `_PAGE_NX` itself
//! is never applied to the alias (d597416683d5).

use super::Machine;
use super::consts::{PAGE_SIZE, PAGES_PER_PMD, PMD_SIZE};
#[cfg(doc)]
use super::direct_map::DirectMap;
use super::oops::Oops;
use super::page_alloc::run_len;
use super::pgtable::Level;
#[cfg(doc)]
use super::pgtable::PageTables;
use super::prot::Prot;

/// What a CPA call can fail with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpaError {
    /// `-EFAULT`: the range is not mapped ("CPA: called for zero pte").
    Fault,
}

impl Machine {
    /// `change_page_attr_set_clr()` on a vmalloc/module address.
    pub fn change_page_attr_set_clr(
        &mut self,
        addr: u64,
        numpages: u64,
        set: Prot,
        clr: Prot,
    ) -> Result<(), CpaError> {
        self.cpa(addr, numpages, set, clr, false)
    }

    /// `change_page_attr_set_clr()` with its `in_flag`: `collapse` is
    /// `CPA_COLLAPSE`, which only `set_memory_rox()` passes (41d88484c71c).
    fn cpa(
        &mut self,
        addr: u64,
        numpages: u64,
        set: Prot,
        clr: Prot,
        collapse: bool,
    ) -> Result<(), CpaError> {
        self.stats.set_memory_calls += 1;
        // "People should not be passing in unaligned addresses": the address
        // is rounded down and the call goes on, with a WARN_ON_ONCE (every
        // time here: the model does not keep WARN_ONCE state).
        let addr = if addr % PAGE_SIZE != 0 {
            self.oops(Oops::Warn {
                function: "change_page_attr_set_clr",
                message: String::new(),
            });
            addr & !(PAGE_SIZE - 1)
        } else {
            addr
        };
        let checkalias = set.union(clr) != Prot::NX;
        let (alias_set, alias_clr) = (set.without(Prot::NX), clr.without(Prot::NX));
        let mut cur = addr;
        let mut rem = numpages;
        // CPA_FLUSHTLB: some leaf really changed.
        let mut flushtlb = false;
        while rem > 0 {
            let Some(leaf) = self.pgtables.lookup(cur) else {
                self.oops(Oops::Warn {
                    function: "__cpa_process_fault",
                    message: format!(
                        "CPA: called for zero pte. vaddr = {cur:x} cpa->vaddr = {addr:x}"
                    ),
                });
                return Err(CpaError::Fault);
            };
            let new = leaf.prot.apply(set, clr);
            let (first_pfn, n) = match leaf.level {
                Level::Pte => {
                    // This PTE and those after it in its table that map the
                    // frames after its frame, each a primary unit of its own
                    // (its alias changed as one page: change_each).
                    let (n, changed) = self.pgtables.change_ptes(cur, rem, set, clr);
                    flushtlb |= changed;
                    if checkalias {
                        self.dmap.change_each(leaf.pfn, n, alias_set, alias_clr);
                    }
                    cur += n * PAGE_SIZE;
                    rem -= n;
                    continue;
                }
                Level::Pmd => {
                    let offset = (cur - leaf.va) / PAGE_SIZE;
                    let n = rem.min(PAGES_PER_PMD - offset);
                    if new == leaf.prot {
                        // lp_sameprot: nothing to change, keep the leaf.
                    } else if offset == 0 && n == PAGES_PER_PMD {
                        self.pgtables.set_prot(leaf, new);
                        flushtlb = true;
                    } else {
                        self.pgtables.split_pmd(leaf.va);
                        continue;
                    }
                    (leaf.pfn + offset, n)
                }
            };
            if checkalias {
                self.dmap.change(first_pfn, n, alias_set, alias_clr);
            }
            cur += n * PAGE_SIZE;
            rem -= n;
        }
        if collapse && flushtlb && self.cpa_collapse {
            self.cpa_collapse_large_pages(addr, numpages);
        }
        Ok(())
    }

    /// `cpa_flush()` → `cpa_collapse_large_pages()` (41d88484c71c): after a
    /// successful change that flushed, every 2 MiB step of the *primary*
    /// range, from `addr & PMD_MASK` while below its end, goes through
    /// `collapse_large_pages()`. The direct-map alias is never the primary
    /// here (drivers and execmem pass vmalloc addresses), so only vmalloc
    /// PMDs collapse; `collapse_page_count()` counts a collapse in
    /// `/proc/vmstat` only for a direct-map address (`virt_addr_valid()`),
    /// so these are not counted there ([`PageTables::pmd_collapses`] counts
    /// them). A 1 GiB collapse (`collapse_pud_page()`) needs 512 contiguous
    /// PMD leaves under one PUD, which no area of this machine spans.
    fn cpa_collapse_large_pages(&mut self, addr: u64, numpages: u64) {
        let end = addr + numpages * PAGE_SIZE;
        let mut at = addr & !(PMD_SIZE - 1);
        while at < end {
            self.pgtables.collapse_pmd(at);
            at += PMD_SIZE;
        }
    }

    /// `set_memory_ro()`: clear `_PAGE_RW`.
    pub fn set_memory_ro(&mut self, addr: u64, numpages: u64) -> Result<(), CpaError> {
        self.change_page_attr_set_clr(addr, numpages, Prot::NONE, Prot::RW)
    }

    /// `set_memory_rw()`: set `_PAGE_RW`.
    pub fn set_memory_rw(&mut self, addr: u64, numpages: u64) -> Result<(), CpaError> {
        self.change_page_attr_set_clr(addr, numpages, Prot::RW, Prot::NONE)
    }

    /// `set_memory_x()`: clear `_PAGE_NX` (NX-only: the alias is not touched).
    pub fn set_memory_x(&mut self, addr: u64, numpages: u64) -> Result<(), CpaError> {
        self.change_page_attr_set_clr(addr, numpages, Prot::NONE, Prot::NX)
    }

    /// `set_memory_nx()`: set `_PAGE_NX` (NX-only: the alias is not touched).
    pub fn set_memory_nx(&mut self, addr: u64, numpages: u64) -> Result<(), CpaError> {
        self.change_page_attr_set_clr(addr, numpages, Prot::NX, Prot::NONE)
    }

    /// `set_memory_rox()`: clear `_PAGE_RW | _PAGE_NX` in one call; the alias
    /// loses RW only.
    pub fn set_memory_rox(&mut self, addr: u64, numpages: u64) -> Result<(), CpaError> {
        self.cpa(addr, numpages, Prot::NONE, Prot::RW.union(Prot::NX), true)
    }

    /// `set_direct_map_invalid_noflush()` = `__set_pages_np(page, 1)`.
    pub fn set_direct_map_invalid_noflush(&mut self, pfn: u64) {
        self.stats.set_direct_map_calls += 1;
        self.dmap
            .change(pfn, 1, Prot::NONE, Prot::PRESENT.union(Prot::RW));
    }

    /// `set_direct_map_default_noflush()` = `__set_pages_p(page, 1)`.
    pub fn set_direct_map_default_noflush(&mut self, pfn: u64) {
        self.stats.set_direct_map_calls += 1;
        self.dmap
            .change(pfn, 1, Prot::PRESENT.union(Prot::RW), Prot::NONE);
    }

    /// `set_direct_map_valid_noflush(page, nr, valid)` (v6.13): `__set_pages_p`
    /// or `__set_pages_np` over `nr` pages from `pfn` in one CPA call, so a
    /// whole 2 MiB block changes its leaf without a split.
    pub fn set_direct_map_valid_noflush(&mut self, pfn: u64, nr: u64, valid: bool) {
        self.stats.set_direct_map_calls += 1;
        let p = Prot::PRESENT.union(Prot::RW);
        if valid {
            self.dmap.change(pfn, nr, p, Prot::NONE);
        } else {
            self.dmap.change(pfn, nr, Prot::NONE, p);
        }
    }

    /// The `VM_FLUSH_RESET_PERMS` part of `vm_remove_mappings()` (v5.18): every
    /// 4 KiB backing page's alias is set invalid, then back to default
    /// ("HUGE_VMALLOC passes small pages to set_direct_map"). A page inside a
    /// large direct-map leaf splits it, and splits are never merged back.
    /// (One call per page, as the kernel makes them, walked a run of
    /// consecutive frames at a time: [`DirectMap::change_each`].)
    pub fn vm_reset_perms(&mut self, pages: &[u64]) {
        let p = Prot::PRESENT.union(Prot::RW);
        for (set, clr) in [(Prot::NONE, p), (p, Prot::NONE)] {
            let mut i = 0;
            while i < pages.len() {
                let n = run_len(&pages[i..]);
                self.stats.set_direct_map_calls += n as u64;
                self.dmap.change_each(pages[i], n as u64, set, clr);
                i += n;
            }
        }
    }
}
