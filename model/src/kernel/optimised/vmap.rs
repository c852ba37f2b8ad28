//! The optimised kernel's virtual-area allocator (`alloc_vmap_area`,
//! `free_vmap_area_noflush`, `__purge_vmap_area_lazy` of v5.18
//! `mm/vmalloc.c`): lowest-address fit with alignment, a guard page after each
//! area, and lazy freeing — a freed range stays reserved until a purge, which
//! happens when more than `lazy_max_pages()` are pending, on `vm_unmap_aliases()`
//! (which `VM_FLUSH_RESET_PERMS` frees call), or when an allocation finds no
//! room. The purge list is global in the kernel, so the caller counts lazy pages
//! across ranges and purges them all ([`super::Core`]).

use std::collections::BTreeMap;

use crate::machine::consts::PAGE_SIZE;

/// One range (vmalloc or modules).
#[derive(Clone)]
pub struct VmapSpace {
    start: u64,
    end: u64,
    /// Reserved ranges (busy or lazily freed): start → end, guard included.
    reserved: BTreeMap<u64, u64>,
    /// Lazily freed ranges awaiting a purge.
    lazy: Vec<u64>,
}

impl VmapSpace {
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            reserved: BTreeMap::new(),
            lazy: Vec::new(),
        }
    }

    /// `size` bytes (guard included) at the lowest `align`ed address that is
    /// not reserved. As in `__alloc_vmap_area()`, an alignment above a page
    /// looks for a free gap of `size + align - 1` bytes, the adjusted length
    /// `find_vmap_lowest_match()` descends by (the kernel may still take a
    /// smaller gap that its walk passes; the model takes none), so an
    /// alignment close to the range's size fails, as Linux 6.1 showed.
    pub fn find(&mut self, size: u64, align: u64) -> Option<u64> {
        let up = |x: u64| x.checked_add(align - 1).map(|v| v & !(align - 1));
        let length = if align > PAGE_SIZE {
            size.checked_add(align - 1)?
        } else {
            size
        };
        let starts = self.reserved.keys().copied().chain([self.end]);
        let ends = [self.start]
            .into_iter()
            .chain(self.reserved.values().copied());
        let cand = ends.zip(starts).find_map(|(gs, ge)| {
            let cand = up(gs)?;
            (ge.checked_sub(gs)? >= length && cand.checked_add(size)? <= ge).then_some(cand)
        })?;
        self.reserved.insert(cand, cand + size);
        Some(cand)
    }

    /// `free_vmap_area_noflush()`: the range stays reserved until purged.
    /// Returns its size in pages, for the global lazy count.
    pub fn free_lazy(&mut self, addr: u64) -> u64 {
        let end = *self
            .reserved
            .get(&addr)
            .expect("freeing a vmap area that is not reserved");
        self.lazy.push(addr);
        (end - addr) / PAGE_SIZE
    }

    /// Appends the busy and the unpurged ranges, each `start..end`.
    pub fn view(&self, busy: &mut Vec<(u64, u64)>, unpurged: &mut Vec<(u64, u64)>) {
        for (&s, &e) in &self.reserved {
            if self.lazy.contains(&s) {
                unpurged.push((s, e));
            } else {
                busy.push((s, e));
            }
        }
    }

    /// `__purge_vmap_area_lazy()`: lazily freed ranges become reusable.
    pub fn purge(&mut self) {
        for a in self.lazy.drain(..) {
            self.reserved.remove(&a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::consts::PMD_SIZE;

    #[test]
    fn freed_ranges_are_reused_only_after_a_purge() {
        let mut s = VmapSpace::new(0x4000_0000, 0x8000_0000);
        let a = s.find(PMD_SIZE + PAGE_SIZE, PMD_SIZE).unwrap();
        let b = s.find(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!((a, b), (0x4000_0000, 0x4000_0000 + PMD_SIZE + PAGE_SIZE));
        assert_eq!(s.free_lazy(a), 513);
        let c = s.find(PMD_SIZE + PAGE_SIZE, PMD_SIZE).unwrap();
        assert_eq!(c, 0x4000_0000 + 2 * PMD_SIZE, "lazily freed: not reused");
        s.purge();
        assert_eq!(s.find(PAGE_SIZE, PAGE_SIZE), Some(a));
    }
}
