//! The buddy allocator's free lists (`mm/page_alloc.c`: `__rmqueue_smallest`,
//! `expand`, `__free_one_page`).
//!
//! One zone per NUMA node, one migratetype, no per-cpu lists: an order-0 free goes
//! straight to the buddy lists (as with `pcp->high == 0`). Lists are LIFO at the
//! head, as `add_to_free_list` is, with `buddy_merge_likely` sending a block to
//! the tail, so a page that was just freed is the next one handed out and its old
//! contents are there to be seen.
//!
//! The lists are kept out of band (by pfn) so that a driver scribbling on a free
//! page's `struct page` cannot derail the model, but every change is mirrored into
//! the `struct page` words exactly as the kernel makes it: `lru` linked into the
//! list, `PageBuddy` in `_mapcount`, the order in `private` while free, and
//! `LIST_POISON1/2` plus `private = 0` once taken off (`del_page_from_free_list`).
//!
//! The max-order blocks that boot puts at the tail of each order-10 list, in
//! ascending order, stay implicit until taken ("untouched"): they never merge
//! with anything (nothing merges past order 10), so the lists behave exactly as
//! if they were there, and booting costs nothing. Only the `lru` words of a list
//! end that would point at the first untouched block point at the list head
//! instead — words nothing reads.

use super::consts::{KDATA_START, MAX_ORDER};
use super::lazy::LazyArray;
use super::page::{
    LIST_POISON1, LIST_POISON2, Memmap, PAGE_TYPE_BUDDY, Page, W_LRU_NEXT, W_LRU_PREV, page_ptr,
};

const NONE: u32 = u32::MAX;
/// Pfns per chunk of the per-pfn lazy arrays.
const CHUNK: usize = 512;
const NOT_FREE: u8 = u8::MAX;

/// Per-pfn `u32`s that read as [`NONE`] until written (stored plus one, so the
/// lazy default 0 is `NONE`).
#[derive(Clone)]
struct Links(LazyArray<u32, CHUNK>);

impl Links {
    fn get(&self, pfn: usize) -> u32 {
        self.0.get(pfn).wrapping_sub(1)
    }
    fn set(&mut self, pfn: usize, v: u32) {
        self.0.set(pfn, v.wrapping_add(1));
    }
}

/// Per-pfn free-block orders, [`NOT_FREE`] until written (stored plus one).
#[derive(Clone)]
struct Orders(LazyArray<u8, CHUNK>);

impl Orders {
    fn get(&self, pfn: usize) -> u8 {
        self.0.get(pfn).wrapping_sub(1)
    }
    fn set(&mut self, pfn: usize, v: u8) {
        self.0.set(pfn, v.wrapping_add(1));
    }
}

/// The address of `zone->free_area[order].free_list[MIGRATE_UNMOVABLE]`, which
/// the first and last free block's `lru` point at.
fn free_list_addr(node: usize, order: u32) -> u64 {
    KDATA_START + 0x10_0000 + node as u64 * 0x1000 + order as u64 * 0x40
}

#[derive(Clone)]
struct Zone {
    start_pfn: u64,
    end_pfn: u64,
    head: [u32; MAX_ORDER as usize],
    tail: [u32; MAX_ORDER as usize],
    nr_free: [u64; MAX_ORDER as usize],
    /// The first max-order block boot freed that was never taken; every block
    /// from here to `end_pfn` is free and implicitly at the tail of the
    /// order-10 list.
    untouched: u64,
}

const MAX_BLOCK: u64 = 1 << (MAX_ORDER - 1);

impl Zone {
    fn untouched_blocks(&self) -> u64 {
        (self.end_pfn - self.untouched) / MAX_BLOCK
    }
}

/// The free lists of every node.
#[derive(Clone)]
pub struct Buddy {
    zones: Vec<Zone>,
    next: Links,
    prev: Links,
    /// The order of the free block that starts at this pfn, or `NOT_FREE`.
    free_order: Orders,
    /// One bit per pfn: inside a block on a free list (the untouched blocks
    /// aside), kept by `add` and `del` so that [`Buddy::is_free`] is one load
    /// rather than a look at every order's block start.
    free_bits: Vec<u64>,
    /// Blocks handed out ([`Buddy::rmqueue`]) or taken back
    /// ([`Buddy::free_one_page`]) since boot: half of
    /// [`Machine::region_epoch`](super::Machine::region_epoch).
    events: u64,
}

impl Buddy {
    /// Boot: every node's memory is handed to the allocator as max-order blocks,
    /// in ascending pfn order and to the tail (`__free_pages_core` uses
    /// `FPI_TO_TAIL`), so the first allocations come from low memory.
    pub fn new(mm: &Memmap, nodes: usize) -> Self {
        let nr = mm.nr_pages();
        let per_node = nr / nodes as u64;
        assert!(
            per_node % MAX_BLOCK == 0,
            "node size must be a multiple of 4 MiB"
        );
        let zones = (0..nodes)
            .map(|n| Zone {
                start_pfn: n as u64 * per_node,
                end_pfn: (n as u64 + 1) * per_node,
                head: [NONE; MAX_ORDER as usize],
                tail: [NONE; MAX_ORDER as usize],
                nr_free: [0; MAX_ORDER as usize],
                untouched: n as u64 * per_node,
            })
            .collect();
        Self {
            zones,
            next: Links(LazyArray::new(nr as usize)),
            prev: Links(LazyArray::new(nr as usize)),
            free_order: Orders(LazyArray::new(nr as usize)),
            free_bits: vec![0; (nr as usize).div_ceil(64)],
            events: 0,
        }
    }

    pub fn nr_nodes(&self) -> usize {
        self.zones.len()
    }

    /// `page_to_nid()`.
    pub fn node_of(&self, pfn: u64) -> usize {
        self.zones
            .iter()
            .position(|z| pfn >= z.start_pfn && pfn < z.end_pfn)
            .expect("pfn outside every node")
    }

    /// Free pages of all orders on all nodes.
    /// Allocations and frees since boot (a failed allocation counts too).
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn nr_free_pages(&self) -> u64 {
        (0..MAX_ORDER).map(|o| self.nr_free(o) << o).sum()
    }

    /// Free blocks of `order` exactly.
    pub fn nr_free(&self, order: u32) -> u64 {
        let implicit = |z: &Zone| {
            if order == MAX_ORDER - 1 {
                z.untouched_blocks()
            } else {
                0
            }
        };
        self.zones
            .iter()
            .map(|z| z.nr_free[order as usize] + implicit(z))
            .sum()
    }

    /// Is `pfn` inside a free block?
    pub fn is_free(&self, pfn: u64) -> bool {
        pfn >= self.zones[self.node_of(pfn)].untouched
            || self.free_bits[pfn as usize / 64] >> (pfn % 64) & 1 != 0
    }

    /// Is any pfn of `pfn..pfn + n` inside a free block? The same as
    /// [`Buddy::is_free`] of each, a word of the bitmap at a time.
    pub fn any_free(&self, pfn: u64, n: u64) -> bool {
        let end = pfn + n;
        if n == 0 {
            return false;
        }
        if (self.zones.iter()).any(|z| z.untouched < z.end_pfn.min(end) && pfn < z.end_pfn) {
            return true;
        }
        let (mut i, end) = (pfn as usize, end as usize);
        while i < end {
            let hi = end.min((i / 64 + 1) * 64);
            let bits = hi - i;
            let mask = if bits == 64 {
                !0
            } else {
                ((1u64 << bits) - 1) << (i % 64)
            };
            if self.free_bits[i / 64] & mask != 0 {
                return true;
            }
            i = hi;
        }
        false
    }

    /// `__rmqueue_smallest()` on node `nid`, then on the other nodes in order
    /// (the zonelist fallback). Returns the first pfn of a `2^order` block taken
    /// off the free lists; `struct page` state is left to `prep_new_page`.
    pub fn rmqueue(&mut self, mm: &mut Memmap, order: u32, nid: usize) -> Option<u64> {
        self.events += 1;
        let n = self.zones.len();
        for z in (0..n).map(|i| (nid + i) % n) {
            for current in order..MAX_ORDER {
                let h = self.zones[z].head[current as usize];
                let pfn = if h != NONE {
                    self.del(mm, h as u64, current);
                    h as u64
                } else if current == MAX_ORDER - 1 && self.zones[z].untouched_blocks() > 0 {
                    // The first block at the tail of the order-10 list: as if
                    // del_page_from_free_list() took it.
                    let pfn = self.zones[z].untouched;
                    self.zones[z].untouched += MAX_BLOCK;
                    let page = mm.page_mut(pfn);
                    page.set_word(W_LRU_NEXT, LIST_POISON1);
                    page.set_word(W_LRU_PREV, LIST_POISON2);
                    pfn
                } else {
                    continue;
                };
                self.expand(mm, pfn, order, current);
                return Some(pfn);
            }
        }
        None
    }

    /// The order of the block `rmqueue(order 0, nid)` would take next.
    pub fn next_order0_block(&self, nid: usize) -> Option<u32> {
        let n = self.zones.len();
        (0..n).map(|i| &self.zones[(nid + i) % n]).find_map(|z| {
            (0..MAX_ORDER).find(|&o| {
                z.head[o as usize] != NONE || (o == MAX_ORDER - 1 && z.untouched_blocks() > 0)
            })
        })
    }

    /// What `rmqueue(order 0, nid)` repeated `2^order` times leaves behind,
    /// when the block it takes first is of `order` ([`Buddy::next_order0_block`]):
    /// that block, handed out page by page in ascending order. Returns its
    /// first pfn.
    ///
    /// The lists below `order` are empty in the block's zone (else rmqueue
    /// would have taken from them), so every block `expand()` adds on the way
    /// (page `r > 0` as the upper half at order `tz(r)`) goes on an empty list
    /// and is taken off again before the next is added there: the lists end
    /// as they began, and every page of the block was deleted from a list once
    /// (`LIST_POISON`, `_mapcount` -1, `private` 0). So: take the block as
    /// `rmqueue(order)` does, and leave every other page as a delete does —
    /// which is the caller's to write, [`taken_off_list`] of each page after
    /// the first, so that it can do so in the same pass as its own change
    /// to them.
    pub fn rmqueue_run(&mut self, mm: &mut Memmap, order: u32, nid: usize) -> Option<u64> {
        debug_assert_eq!(self.next_order0_block(nid), Some(order));
        self.rmqueue(mm, order, nid)
    }

    /// `expand()`: keep the low `2^low` pages, give the upper halves back.
    fn expand(&mut self, mm: &mut Memmap, pfn: u64, low: u32, mut high: u32) {
        while high > low {
            high -= 1;
            self.add(mm, pfn + (1 << high), high, false);
        }
    }

    /// `page_is_buddy()`.
    fn is_buddy(&self, pfn: u64, buddy: u64, order: u32) -> bool {
        let z = &self.zones[self.node_of(pfn)];
        buddy >= z.start_pfn
            && buddy < z.end_pfn
            && self.free_order.get(buddy as usize) == order as u8
    }

    /// `__free_one_page()`: merge with free buddies and put the block on a list.
    pub fn free_one_page(&mut self, mm: &mut Memmap, mut pfn: u64, mut order: u32) {
        self.events += 1;
        debug_assert!(
            pfn % (1 << order) == 0,
            "misaligned free of pfn {pfn:#x} order {order}"
        );
        debug_assert!(!self.is_free(pfn), "double free of pfn {pfn:#x}");
        while order < MAX_ORDER - 1 {
            let buddy = pfn ^ (1 << order);
            if !self.is_buddy(pfn, buddy, order) {
                break;
            }
            self.del(mm, buddy, order);
            pfn &= buddy;
            order += 1;
        }
        let to_tail = self.buddy_merge_likely(pfn, order);
        self.add(mm, pfn, order, to_tail);
    }

    /// What `free_one_page(pfn + i, 0)` for `i` in `0..2^order`, in that order,
    /// leaves behind, without the per-page list traffic — `__vunmap` freeing
    /// a huge area's split pages one by one. `pfn` is aligned to `2^order`,
    /// `order < MAX_ORDER - 1`, and none of the pages is free.
    ///
    /// Freeing page `i` merges it with the free blocks below it inside the
    /// run, over the trailing ones of `i`, so that before each free the pages
    /// below form one block per set bit of `i`. Hence, for each order
    /// `j < order`, the blocks added to the order-`j` list on the way are those
    /// starting at multiples of `2^(j+1)`, each taken off again by a later
    /// merge before the next is added: the list ends as it began, except
    /// that the `lru` word of its head (for an add at the head) or tail (at the
    /// tail) that the add and the del rewrote now points at the list head. An
    /// add goes to the tail (`buddy_merge_likely`) when the block's higher
    /// buddy is free: inside the run that is when bit `j + 1` of its offset is
    /// set; for `j + 1 = order`, the block beyond the run decides. Every even
    /// page was once a block head and was deleted (`LIST_POISON`, `_mapcount`
    /// -1, `private` 0); odd pages were never on a list. The last free then
    /// merges the whole run and goes on like `free_one_page(pfn, order)`.
    pub fn free_run_ascending(&mut self, mm: &mut Memmap, pfn: u64, order: u32) {
        debug_assert!(order < MAX_ORDER - 1 && pfn % (1 << order) == 0);
        debug_assert!(!self.any_free(pfn, 1 << order));
        let node = self.node_of(pfn);
        for j in 0..order {
            let o = j as usize;
            let (head, tail) = (self.zones[node].head[o], self.zones[node].tail[o]);
            // Inside the run there are adds at offsets m * 2^(j+1) for even m
            // (to the head) and odd m (to the tail); the one add at the run's
            // last order goes where the block beyond the run says.
            let (to_head, to_tail) = if j + 1 == order {
                let likely = self.buddy_merge_likely(pfn, j);
                (!likely, likely)
            } else {
                (true, true)
            };
            if to_head && head != NONE {
                mm.page_mut(head as u64)
                    .set_word(W_LRU_PREV, free_list_addr(node, j));
            }
            if to_tail && tail != NONE {
                mm.page_mut(tail as u64)
                    .set_word(W_LRU_NEXT, free_list_addr(node, j));
            }
        }
        // Most often every page already is as a delete leaves it (they were
        // taken off a list when handed out): then there is nothing to write.
        if mm.any_page(pfn, 1 << order, |page| !is_deleted(page)) {
            let mut even = true;
            mm.update_pages(pfn, 1 << order, |page| {
                if even {
                    deleted_page(page);
                }
                even = !even;
            });
        }
        self.free_one_page(mm, pfn, order);
    }

    /// `buddy_merge_likely()`: is the buddy of the next order up free, so that
    /// this block is likely to merge soon? Then it goes to the tail.
    fn buddy_merge_likely(&self, pfn: u64, order: u32) -> bool {
        if order >= MAX_ORDER - 2 {
            return false;
        }
        let buddy = pfn ^ (1 << order);
        let higher = buddy & pfn;
        let higher_buddy = higher ^ (1 << (order + 1));
        self.is_buddy(higher, higher_buddy, order + 1)
    }

    fn list_ptr(&self, node: usize, order: u32, pfn: u32) -> u64 {
        if pfn == NONE {
            free_list_addr(node, order)
        } else {
            page_ptr(pfn as u64) + 8
        }
    }

    /// `add_to_free_list()` / `add_to_free_list_tail()` plus `set_buddy_order()`.
    fn add(&mut self, mm: &mut Memmap, pfn: u64, order: u32, to_tail: bool) {
        let node = self.node_of(pfn);
        let o = order as usize;
        let p = pfn as u32;
        let (prev, next) = if to_tail {
            (self.zones[node].tail[o], NONE)
        } else {
            (NONE, self.zones[node].head[o])
        };
        self.prev.set(pfn as usize, prev);
        self.next.set(pfn as usize, next);
        if prev == NONE {
            self.zones[node].head[o] = p;
        } else {
            self.next.set(prev as usize, p);
            mm.page_mut(prev as u64)
                .set_word(W_LRU_NEXT, page_ptr(pfn) + 8);
        }
        if next == NONE {
            self.zones[node].tail[o] = p;
        } else {
            self.prev.set(next as usize, p);
            mm.page_mut(next as u64)
                .set_word(W_LRU_PREV, page_ptr(pfn) + 8);
        }
        self.zones[node].nr_free[o] += 1;
        self.free_order.set(pfn as usize, order as u8);
        self.mark_free(pfn, order, true);
        let next_ptr = self.list_ptr(node, order, next);
        let prev_ptr = self.list_ptr(node, order, prev);
        let page = mm.page_mut(pfn);
        page.set_word(W_LRU_NEXT, next_ptr);
        page.set_word(W_LRU_PREV, prev_ptr);
        page.set_private(order as u64);
        page.set_mapcount_raw(PAGE_TYPE_BUDDY);
    }

    /// Sets (`on`) or clears the free bits of the block of `2^order` pages at
    /// `pfn` (aligned to its size). A block goes on a list only when none of
    /// its pages is free, and comes off only whole.
    fn mark_free(&mut self, pfn: u64, order: u32, on: bool) {
        let (start, n) = (pfn as usize, 1usize << order);
        let was = if on { 0 } else { !0 };
        if n >= 64 {
            let words = &mut self.free_bits[start / 64..(start + n) / 64];
            debug_assert!(
                words.iter().all(|&w| w == was),
                "pfn {pfn:#x} order {order}"
            );
            words.fill(!was);
        } else {
            let mask = ((1u64 << n) - 1) << (start % 64);
            let w = &mut self.free_bits[start / 64];
            debug_assert_eq!(*w & mask, was & mask, "pfn {pfn:#x} order {order}");
            *w = if on { *w | mask } else { *w & !mask };
        }
    }

    /// `del_page_from_free_list()`: `list_del`, `__ClearPageBuddy`,
    /// `set_page_private(page, 0)`.
    fn del(&mut self, mm: &mut Memmap, pfn: u64, order: u32) {
        let node = self.node_of(pfn);
        let o = order as usize;
        debug_assert_eq!(self.free_order.get(pfn as usize), order as u8);
        let (prev, next) = (self.prev.get(pfn as usize), self.next.get(pfn as usize));
        if prev == NONE {
            self.zones[node].head[o] = next;
        } else {
            self.next.set(prev as usize, next);
            let ptr = self.list_ptr(node, order, next);
            mm.page_mut(prev as u64).set_word(W_LRU_NEXT, ptr);
        }
        if next == NONE {
            self.zones[node].tail[o] = prev;
        } else {
            self.prev.set(next as usize, prev);
            let ptr = self.list_ptr(node, order, prev);
            mm.page_mut(next as u64).set_word(W_LRU_PREV, ptr);
        }
        self.zones[node].nr_free[o] -= 1;
        self.free_order.set(pfn as usize, NOT_FREE);
        self.mark_free(pfn, order, false);
        self.prev.set(pfn as usize, NONE);
        self.next.set(pfn as usize, NONE);
        deleted(mm, pfn);
    }
}

/// What `del_page_from_free_list()` leaves in the `struct page` it took off:
/// `list_del` poison, `__ClearPageBuddy`, `set_page_private(page, 0)`.
fn deleted(mm: &mut Memmap, pfn: u64) {
    deleted_page(mm.page_mut(pfn));
}

/// Is `page` as [`deleted_page`] leaves it?
fn is_deleted(page: &Page) -> bool {
    page.word(W_LRU_NEXT) == LIST_POISON1
        && page.word(W_LRU_PREV) == LIST_POISON2
        && page.mapcount_raw() == -1
        && page.private() == 0
}

/// [`deleted_page`] of a copy of `page`: the page as a delete from a free
/// list leaves it, whatever it was.
pub(super) fn taken_off_list(page: &Page) -> Page {
    let mut page = *page;
    deleted_page(&mut page);
    page
}

/// [`deleted`], on the page itself.
fn deleted_page(page: &mut Page) {
    page.set_word(W_LRU_NEXT, LIST_POISON1);
    page.set_word(W_LRU_PREV, LIST_POISON2);
    page.set_mapcount_raw(-1);
    page.set_private(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::page::W_PRIVATE;

    fn setup(pages: u64, nodes: usize) -> (Memmap, Buddy) {
        let mm = Memmap::new(pages);
        let b = Buddy::new(&mm, nodes);
        (mm, b)
    }

    /// `is_deleted` knows exactly the four words a delete writes.
    #[test]
    fn is_deleted_is_what_a_delete_leaves() {
        let mut page = Page::default();
        page.set_word(W_LRU_NEXT, 5);
        page.set_refcount(3);
        assert!(!is_deleted(&page));
        deleted_page(&mut page);
        assert!(is_deleted(&page), "whatever else the page holds");
        for (i, v) in [(W_LRU_NEXT, 0), (W_LRU_PREV, 0), (W_PRIVATE, 1)] {
            let mut p = page;
            p.set_word(i, v);
            assert!(!is_deleted(&p), "word {i}");
        }
        let mut p = page;
        p.set_mapcount_raw(PAGE_TYPE_BUDDY);
        assert!(!is_deleted(&p), "_mapcount");
    }

    #[test]
    fn boot_hands_out_low_memory_first_and_merges_back() {
        let (mut mm, mut b) = setup(4096, 1);
        assert_eq!(b.nr_free(10), 4);
        let p = b.rmqueue(&mut mm, 0, 0).unwrap();
        assert_eq!(p, 0);
        assert_eq!(b.nr_free_pages(), 4095);
        // expand() left one free block of each order 0..=9 above page 0.
        assert!((0..10).all(|o| b.nr_free(o) == 1));
        b.free_one_page(&mut mm, p, 0);
        assert_eq!(b.nr_free(10), 4);
        assert_eq!(b.nr_free_pages(), 4096);
    }

    /// `any_free` over a range is `is_free` of each pfn in it, across
    /// bitmap words, nodes and the untouched tail.
    #[test]
    fn any_free_is_is_free_of_some_pfn_in_the_range() {
        let (mut mm, mut b) = setup(8192, 2);
        let mut held = Vec::new();
        for order in [0, 3, 0, 9, 1, 0, 10, 2] {
            held.push((b.rmqueue(&mut mm, order, 1).unwrap(), order));
            held.push((b.rmqueue(&mut mm, order, 0).unwrap(), order));
        }
        // Node 1's first page (its first order-0 block) stays taken, with
        // node 0's untouched tail free just below it.
        for &(p, o) in held.iter().skip(1).step_by(3) {
            b.free_one_page(&mut mm, p, o);
        }
        assert_eq!(
            (held[0], b.is_free(4096), b.is_free(4095)),
            ((4096, 0), false, true)
        );
        for (pfn, n) in [
            (0, 1),
            (0, 64),
            (1, 70),
            (60, 8),
            (500, 1600),
            (2040, 20),
            (4090, 10),
            (4100, 4000),
            (7000, 1192),
            (3, 0),
        ] {
            let want = (pfn..pfn + n).any(|p| b.is_free(p));
            assert_eq!(b.any_free(pfn, n), want, "{pfn:#x}+{n}");
        }
        for pfn in 0..8192 {
            assert_eq!(b.any_free(pfn, 1), b.is_free(pfn), "{pfn:#x}");
        }
    }

    #[test]
    fn free_block_heads_carry_buddy_state_in_struct_page() {
        let (mut mm, mut b) = setup(1024, 1);
        let p = b.rmqueue(&mut mm, 0, 0).unwrap();
        assert_eq!(mm.page(p).word(W_LRU_NEXT), LIST_POISON1);
        assert_eq!(mm.page(p).word(W_LRU_PREV), LIST_POISON2);
        assert_eq!(mm.page(p).private(), 0);
        // The order-0 buddy that expand() freed is PageBuddy with order 0.
        assert_eq!(mm.page(1).mapcount_raw(), PAGE_TYPE_BUDDY);
        assert_eq!(
            PAGE_TYPE_BUDDY as u32, 0xffff_ff7f,
            "page_type with PG_buddy clear"
        );
        assert_eq!(mm.page(512).private(), 9);
        assert!(b.is_free(1000) && !b.is_free(0));
    }

    #[test]
    fn just_freed_page_comes_back_first() {
        let (mut mm, mut b) = setup(1024, 1);
        let a = b.rmqueue(&mut mm, 0, 0).unwrap();
        let c = b.rmqueue(&mut mm, 0, 0).unwrap();
        let _d = b.rmqueue(&mut mm, 0, 0).unwrap();
        b.free_one_page(&mut mm, c, 0);
        assert_eq!(b.rmqueue(&mut mm, 0, 0), Some(c));
        assert_ne!(a, c);
    }

    /// Every page's words, and each list's blocks, tail and count.
    type State = (Vec<[u64; 8]>, Vec<Vec<(u64, u32)>>);

    /// Everything a free leaves behind.
    fn state(mm: &Memmap, b: &Buddy) -> State {
        let words = (0..mm.nr_pages()).map(|p| mm.page(p).words()).collect();
        let mut lists = Vec::new();
        for z in &b.zones {
            for o in 0..MAX_ORDER {
                let mut l = Vec::new();
                let mut p = z.head[o as usize];
                while p != NONE {
                    l.push((p as u64, u32::from(b.free_order.get(p as usize))));
                    assert!(l.len() <= mm.nr_pages() as usize, "list loops");
                    p = b.next.get(p as usize);
                }
                lists.push(l);
                lists.push(vec![(
                    z.tail[o as usize] as u64,
                    z.nr_free[o as usize] as u32,
                )]);
            }
            lists.push(vec![(z.untouched, 0)]);
        }
        (words, lists)
    }

    /// A xorshift stream for the randomised tests.
    struct Rnd(u64);

    impl Rnd {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// A 4096-page machine (1 or 2 nodes) scattered by up to `steps` random
    /// allocations (orders below `orders`) and frees, with every free block's
    /// `lru` words scribbled on (as a driver may; list traffic rewrites them).
    fn scattered(r: &mut Rnd, nodes: usize, steps: u64, orders: u64) -> (Memmap, Buddy) {
        let (mut mm, mut b) = setup(4096, nodes);
        let mut held: Vec<(u64, u32)> = Vec::new();
        for _ in 0..r.below(steps) {
            if !held.is_empty() && r.below(3) == 0 {
                let (p, o) = held.swap_remove(r.below(held.len() as u64) as usize);
                b.free_one_page(&mut mm, p, o);
            } else {
                let o = r.below(orders) as u32;
                if let Some(p) = b.rmqueue(&mut mm, o, r.below(nodes as u64) as usize) {
                    held.push((p, o));
                }
            }
        }
        for p in 0..4096 {
            if b.free_order.get(p as usize) != NOT_FREE {
                mm.page_mut(p).set_word(W_LRU_PREV, 0xdead);
                mm.page_mut(p).set_word(W_LRU_NEXT, 0xbeef);
            }
        }
        (mm, b)
    }

    /// `free_run_ascending` against page-by-page frees (and `is_free`
    /// against its definition), over scattered states.
    #[test]
    fn run_free_equals_page_by_page_frees() {
        let mut r = Rnd(0x9e37_79b9_7f4a_7c15);
        let mut merged_on = 0;
        for case in 0..60 {
            let (mut mm, mut b) = scattered(&mut r, 1 + case % 2, 40, 6);
            let order = 1 + r.below(9) as u32;
            let Some(run) = b.rmqueue(&mut mm, order, 0) else {
                continue;
            };
            // Sometimes the run's buddy is free, so that the run merges on.
            if r.below(2) == 0 {
                if let Some(other) = b.rmqueue(&mut mm, order, 0) {
                    b.free_one_page(&mut mm, other, order);
                }
                if b.is_free(run ^ (1 << order)) {
                    merged_on += 1;
                }
            }
            for p in 0..4096 {
                let slow = p >= b.zones[b.node_of(p)].untouched
                    || (0..MAX_ORDER)
                        .any(|o| b.free_order.get((p & !((1u64 << o) - 1)) as usize) == o as u8);
                assert_eq!(b.is_free(p), slow, "is_free({p:#x})");
            }
            let (mut mm2, mut b2) = (mm.clone(), b.clone());
            b.free_run_ascending(&mut mm, run, order);
            for p in run..run + (1 << order) {
                b2.free_one_page(&mut mm2, p, 0);
            }
            assert!(
                state(&mm, &b) == state(&mm2, &b2),
                "case {case}: run {run:#x} order {order} differs"
            );
        }
        assert!(
            merged_on > 5,
            "only {merged_on} runs merged beyond themselves"
        );
    }

    /// `rmqueue_run` against page-by-page order-0 allocations, over scattered
    /// states and both nodes' fallback.
    #[test]
    fn run_alloc_equals_page_by_page_allocs() {
        let mut r = Rnd(0x2545_f491_4f6c_dd1d);
        let mut runs = 0;
        for case in 0..60 {
            let nodes = 1 + case % 2;
            let (mut mm, mut b) = scattered(&mut r, nodes, 60, 11);
            let nid = r.below(nodes as u64) as usize;
            // A few runs in a row, as a large vmalloc takes them.
            for _ in 0..3 {
                let Some(order) = b.next_order0_block(nid) else {
                    break;
                };
                let (mut mm2, mut b2) = (mm.clone(), b.clone());
                // The order predicted is that of the free block the next
                // order-0 rmqueue splits: found from the page it returns.
                let first = b.clone().rmqueue(&mut mm.clone(), 0, nid).unwrap();
                let truth = if first >= b.zones[b.node_of(first)].untouched {
                    MAX_ORDER - 1
                } else {
                    (0..MAX_ORDER)
                        .find(|&o| {
                            b.free_order.get((first & !((1u64 << o) - 1)) as usize) == o as u8
                        })
                        .expect("the page came from a free block")
                };
                assert_eq!(order, truth, "case {case}: next_order0_block");
                let pfn = b.rmqueue_run(&mut mm, order, nid).unwrap();
                mm.map_pages(pfn + 1, (1 << order) - 1, taken_off_list);
                for i in 0..1u64 << order {
                    assert_eq!(b2.rmqueue(&mut mm2, 0, nid), Some(pfn + i));
                }
                assert!(
                    state(&mm, &b) == state(&mm2, &b2),
                    "case {case}: run {pfn:#x} order {order} differs"
                );
                runs += u32::from(order > 0);
            }
        }
        assert!(runs > 30, "only {runs} runs of more than one page");
    }

    /// The first and last free block of a list point at the list head,
    /// `zone->free_area[order].free_list`, which the model places at
    /// KDATA_START + 1 MiB + 4 KiB per node + 64 bytes per order.
    #[test]
    fn free_list_heads_sit_where_the_model_puts_struct_zone() {
        assert_eq!(free_list_addr(0, 0), 0xffff_ffff_82b0_0000);
        assert_eq!(free_list_addr(1, 3), 0xffff_ffff_82b0_10c0);
        let (mut mm, mut b) = setup(4096, 2);
        let p = b.rmqueue(&mut mm, 0, 1).unwrap();
        let buddy = b.rmqueue(&mut mm, 0, 1).unwrap();
        assert_eq!(buddy, p ^ 1, "so that p cannot merge");
        b.free_one_page(&mut mm, p, 0);
        let head = mm.page(p);
        assert_eq!(
            (head.word(W_LRU_NEXT), head.word(W_LRU_PREV)),
            (free_list_addr(1, 0), free_list_addr(1, 0)),
            "the only order-0 block of node 1"
        );
    }

    /// Every free list, read through the `lru` words of its blocks' head
    /// pages as the kernel's list.h would walk it: from the list head at
    /// `free_list_addr()`, each `next` is the following block's `&page->lru`
    /// and each `prev` the one before, back to the head; each head page has
    /// `PageBuddy` and its order in `private`. Compared with the allocator's
    /// own lists over random allocations and frees on two nodes.
    #[test]
    fn free_lists_are_in_the_lru_words() {
        let (mut mm, mut b) = setup(4096, 2);
        let mut r = Rnd(0x51af_d7ed_558c_cd1d);
        let mut held: Vec<(u64, u32)> = Vec::new();
        for _ in 0..400 {
            if !held.is_empty() && r.below(2) == 0 {
                let (p, o) = held.swap_remove(r.below(held.len() as u64) as usize);
                b.free_one_page(&mut mm, p, o);
            } else {
                let o = r.below(4) as u32;
                if let Some(p) = b.rmqueue(&mut mm, o, r.below(2) as usize) {
                    held.push((p, o));
                }
            }
        }
        for (node, z) in b.zones.iter().enumerate() {
            for o in 0..MAX_ORDER {
                let head = free_list_addr(node, o);
                let mut at = head;
                let mut prev = head;
                let mut p = z.head[o as usize];
                while p != NONE {
                    let page = mm.page(p as u64);
                    let lru = page_ptr(p as u64) + 8;
                    assert_eq!(
                        page.word(W_LRU_PREV),
                        prev,
                        "node {node} order {o} pfn {p:#x}"
                    );
                    assert_eq!(page.private(), o as u64);
                    assert_eq!(page.mapcount_raw(), PAGE_TYPE_BUDDY);
                    if at != head {
                        assert_eq!(at, lru, "the previous block's next");
                    }
                    at = page.word(W_LRU_NEXT);
                    prev = lru;
                    p = b.next.get(p as usize);
                }
                assert_eq!(
                    at, head,
                    "node {node} order {o}: the last block's next is the head"
                );
            }
        }
    }

    /// `add_to_free_list()` at the head of a list that is not empty: the new
    /// block's `lru` sits between the list head and the old first block,
    /// whose `lru.prev` now points at it (`list_add`).
    #[test]
    fn a_block_added_at_the_head_links_both_ways() {
        let (mut mm, mut b) = setup(1024, 1);
        let p: Vec<u64> = (0..8).map(|_| b.rmqueue(&mut mm, 0, 0).unwrap()).collect();
        assert_eq!(p, (0..8).collect::<Vec<_>>());
        // Neither 1 nor 5 can merge (their buddies 0 and 4 are held, and so
        // are 2-3 and 6-7): both go to the head of the order-0 list.
        b.free_one_page(&mut mm, 1, 0);
        b.free_one_page(&mut mm, 5, 0);
        let head = free_list_addr(0, 0);
        let (one, five) = (mm.page(1), mm.page(5));
        assert_eq!(
            (five.word(W_LRU_PREV), five.word(W_LRU_NEXT)),
            (head, page_ptr(1) + 8),
            "the new first block"
        );
        assert_eq!(
            (one.word(W_LRU_PREV), one.word(W_LRU_NEXT)),
            (page_ptr(5) + 8, head),
            "the old first block"
        );
    }

    /// `buddy_merge_likely()`: a block whose buddy one order up is free goes
    /// to the tail of its list (it will likely merge soon), so the next
    /// allocation takes another block first.
    #[test]
    fn a_block_likely_to_merge_goes_to_the_tail() {
        let (mut mm, mut b) = setup(4096, 1);
        let p: Vec<u64> = (0..8).map(|_| b.rmqueue(&mut mm, 0, 0).unwrap()).collect();
        assert_eq!(p, (0..8).collect::<Vec<_>>());
        b.free_one_page(&mut mm, 2, 0);
        b.free_one_page(&mut mm, 3, 0); // 2..4 free as one order-1 block
        b.free_one_page(&mut mm, 5, 0); // 4 is held: 5 stays order 0
        b.free_one_page(&mut mm, 0, 0); // 1 is held; 2..4 is free: likely
        assert_eq!(b.rmqueue(&mut mm, 0, 0), Some(5), "0 went to the tail");
        assert_eq!(b.rmqueue(&mut mm, 0, 0), Some(0));
        b.free_one_page(&mut mm, 6, 0); // 7 held, 4..6 not free: head
        b.free_one_page(&mut mm, 0, 0); // likely again: tail
        assert_eq!(b.rmqueue(&mut mm, 0, 0), Some(6));
    }

    #[test]
    fn nodes_fall_back_in_zonelist_order() {
        let (mut mm, mut b) = setup(2048, 2);
        assert_eq!(b.rmqueue(&mut mm, 10, 0), Some(0));
        assert_eq!(b.rmqueue(&mut mm, 10, 0), Some(1024));
        assert_eq!(b.rmqueue(&mut mm, 0, 0), None);
        assert_eq!(b.node_of(1500), 1);
    }
}
