//! The page allocator's entry points and `struct page` life cycle, after v5.18
//! `mm/page_alloc.c` and `include/linux/mm.h` with `CONFIG_DEBUG_VM=y`:
//! `alloc_pages_node`, `prep_new_page`, `prep_compound_page`, `split_page`,
//! `__free_pages`, `free_pages_prepare` with `free_tail_pages_check` and
//! `check_free_page`, `bad_page`, and `get_page` / `put_page` / `page_count`.

use super::Machine;
use super::buddy::taken_off_list;
use super::consts::PMD_ORDER;
use super::oops::{BugSite, Oops, PageDump, bug};
use super::page::{
    COMPOUND_PAGE_DTOR, PAGE_MAPPING_FLAGS, Page, TAIL_MAPPING, W_LRU_NEXT, page_ptr, pg,
};

/// The GFP bits the model distinguishes (all allocations are `GFP_KERNEL`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gfp {
    /// `__GFP_ZERO`: the pages are cleared before they are handed out.
    pub zero: bool,
    /// `__GFP_COMP`: a high-order block becomes one compound page.
    pub comp: bool,
}

impl Gfp {
    pub const KERNEL: Gfp = Gfp {
        zero: false,
        comp: false,
    };
}

impl Machine {
    /// `alloc_pages_node(nid, gfp, order)`; `None` is `NUMA_NO_NODE` (the local
    /// node of the one CPU, node 0, then the others).
    pub fn alloc_pages_node(&mut self, nid: Option<usize>, gfp: Gfp, order: u32) -> Option<u64> {
        let nid = nid.unwrap_or(0);
        loop {
            let pfn = self.buddy.rmqueue(&mut self.mm, order, nid)?;
            if self.take_new_block(pfn, order, gfp) {
                return Some(pfn);
            }
        }
    }

    /// `check_new_pages()`, then `prep_new_page()`: false if a bad page was
    /// reported, and the block dropped.
    fn take_new_block(&mut self, pfn: u64, order: u32, gfp: Gfp) -> bool {
        if self.check_new_pages(pfn, order) {
            self.leaked.push((pfn, order));
            return false;
        }
        self.prep_new_page(pfn, order, gfp);
        true
    }

    /// `alloc_pages_node(nid, gfp, 0)` up to `nr` times, stopping at the first
    /// failure: the page-by-page loop of `__vmalloc_area_node()`. Same result
    /// as that loop; where the next block the buddy allocator would split for
    /// order-0 pages is no larger than what is still wanted, it is taken a
    /// block at a time ([`Buddy::rmqueue_run`](super::buddy::Buddy::rmqueue_run)),
    /// and each page then gets `check_new_pages()` and `prep_new_page()` in
    /// order (those see only the page itself, which the buddy allocator left
    /// as the page-by-page loop would).
    pub fn alloc_pages_node_each(&mut self, nid: Option<usize>, gfp: Gfp, nr: usize) -> Vec<u64> {
        let mut pages = Vec::with_capacity(nr);
        while pages.len() < nr {
            let node = nid.unwrap_or(0);
            let want = (nr - pages.len()) as u64;
            match self.buddy.next_order0_block(node) {
                Some(order) if order > 0 && 1 << order <= want => {
                    let pfn = (self.buddy.rmqueue_run(&mut self.mm, order, node))
                        .expect("the block is there");
                    self.take_new_pages(pfn, 1 << order, gfp, &mut pages);
                }
                _ => match self.alloc_pages_node(nid, gfp, 0) {
                    Some(p) => pages.push(p),
                    None => break,
                },
            }
        }
        pages
    }

    /// [`Machine::take_new_block`] of order 0 on each page of `pfn..pfn + n`
    /// in turn, adding those taken to `pages`, after the pages after the
    /// first are left as the buddy allocator's delete leaves them
    /// ([`Buddy::rmqueue_run`](super::buddy::Buddy::rmqueue_run); the first
    /// already is, and a delete writes the same whatever it finds). Each
    /// call sees and changes only its own page, so when no page of the run
    /// is bad the checks are made for all of them first and the delete and
    /// the preparation applied to all of them after, in one pass a chunk of
    /// `struct page`s at a time.
    fn take_new_pages(&mut self, pfn: u64, n: u64, gfp: Gfp, pages: &mut Vec<u64>) {
        if (self.mm).any_page(pfn, n, |page| bad_at_prep(&taken_off_list(page))) {
            self.mm.map_pages(pfn, n, taken_off_list);
            for p in pfn..pfn + n {
                if self.take_new_block(p, 0, gfp) {
                    pages.push(p);
                }
            }
            return;
        }
        self.mm.map_pages(pfn, n, |page| {
            let mut page = taken_off_list(page);
            page.set_private(0);
            page.set_refcount(1);
            page
        });
        if gfp.zero {
            self.frames.zero_frames(pfn, n);
        }
        pages.extend(pfn..pfn + n);
    }

    /// `check_new_pages()`: every page of the block in the expected state.
    fn check_new_pages(&mut self, pfn: u64, order: u32) -> bool {
        if !self.mm.any_page(pfn, 1 << order, bad_at_prep) {
            return false;
        }
        for p in pfn..pfn + (1 << order) {
            if let Some(reason) = page_bad_reason(self.mm.page(p), pg::CHECK_AT_PREP) {
                self.bad_page(p, reason);
                return true;
            }
        }
        false
    }

    /// `prep_new_page()` → `post_alloc_hook()`: `private = 0`, `_refcount = 1`,
    /// zeroing for `__GFP_ZERO`, then `prep_compound_page()` for `__GFP_COMP`.
    fn prep_new_page(&mut self, pfn: u64, order: u32, gfp: Gfp) {
        let head = self.mm.page_mut(pfn);
        head.set_private(0);
        head.set_refcount(1);
        if gfp.zero {
            self.frames.zero_frames(pfn, 1 << order);
        }
        if order > 0 && gfp.comp {
            self.prep_compound_page(pfn, order);
        }
    }

    /// `prep_compound_page()` (v5.18): `__SetPageHead`, then every tail gets
    /// `mapping = TAIL_MAPPING` and `compound_head = head | 1`, then the head's
    /// metadata goes into the first tail (`compound_dtor`, `compound_order`,
    /// `compound_nr`, `compound_mapcount = -1`, `compound_pincount = 0`).
    pub fn prep_compound_page(&mut self, pfn: u64, order: u32) {
        self.mm.page_mut(pfn).set_flag(pg::HEAD);
        for p in pfn + 1..pfn + (1 << order) {
            let tail = self.mm.page_mut(p);
            tail.set_mapping(TAIL_MAPPING);
            tail.set_word(W_LRU_NEXT, page_ptr(pfn) | 1);
        }
        let first = self.mm.page_mut(pfn + 1);
        first.set_compound_dtor(COMPOUND_PAGE_DTOR);
        first.set_compound_order_byte(order as u8);
        first.set_compound_nr(1 << order);
        first.set_compound_mapcount_raw(-1);
        // Unconditional since "mm: Make compound_pincount always available"
        // (5.18): the pincount lives in the first tail, which every compound
        // page has.
        first.set_compound_pincount(0);
    }

    /// `compound_order()`: `page[1].compound_order` of a head, else 0.
    pub fn compound_order(&self, pfn: u64) -> u32 {
        if self.mm.page(pfn).is_head() && pfn + 1 < self.mm.nr_pages() {
            self.mm.page(pfn + 1).compound_order() as u32
        } else {
            0
        }
    }

    /// `split_page()` (v5.18): every subpage of a non-compound high-order block
    /// becomes an order-0 page with `_refcount = 1`. Nothing else is touched:
    /// stale `private` and `lru` words stay as they were.
    pub fn split_page(&mut self, pfn: u64, order: u32) {
        if self.mm.page(pfn).is_compound() {
            return self.vm_bug_on_page(pfn, bug::SPLIT_PAGE_COMPOUND);
        }
        if self.mm.page(pfn).refcount() == 0 {
            return self.vm_bug_on_page(pfn, bug::SPLIT_PAGE_COUNT);
        }
        self.mm.map_pages(pfn + 1, (1 << order) - 1, |page| {
            let mut page = *page;
            page.set_refcount(1);
            page
        });
    }

    /// `__free_pages()` (v5.18): drop a reference; free the block when it was
    /// the last; for a non-compound high-order block whose head is still
    /// referenced, free the rest of it as smaller blocks.
    pub fn __free_pages(&mut self, pfn: u64, order: u32) {
        if self.put_page_testzero(pfn) {
            self.free_the_page(pfn, order);
        } else if !self.mm.page(pfn).is_head() {
            let mut o = order;
            while o > 0 {
                o -= 1;
                self.free_the_page(pfn + (1 << o), o);
            }
        }
    }

    /// `__free_pages(page, 0)` for each page in turn: `__vunmap()`'s loop over
    /// `area->pages`. Same result as calling [`Machine::__free_pages`] page by
    /// page; an aligned run of `2^k` consecutive pages that all reach the
    /// buddy allocator is merged there a run at a time
    /// ([`Buddy::free_run_ascending`](super::buddy::Buddy::free_run_ascending)).
    /// The per-page checks run first for the whole run, which changes nothing
    /// they see: the buddy allocator writes only free pages' `struct page`s.
    pub fn __free_pages_each(&mut self, pages: &[u64]) {
        let mut i = 0;
        while i < pages.len() {
            let pfn = pages[i];
            // The longest run of consecutive pfns from here that pfn's
            // alignment allows (at most a PMD's worth), rounded down to 2^k.
            let cap = (1 << pfn.trailing_zeros().min(PMD_ORDER)).min(pages.len() - i);
            let run = if consecutive(&pages[i..i + cap]) {
                cap
            } else {
                run_len(&pages[i..i + cap])
            };
            let k = run.ilog2();
            if k == 0 {
                self.__free_pages(pfn, 0);
                i += 1;
                continue;
            }
            let n = 1u64 << k;
            if self.free_pages_cleanly(pfn, n) {
                self.buddy.free_run_ascending(&mut self.mm, pfn, k);
                i += n as usize;
                continue;
            }
            let mut freed = Vec::with_capacity(n as usize);
            for p in pfn..pfn + n {
                // __free_pages(p, 0) up to the buddy allocator.
                if self.put_page_testzero(p) && self.prepare_or_leak(p, 0) {
                    freed.push(p);
                }
            }
            if freed.len() as u64 == n {
                self.buddy.free_run_ascending(&mut self.mm, pfn, k);
            } else {
                for p in freed {
                    self.buddy.free_one_page(&mut self.mm, p, 0);
                }
            }
            i += n as usize;
        }
    }

    /// `put_page_testzero()` and `free_pages_prepare(page, 0)` on each page of
    /// `pfn..pfn + n`, when each would drop its last reference and pass every
    /// check (which see only the page itself): then all of them are changed
    /// as those would change them, a chunk of `struct page`s at a time, and
    /// it returns true. Otherwise it changes nothing and returns false.
    fn free_pages_cleanly(&mut self, pfn: u64, n: u64) -> bool {
        let clear_private = self.free_clears_private;
        // The page once put_page_testzero() took its last reference and
        // free_pages_prepare() dropped an anon or movable mapping.
        let unmapped = |page: &Page| {
            let mut p = *page;
            p.set_refcount(0);
            if p.mapping() & PAGE_MAPPING_FLAGS != 0 {
                p.set_mapping(0);
            }
            p
        };
        let clean = |page: &Page| {
            (page.refcount() == 1)
                & !page.is_tail()
                & !page_is_bad(&unmapped(page), pg::CHECK_AT_FREE)
        };
        if self.mm.any_page(pfn, n, |page| !clean(page)) {
            return false;
        }
        self.mm.map_pages(pfn, n, |page| {
            let mut page = unmapped(page);
            page.set_word(0, page.flags() & !pg::CHECK_AT_PREP);
            if clear_private {
                page.set_private(0);
            }
            page
        });
        true
    }

    /// `put_page_testzero()`: `VM_BUG_ON_PAGE(page_ref_count(page) == 0)`, then
    /// decrement and test.
    fn put_page_testzero(&mut self, pfn: u64) -> bool {
        let page = self.mm.page_mut(pfn);
        let count = page.refcount();
        if count == 0 {
            self.vm_bug_on_page(pfn, bug::PUT_PAGE_TESTZERO);
            return false;
        }
        page.set_refcount(count - 1);
        count == 1
    }

    fn free_the_page(&mut self, pfn: u64, order: u32) {
        if self.prepare_or_leak(pfn, order) {
            self.buddy.free_one_page(&mut self.mm, pfn, order);
        }
    }

    /// `free_pages_prepare()`; false if it failed: `bad_page()` already
    /// spoke, and the block is never returned.
    fn prepare_or_leak(&mut self, pfn: u64, order: u32) -> bool {
        let ok = self.free_pages_prepare(pfn, order);
        if !ok {
            self.leaked.push((pfn, order));
        }
        ok
    }

    /// `free_pages_prepare(page, order, check_free = true)` of v5.18.
    fn free_pages_prepare(&mut self, pfn: u64, order: u32) -> bool {
        if self.mm.page(pfn).is_tail() {
            self.vm_bug_on_page(pfn, bug::FREE_PAGES_PREPARE_TAIL);
            return false;
        }
        let mut bad = 0;
        if order > 0 {
            let compound = self.mm.page(pfn).is_compound();
            if compound && self.compound_order(pfn) != order {
                self.vm_bug_on_page(pfn, bug::FREE_PAGES_PREPARE_ORDER);
                return false;
            }
            for p in pfn + 1..pfn + (1 << order) {
                if compound && !self.free_tail_pages_check(pfn, p) {
                    bad += 1;
                }
                if let Some(reason) = page_bad_reason(self.mm.page(p), pg::CHECK_AT_FREE) {
                    self.bad_page(p, reason);
                    bad += 1;
                    continue;
                }
                let tail = self.mm.page_mut(p);
                tail.set_word(0, tail.flags() & !pg::CHECK_AT_PREP);
            }
        }
        let clear_private = self.free_clears_private;
        let page = self.mm.page_mut(pfn);
        if page.mapping() & PAGE_MAPPING_FLAGS != 0 {
            page.set_mapping(0);
        }
        let reason = page_bad_reason(page, pg::CHECK_AT_FREE);
        if reason.is_none() && bad == 0 {
            page.set_word(0, page.flags() & !pg::CHECK_AT_PREP);
            if clear_private {
                page.set_private(0);
            }
            return true;
        }
        if let Some(reason) = reason {
            self.bad_page(pfn, reason);
        }
        false
    }

    /// `free_tail_pages_check()` of v5.18 (`CONFIG_DEBUG_VM`). Returns true when
    /// the tail is sane. Either way it ends with `mapping = NULL` and
    /// `clear_compound_head()`.
    fn free_tail_pages_check(&mut self, head: u64, p: u64) -> bool {
        let reason = match p - head {
            // the first tail page: ->mapping may be compound_mapcount()
            1 => self.compound_mapcount(p).and_then(|mc| match mc {
                0 => None,
                _ => Some("nonzero compound_mapcount"),
            }),
            // the second tail page: ->mapping is deferred_list.next
            2 => None,
            _ => (self.mm.page(p).mapping() != TAIL_MAPPING)
                .then_some("corrupted mapping in tail page"),
        };
        let reason = reason.or_else(|| {
            let page = self.mm.page(p);
            if !page.is_tail() {
                Some("PageTail not set")
            } else if self.mm.compound_head(p) != Ok(head) {
                Some("compound_head not consistent")
            } else {
                None
            }
        });
        if let Some(r) = reason {
            self.bad_page(p, r);
        }
        let page = self.mm.page_mut(p);
        page.set_mapping(0);
        page.set_word(W_LRU_NEXT, 0);
        reason.is_none()
    }

    /// `compound_mapcount(page)`, which 5.18 makes
    /// `folio_entire_mapcount(page_folio(page))`: the folio is
    /// `compound_head(page)`, `VM_BUG_ON_FOLIO(!folio_test_large(folio))`
    /// unless it is a head page, then its first tail holds the mapcount
    /// (biased by -1). `None` after a BUG.
    fn compound_mapcount(&mut self, pfn: u64) -> Option<i32> {
        let head = self.head_or_oops(pfn)?;
        if !self.mm.page(head).is_head() {
            self.vm_bug_on_page(head, bug::FOLIO_ENTIRE_MAPCOUNT);
            return None;
        }
        let first = head + 1;
        (first < self.mm.nr_pages())
            .then(|| self.mm.page(first).compound_mapcount_raw().wrapping_add(1))
    }

    /// `bad_page()`: report, reset `_mapcount` (so `PageBuddy` cannot confuse
    /// anyone), taint. The caller leaks the block.
    fn bad_page(&mut self, pfn: u64, reason: &'static str) {
        let dump = PageDump::capture(&self.mm, pfn);
        self.oops(Oops::BadPage { reason, dump });
        self.mm.page_mut(pfn).set_mapcount_raw(-1);
    }

    /// `VM_BUG_ON_PAGE()` / `VM_BUG_ON_FOLIO()` at `site`: dump the page (the
    /// folio's head for the latter) and BUG (the operation stops there).
    pub(crate) fn vm_bug_on_page(&mut self, pfn: u64, site: BugSite) {
        let dump = PageDump::capture(&self.mm, pfn);
        self.oops(Oops::Bug {
            site,
            dump: Some(dump),
        });
    }

    /// `compound_head()` for a driver's page, oopsing on a wild head pointer.
    fn head_or_oops(&mut self, pfn: u64) -> Option<u64> {
        match self.mm.compound_head(pfn) {
            Ok(h) => Some(h),
            Err(ptr) => {
                self.wild_access(ptr, super::oops::Access::Read);
                None
            }
        }
    }

    /// `get_page()` = `folio_get(page_folio(page))`: the reference lands on the
    /// head; `VM_BUG_ON_FOLIO(folio_ref_zero_or_close_to_overflow(folio))`.
    pub fn get_page(&mut self, pfn: u64) {
        let Some(head) = self.head_or_oops(pfn) else {
            return;
        };
        let count = self.mm.page(head).refcount();
        if (count as u32).wrapping_add(127) <= 127 {
            return self.vm_bug_on_page(head, bug::FOLIO_GET);
        }
        self.mm.page_mut(head).set_refcount(count + 1);
    }

    /// `put_page()` = `folio_put(page_folio(page))`: drop the head's reference
    /// (`folio_put_testzero()` is `put_page_testzero()` of the head in 5.18,
    /// with its `VM_BUG_ON_PAGE`); the last one frees the page (a compound
    /// page as a whole, with `compound_order()`), which runs the free-time
    /// checks.
    pub fn put_page(&mut self, pfn: u64) {
        let Some(head) = self.head_or_oops(pfn) else {
            return;
        };
        let count = self.mm.page(head).refcount();
        if count == 0 {
            return self.vm_bug_on_page(head, bug::PUT_PAGE_TESTZERO);
        }
        self.mm.page_mut(head).set_refcount(count - 1);
        if count == 1 {
            let order = self.compound_order(head);
            self.free_the_page(head, order);
        }
    }

    /// `page_count()` = `folio_ref_count(page_folio(page))`.
    pub fn page_count(&mut self, pfn: u64) -> Option<i32> {
        let head = self.head_or_oops(pfn)?;
        Some(self.mm.page(head).refcount())
    }

    /// `SetPageReserved()` (`PF_NO_COMPOUND`: the page's own flags; the
    /// compound check is `CONFIG_DEBUG_VM_PGFLAGS` only).
    pub fn set_page_reserved(&mut self, pfn: u64) {
        self.mm.page_mut(pfn).set_flag(pg::RESERVED);
    }

    /// `ClearPageReserved()`.
    pub fn clear_page_reserved(&mut self, pfn: u64) {
        self.mm.page_mut(pfn).clear_flag(pg::RESERVED);
    }

    /// Free pages in the buddy allocator.
    pub fn nr_free_pages(&self) -> u64 {
        self.buddy.nr_free_pages()
    }

    /// Is `pfn` in a free block of the buddy allocator?
    pub fn page_is_free(&self, pfn: u64) -> bool {
        self.buddy.is_free(pfn)
    }

    /// Is any of `pfn..pfn + n` in a free block of the buddy allocator?
    pub fn any_page_free(&self, pfn: u64, n: u64) -> bool {
        self.buddy.any_free(pfn, n)
    }

    /// Blocks (pfn, order) that were never returned because a check failed.
    pub fn leaked_blocks(&self) -> &[(u64, u32)] {
        &self.leaked
    }
}

/// Whether `pfns` are consecutive, each one more than the one before. One
/// pass with no early exit, so that it vectorises (and, in a fuzz build,
/// bumps one coverage counter per pass rather than one per pfn).
fn consecutive(pfns: &[u64]) -> bool {
    let Some(&first) = pfns.first() else {
        return true;
    };
    // (Wrapping, so that the fuzz build's overflow checks leave it one pass.)
    (pfns.iter().enumerate()).fold(true, |ok, (j, &p)| ok & (p.wrapping_sub(first) == j as u64))
}

/// How many of `pfns`, from the first, are consecutive (at least 1).
pub(super) fn run_len(pfns: &[u64]) -> usize {
    1 + (pfns.windows(2)).take_while(|w| w[1] == w[0] + 1).count()
}

/// Would `check_new_pages()` find `page` bad?
fn bad_at_prep(page: &Page) -> bool {
    page_is_bad(page, pg::CHECK_AT_PREP)
}

/// `page_bad_reason(page, check_flags).is_some()` without naming the
/// reason: one expression with no branch, for the checks of a run of pages
/// ([`Memmap::any_page`](super::page::Memmap::any_page) folds it over a
/// chunk of `struct page`s in one pass).
fn page_is_bad(page: &Page, check_flags: u64) -> bool {
    (page.mapcount_raw() != -1)
        | (page.mapping() != 0)
        | (page.refcount() != 0)
        | (page.flags() & check_flags != 0)
        | (page.memcg_data() != 0)
}

/// `page_expected_state()` + `page_bad_reason()`: the last check that fails
/// names the reason, as in the kernel.
fn page_bad_reason(page: &Page, check_flags: u64) -> Option<&'static str> {
    let mut reason = None;
    if page.mapcount_raw() != -1 {
        reason = Some("nonzero mapcount");
    }
    if page.mapping() != 0 {
        reason = Some("non-NULL mapping");
    }
    if page.refcount() != 0 {
        reason = Some("nonzero _refcount");
    }
    if page.flags() & check_flags != 0 {
        reason = Some(if check_flags == pg::CHECK_AT_PREP {
            "PAGE_FLAGS_CHECK_AT_PREP flag(s) set"
        } else {
            "PAGE_FLAGS_CHECK_AT_FREE flag(s) set"
        });
    }
    if page.memcg_data() != 0 {
        reason = Some("page still charged to cgroup");
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::page::{W_COUNTS, W_FLAGS, W_MAPPING, W_MEMCG};

    /// A machine with 64 pages handed out by `vmalloc`'s loop: one block,
    /// taken as a run.
    fn run_of_64() -> (Machine, Vec<u64>) {
        let mut m = Machine::new(crate::machine::MachineConfig::default());
        let pages = m.alloc_pages_node_each(None, Gfp::KERNEL, 64);
        assert!(consecutive(&pages) && pages.len() == 64 && pages[0] % 64 == 0);
        (m, pages)
    }

    /// `vmalloc`'s loop taken a block at a time leaves every `struct page`
    /// and the free lists as `alloc_pages_node(order 0)` page by page does,
    /// over free lists scattered by allocations and frees of mixed orders
    /// and free pages whose `lru` words a stale user scribbled on.
    #[test]
    fn a_run_taken_a_block_at_a_time_is_the_page_by_page_loop() {
        let mut m = Machine::new(crate::machine::MachineConfig::default());
        let mut held = Vec::new();
        for (i, order) in [0, 3, 1, 5, 0, 2, 7, 4, 0, 6, 1, 9].into_iter().enumerate() {
            let pfn = m.alloc_pages_node(None, Gfp::KERNEL, order).unwrap();
            if i % 3 == 1 {
                m.__free_pages(pfn, order);
                m.mm.page_mut(pfn + (1 << order) - 1)
                    .set_word(W_LRU_NEXT, 0x5a5a);
            } else {
                held.push((pfn, order));
            }
        }
        let mut loop_ = m.clone();
        let pages = m.alloc_pages_node_each(None, Gfp::KERNEL, 700);
        let one_by_one: Vec<u64> = (0..700)
            .map(|_| loop_.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap())
            .collect();
        assert_eq!(pages, one_by_one);
        assert!(
            pages.windows(2).any(|w| w[1] == w[0] + 1),
            "runs were taken"
        );
        for pfn in 0..m.nr_pages() {
            let words = |m: &Machine| (0..8).map(|w| m.mm.page(pfn).word(w)).collect::<Vec<_>>();
            assert_eq!(words(&m), words(&loop_), "pfn {pfn:#x}");
        }
        assert_eq!(m.nr_free_pages(), loop_.nr_free_pages());
        assert!(held.len() > 6);
    }

    /// A run freed while every page is still referenced twice only drops a
    /// reference of each: nothing reaches the buddy allocator.
    #[test]
    fn a_run_still_referenced_is_not_freed() {
        let (mut m, pages) = run_of_64();
        m.mm.update_pages(pages[0], 64, |p| p.set_refcount(2));
        m.__free_pages_each(&pages);
        for &p in &pages {
            assert_eq!(m.mm.page(p).refcount(), 1, "pfn {p:#x}");
            assert!(!m.page_is_free(p), "pfn {p:#x}");
        }
        assert!(m.oopses().is_empty());
    }

    /// A run freed as a run loses its page flags as `free_pages_prepare()`
    /// clears them page by page, so that the pages are handed out again
    /// with no bad page.
    #[test]
    fn a_run_freed_loses_its_page_flags() {
        let (mut m, pages) = run_of_64();
        let flags = 1 << pg::REFERENCED | 1 << pg::UPTODATE | 1 << pg::DIRTY;
        m.mm.update_pages(pages[0], 64, |p| p.set_word(W_FLAGS, flags));
        m.__free_pages_each(&pages);
        for &p in &pages {
            assert!(m.page_is_free(p) && m.mm.page(p).flags() == 0, "pfn {p:#x}");
        }
        let again = m.alloc_pages_node_each(None, Gfp::KERNEL, 64);
        assert_eq!(again.len(), 64);
        assert!(m.oopses().is_empty(), "{:?}", m.oopses());
    }

    /// A bad page among the free pages a run is taken from is reported and
    /// kept back alone: the others of the run are handed out, in order, and
    /// one page more from the next block.
    #[test]
    fn a_bad_page_in_a_run_is_reported_and_the_rest_handed_out() {
        let (mut m, pages) = run_of_64();
        m.__free_pages_each(&pages);
        // A write after the free, behind the allocator's back.
        let bad = pages[0] + 5;
        m.mm.page_mut(bad).set_mapping(0x1000);
        let again = m.alloc_pages_node_each(None, Gfp::KERNEL, 64);
        let want: Vec<u64> = (pages[0]..pages[0] + 64).filter(|&p| p != bad).collect();
        assert_eq!(again[..63], want[..]);
        assert_eq!(again.len(), 64);
        assert!(!again.contains(&bad) && m.leaked_blocks() == [(bad, 0)]);
        assert!(m.oopses().len() == 1 && m.oopses()[0].is_bad_page());
    }

    /// `page_is_bad` is `page_bad_reason(..).is_some()` for each word the
    /// check reads set alone and in pairs, and for each of its flag masks.
    #[test]
    fn page_is_bad_is_whether_there_is_a_reason() {
        let mut fresh = Page::default();
        fresh.set_word(W_LRU_NEXT, 0x1234);
        let changes: [(usize, u64); 9] = [
            (W_FLAGS, 1 << pg::LRU),
            (W_FLAGS, 1 << pg::REFERENCED),
            (W_FLAGS, 1 << pg::NR_PAGEFLAGS),
            (W_MAPPING, 0x10),
            (W_COUNTS, 1),
            (W_COUNTS, 1 << 32),
            (W_COUNTS, 0xffff_ffff),
            (W_MEMCG, 8),
            (W_LRU_NEXT, 0),
        ];
        let mut cases = vec![fresh];
        for (i, &(w, v)) in changes.iter().enumerate() {
            let mut one = fresh;
            one.set_word(w, v);
            cases.push(one);
            for &(w2, v2) in &changes[i + 1..] {
                let mut two = one;
                two.set_word(w2, v2);
                cases.push(two);
            }
        }
        let mut bad = [0; 2];
        for page in &cases {
            for (k, flags) in [pg::CHECK_AT_PREP, pg::CHECK_AT_FREE]
                .into_iter()
                .enumerate()
            {
                let want = page_bad_reason(page, flags).is_some();
                let words: Vec<u64> = (0..8).map(|w| page.word(w)).collect();
                assert_eq!(page_is_bad(page, flags), want, "{flags:#x}: {words:x?}");
                bad[k] += usize::from(want);
            }
        }
        assert!(bad[0] > bad[1] && bad[1] > 0 && bad[0] < cases.len());
    }
}
