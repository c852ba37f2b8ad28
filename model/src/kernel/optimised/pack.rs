//! The chunk allocator under `bpf_prog_pack` (`kernel/bpf/core.c`:
//! `bpf_prog_pack_alloc`, `bpf_prog_pack_free`, `alloc_new_pack`), lock-free on
//! its fast path.
//!
//! # What the kernel does
//!
//! A pack is `BPF_PROG_PACK_SIZE` bytes of executable memory cut into 64-byte
//! chunks, one bitmap bit each. `bpf_prog_pack_alloc` walks the pack list in
//! order and takes the first pack where `bitmap_find_next_zero_area` finds a run
//! of `BPF_PROG_SIZE_TO_NBITS(size)` clear bits (the lowest such run); if none
//! has room, `alloc_new_pack` makes a pack, adds it to the list, and the program
//! goes at chunk 0. `bpf_prog_pack_free` computes `pos = (ptr - pack->ptr) >> 6`,
//! calls `bitmap_clear(pos, nbits)` *without* checking that those bits were set
//! (a wrong size silently frees a neighbour's chunks; this model does the same),
//! and releases the pack as soon as its bitmap is empty. One mutex
//! (`pack_mutex`) serialises all of it.
//!
//! # Where this model differs
//!
//! - **Lock-free fast path.** Allocation within existing packs and every free
//!   that does not empty a pack take no lock: bits are claimed by
//!   compare-and-swap and released by `fetch_and`. Only making a pack
//!   ([`PackSource::alloc_pack`]) and releasing one ([`PackSource::free_pack`])
//!   take the slow-path mutex, which stands for `pack_mutex`.
//! - **Slots instead of a list.** Packs live in a fixed array of `max_packs`
//!   slots whose bitmaps are preallocated; a new pack takes the lowest free
//!   slot, and the search goes in slot order rather than list insertion order.
//!   (The kernel appends to its list, so the orders agree until a released pack
//!   leaves a hole that a later pack fills.)
//! - **A summary level.** Four bits per bitmap word, its *room*: whether the
//!   word has a run of at least 1, 4, 16 or 64 clear bits ([`ROOM`]). A run of
//!   `n` chunks spans at most two words unless it covers a whole one, so it
//!   meets a word with a clear run of `min(64, ⌈n/2⌉)`; the search skips to the
//!   first word whose room says it has the largest [`ROOM`] step below that
//!   (the run can start no earlier than the word before it), and skips full
//!   words when looking for a clear bit. The summary is a hint: only the CAS
//!   on the real word decides. A candidate run is also checked from its end, so
//!   the search jumps past the highest set bit in it and never looks at words
//!   in between that could not start a run anyway.
//!
//! For a single thread everything is deterministic and equal to the kernel's
//! first fit (modulo the slot order above).
//!
//! # Protocol
//!
//! Each slot has a `used` word: its top bit is `DEAD`, set while the slot
//! holds no pack; the next [`GEN_BITS`] bits are the slot's *generation*,
//! bumped by every release; the low [`COUNT_BITS`] bits, its *count*, count
//! chunks *paid for*: every bit set in the bitmap was paid for by a
//! reservation, and is refunded by whoever clears it. "`used` = 0" below means
//! a live slot with count 0 (any generation).
//!
//! - **Reserve, then claim.** An allocator first adds `nbits` to `used`
//!   (`fetch_add`). If the value it added to had `DEAD`, it backs off
//!   (subtracts `nbits` again) and skips the slot. Otherwise it searches and
//!   claims bits word by word in ascending order with CAS; if a word's bits turn
//!   out taken it clears exactly the bits it set in earlier words (`fetch_and`)
//!   and searches on past the conflicting bit (if a wrong-size free cleared
//!   some of the bits it had set, that freer refunded them, and the allocator
//!   tops its reservation up by as many). Having found nothing, it gives its
//!   reservation back. Only after a successful claim does it read the slot's
//!   base address. Before reserving, a slot whose `used` says it cannot have
//!   room is skipped without an RMW; the slow path's retry does not trust that
//!   hint, since `used` also counts other threads' transient reservations.
//! - **Free.** A freer pins the pack by adding 1 to `used` (backing off if
//!   `DEAD`: a free into a slot without a pack does nothing), clears its bits
//!   with `fetch_and`, counting those that really went from 1 to 0, and
//!   subtracts that count plus its pin. (The pin goes beyond "clear, then
//!   subtract": it keeps a stale or wrong-size free, which may own none of the
//!   bits it clears, from racing a release and re-install of the slot; in the
//!   kernel `pack_mutex` serialises those.)
//! - **Release.** Whoever brings `used` to exactly 0 by a subtraction (a freer,
//!   an allocator giving back, a back-off) tries to release: under the mutex it
//!   does `compare_exchange(v, DEAD | next generation)`, where `v` is the exact
//!   word its subtraction left, and only if that succeeds it calls
//!   [`PackSource::free_pack`] and resets the summary. A failed CAS means someone
//!   reserved or pinned meanwhile, or released the pack; whoever brings the
//!   count to 0 next will try again. The generation in `v` is what makes this
//!   safe: between the subtraction and the mutex, another thread may release
//!   the pack, install a new one in the slot and empty that too, so that the
//!   count is 0 again; comparing the count alone, the late releaser would then
//!   free the *new* pack, which its emptier meant to release (an ABA on the
//!   slot, found by the `pack_concurrent` fuzz target and kept as the loom
//!   model `stale_release_vs_reinstall`). The generation wraps after
//!   2^[`GEN_BITS`] releases of one slot; an ABA then needs exactly that many
//!   releases to pass while one thread waits for the mutex.
//!   (So under concurrency a free that empties a pack may report
//!   [`FreeOutcome::Freed`] and leave the release to an allocation that then
//!   took nothing; sequentially the outcome is the kernel's.)
//! - **Install** (under the mutex, in a slot with `DEAD`): zero the bitmap, set
//!   bits `0..nbits`, write the summary and the base, then clear `DEAD` and add
//!   `nbits` in one `fetch_sub(DEAD - nbits)` (the generation is kept), so that
//!   increments from allocators that saw `DEAD` and have not yet backed off are
//!   kept and net out when they subtract.
//!
//! Invariants (`pending` = reservations and pins not yet given back, bits cleared
//! but not yet refunded, back-off increments not yet subtracted):
//!
//! 1. count = `popcount(bitmap) + pending`, hence `used = 0` implies an
//!    empty bitmap and nobody holding a reservation, a pin or a claim;
//! 2. after the release CAS puts `DEAD` in, every later reservation or pin sees
//!    `DEAD` and touches nothing but `used`, so the bitmap, summary and base of a
//!    dead slot belong to the mutex holder alone;
//! 3. while a thread holds a reservation, a pin or a chunk, `used > 0`, so the
//!    pack in its slot cannot be released and replaced: the base an allocator
//!    reads after claiming is the base of the pack it claimed in, and a pack is
//!    never released under an owner of a chunk — unless a wrong-size free
//!    cleared that owner's bits, the kernel's own bug, which is modelled.
//! 4. at quiescence, each word's summary equals its room, every live pack has a
//!    chunk in use, and a free slot has count 0 and an empty bitmap
//!    ([`PackAlloc::check_consistency`]).
//!
//! The summary converges (4) because the thread whose write changes a word's
//! room then loops: read the word, write its room into the summary with an RMW,
//! re-read the word, until the re-read equals the value it acted on. Every
//! write to a summary word is an RMW (`AcqRel`), so the last RMW on a word's
//! room is ordered after the last write that changed that room, its re-read
//! sees that (or a later) value, and it stopped only on a value with the final
//! room.
//!
//! # Orderings
//!
//! The release protocol reasons only about the modification order of one
//! `used` counter, which every RMW respects whatever its ordering. Visibility
//! comes from release/acquire through RMW chains: the install's publishing
//! `fetch_sub` (release) is read by reservations (acquire), and a freer's bit
//! clears precede its refunding `fetch_sub` (release), read by the release CAS
//! (acquire). So RMWs on `used`, the bitmap and the summary are `AcqRel`; loads
//! used only as search hints are `Relaxed`, since a CAS re-validates them.
//! Nothing relies on `SeqCst` (which loom models as `AcqRel` anyway).

use std::sync::PoisonError;

use crate::sync::Mutex;
use crate::sync::atomic::AtomicU64;
use crate::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

/// `BPF_PROG_CHUNK_SHIFT`.
pub const CHUNK_SHIFT: u32 = 6;
/// `BPF_PROG_CHUNK_SIZE`.
pub const CHUNK_SIZE: u64 = 1 << CHUNK_SHIFT;

/// Bits in a bitmap word and in a summary word.
const WORD: u64 = u64::BITS as u64;
/// Flag in a slot's `used` word: the slot holds no pack.
const DEAD: u64 = 1 << 63;
/// Bits of a slot's count (the low bits of `used`). The count never exceeds
/// the chunks of a pack (at most 2^24, see [`PackAlloc::new`]) times the
/// threads plus one, so 40 bits hold it for 65,535 threads.
pub const COUNT_BITS: u32 = 40;
/// Bits of a slot's generation (between the count and `DEAD`).
pub const GEN_BITS: u32 = 63 - COUNT_BITS;
const COUNT: u64 = (1 << COUNT_BITS) - 1;
const GEN: u64 = DEAD - 1 - COUNT;

/// The count of a `used` word.
fn count(used: u64) -> u64 {
    used & COUNT
}

/// The `used` word that releases a slot whose word was `used`: `DEAD`, count
/// 0, the generation after `used`'s (wrapping).
fn released(used: u64) -> u64 {
    DEAD | (((used & GEN) + COUNT + 1) & GEN)
}

/// `BPF_PROG_SIZE_TO_NBITS`: chunks for `size` bytes.
pub fn size_to_nbits(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE)
}

/// Where packs come from. Called only on the slow path, with the allocator's
/// slow-path lock held; it must not call back into the allocator.
pub trait PackSource {
    /// Backing for a new pack of `size` bytes: its base address, or None
    /// (ENOMEM). `alloc_new_pack`'s `module_alloc`.
    fn alloc_pack(&mut self, size: u64) -> Option<u64>;
    /// Gives back a pack's backing; all its chunks are free.
    /// `bpf_prog_pack_free`'s `module_memfree`.
    fn free_pack(&mut self, base: u64, size: u64);
}

/// An allocation: `nbits` chunks from chunk `pos` of the pack in `slot`,
/// starting at `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Chunk {
    pub addr: u64,
    pub slot: u32,
    pub pos: u32,
    pub nbits: u32,
}

/// What a free did to the pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeOutcome {
    /// Chunks cleared; the pack stays.
    Freed,
    /// The pack became empty and was given back through the source.
    PackReleased { base: u64 },
}

/// A live pack: its slot, base and bitmap (bit `i` of word `w` is chunk
/// `w * 64 + i`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackSnapshot {
    pub slot: u32,
    pub base: u64,
    pub words: Vec<u64>,
}

/// One pack slot: `struct bpf_prog_pack` with its bitmap preallocated.
struct Slot {
    /// Chunks paid for (the count), the generation, and `DEAD` while the
    /// slot holds no pack.
    used: AtomicU64,
    /// The pack's base address; meaningful while `used` has no `DEAD`.
    base: AtomicU64,
    /// One bit per chunk.
    bitmap: Box<[AtomicU64]>,
    /// Summary: bits `4w..4w + 4` of the summary words (16 bitmap words per
    /// summary word) are the [`room`] of bitmap word `w`; bits past the bitmap
    /// are 0.
    summary: Box<[AtomicU64]>,
}

impl Slot {
    fn new(words: usize) -> Self {
        Slot {
            used: AtomicU64::new(DEAD),
            base: AtomicU64::new(0),
            bitmap: (0..words).map(|_| AtomicU64::new(0)).collect(),
            summary: (0..words.div_ceil(PER))
                .map(|i| AtomicU64::new(empty_summary(i, words)))
                .collect(),
        }
    }

    /// The base of the pack in this slot, if it holds one.
    fn live_base(&self) -> Option<u64> {
        (self.used.load(Acquire) & DEAD == 0).then(|| self.base.load(Relaxed))
    }

    fn words(&self) -> Vec<u64> {
        self.bitmap.iter().map(|w| w.load(Acquire)).collect()
    }
}

/// Whether the caller already holds the slow-path mutex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lock {
    Held,
    Take,
}

/// The pack allocator: `max_packs` slots of `pack_size` bytes each.
pub struct PackAlloc {
    pack_size: u64,
    chunks: u64,
    slots: Box<[Slot]>,
    /// The slow path: `pack_mutex`, held to make or release a pack.
    slow: Mutex<()>,
}

impl PackAlloc {
    /// `pack_size` is a multiple of 64 × 64 bytes (4 KiB) — e.g. 4096, 2 MiB,
    /// 4 MiB; `max_packs` slots.
    pub fn new(pack_size: u64, max_packs: usize) -> Self {
        assert!(
            pack_size > 0 && pack_size % (CHUNK_SIZE * WORD) == 0,
            "pack size {pack_size:#x} is not a positive multiple of 4 KiB"
        );
        let chunks = pack_size >> CHUNK_SHIFT;
        assert!(chunks <= 1 << 24, "pack size {pack_size:#x} too large");
        assert!(u32::try_from(max_packs).is_ok(), "too many packs");
        let words = (chunks / WORD) as usize;
        PackAlloc {
            pack_size,
            chunks,
            slots: (0..max_packs).map(|_| Slot::new(words)).collect(),
            slow: Mutex::new(()),
        }
    }

    pub fn pack_size(&self) -> u64 {
        self.pack_size
    }

    /// Puts every slot back as [`PackAlloc::new`] made it: no pack, generation
    /// 0, bitmap and summary empty. Only a slot that ever held a pack was
    /// written (by `install` and what followed), so only those are reset.
    /// A booted kernel's allocator is reset and kept on its thread for the
    /// next kernel of its shape (see `Optimised`'s drop), so that a fuzz
    /// execution does not allocate and clear a bitmap for every slot.
    pub fn reset(&mut self) {
        for s in self.slots.iter_mut() {
            if s.used.load(Relaxed) == DEAD && s.base.load(Relaxed) == 0 {
                continue;
            }
            let words = s.bitmap.len();
            s.used.store(DEAD, Relaxed);
            s.base.store(0, Relaxed);
            s.bitmap.iter().for_each(|w| w.store(0, Relaxed));
            for (i, f) in s.summary.iter().enumerate() {
                f.store(empty_summary(i, words), Relaxed);
            }
        }
    }

    /// The number of slots.
    pub fn max_packs(&self) -> usize {
        self.slots.len()
    }

    pub fn chunks_per_pack(&self) -> u64 {
        self.chunks
    }

    /// `bpf_prog_pack_alloc`: first fit of `size` bytes (1 ≤ size ≤ pack size;
    /// None otherwise), lock-free over the existing packs in slot order; if
    /// none has room, the slow path asks `src` for a new pack
    /// (`alloc_new_pack`) and allocates at its chunk 0. None if `src` fails or
    /// every slot holds a pack.
    pub fn alloc(&self, size: u64, src: &mut dyn PackSource) -> Option<Chunk> {
        self.alloc_preferring(size, src, &|_| true)
    }

    /// [`PackAlloc::alloc`] with a preference among packs (the cBPF
    /// hardening's `was_classic ^ pack->arch_flush_needed`, a23c1c5396a9):
    /// the first pack with room that `prefer(slot)` accepts, else the first
    /// pack with room (`fallback_pack`), else a new pack.
    pub fn alloc_preferring(
        &self,
        size: u64,
        src: &mut dyn PackSource,
        prefer: &dyn Fn(u32) -> bool,
    ) -> Option<Chunk> {
        if size == 0 || size > self.pack_size {
            return None;
        }
        let nbits = size_to_nbits(size);
        if let Some(chunk) = self.alloc_fast(nbits, src, Lock::Take, prefer) {
            return Some(chunk);
        }
        self.alloc_slow(nbits, src, prefer)
    }

    /// `bpf_prog_pack_free`'s `bitmap_clear(pack->bitmap, pos, nbits)` and
    /// release: clears `nbits` bits from `pos` in pack `slot` (clamped to the
    /// pack's end; bits already clear stay clear, unchecked), then releases the
    /// pack through `src` if it became empty. Returns how many bits went from
    /// set to clear, and the outcome. A slot without a pack: nothing happens.
    pub fn free_bits(
        &self,
        slot: u32,
        pos: u64,
        nbits: u64,
        src: &mut dyn PackSource,
    ) -> (u64, FreeOutcome) {
        let idx = slot as usize;
        let end = pos.saturating_add(nbits).min(self.chunks);
        let Some(s) = self.slots.get(idx) else {
            return (0, FreeOutcome::Freed);
        };
        if pos >= end {
            return (0, FreeOutcome::Freed);
        }
        // Pin the pack so it cannot be released and replaced while we clear.
        let cleared = if s.used.fetch_add(1, AcqRel) & DEAD != 0 {
            0
        } else {
            self.clear(s, pos, end)
        };
        let outcome = match self.give_back(idx, cleared + 1, src, Lock::Take) {
            Some(base) => FreeOutcome::PackReleased { base },
            None => FreeOutcome::Freed,
        };
        (cleared, outcome)
    }

    /// `bpf_prog_pack_free` of an allocation made by [`PackAlloc::alloc`].
    pub fn free(&self, chunk: Chunk, src: &mut dyn PackSource) -> FreeOutcome {
        let (pos, nbits) = (u64::from(chunk.pos), u64::from(chunk.nbits));
        let (_, outcome) = self.free_bits(chunk.slot, pos, nbits, src);
        outcome
    }

    /// The live pack whose `[base, base + pack_size)` contains `addr`, as
    /// (slot, base): the range lookup of `bpf_prog_pack_free` since
    /// ea2babac63d4.
    pub fn find(&self, addr: u64) -> Option<(u32, u64)> {
        self.slots.iter().enumerate().find_map(|(i, s)| {
            let base = s.live_base()?;
            (addr >= base && addr - base < self.pack_size).then_some((i as u32, base))
        })
    }

    /// Base of the live pack in `slot`, if any.
    pub fn base(&self, slot: u32) -> Option<u64> {
        self.slots.get(slot as usize)?.live_base()
    }

    /// Live packs in slot order. Exact when quiescent.
    pub fn snapshot(&self) -> Vec<PackSnapshot> {
        let live = self.slots.iter().enumerate();
        live.filter_map(|(i, s)| {
            Some(PackSnapshot {
                slot: i as u32,
                base: s.live_base()?,
                words: s.words(),
            })
        })
        .collect()
    }

    /// How many slots hold a pack.
    pub fn live_packs(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.live_base().is_some())
            .count()
    }

    /// Chunks in use over all live packs (counting in-flight reservations;
    /// exact when quiescent).
    pub fn used_chunks(&self) -> u64 {
        let counts = self.slots.iter().map(|s| s.used.load(Acquire));
        counts.filter(|u| u & DEAD == 0).map(count).sum()
    }

    /// Checks, for a quiescent allocator: summary bits against the bitmap,
    /// `used` against the bitmap's popcount, live packs non-empty and
    /// non-overlapping, free slots empty. Err describes the first inconsistency.
    pub fn check_consistency(&self) -> Result<(), String> {
        let mut bases = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            let used = s.used.load(Acquire);
            let words = s.words();
            let pop: u64 = words.iter().map(|w| u64::from(w.count_ones())).sum();
            if used & DEAD != 0 {
                if count(used) != 0 {
                    return Err(format!(
                        "slot {i}: free slot has a count of {}",
                        count(used)
                    ));
                }
                if pop != 0 {
                    return Err(format!("slot {i}: free slot has {pop} chunks set"));
                }
            } else {
                let used = count(used);
                if used != pop {
                    return Err(format!("slot {i}: count = {used} but {pop} chunks set"));
                }
                if used == 0 {
                    return Err(format!("slot {i}: live pack with no chunk in use"));
                }
                bases.push((s.base.load(Acquire), i));
            }
            for (j, f) in s.summary.iter().enumerate() {
                let (got, want) = (f.load(Acquire), summary_of(j, words.len(), |w| words[w]));
                if got != want {
                    return Err(format!(
                        "slot {i}: summary word {j} is {got:#018x}, the words' room {want:#018x}"
                    ));
                }
            }
        }
        bases.sort_unstable();
        for pair in bases.windows(2) {
            let ((a, i), (b, j)) = (pair[0], pair[1]);
            if b - a < self.pack_size {
                return Err(format!(
                    "packs in slots {i} and {j} overlap: {a:#x}, {b:#x}"
                ));
            }
        }
        Ok(())
    }

    // ---- slow path ----------------------------------------------------------

    fn lock(&self) -> impl Drop + '_ {
        self.slow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `bpf_prog_pack_alloc` under `pack_mutex` when no pack had room: search
    /// once more (another thread may have made a pack meanwhile), then
    /// `alloc_new_pack` in the lowest free slot.
    fn alloc_slow(
        &self,
        nbits: u64,
        src: &mut dyn PackSource,
        prefer: &dyn Fn(u32) -> bool,
    ) -> Option<Chunk> {
        let _guard = self.lock();
        if let Some(chunk) = self.alloc_fast(nbits, src, Lock::Held, prefer) {
            return Some(chunk);
        }
        // DEAD only changes under the mutex, so this is exact.
        let idx = self.slots.iter().position(|s| s.live_base().is_none())?;
        let base = src.alloc_pack(self.pack_size)?;
        self.install(idx, base, nbits);
        Some(self.chunk(idx, base, 0, nbits))
    }

    /// `alloc_new_pack` into the dead slot `idx` with chunks `0..nbits` taken.
    /// Under the mutex; by invariant 2 nobody else touches the slot's bitmap,
    /// summary or base.
    fn install(&self, idx: usize, base: u64, nbits: u64) {
        let s = &self.slots[idx];
        for (w, word) in s.bitmap.iter().enumerate() {
            word.store(word_mask(w, 0, nbits), Relaxed);
        }
        let words = s.bitmap.len();
        for (i, f) in s.summary.iter().enumerate() {
            f.swap(summary_of(i, words, |w| word_mask(w, 0, nbits)), AcqRel);
        }
        s.base.store(base, Relaxed);
        // Publishes the above (release) and makes the slot live, keeping any
        // back-off increments of allocators that saw DEAD.
        s.used.fetch_sub(DEAD - nbits, AcqRel);
    }

    /// Subtracts `n` from the slot's count; if that made `used` 0, tries to
    /// release the pack. Returns the released pack's base.
    fn give_back(&self, idx: usize, n: u64, src: &mut dyn PackSource, lock: Lock) -> Option<u64> {
        let s = &self.slots[idx];
        let prev = s.used.fetch_sub(n, AcqRel);
        debug_assert!(count(prev) >= n, "slot {idx}: count {prev:#x} below {n}");
        let left = prev - n;
        if left & (DEAD | COUNT) != 0 {
            return None;
        }
        let _guard = (lock == Lock::Take).then(|| self.lock());
        // Fails if someone reserved or pinned since (they will try again), or
        // if the pack we emptied was released, even if a new pack in this
        // slot is now empty too (its generation differs; see the module doc).
        s.used
            .compare_exchange(left, released(left), AcqRel, Relaxed)
            .ok()?;
        let base = s.base.load(Relaxed);
        let words = s.bitmap.len();
        for (i, f) in s.summary.iter().enumerate() {
            f.swap(empty_summary(i, words), AcqRel);
        }
        src.free_pack(base, self.pack_size);
        Some(base)
    }

    // ---- fast path ----------------------------------------------------------

    /// The preferred slots in order, then the others in order.
    fn alloc_fast(
        &self,
        nbits: u64,
        src: &mut dyn PackSource,
        lock: Lock,
        prefer: &dyn Fn(u32) -> bool,
    ) -> Option<Chunk> {
        let n = self.slots.len();
        let first = (0..n).filter(|&i| prefer(i as u32));
        let rest = (0..n).filter(|&i| !prefer(i as u32));
        (first.chain(rest)).find_map(|idx| self.alloc_in(idx, nbits, src, lock))
    }

    /// Reserve `nbits` in slot `idx`, claim the first fit, read the base.
    fn alloc_in(
        &self,
        idx: usize,
        nbits: u64,
        src: &mut dyn PackSource,
        lock: Lock,
    ) -> Option<Chunk> {
        let s = &self.slots[idx];
        let used = s.used.load(Relaxed);
        // A quick skip of packs without room. `used` also counts other
        // threads' transient reservations and pins, so the slow path's retry
        // (lock held) does not trust it: a nearly full pack is not passed over
        // for a new one just because someone was freeing into it.
        if used & DEAD != 0 || (lock == Lock::Take && count(used) + nbits > self.chunks) {
            return None;
        }
        // Acquire: if the slot is live we see its install (base, bitmap).
        if s.used.fetch_add(nbits, AcqRel) & DEAD != 0 {
            self.give_back(idx, nbits, src, lock);
            return None;
        }
        let Some(pos) = self.claim_first_fit(s, nbits) else {
            self.give_back(idx, nbits, src, lock);
            return None;
        };
        // Our reservation keeps this pack in the slot (invariant 3).
        let base = s.base.load(Relaxed);
        Some(self.chunk(idx, base, pos, nbits))
    }

    /// `bitmap_find_next_zero_area` + `bitmap_set`, with CAS and retry: the
    /// lowest run of `nbits` clear bits that we manage to claim. The caller
    /// holds a reservation of `nbits`.
    fn claim_first_fit(&self, s: &Slot, nbits: u64) -> Option<u64> {
        let mut start = 0;
        loop {
            let pos = self.find_area(s, start, nbits)?;
            match self.claim(s, pos, nbits) {
                Ok(()) => return Some(pos),
                Err((restart, lost)) => {
                    // Bits we had set and a (wrong-size) freer cleared were
                    // refunded by it: top our reservation up again. We still
                    // hold at least one, so the pack cannot go meanwhile.
                    if lost > 0 {
                        s.used.fetch_add(lost, AcqRel);
                    }
                    start = restart;
                }
            }
        }
    }

    /// `bitmap_find_next_zero_area(map, chunks, start, nbits, 0)`: the lowest
    /// `pos >= start` with bits `pos..pos + nbits` clear, as far as a racy read
    /// tells. A candidate run is checked from its end: past its highest set
    /// bit, so words that cannot hold the run are skipped without a look.
    /// Before that, words that the summary says cannot hold part of the run
    /// are skipped (see the module doc).
    fn find_area(&self, s: &Slot, start: u64, nbits: u64) -> Option<u64> {
        if nbits <= WORD {
            return find_short(s, start, nbits);
        }
        let level = level_for(nbits);
        let mut pos = start;
        loop {
            if level > 0 {
                // The run meets a word with this much room: it starts in that
                // word or the one before.
                let w = (pos / WORD) as usize;
                let r = next_with_room(s, w, level)?;
                if r > w + 1 {
                    pos = (r as u64 - 1) * WORD;
                }
            }
            pos = self.next_zero(s, pos)?;
            let end = pos + nbits;
            if end > self.chunks {
                return None;
            }
            match last_set(s, pos, end) {
                None => return Some(pos),
                Some(bit) => pos = bit + 1,
            }
        }
    }

    /// `find_next_zero_bit`, skipping words the summary marks full.
    fn next_zero(&self, s: &Slot, pos: u64) -> Option<u64> {
        if pos >= self.chunks {
            return None;
        }
        let mut w = (pos / WORD) as usize;
        let mut v = s.bitmap[w].load(Relaxed) | below(pos % WORD);
        while v == u64::MAX {
            w = next_with_room(s, w + 1, 0)?;
            v = s.bitmap[w].load(Relaxed);
        }
        Some(w as u64 * WORD + u64::from(v.trailing_ones()))
    }

    /// Claims bits `pos..pos + nbits` word by word in ascending order. On a
    /// conflict, unclaims what it set and returns (where to search on, bits it
    /// had set that someone else cleared meanwhile).
    fn claim(&self, s: &Slot, pos: u64, nbits: u64) -> Result<(), (u64, u64)> {
        let end = pos + nbits;
        for (w, mask) in spans(pos, end) {
            let word = &s.bitmap[w];
            let mut cur = word.load(Relaxed);
            loop {
                let taken = cur & mask;
                if taken != 0 {
                    // No run from pos up to the highest taken bit can fit.
                    let restart = w as u64 * WORD + u64::from(WORD as u32 - taken.leading_zeros());
                    let done = (w as u64 * WORD).max(pos);
                    let lost = (done - pos) - self.clear(s, pos, done);
                    return Err((restart, lost));
                }
                // Acquire: the chunks' previous owner freed them before us.
                match claim_cas(word, cur, cur | mask) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            if room(cur) != room(cur | mask) {
                sync_room(s, w);
            }
        }
        Ok(())
    }

    /// `bitmap_clear(map, from, to - from)` with `fetch_and`: returns how many
    /// bits went from set to clear.
    fn clear(&self, s: &Slot, from: u64, to: u64) -> u64 {
        let mut cleared = 0;
        for (w, mask) in spans(from, to) {
            // Release: our use of the chunks happens before their next owner's.
            let old = s.bitmap[w].fetch_and(!mask, AcqRel);
            cleared += u64::from((old & mask).count_ones());
            if room(old) != room(old & !mask) {
                sync_room(s, w);
            }
        }
        cleared
    }

    fn chunk(&self, idx: usize, base: u64, pos: u64, nbits: u64) -> Chunk {
        Chunk {
            addr: base + (pos << CHUNK_SHIFT),
            slot: idx as u32,
            pos: pos as u32,
            nbits: nbits as u32,
        }
    }
}

/// The claim's compare-and-swap of a bitmap word from `cur` to `new`.
#[cfg(not(feature = "broken-cas"))]
fn claim_cas(word: &AtomicU64, cur: u64, new: u64) -> Result<u64, u64> {
    word.compare_exchange(cur, new, AcqRel, Relaxed)
}

/// The claim's compare-and-swap, broken on purpose (test-only feature
/// `broken-cas`): a load, a compare and a store, so that another thread's
/// claim between the load and the store is overwritten and two allocations
/// can get the same chunks. The loom models must catch this.
#[cfg(feature = "broken-cas")]
fn claim_cas(word: &AtomicU64, cur: u64, new: u64) -> Result<u64, u64> {
    use crate::sync::atomic::Ordering::Release;
    let now = word.load(Acquire);
    if now != cur {
        return Err(now);
    }
    word.store(new, Release);
    Ok(now)
}

/// Bits `0..n` of a word (`n <= 64`).
fn below(n: u64) -> u64 {
    if n >= WORD { u64::MAX } else { (1 << n) - 1 }
}

/// The bits of word `w` that fall in `[from, to)`.
fn word_mask(w: usize, from: u64, to: u64) -> u64 {
    let lo = w as u64 * WORD;
    let clamp = |x: u64| x.saturating_sub(lo).min(WORD);
    below(clamp(to)) & !below(clamp(from))
}

/// The (word, mask) pieces of `[from, to)`, in ascending order.
fn spans(from: u64, to: u64) -> impl DoubleEndedIterator<Item = (usize, u64)> {
    let words = if from < to {
        (from / WORD)..to.div_ceil(WORD)
    } else {
        0..0
    };
    words.map(move |w| (w as usize, word_mask(w as usize, from, to)))
}

/// The highest set bit in `[from, to)` (`from < to`), read racily.
fn last_set(s: &Slot, from: u64, to: u64) -> Option<u64> {
    spans(from, to).rev().find_map(|(w, mask)| {
        let v = s.bitmap[w].load(Relaxed) & mask;
        (v != 0).then(|| w as u64 * WORD + u64::from(WORD as u32 - 1 - v.leading_zeros()))
    })
}

/// Runs of clear bits the summary records per word: bit `k` of a word's room
/// says it has a run of at least `ROOM[k]` clear bits.
pub const ROOM: [u32; 4] = [1, 4, 16, 64];
/// Bitmap words per summary word (4 bits each).
const PER: usize = 16;
/// Bit 0 of every word's room in a summary word.
const ROOM0: u64 = 0x1111_1111_1111_1111;

/// The room of a bitmap word: bit `k` set iff it has a run of at least
/// `ROOM[k]` clear bits.
fn room(v: u64) -> u64 {
    let free = !v;
    // Bit i of `run` set iff bits i..i + 2^j are clear, for j = 1, 2, 3, 4.
    let mut run = free & (free >> 1);
    run &= run >> 2;
    let four = run != 0;
    run &= run >> 4;
    run &= run >> 8;
    let sixteen = run != 0;
    u64::from(free != 0) | u64::from(four) << 1 | u64::from(sixteen) << 2 | u64::from(v == 0) << 3
}

/// Summary word `i` of a bitmap of `words` words, word `w` being `word(w)`.
fn summary_of(i: usize, words: usize, word: impl Fn(usize) -> u64) -> u64 {
    let ws = i * PER..((i + 1) * PER).min(words);
    ws.map(|w| room(word(w)) << (4 * (w % PER)))
        .fold(0, |a, b| a | b)
}

/// `summary_of(i, words, |_| 0)`, without looking at each word: every word
/// of an empty bitmap has all the room there is.
fn empty_summary(i: usize, words: usize) -> u64 {
    let n = words.saturating_sub(i * PER).min(PER);
    let v = if n == PER {
        u64::MAX
    } else {
        (1 << (4 * n)) - 1
    };
    debug_assert_eq!(v, summary_of(i, words, |_| 0));
    v
}

/// The room level a run of `nbits` must meet in some word: the largest `k`
/// with `ROOM[k] <= min(64, ⌈nbits / 2⌉)`.
fn level_for(nbits: u64) -> usize {
    let half = nbits.div_ceil(2).min(WORD);
    ROOM.iter()
        .rposition(|&r| u64::from(r) <= half)
        .unwrap_or(0)
}

/// The first word at or after `from` whose room has bit `level`, as the
/// summary says.
fn next_with_room(s: &Slot, from: usize, level: usize) -> Option<usize> {
    if from >= s.bitmap.len() {
        return None;
    }
    let sel = ROOM0 << level;
    let mut i = from / PER;
    let mut bits = s.summary[i].load(Relaxed) & sel & !below(4 * (from % PER) as u64);
    while bits == 0 {
        i += 1;
        bits = s.summary.get(i)?.load(Relaxed) & sel;
    }
    let w = i * PER + bits.trailing_zeros() as usize / 4;
    (w < s.bitmap.len()).then_some(w)
}

/// `bitmap_find_next_zero_area` for a run of `nbits <= 64`, which lies in
/// one word or straddles two: a word at a time, with [`run_starts`] for the
/// runs inside it and its clear top bits plus the next word's clear bottom
/// bits for the one across; words the summary says have too little room are
/// skipped.
fn find_short(s: &Slot, start: u64, nbits: u64) -> Option<u64> {
    let words = s.bitmap.len();
    let level = level_for(nbits);
    let mut w = (start / WORD) as usize;
    let mut before = below(start % WORD);
    while w < words {
        // The run meets a word with this much room: it starts there or in the
        // word before.
        let r = next_with_room(s, w, level)?;
        if r > w + 1 {
            (w, before) = (r - 1, 0);
        }
        let v = s.bitmap[w].load(Relaxed) | before;
        let starts = run_starts(!v, nbits);
        if starts != 0 {
            return Some(w as u64 * WORD + u64::from(starts.trailing_zeros()));
        }
        let top = u64::from(v.leading_zeros());
        if top > 0 && w + 1 < words {
            let next = s.bitmap[w + 1].load(Relaxed);
            if top + u64::from(next.trailing_zeros()) >= nbits {
                return Some((w as u64 + 1) * WORD - top);
            }
        }
        (w, before) = (w + 1, 0);
    }
    None
}

/// Bit `i` set iff bits `i..i + n` of `free` are all set (`1 <= n <= 64`).
fn run_starts(free: u64, n: u64) -> u64 {
    let (mut run, mut len) = (free, 1);
    while len < n {
        let step = len.min(n - len);
        run &= run >> step;
        len += step;
    }
    run
}

/// Brings word `w`'s room in the summary in line after our write changed it:
/// write the room of the value read (an RMW every time), re-read, and repeat
/// until the word did not change meanwhile.
fn sync_room(s: &Slot, w: usize) {
    let (f, shift) = (&s.summary[w / PER], 4 * (w % PER));
    loop {
        let v = s.bitmap[w].load(Acquire);
        let want = room(v) << shift;
        let set = |old: u64| Some(old & !(0xf << shift) | want);
        // Always Ok: `set` never declines.
        let _ = f.fetch_update(AcqRel, Acquire, set);
        if s.bitmap[w].load(Acquire) == v {
            return;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicU32;
    use std::sync::{Arc, Mutex as StdMutex};

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const BASE: u64 = 0x1000_0000_0000;
    /// Miri is slow: fewer random ops and stress iterations there.
    const SCALE: usize = if cfg!(miri) { 50 } else { 1 };

    /// Bump allocator of pack addresses with a freed list (LIFO).
    struct Bump {
        next: u64,
        step: u64,
        freed: Vec<u64>,
        live: HashSet<u64>,
        allocs: usize,
        frees: usize,
        fail: bool,
    }

    impl Bump {
        fn new(step: u64) -> Self {
            Bump {
                next: BASE,
                step,
                freed: Vec::new(),
                live: HashSet::new(),
                allocs: 0,
                frees: 0,
                fail: false,
            }
        }
    }

    impl PackSource for Bump {
        fn alloc_pack(&mut self, size: u64) -> Option<u64> {
            assert_eq!(size, self.step);
            if self.fail {
                return None;
            }
            self.allocs += 1;
            let base = self.freed.pop().unwrap_or_else(|| {
                self.next += self.step;
                self.next - self.step
            });
            assert!(self.live.insert(base));
            Some(base)
        }

        fn free_pack(&mut self, base: u64, size: u64) {
            assert_eq!(size, self.step);
            assert!(self.live.remove(&base), "free of unknown pack {base:#x}");
            self.frees += 1;
            self.freed.push(base);
        }
    }

    /// A [`Bump`] shared between threads.
    struct Shared(Arc<StdMutex<Bump>>);

    impl PackSource for Shared {
        fn alloc_pack(&mut self, size: u64) -> Option<u64> {
            self.0.lock().unwrap().alloc_pack(size)
        }
        fn free_pack(&mut self, base: u64, size: u64) {
            self.0.lock().unwrap().free_pack(base, size)
        }
    }

    fn setup(pack_size: u64, slots: usize) -> (PackAlloc, Bump) {
        (PackAlloc::new(pack_size, slots), Bump::new(pack_size))
    }

    fn ok(pa: &PackAlloc) {
        if let Err(e) = pa.check_consistency() {
            panic!("{e}");
        }
    }

    /// Every word of every slot, for comparing whole allocators.
    fn state(pa: &PackAlloc) -> Vec<Vec<u64>> {
        let load = |w: &AtomicU64| w.load(Relaxed);
        let slot = |s: &Slot| -> Vec<u64> {
            let words = [&s.used, &s.base].into_iter();
            words.chain(&s.bitmap).chain(&s.summary).map(load).collect()
        };
        pa.slots.iter().map(slot).collect()
    }

    /// A reset allocator is word for word a new one, whether its slots held
    /// a pack, hold one, or were given back, and it allocates as a new one.
    #[test]
    fn a_reset_allocator_is_a_new_one() {
        let (mut pa, mut src) = setup(2 * MIB, 4);
        let a = pa.alloc(64, &mut src).unwrap();
        pa.alloc(2 * MIB, &mut src).unwrap();
        pa.alloc(3 * 64, &mut src).unwrap();
        pa.free(a, &mut src);
        assert_ne!(state(&pa), state(&PackAlloc::new(2 * MIB, 4)));
        pa.reset();
        assert_eq!(state(&pa), state(&PackAlloc::new(2 * MIB, 4)));
        ok(&pa);
        let (fresh, mut src2) = setup(2 * MIB, 4);
        let mut src = Bump::new(2 * MIB);
        for size in [100, 2 * MIB, 64] {
            let got = pa.alloc(size, &mut src).map(|c| (c.slot, c.pos));
            assert_eq!(got, fresh.alloc(size, &mut src2).map(|c| (c.slot, c.pos)));
        }
    }

    /// The consistency check names each way the allocator's state can be
    /// wrong (a checker that cannot fail checks nothing).
    #[test]
    fn check_consistency_finds_each_inconsistency() {
        let broken = |f: &dyn Fn(&PackAlloc)| {
            let (pa, mut src) = setup(2 * MIB, 3);
            pa.alloc(64, &mut src).unwrap();
            pa.alloc(2 * MIB, &mut src).unwrap();
            ok(&pa);
            f(&pa);
            pa.check_consistency().unwrap_err()
        };
        // Slot 0: a pack with one chunk in use; slot 1: a full pack; slot 2: free.
        assert_eq!(
            broken(&|pa| pa.slots[2].used.store(DEAD | 1, Relaxed)),
            "slot 2: free slot has a count of 1"
        );
        assert_eq!(
            broken(&|pa| pa.slots[2].bitmap[3].store(0b101, Relaxed)),
            "slot 2: free slot has 2 chunks set"
        );
        assert_eq!(
            broken(&|pa| pa.slots[0].bitmap[0].store(0b111, Relaxed)),
            "slot 0: count = 1 but 3 chunks set"
        );
        assert_eq!(
            broken(&|pa| {
                pa.slots[0].bitmap[0].store(0, Relaxed);
                pa.slots[0].used.store(0, Relaxed);
            }),
            "slot 0: live pack with no chunk in use"
        );
        assert_eq!(
            broken(&|pa| pa.slots[0].summary[0].store(0, Relaxed)),
            format!(
                "slot 0: summary word 0 is 0x0000000000000000, the words' room {:#018x}",
                summary_of(0, 512, |w| u64::from(w == 0))
            )
        );
        assert_eq!(
            broken(&|pa| pa.slots[1].base.store(BASE + MIB, Relaxed)),
            format!(
                "packs in slots 0 and 1 overlap: {BASE:#x}, {:#x}",
                BASE + MIB
            )
        );
    }

    /// The empty summary, computed without the words, is the summary of an
    /// empty bitmap of any length, its last summary word partial or not.
    #[test]
    fn empty_summary_is_the_summary_of_no_chunks_in_use() {
        for words in 1..=40usize {
            for i in 0..words.div_ceil(PER) {
                assert_eq!(
                    empty_summary(i, words),
                    summary_of(i, words, |_| 0),
                    "summary word {i} of {words} words"
                );
            }
        }
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<PackAlloc>();
    }

    #[test]
    fn nbits_rounding() {
        assert_eq!(size_to_nbits(1), 1);
        assert_eq!(size_to_nbits(64), 1);
        assert_eq!(size_to_nbits(65), 2);
        assert_eq!(size_to_nbits(4096), 64);
        let (pa, mut src) = setup(2 * MIB, 2);
        assert_eq!(pa.chunks_per_pack(), 32768);
        assert_eq!(pa.pack_size(), 2 * MIB);
        let a = pa.alloc(1, &mut src).unwrap();
        let b = pa.alloc(64, &mut src).unwrap();
        let c = pa.alloc(65, &mut src).unwrap();
        assert_eq!((a.pos, a.nbits), (0, 1));
        assert_eq!((b.pos, b.nbits), (1, 1));
        assert_eq!((c.pos, c.nbits), (2, 2));
        assert_eq!(c.addr, a.addr + 2 * CHUNK_SIZE);
        assert_eq!(pa.alloc(0, &mut src), None);
        assert_eq!(pa.alloc(2 * MIB + 1, &mut src), None);
        ok(&pa);
    }

    #[test]
    fn first_fit_reuses_holes() {
        let (pa, mut src) = setup(2 * MIB, 2);
        let v: Vec<Chunk> = (0..5).map(|_| pa.alloc(200, &mut src).unwrap()).collect();
        let pos: Vec<u32> = v.iter().map(|c| c.pos).collect();
        assert_eq!(pos, [0, 4, 8, 12, 16]);
        assert_eq!(
            v.iter().map(|c| c.slot).collect::<HashSet<_>>(),
            HashSet::from([0])
        );
        assert_eq!(pa.free(v[2], &mut src), FreeOutcome::Freed);
        ok(&pa);
        let big = pa.alloc(300, &mut src).unwrap();
        assert_eq!(big.pos, 20, "5 chunks do not fit the 4-chunk hole");
        let same = pa.alloc(256, &mut src).unwrap();
        assert_eq!((same.pos, same.nbits), (8, 4));
        let small = pa.alloc(64, &mut src).unwrap();
        assert_eq!(small.pos, 25);
        pa.free(v[0], &mut src);
        let one = pa.alloc(1, &mut src).unwrap();
        assert_eq!(one.pos, 0);
        let three = pa.alloc(150, &mut src).unwrap();
        assert_eq!(three.pos, 1, "3 chunks fit the rest of the 4-chunk hole");
        assert_eq!(pa.used_chunks(), 4 * 4 + 5 + 1 + 1 + 3);
        ok(&pa);
    }

    #[test]
    fn runs_straddle_and_span_words() {
        let (pa, mut src) = setup(2 * MIB, 2);
        let a = pa.alloc(40 * 64, &mut src).unwrap();
        let b = pa.alloc(40 * 64, &mut src).unwrap();
        assert_eq!((a.pos, b.pos), (0, 40), "b straddles words 0 and 1");
        let big = pa.alloc(64 * KIB, &mut src).unwrap();
        assert_eq!((big.pos, big.nbits), (80, 1024));
        let snap = pa.snapshot();
        assert_eq!(snap.len(), 1);
        let w = &snap[0].words;
        assert_eq!(w[0], u64::MAX);
        assert_eq!(w[1], u64::MAX, "b ends at 80, big starts there");
        assert!(w[2..17].iter().all(|&x| x == u64::MAX));
        assert_eq!(w[17], below(80 + 1024 - 17 * 64));
        assert!(w[18..].iter().all(|&x| x == 0));
        ok(&pa);
        pa.free(b, &mut src);
        // 40 chunks free at 40..80: a 41-chunk run must go after big.
        assert_eq!(pa.alloc(41 * 64, &mut src).unwrap().pos, 1104);
        assert_eq!(pa.alloc(40 * 64, &mut src).unwrap().pos, 40);
        ok(&pa);
    }

    #[test]
    fn whole_pack_runs() {
        let (pa, mut src) = setup(2 * MIB, 3);
        let all = pa.alloc(2 * MIB, &mut src).unwrap();
        assert_eq!((all.slot, all.pos, all.nbits), (0, 0, 32768));
        assert!(pa.snapshot()[0].words.iter().all(|&w| w == u64::MAX));
        ok(&pa);
        let one = pa.alloc(1, &mut src).unwrap();
        assert_eq!((one.slot, one.pos), (1, 0));
        assert_eq!(
            pa.free(all, &mut src),
            FreeOutcome::PackReleased { base: all.addr }
        );
        ok(&pa);
        let again = pa.alloc(2 * MIB, &mut src).unwrap();
        assert_eq!(
            (again.slot, again.addr),
            (0, all.addr),
            "lowest free slot, freed base"
        );
        let rest = pa.alloc(2 * MIB - 64, &mut src).unwrap();
        assert_eq!((rest.slot, rest.pos), (1, 1), "fills slot 1 after `one`");
        assert_eq!(pa.alloc(64, &mut src).unwrap().slot, 2);
        ok(&pa);
    }

    #[test]
    fn packs_on_demand_and_find() {
        let (pa, mut src) = setup(4096, 4);
        assert_eq!(pa.live_packs(), 0);
        assert_eq!(pa.find(BASE), None);
        let a = pa.alloc(4096 - 64, &mut src).unwrap();
        let b = pa.alloc(128, &mut src).unwrap();
        assert_eq!((a.slot, b.slot, b.pos), (0, 1, 0));
        assert_eq!((src.allocs, pa.live_packs()), (2, 2));
        assert_eq!(pa.base(0), Some(BASE));
        assert_eq!(pa.base(1), Some(BASE + 4096));
        assert_eq!(pa.base(2), None);
        assert_eq!(pa.base(99), None);
        assert_eq!(pa.find(BASE), Some((0, BASE)));
        assert_eq!(pa.find(BASE + 4095), Some((0, BASE)));
        assert_eq!(pa.find(BASE + 4096), Some((1, BASE + 4096)));
        assert_eq!(pa.find(BASE + 2 * 4096), None);
        assert_eq!(pa.find(BASE - 1), None);
        let c = pa.alloc(64, &mut src).unwrap();
        assert_eq!((c.slot, c.pos), (0, 63));
        assert_eq!(pa.free(a, &mut src), FreeOutcome::Freed);
        assert_eq!(
            pa.free(c, &mut src),
            FreeOutcome::PackReleased { base: BASE }
        );
        assert_eq!((src.frees, pa.live_packs(), pa.find(BASE)), (1, 1, None));
        ok(&pa);
        // Slot 0 is free again and comes first.
        let d = pa.alloc(4096, &mut src).unwrap();
        assert_eq!((d.slot, d.addr), (0, BASE));
        assert_eq!(
            pa.free(b, &mut src),
            FreeOutcome::PackReleased { base: BASE + 4096 }
        );
        pa.free(d, &mut src);
        assert_eq!((src.allocs, src.frees, pa.live_packs()), (3, 3, 0));
        // A free into a slot with no pack does nothing.
        assert_eq!(pa.free_bits(0, 0, 64, &mut src), (0, FreeOutcome::Freed));
        ok(&pa);
    }

    #[test]
    fn oversized_free_clears_neighbours() {
        let (pa, mut src) = setup(8 * KIB, 2);
        let a = pa.alloc(64 * 3, &mut src).unwrap();
        let b = pa.alloc(64 * 2, &mut src).unwrap();
        let c = pa.alloc(64 * 70, &mut src).unwrap();
        assert_eq!((a.pos, b.pos, c.pos), (0, 3, 5));
        // a freed with b's size added: b's chunks go too, unchecked.
        assert_eq!(pa.free_bits(0, 0, 5, &mut src), (5, FreeOutcome::Freed));
        ok(&pa);
        assert_eq!(pa.used_chunks(), 70);
        // b's own free finds its bits clear.
        assert_eq!(pa.free_bits(0, 3, 2, &mut src), (0, FreeOutcome::Freed));
        // Someone else gets b's chunks.
        let d = pa.alloc(64 * 5, &mut src).unwrap();
        assert_eq!(d.pos, 0);
        // A free past the pack's end is clamped.
        assert_eq!(
            pa.free_bits(0, 100, 1000, &mut src),
            (0, FreeOutcome::Freed)
        );
        assert_eq!(pa.free_bits(0, 70, 1000, &mut src), (5, FreeOutcome::Freed));
        ok(&pa);
        assert_eq!(pa.used_chunks(), 70);
        // One huge free empties the pack.
        let base = pa.base(0).unwrap();
        assert_eq!(
            pa.free_bits(0, 0, u64::MAX, &mut src),
            (70, FreeOutcome::PackReleased { base })
        );
        assert_eq!((src.allocs, src.frees), (1, 1));
        ok(&pa);
    }

    #[test]
    fn near_full_pack_finds_the_holes() {
        let (pa, mut src) = setup(2 * MIB, 2);
        let n = pa.chunks_per_pack() as u32;
        let chunks: Vec<Chunk> = (0..n).map(|_| pa.alloc(64, &mut src).unwrap()).collect();
        assert!(
            chunks
                .iter()
                .enumerate()
                .all(|(i, c)| c.pos == i as u32 && c.slot == 0)
        );
        assert_eq!(src.allocs, 1);
        // Holes of 1 chunk every 20, and one 3-chunk hole at 30000..30003.
        let holes: Vec<u32> = (0..n).filter(|i| i % 20 == 7).collect();
        for &h in &holes {
            pa.free(chunks[h as usize], &mut src);
        }
        for &c in &chunks[30000..30003] {
            pa.free(c, &mut src);
        }
        ok(&pa);
        assert_eq!(pa.used_chunks(), u64::from(n) - holes.len() as u64 - 3);
        let big = pa.alloc(3 * 64, &mut src).unwrap();
        assert_eq!((big.slot, big.pos), (0, 30000));
        for &h in &holes {
            let c = pa.alloc(1, &mut src).unwrap();
            assert_eq!((c.slot, c.pos), (0, h));
        }
        ok(&pa);
        assert_eq!(pa.used_chunks(), u64::from(n));
        let next = pa.alloc(1, &mut src).unwrap();
        assert_eq!((next.slot, next.pos, src.allocs), (1, 0, 2));
        ok(&pa);
    }

    #[test]
    fn alloc_fails_without_memory_or_slots() {
        let (pa, mut src) = setup(4096, 2);
        src.fail = true;
        assert_eq!(pa.alloc(64, &mut src), None);
        assert_eq!(pa.live_packs(), 0);
        ok(&pa);
        src.fail = false;
        let a = pa.alloc(4096, &mut src).unwrap();
        let b = pa.alloc(4000, &mut src).unwrap();
        assert_eq!((a.slot, b.slot), (0, 1));
        assert_eq!(pa.alloc(128, &mut src), None, "all slots in use");
        assert_eq!(src.allocs, 2);
        // Room left in slot 1 is still found.
        assert_eq!(
            pa.alloc(64, &mut src).map(|c| (c.slot, c.pos)),
            Some((1, 63))
        );
        ok(&pa);
        assert_eq!(PackAlloc::new(4096, 0).alloc(1, &mut src), None);
    }

    #[test]
    fn generations_wrap_within_their_bits() {
        // The layout of `used`: count in bits 0-39, generation in 40-62, DEAD 63.
        assert_eq!(COUNT, 0x0000_00ff_ffff_ffff);
        assert_eq!(GEN, 0x7fff_ff00_0000_0000);
        assert_eq!(
            GEN,
            ((1 << GEN_BITS) - 1) << COUNT_BITS,
            "GEN_BITS names them"
        );
        assert_eq!(DEAD, 0x8000_0000_0000_0000);
        assert_eq!(released(0), DEAD | (COUNT + 1));
        assert_eq!(released(GEN), DEAD, "the last generation wraps to 0");
        assert_eq!(released(DEAD | GEN), DEAD);
        let live = GEN - (COUNT + 1);
        assert_eq!(released(live), DEAD | GEN);
        assert_eq!(count(DEAD | GEN | 7), 7);
    }

    /// A release bumps the slot's generation and a pack installed later in
    /// the slot keeps it (the race it guards is the loom model
    /// `stale_release_vs_reinstall`).
    #[test]
    fn release_bumps_the_generation() {
        let (pa, mut src) = setup(4096, 1);
        let used = |pa: &PackAlloc| pa.slots[0].used.load(Relaxed);
        assert_eq!(used(&pa), DEAD);
        let a = pa.alloc(64, &mut src).unwrap();
        assert_eq!(used(&pa), 1);
        assert!(matches!(
            pa.free(a, &mut src),
            FreeOutcome::PackReleased { .. }
        ));
        assert_eq!(used(&pa), DEAD | (COUNT + 1));
        let b = pa.alloc(128, &mut src).unwrap();
        assert_eq!(used(&pa), (COUNT + 1) | 2);
        assert_eq!(pa.used_chunks(), 2);
        ok(&pa);
        assert!(matches!(
            pa.free(b, &mut src),
            FreeOutcome::PackReleased { .. }
        ));
        assert_eq!(used(&pa), DEAD | (2 * (COUNT + 1)));
        ok(&pa);
    }

    #[test]
    fn claim_rolls_back_on_conflict() {
        let (pa, mut src) = setup(2 * MIB, 1);
        pa.alloc(64, &mut src).unwrap();
        let s = &pa.slots[0];
        // Someone takes chunk 200 behind the search's back, paying for it.
        s.used.fetch_add(1, AcqRel);
        s.bitmap[3].fetch_or(1 << 8, AcqRel);
        sync_room(s, 3);
        let before = s.words();
        assert_eq!(pa.claim(s, 10, 300), Err((201, 0)));
        assert_eq!(s.words(), before);
        ok(&pa);
        // A run that fills word 1 and then conflicts: the summary follows.
        s.bitmap[2].fetch_or(1, AcqRel);
        sync_room(s, 2);
        s.used.fetch_add(1, AcqRel);
        assert_eq!(pa.claim(s, 64, 65), Err((129, 0)));
        assert_eq!(s.words(), pa.snapshot()[0].words);
        ok(&pa);
        assert_eq!(pa.alloc(65 * 64, &mut src).unwrap().pos, 1);
        ok(&pa);
    }

    #[test]
    fn run_starts_finds_runs() {
        assert_eq!(run_starts(0, 1), 0);
        assert_eq!(run_starts(u64::MAX, 64), 1);
        assert_eq!(run_starts(u64::MAX, 63), 0b11);
        assert_eq!(run_starts(0b1110_0111, 3), 0b0010_0001);
        assert_eq!(run_starts(0b1110_0111, 4), 0);
        assert_eq!(run_starts(0xf << 60, 4), 1 << 60);
        for n in 1..=64 {
            let want = if n <= 40 { below(41 - n) << 10 } else { 0 };
            assert_eq!(run_starts(below(50) & !below(10), n), want, "{n}");
        }
    }

    #[test]
    fn room_and_levels() {
        assert_eq!(room(0), 0b1111);
        assert_eq!(room(u64::MAX), 0);
        assert_eq!(room(!1), 0b0001);
        assert_eq!(room(!0b1111), 0b0011);
        assert_eq!(room(!(0xffff << 48)), 0b0111);
        assert_eq!(room(!(0x7fff << 49)), 0b0011, "15 clear bits at the top");
        // Runs of 4 at every offset, including the top of the word.
        for i in 0..=60 {
            assert_eq!(room(!(0b1111 << i)), 0b0011, "{i}");
            assert_eq!(room(!(0b111 << i)) & 0b10, 0, "{i}");
        }
        let levels: Vec<usize> = [1, 2, 3, 7, 8, 31, 32, 127, 128, 5000]
            .iter()
            .map(|&n| level_for(n))
            .collect();
        assert_eq!(levels, [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]);
        assert_eq!(summary_of(0, 1, |_| 0), 0xf);
        assert_eq!(summary_of(1, 17, |w| if w == 16 { u64::MAX } else { 0 }), 0);
        assert_eq!(summary_of(0, 17, |_| 0), u64::MAX);
    }

    #[test]
    fn summary_skips_words_without_room() {
        // Every word has a 3-chunk hole except word 300, which has 20: a
        // 20-chunk run goes there, a 4-chunk one nowhere, single chunks into
        // the first hole.
        let (pa, mut src) = setup(2 * MIB, 1);
        let all: Vec<Chunk> = (0..32768)
            .map(|_| pa.alloc(64, &mut src).unwrap())
            .collect();
        for w in 0..512 {
            let len = if w == 300 { 20 } else { 3 };
            for c in &all[w * 64 + 30..w * 64 + 30 + len] {
                pa.free(*c, &mut src);
            }
        }
        ok(&pa);
        let big = pa.alloc(20 * 64, &mut src).unwrap();
        assert_eq!(big.pos, 300 * 64 + 30);
        ok(&pa);
        assert_eq!(pa.alloc(4 * 64, &mut src), None);
        assert_eq!(pa.alloc(3 * 64, &mut src).unwrap().pos, 30);
        assert_eq!(pa.alloc(64, &mut src).unwrap().pos, 64 + 30);
        ok(&pa);
    }

    // ---- randomized, against a reference first fit --------------------------

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The kernel's algorithm with a `Vec<bool>` bitmap per pack.
    struct Reference {
        packs: Vec<Option<(u64, Vec<bool>)>>,
        chunks: usize,
    }

    impl Reference {
        fn first_fit(bits: &[bool], n: usize) -> Option<usize> {
            let mut run = 0;
            for (i, &b) in bits.iter().enumerate() {
                run = if b { 0 } else { run + 1 };
                if run == n {
                    return Some(i + 1 - n);
                }
            }
            None
        }

        /// (slot, pos) in an existing pack, or Err(lowest free slot).
        fn alloc(&mut self, n: usize) -> Result<(usize, usize), Option<usize>> {
            for (slot, p) in self.packs.iter_mut().enumerate() {
                if let Some((_, bits)) = p {
                    if let Some(pos) = Self::first_fit(bits, n) {
                        bits[pos..pos + n].fill(true);
                        return Ok((slot, pos));
                    }
                }
            }
            Err(self.packs.iter().position(Option::is_none))
        }

        fn install(&mut self, slot: usize, base: u64, n: usize) {
            let mut bits = vec![false; self.chunks];
            bits[..n].fill(true);
            self.packs[slot] = Some((base, bits));
        }

        fn free(&mut self, slot: usize, pos: u64, n: u64) -> (u64, FreeOutcome) {
            let Some((base, bits)) = &mut self.packs[slot] else {
                return (0, FreeOutcome::Freed);
            };
            let base = *base;
            let end = pos.saturating_add(n).min(self.chunks as u64) as usize;
            let start = (pos as usize).min(end);
            let cleared = bits[start..end].iter().filter(|&&b| b).count() as u64;
            bits[start..end].fill(false);
            if cleared > 0 && bits.iter().all(|&b| !b) {
                self.packs[slot] = None;
                return (cleared, FreeOutcome::PackReleased { base });
            }
            (cleared, FreeOutcome::Freed)
        }

        fn words(bits: &[bool]) -> Vec<u64> {
            let word = |c: &[bool]| c.iter().rev().fold(0, |w, &b| w << 1 | u64::from(b));
            bits.chunks(64).map(word).collect()
        }
    }

    fn random_against_reference(pack_size: u64, slots: usize, ops: usize, seed: u64) {
        let (pa, mut src) = setup(pack_size, slots);
        let chunks = pa.chunks_per_pack() as usize;
        let mut r = Reference {
            packs: vec![None; slots],
            chunks,
        };
        let mut rng = XorShift(seed);
        let mut live: Vec<Chunk> = Vec::new();
        for op in 0..ops / SCALE {
            // Phases of growth and of shrinking, so that packs come and go
            // (shorter phases for the shorter runs under miri).
            let grow = if op / (500 / SCALE) % 2 == 0 { 70 } else { 30 };
            if live.is_empty() || rng.below(100) < grow {
                let size = match rng.below(100) {
                    0..70 => 1 + rng.below(512),
                    70..90 => 1 + rng.below(8 * KIB),
                    90..99 => 1 + rng.below(pack_size / 4),
                    _ => 1 + rng.below(pack_size),
                };
                src.fail = rng.below(50) == 0;
                let got = pa.alloc(size, &mut src);
                let n = size_to_nbits(size) as usize;
                match (r.alloc(n), got) {
                    (Ok((slot, pos)), Some(c)) => {
                        assert_eq!((c.slot as usize, c.pos as usize), (slot, pos), "op {op}");
                        let base = r.packs[slot].as_ref().unwrap().0;
                        assert_eq!(c.addr, base + pos as u64 * 64);
                        live.push(c);
                    }
                    (Err(Some(slot)), Some(c)) if !src.fail => {
                        assert_eq!((c.slot as usize, c.pos), (slot, 0), "op {op}");
                        r.install(slot, c.addr, n);
                        live.push(c);
                    }
                    (Err(_), None) => {}
                    (want, got) => panic!("op {op}: size {size}: want {want:?}, got {got:?}"),
                }
            } else {
                let c = live.swap_remove(rng.below(live.len() as u64) as usize);
                let (pos, nbits) = (u64::from(c.pos), u64::from(c.nbits));
                let (pos, nbits) = match rng.below(100) {
                    0..3 => (pos, nbits + rng.below(300)),
                    3..5 => (pos.saturating_sub(rng.below(100)), nbits),
                    _ => (pos, nbits),
                };
                let got = pa.free_bits(c.slot, pos, nbits, &mut src);
                let want = r.free(c.slot as usize, pos, nbits);
                assert_eq!(got, want, "op {op}: free {c:?} as ({pos}, {nbits})");
            }
            ok(&pa);
            let want_used: usize = r
                .packs
                .iter()
                .flatten()
                .map(|(_, b)| b.iter().filter(|&&x| x).count())
                .sum();
            assert_eq!(pa.used_chunks(), want_used as u64, "op {op}");
            assert_eq!(pa.live_packs(), r.packs.iter().flatten().count(), "op {op}");
            if op % 64 == 0 {
                let want: Vec<PackSnapshot> = (r.packs.iter().enumerate())
                    .filter_map(|(slot, p)| {
                        let (base, bits) = p.as_ref()?;
                        let words = Reference::words(bits);
                        Some(PackSnapshot {
                            slot: slot as u32,
                            base: *base,
                            words,
                        })
                    })
                    .collect();
                assert_eq!(pa.snapshot(), want, "op {op}");
            }
        }
        assert_eq!(src.allocs - src.frees, pa.live_packs());
        // The phases made packs come and go (too few ops under miri to be
        // sure of it).
        if SCALE == 1 {
            assert!(src.frees >= 2, "only {} packs released", src.frees);
        }
    }

    #[test]
    fn random_ops_match_reference_small_packs() {
        random_against_reference(64 * KIB, 6, 20_000, 0x9e37_79b9_7f4a_7c15);
    }

    #[test]
    fn random_ops_match_reference_tiny_packs() {
        random_against_reference(8 * KIB, 5, 10_000, 12345);
    }

    #[test]
    fn random_ops_match_reference_huge_packs() {
        random_against_reference(2 * MIB, 3, 2_000, 777);
    }

    // ---- threads --------------------------------------------------------------

    fn stress(pack_size: u64, slots: usize, threads: u32, iters: usize, max_size: u64) {
        let pa = PackAlloc::new(pack_size, slots);
        let chunks = pa.chunks_per_pack() as usize;
        let owners: Vec<AtomicU32> = (0..slots * chunks).map(|_| AtomicU32::new(0)).collect();
        let bump = Arc::new(StdMutex::new(Bump::new(pack_size)));
        std::thread::scope(|scope| {
            for t in 1..=threads {
                let (pa, owners, mut src) = (&pa, &owners, Shared(bump.clone()));
                scope.spawn(move || {
                    let mut rng = XorShift(0x1234_5678 * u64::from(t) + 1);
                    let mut mine: Vec<Chunk> = Vec::new();
                    let at = |c: &Chunk| c.slot as usize * chunks + c.pos as usize;
                    let free = |c: Chunk, src: &mut Shared| {
                        for o in &owners[at(&c)..at(&c) + c.nbits as usize] {
                            assert_eq!(o.swap(0, Relaxed), t, "chunk of {t} taken");
                        }
                        let pos = u64::from(c.pos);
                        let (n, _) = pa.free_bits(c.slot, pos, u64::from(c.nbits), src);
                        assert_eq!(n, u64::from(c.nbits));
                    };
                    for i in 0..iters / SCALE {
                        let grow = if i / 200 % 2 == 0 { 70 } else { 30 };
                        if !mine.is_empty() && rng.below(100) >= grow {
                            let c = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                            free(c, &mut src);
                            continue;
                        }
                        let size = 1 + rng.below(max_size);
                        let Some(c) = pa.alloc(size, &mut src) else {
                            continue;
                        };
                        assert_eq!(u64::from(c.nbits), size_to_nbits(size));
                        let base = c.addr - u64::from(c.pos) * CHUNK_SIZE;
                        assert_eq!(pa.find(c.addr), Some((c.slot, base)));
                        for o in &owners[at(&c)..at(&c) + c.nbits as usize] {
                            let prev = o.swap(t, Relaxed);
                            assert_eq!(prev, 0, "chunk owned by {prev} handed to {t}");
                        }
                        mine.push(c);
                    }
                    for c in mine.drain(..) {
                        free(c, &mut src);
                    }
                });
            }
        });
        ok(&pa);
        assert_eq!((pa.live_packs(), pa.used_chunks()), (0, 0));
        assert!(owners.iter().all(|o| o.load(Relaxed) == 0));
        let bump = bump.lock().unwrap();
        assert_eq!(bump.allocs, bump.frees);
        assert!(bump.live.is_empty());
    }

    #[test]
    fn threads_share_one_word_packs() {
        stress(4096, 6, 3, 100_000, 512);
    }

    #[test]
    fn threads_share_multi_word_packs() {
        stress(32 * KIB, 4, 4, 100_000, 2 * KIB);
    }
}
