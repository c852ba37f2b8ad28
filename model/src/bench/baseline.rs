//! The kernel's `bpf_prog_pack` allocator as it is (`kernel/bpf/core.c`), as
//! the baseline the lock-free [`PackAlloc`](crate::kernel::optimised::pack::PackAlloc)
//! is measured against.
//!
//! One mutex (`pack_mutex`) around everything; a list of packs, each a plain
//! bitmap of one bit per 64-byte chunk. `bpf_prog_pack_alloc` walks the list in
//! order and takes the first pack where `bitmap_find_next_zero_area` finds a
//! run (the lowest), else `alloc_new_pack` appends a pack and the program goes
//! at chunk 0. `bpf_prog_pack_free` walks the list for the pack containing the
//! address, `bitmap_clear`s, and frees the pack (`list_del`) once
//! `bitmap_find_next_zero_area(bitmap, chunks, 0, chunks, 0) == 0`, i.e. it is
//! empty. The searches are `lib/find_bit.c` and `lib/bitmap.c` transcribed:
//! word by word, no summary.

use std::sync::{Mutex, PoisonError};

use crate::kernel::optimised::pack::{CHUNK_SHIFT, size_to_nbits};

const BITS: usize = u64::BITS as usize;

/// An allocation: `nbits` chunks at `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BaseChunk {
    pub addr: u64,
    pub nbits: u32,
}

/// `struct bpf_prog_pack`.
struct Pack {
    base: u64,
    bitmap: Vec<u64>,
}

/// Everything `pack_mutex` protects, and the backing's bookkeeping.
struct Inner {
    /// `pack_list`, in list order.
    packs: Vec<Pack>,
    /// Bases given back, reused first (as `module_alloc` would).
    free_bases: Vec<u64>,
    next_base: u64,
    peak: usize,
}

/// The kernel's allocator over packs of `pack_size` bytes.
pub struct Baseline {
    pack_size: u64,
    chunks: usize,
    inner: Mutex<Inner>,
}

/// Where the baseline's packs start.
const BASE: u64 = 0x2000_0000_0000;

impl Baseline {
    /// `pack_size`: a multiple of 4 KiB.
    pub fn new(pack_size: u64) -> Self {
        assert!(
            pack_size > 0 && pack_size % 4096 == 0,
            "pack size {pack_size:#x}"
        );
        Baseline {
            pack_size,
            chunks: (pack_size >> CHUNK_SHIFT) as usize,
            inner: Mutex::new(Inner {
                packs: Vec::new(),
                free_bases: Vec::new(),
                next_base: BASE,
                peak: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `bpf_prog_pack_alloc(size)` for `1 <= size <= pack_size` (None
    /// otherwise: larger programs get their own `module_alloc`).
    pub fn alloc(&self, size: u64) -> Option<BaseChunk> {
        if size == 0 || size > self.pack_size {
            return None;
        }
        let nbits = size_to_nbits(size) as usize;
        let chunks = self.chunks;
        let mut g = self.lock();
        for pack in g.packs.iter_mut() {
            let pos = bitmap_find_next_zero_area(&pack.bitmap, chunks, 0, nbits);
            if pos < chunks {
                bitmap_set(&mut pack.bitmap, pos, nbits);
                return Some(BaseChunk {
                    addr: pack.base + ((pos as u64) << CHUNK_SHIFT),
                    nbits: nbits as u32,
                });
            }
        }
        // alloc_new_pack()
        let base = g.free_bases.pop().unwrap_or_else(|| {
            g.next_base += 2 * self.pack_size;
            g.next_base - 2 * self.pack_size
        });
        let mut bitmap = vec![0; chunks.div_ceil(BITS)];
        bitmap_set(&mut bitmap, 0, nbits);
        g.packs.push(Pack { base, bitmap });
        g.peak = g.peak.max(g.packs.len());
        Some(BaseChunk {
            addr: base,
            nbits: nbits as u32,
        })
    }

    /// `bpf_prog_pack_free(ptr, size)`.
    pub fn free(&self, c: BaseChunk) {
        let (chunks, size) = (self.chunks, self.pack_size);
        let mut g = self.lock();
        let Some(i) = (g.packs.iter()).position(|p| c.addr >= p.base && c.addr < p.base + size)
        else {
            // The kernel WARNs ("bpf_prog_pack bug") and returns.
            return;
        };
        let pack = &mut g.packs[i];
        let pos = ((c.addr - pack.base) >> CHUNK_SHIFT) as usize;
        bitmap_clear(&mut pack.bitmap, pos, c.nbits as usize);
        if bitmap_find_next_zero_area(&pack.bitmap, chunks, 0, chunks) == 0 {
            let base = pack.base;
            g.packs.remove(i);
            g.free_bases.push(base);
        }
    }

    /// Packs on the list.
    pub fn live_packs(&self) -> usize {
        self.lock().packs.len()
    }

    /// The most packs that were ever on the list at once.
    pub fn peak_packs(&self) -> usize {
        self.lock().peak
    }
}

/// `_find_next_bit(addr, nbits, start, invert)`: the lowest bit `>= start`
/// (below `nbits`) that is set in `map ^ invert`, or `nbits`. Word by word.
fn find_next(map: &[u64], nbits: usize, start: usize, invert: u64) -> usize {
    if start >= nbits {
        return nbits;
    }
    let mut w = start / BITS;
    let mut tmp = (map[w] ^ invert) & (u64::MAX << (start % BITS));
    while tmp == 0 {
        w += 1;
        if w * BITS >= nbits {
            return nbits;
        }
        tmp = map[w] ^ invert;
    }
    (w * BITS + tmp.trailing_zeros() as usize).min(nbits)
}

/// `find_next_zero_bit`.
fn find_next_zero_bit(map: &[u64], nbits: usize, start: usize) -> usize {
    find_next(map, nbits, start, u64::MAX)
}

/// `find_next_bit`.
fn find_next_bit(map: &[u64], nbits: usize, start: usize) -> usize {
    find_next(map, nbits, start, 0)
}

/// `bitmap_find_next_zero_area(map, size, start, nr, 0)`: the lowest index
/// `>= start` of `nr` clear bits; a value `> size - nr` if there is none.
pub fn bitmap_find_next_zero_area(map: &[u64], size: usize, start: usize, nr: usize) -> usize {
    let mut start = start;
    loop {
        let index = find_next_zero_bit(map, size, start);
        let end = index + nr;
        if end > size {
            return end;
        }
        let i = find_next_bit(map, end, index);
        if i < end {
            start = i + 1;
            continue;
        }
        return index;
    }
}

/// The (word, mask) pieces of bits `start..start + len`.
fn pieces(start: usize, len: usize) -> impl Iterator<Item = (usize, u64)> {
    let end = start + len;
    let words = if len == 0 {
        0..0
    } else {
        start / BITS..end.div_ceil(BITS)
    };
    words.map(move |w| {
        let lo = start.saturating_sub(w * BITS).min(BITS);
        let hi = (end - w * BITS).min(BITS);
        let below = |n: usize| if n >= BITS { u64::MAX } else { (1 << n) - 1 };
        (w, below(hi) & !below(lo))
    })
}

/// `bitmap_set`.
fn bitmap_set(map: &mut [u64], start: usize, len: usize) {
    for (w, mask) in pieces(start, len) {
        map[w] |= mask;
    }
}

/// `bitmap_clear`.
fn bitmap_clear(map: &mut [u64], start: usize, len: usize) {
    for (w, mask) in pieces(start, len) {
        map[w] &= !mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_next_zero_area_is_first_fit() {
        let mut map = vec![0u64; 4];
        assert_eq!(bitmap_find_next_zero_area(&map, 256, 0, 10), 0);
        bitmap_set(&mut map, 0, 70);
        assert_eq!(map[0], u64::MAX);
        assert_eq!(map[1], (1 << 6) - 1);
        assert_eq!(bitmap_find_next_zero_area(&map, 256, 0, 1), 70);
        bitmap_set(&mut map, 80, 1);
        assert_eq!(bitmap_find_next_zero_area(&map, 256, 0, 10), 70);
        assert_eq!(bitmap_find_next_zero_area(&map, 256, 0, 11), 81);
        assert!(bitmap_find_next_zero_area(&map, 256, 0, 200) > 256 - 200);
        bitmap_clear(&mut map, 0, 70);
        bitmap_clear(&mut map, 80, 1);
        assert_eq!(bitmap_find_next_zero_area(&map, 256, 0, 256), 0);
    }

    #[test]
    fn packs_come_and_go() {
        let b = Baseline::new(4096);
        let x = b.alloc(4096).unwrap();
        let y = b.alloc(64).unwrap();
        assert_eq!((b.live_packs(), y.addr - x.addr), (2, 2 * 4096));
        let z = b.alloc(65).unwrap();
        assert_eq!(z.addr, y.addr + 64);
        b.free(x);
        assert_eq!(b.live_packs(), 1);
        // The freed pack's base comes back, appended to the list.
        let w = b.alloc(4000).unwrap();
        assert_eq!((w.addr, b.live_packs(), b.peak_packs()), (x.addr, 2, 2));
        for c in [y, z, w] {
            b.free(c);
        }
        assert_eq!(b.live_packs(), 0);
        assert_eq!(b.alloc(0), None);
        assert_eq!(b.alloc(4097), None);
    }
}
