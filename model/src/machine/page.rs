//! `struct page` as the v5.18 x86-64 layout: eight 64-bit words, read and written
//! through the same union views the kernel uses (`include/linux/mm_types.h`).
//!
//! | word | as a plain page        | first tail page (`page[1]`)                 | second tail (`page[2]`) |
//! |------|------------------------|---------------------------------------------|-------------------------|
//! | 0    | `flags`                | `flags`                                     | `flags`                 |
//! | 1    | `lru.next`             | `compound_head` (bit 0 = tail)              | `compound_head`         |
//! | 2    | `lru.prev`             | `compound_dtor`:8 `compound_order`:8 … `compound_mapcount`:32 | `_compound_pad_2` |
//! | 3    | `mapping`              | `compound_pincount`:32 `compound_nr`:32     | `deferred_list.next`    |
//! | 4    | `index`                | `index`                                     | `deferred_list.prev`    |
//! | 5    | `private`              | `private`                                   | `private`               |
//! | 6    | `_mapcount`:32 `_refcount`:32                                              |||
//! | 7    | `memcg_data`           |                                             |                         |
//!
//! A driver that writes `lru` or `mapping` of a tail page therefore really
//! overwrites compound metadata, exactly as in the kernel.

use super::consts::{STRUCT_PAGE_SIZE, VMEMMAP_START};
use super::lazy::LazyArray;

/// `enum pageflags` bit numbers of v5.18 (x86-64, `CONFIG_MMU`).
pub mod pg {
    pub const LOCKED: u32 = 0;
    pub const REFERENCED: u32 = 1;
    pub const UPTODATE: u32 = 2;
    pub const DIRTY: u32 = 3;
    pub const LRU: u32 = 4;
    pub const ACTIVE: u32 = 5;
    pub const WORKINGSET: u32 = 6;
    pub const WAITERS: u32 = 7;
    pub const ERROR: u32 = 8;
    pub const SLAB: u32 = 9;
    pub const OWNER_PRIV_1: u32 = 10;
    pub const ARCH_1: u32 = 11;
    pub const RESERVED: u32 = 12;
    pub const PRIVATE: u32 = 13;
    pub const PRIVATE_2: u32 = 14;
    pub const WRITEBACK: u32 = 15;
    pub const HEAD: u32 = 16;
    pub const MAPPEDTODISK: u32 = 17;
    pub const RECLAIM: u32 = 18;
    pub const SWAPBACKED: u32 = 19;
    pub const UNEVICTABLE: u32 = 20;
    pub const MLOCKED: u32 = 21;
    /// `__NR_PAGEFLAGS` as far as the model goes; bits above are node/zone.
    pub const NR_PAGEFLAGS: u32 = 22;

    /// Names for `%pGp`, in bit order.
    pub const NAMES: [&str; NR_PAGEFLAGS as usize] = [
        "locked",
        "referenced",
        "uptodate",
        "dirty",
        "lru",
        "active",
        "workingset",
        "waiters",
        "error",
        "slab",
        "owner_priv_1",
        "arch_1",
        "reserved",
        "private",
        "private_2",
        "writeback",
        "head",
        "mappedtodisk",
        "reclaim",
        "swapbacked",
        "unevictable",
        "mlocked",
    ];

    /// `PAGE_FLAGS_CHECK_AT_FREE` (v5.18 `include/linux/page-flags.h`).
    pub const CHECK_AT_FREE: u64 = 1 << LRU
        | 1 << LOCKED
        | 1 << PRIVATE
        | 1 << PRIVATE_2
        | 1 << WRITEBACK
        | 1 << RESERVED
        | 1 << SLAB
        | 1 << ACTIVE
        | 1 << UNEVICTABLE
        | 1 << MLOCKED;

    /// `PAGE_FLAGS_CHECK_AT_PREP`: every page flag (`PAGEFLAGS_MASK`).
    pub const CHECK_AT_PREP: u64 = (1 << NR_PAGEFLAGS) - 1;
}

/// `POISON_POINTER_DELTA` on x86-64 (`CONFIG_ILLEGAL_POINTER_VALUE`).
pub const POISON_POINTER_DELTA: u64 = 0xdead_0000_0000_0000;
/// `LIST_POISON1`: `list_del` leaves it in `next`.
pub const LIST_POISON1: u64 = 0x100 + POISON_POINTER_DELTA;
/// `LIST_POISON2`: `list_del` leaves it in `prev`.
pub const LIST_POISON2: u64 = 0x122 + POISON_POINTER_DELTA;
/// `TAIL_MAPPING`: the `mapping` of every tail page from the third on.
pub const TAIL_MAPPING: u64 = 0x400 + POISON_POINTER_DELTA;
/// `PAGE_MAPPING_FLAGS` (`PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE`).
pub const PAGE_MAPPING_FLAGS: u64 = 0x3;
/// `COMPOUND_PAGE_DTOR` in `enum compound_dtor_id`.
pub const COMPOUND_PAGE_DTOR: u8 = 1;
/// `_mapcount` of a free block's head (`PageBuddy`): since 4.18 it is
/// `page_type`, which starts as -1 and `__SetPageBuddy()` clears `PG_buddy`
/// (0x80) in (`include/linux/page-flags.h`: `PAGE_TYPE_BASE` 0xf0000000,
/// `PG_buddy` 0x00000080), so 0xffffff7f.
pub const PAGE_TYPE_BUDDY: i32 = !0x80;

/// Word indices.
pub const W_FLAGS: usize = 0;
pub const W_LRU_NEXT: usize = 1;
pub const W_LRU_PREV: usize = 2;
pub const W_MAPPING: usize = 3;
pub const W_INDEX: usize = 4;
pub const W_PRIVATE: usize = 5;
pub const W_COUNTS: usize = 6;
pub const W_MEMCG: usize = 7;

/// Byte offsets of the first-tail fields inside the page.
const OFF_COMPOUND_DTOR: usize = 16;
const OFF_COMPOUND_ORDER: usize = 17;
const OFF_COMPOUND_MAPCOUNT: usize = 20;
const OFF_COMPOUND_PINCOUNT: usize = 24;
const OFF_COMPOUND_NR: usize = 28;

/// Word 6 is stored XOR this bias so that an all-zero `Page` is the boot state
/// (`_mapcount` = -1, `_refcount` = 0) and a zeroed allocation is a fresh memmap.
const COUNTS_BIAS: u64 = 0x0000_0000_ffff_ffff;

/// One `struct page` (64 bytes).
#[derive(Clone, Copy, Default, Eq)]
pub struct Page {
    stored: [u64; 8],
}

/// Word by word, folded: the derived comparison of the array is a `memcmp()` call,
/// which libFuzzer intercepts and records on every one (the uniform chunks
/// of the memmap compare pages on each change).
impl PartialEq for Page {
    fn eq(&self, other: &Page) -> bool {
        let diff = (self.stored.iter().zip(&other.stored)).fold(0, |d, (a, b)| d | (a ^ b));
        diff == 0
    }
}

impl Page {
    /// The raw value of word `i`, as the kernel would read it.
    pub fn word(&self, i: usize) -> u64 {
        if i == W_COUNTS {
            self.stored[i] ^ COUNTS_BIAS
        } else {
            self.stored[i]
        }
    }

    pub fn set_word(&mut self, i: usize, v: u64) {
        self.stored[i] = if i == W_COUNTS { v ^ COUNTS_BIAS } else { v };
    }

    /// All eight words, as `dump_page`'s `raw:` lines show them.
    pub fn words(&self) -> [u64; 8] {
        std::array::from_fn(|i| self.word(i))
    }

    fn byte(&self, off: usize) -> u8 {
        (self.word(off / 8) >> ((off % 8) * 8)) as u8
    }

    fn set_byte(&mut self, off: usize, b: u8) {
        let shift = (off % 8) * 8;
        let w = self.word(off / 8) & !(0xff << shift) | (b as u64) << shift;
        self.set_word(off / 8, w);
    }

    fn u32_at(&self, off: usize) -> u32 {
        (self.word(off / 8) >> ((off % 8) * 8)) as u32
    }

    fn set_u32_at(&mut self, off: usize, v: u32) {
        debug_assert!(off % 4 == 0);
        let shift = (off % 8) * 8;
        let w = self.word(off / 8) & !(0xffff_ffff << shift) | (v as u64) << shift;
        self.set_word(off / 8, w);
    }

    pub fn flags(&self) -> u64 {
        self.word(W_FLAGS)
    }
    pub fn test_flag(&self, bit: u32) -> bool {
        self.flags() & (1 << bit) != 0
    }
    pub fn set_flag(&mut self, bit: u32) {
        self.set_word(W_FLAGS, self.flags() | 1 << bit);
    }
    pub fn clear_flag(&mut self, bit: u32) {
        self.set_word(W_FLAGS, self.flags() & !(1 << bit));
    }

    /// `page->compound_head` (≡ `lru.next`).
    pub fn compound_head_word(&self) -> u64 {
        self.word(W_LRU_NEXT)
    }
    /// `PageTail()`: bit 0 of `compound_head`.
    pub fn is_tail(&self) -> bool {
        self.compound_head_word() & 1 != 0
    }
    /// `PageHead()`.
    pub fn is_head(&self) -> bool {
        self.test_flag(pg::HEAD)
    }
    /// `PageCompound()`.
    pub fn is_compound(&self) -> bool {
        self.is_head() || self.is_tail()
    }
    pub fn mapping(&self) -> u64 {
        self.word(W_MAPPING)
    }
    pub fn set_mapping(&mut self, v: u64) {
        self.set_word(W_MAPPING, v)
    }
    pub fn index(&self) -> u64 {
        self.word(W_INDEX)
    }
    pub fn set_index(&mut self, v: u64) {
        self.set_word(W_INDEX, v)
    }
    /// `page_private()`.
    pub fn private(&self) -> u64 {
        self.word(W_PRIVATE)
    }
    /// `set_page_private()`.
    pub fn set_private(&mut self, v: u64) {
        self.set_word(W_PRIVATE, v)
    }
    /// `atomic_read(&page->_mapcount)`.
    pub fn mapcount_raw(&self) -> i32 {
        self.u32_at(48) as i32
    }
    pub fn set_mapcount_raw(&mut self, v: i32) {
        self.set_u32_at(48, v as u32)
    }
    /// `page_ref_count()` of this very page (no `compound_head`).
    pub fn refcount(&self) -> i32 {
        self.u32_at(52) as i32
    }
    pub fn set_refcount(&mut self, v: i32) {
        self.set_u32_at(52, v as u32)
    }
    pub fn memcg_data(&self) -> u64 {
        self.word(W_MEMCG)
    }

    // ---- first-tail views ----------------------------------------------
    pub fn compound_dtor(&self) -> u8 {
        self.byte(OFF_COMPOUND_DTOR)
    }
    pub fn set_compound_dtor(&mut self, v: u8) {
        self.set_byte(OFF_COMPOUND_DTOR, v)
    }
    pub fn compound_order(&self) -> u8 {
        self.byte(OFF_COMPOUND_ORDER)
    }
    pub fn set_compound_order_byte(&mut self, v: u8) {
        self.set_byte(OFF_COMPOUND_ORDER, v)
    }
    pub fn compound_mapcount_raw(&self) -> i32 {
        self.u32_at(OFF_COMPOUND_MAPCOUNT) as i32
    }
    pub fn set_compound_mapcount_raw(&mut self, v: i32) {
        self.set_u32_at(OFF_COMPOUND_MAPCOUNT, v as u32)
    }
    pub fn compound_pincount(&self) -> i32 {
        self.u32_at(OFF_COMPOUND_PINCOUNT) as i32
    }
    pub fn set_compound_pincount(&mut self, v: i32) {
        self.set_u32_at(OFF_COMPOUND_PINCOUNT, v as u32)
    }
    pub fn compound_nr(&self) -> u32 {
        self.u32_at(OFF_COMPOUND_NR)
    }
    pub fn set_compound_nr(&mut self, v: u32) {
        self.set_u32_at(OFF_COMPOUND_NR, v)
    }
}

/// `(struct page *)` of a pfn: its address in the vmemmap.
pub const fn page_ptr(pfn: u64) -> u64 {
    VMEMMAP_START + pfn * STRUCT_PAGE_SIZE
}

/// The memmap: every frame's `struct page`, addressable by pfn and by kernel
/// virtual address (so that list pointers a driver writes resolve to words).
/// Pages are in the boot state until first written ([`LazyArray`]).
#[derive(Clone)]
pub struct Memmap {
    pages: LazyArray<Page, 64>,
}

impl Memmap {
    /// A memmap of `nr` pages in the boot state (all words zero, `_mapcount` -1).
    pub fn new(nr: u64) -> Self {
        Self {
            pages: LazyArray::new(nr as usize),
        }
    }

    pub fn nr_pages(&self) -> u64 {
        self.pages.len() as u64
    }

    pub fn page(&self, pfn: u64) -> &Page {
        self.pages.get(pfn as usize)
    }

    pub fn page_mut(&mut self, pfn: u64) -> &mut Page {
        self.pages.get_mut(pfn as usize)
    }

    /// Does `f` hold for any page of `pfn..pfn + n`?
    pub fn any_page(&self, pfn: u64, n: u64, f: impl Fn(&Page) -> bool) -> bool {
        self.pages.any(pfn as usize..(pfn + n) as usize, f)
    }

    /// Every page `p` of `pfn..pfn + n` becomes `f(p)`, for a change that
    /// depends on nothing but the page ([`LazyArray::map`]: pages that share
    /// a state are changed once).
    pub fn map_pages(&mut self, pfn: u64, n: u64, f: impl Fn(&Page) -> Page) {
        self.pages.map(pfn as usize..(pfn + n) as usize, f)
    }

    /// `f` on every page of `pfn..pfn + n` in turn, for writing.
    pub fn update_pages(&mut self, pfn: u64, n: u64, f: impl FnMut(&mut Page)) {
        self.pages.update(pfn as usize..(pfn + n) as usize, f)
    }

    /// `page_to_pfn()` for a pointer that must be a `struct page *`: `None` if it
    /// points outside the memmap or into the middle of a `struct page`.
    pub fn ptr_to_pfn(&self, ptr: u64) -> Option<u64> {
        let off = ptr.checked_sub(VMEMMAP_START)?;
        if off % STRUCT_PAGE_SIZE != 0 {
            return None;
        }
        let pfn = off / STRUCT_PAGE_SIZE;
        (pfn < self.nr_pages()).then_some(pfn)
    }

    /// Does `addr..addr+len` lie inside the memmap?
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= VMEMMAP_START
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= VMEMMAP_START + self.nr_pages() * STRUCT_PAGE_SIZE)
    }

    /// Reads a little-endian `u64` at any byte address inside the memmap
    /// (unaligned accesses may span two `struct page`s, as on x86).
    pub fn read_u64(&self, addr: u64) -> u64 {
        debug_assert!(self.contains(addr, 8));
        let mut v = 0u64;
        for i in 0..8 {
            let a = addr + i - VMEMMAP_START;
            let b = self
                .page(a / STRUCT_PAGE_SIZE)
                .byte((a % STRUCT_PAGE_SIZE) as usize);
            v |= (b as u64) << (8 * i);
        }
        v
    }

    /// Writes a little-endian `u64` at any byte address inside the memmap.
    pub fn write_u64(&mut self, addr: u64, v: u64) {
        debug_assert!(self.contains(addr, 8));
        if (addr - VMEMMAP_START) % 8 == 0 {
            let a = addr - VMEMMAP_START;
            let pfn = a / STRUCT_PAGE_SIZE;
            self.page_mut(pfn)
                .set_word(((a % STRUCT_PAGE_SIZE) / 8) as usize, v);
            return;
        }
        for i in 0..8 {
            let a = addr + i - VMEMMAP_START;
            self.page_mut(a / STRUCT_PAGE_SIZE)
                .set_byte((a % STRUCT_PAGE_SIZE) as usize, (v >> (8 * i)) as u8);
        }
    }

    /// `compound_head()`: the head's pfn if bit 0 of `compound_head` is set, else
    /// the page itself. `Err(ptr)` if the word points at no `struct page` (the
    /// kernel would dereference a wild pointer).
    pub fn compound_head(&self, pfn: u64) -> Result<u64, u64> {
        let w = self.page(pfn).compound_head_word();
        if w & 1 == 0 {
            return Ok(pfn);
        }
        self.ptr_to_pfn(w - 1).ok_or(w - 1)
    }
}

/// Formats `flags` as `%pGp` does: `0x10000(head)`.
pub fn format_flags(flags: u64) -> String {
    let names: Vec<&str> = (0..pg::NR_PAGEFLAGS)
        .filter(|&b| flags & (1 << b) != 0)
        .map(|b| pg::NAMES[b as usize])
        .collect();
    format!("{:#x}({})", flags, names.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages are equal exactly when every word is.
    #[test]
    fn pages_compare_every_word() {
        let page = Page::default();
        assert!(page == Page::default());
        let mut busy = page;
        (0..8).for_each(|w| busy.set_word(w, 0x8000_0000_0000_0001 << w));
        let copy = busy;
        assert!(busy == copy, "a page with no word zero equals its copy");
        for w in 0..8 {
            for bit in [0, 63] {
                let mut other = page;
                other.set_word(w, page.word(w) ^ 1 << bit);
                assert!(page != other, "word {w} bit {bit}");
            }
        }
    }

    #[test]
    fn zeroed_page_is_boot_state() {
        let p = Page::default();
        assert_eq!(p.mapcount_raw(), -1);
        assert_eq!(p.refcount(), 0);
        assert_eq!(p.word(W_COUNTS), 0x0000_0000_ffff_ffff);
    }

    #[test]
    fn first_tail_fields_overlap_lru_prev_and_mapping() {
        let mut p = Page::default();
        p.set_word(W_LRU_PREV, 0);
        p.set_compound_dtor(COMPOUND_PAGE_DTOR);
        p.set_compound_order_byte(9);
        p.set_compound_mapcount_raw(-1);
        assert_eq!(p.word(W_LRU_PREV), 0xffff_ffff_0000_0901);
        p.set_mapping(TAIL_MAPPING);
        p.set_compound_pincount(0);
        p.set_compound_nr(512);
        assert_eq!(p.mapping(), 0x0000_0200_0000_0000);
        // Each field reads back through its accessor, whatever its value.
        p.set_compound_dtor(7);
        p.set_compound_mapcount_raw(5);
        p.set_compound_nr(64);
        assert_eq!(
            (
                p.compound_dtor(),
                p.compound_order(),
                p.compound_mapcount_raw()
            ),
            (7, 9, 5)
        );
        assert_eq!((p.compound_nr(), p.compound_pincount()), (64, 0));
    }

    /// `compound_head()`: bit 0 of `compound_head` (the `lru.next` word) set
    /// means a tail, and the word minus 1 is the head's `struct page *`; one
    /// that points at no `struct page` is the pointer the kernel would follow.
    #[test]
    fn compound_head_follows_the_tail_bit() {
        let mut m = Memmap::new(4);
        assert_eq!(m.compound_head(2), Ok(2), "bit 0 clear: the page itself");
        m.page_mut(2).set_word(W_LRU_NEXT, page_ptr(1) + 1);
        assert_eq!(m.compound_head(2), Ok(1));
        m.page_mut(3).set_word(W_LRU_NEXT, 0xdead_0001);
        assert_eq!(m.compound_head(3), Err(0xdead_0000), "a wild head pointer");
    }

    #[test]
    fn unaligned_memmap_access_spans_pages() {
        let mut m = Memmap::new(2);
        m.write_u64(page_ptr(0) + 60, 0x1122_3344_5566_7788);
        assert_eq!(m.read_u64(page_ptr(0) + 60), 0x1122_3344_5566_7788);
        assert_eq!(m.page(1).flags(), 0x1122_3344);
    }
}
