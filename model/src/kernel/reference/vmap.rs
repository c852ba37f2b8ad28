//! The reference kernel's virtual-area allocator: first fit from the bottom of a
//! range, each area followed by an unmapped guard page, addresses reusable as
//! soon as they are freed. Deliberately simple (no lazy purge).

use std::collections::BTreeMap;

use crate::machine::consts::PAGE_SIZE;

/// One virtual range (vmalloc or modules) and the areas in it.
#[derive(Clone)]
pub struct VmapSpace {
    start: u64,
    end: u64,
    /// start → end of each area, guard page included.
    used: BTreeMap<u64, u64>,
}

impl VmapSpace {
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            used: BTreeMap::new(),
        }
    }

    /// Reserves `size` bytes plus a guard page at the lowest `align`ed address
    /// that fits (`align` a power of two; below a page, a page). Like
    /// `__alloc_vmap_area()`, an alignment above a page searches for a free
    /// gap of `size + align - 1` bytes (`find_vmap_lowest_match()`'s adjusted
    /// length), so a gap that only an exact placement would fit is passed
    /// over, and an alignment close to the range's size fails (Linux 6.1
    /// showed it: `replay --on linux corpus/examples/vmalloc-align.trace`).
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        let align = align.max(PAGE_SIZE);
        let up = |x: u64| x.checked_add(align - 1).map(|v| v & !(align - 1));
        let need = size.checked_add(PAGE_SIZE)?;
        let length = if align > PAGE_SIZE {
            need.checked_add(align - 1)?
        } else {
            need
        };
        // The free gaps in address order: from each range's end (or the
        // start) to the next range's start (or the end).
        let starts = self.used.keys().copied().chain([self.end]);
        let ends = [self.start].into_iter().chain(self.used.values().copied());
        let cand = ends.zip(starts).find_map(|(gs, ge)| {
            let cand = up(gs)?;
            (ge.checked_sub(gs)? >= length && cand.checked_add(need)? <= ge).then_some(cand)
        })?;
        self.used.insert(cand, cand + need);
        Some(cand)
    }

    /// Every reserved range, guard page included.
    pub fn busy(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.used.iter().map(|(&s, &e)| (s, e))
    }

    pub fn free(&mut self, addr: u64) {
        self.used
            .remove(&addr)
            .expect("freeing an address that was never allocated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_with_guard_pages_and_reuse() {
        let mut s = VmapSpace::new(0x1000_0000, 0x2000_0000);
        let a = s.alloc(0x2000, PAGE_SIZE).unwrap();
        let b = s.alloc(0x1000, PAGE_SIZE).unwrap();
        assert_eq!(a, 0x1000_0000);
        assert_eq!(b, a + 0x3000, "one guard page between areas");
        s.free(a);
        assert_eq!(
            s.alloc(0x1000, PAGE_SIZE),
            Some(a),
            "freed space is reused first"
        );
        assert_eq!(s.alloc(0x1000, 0x10_0000), Some(0x1010_0000));
    }
}
