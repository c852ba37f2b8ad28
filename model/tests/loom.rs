//! Model checks of the lock-free chunk allocator
//! (`packmodel::kernel::optimised::pack`) under loom: every interleaving of
//! the races its protocol is about, up to a preemption bound.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p packmodel --release --test loom
//! LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg loom" cargo test -p packmodel --release --test loom
//! ```
//!
//! The bound comes from `LOOM_MAX_PREEMPTIONS` (3 if unset). With the
//! test-only feature `broken-cas` (one compare-and-swap in the claim path made
//! a load and a store) the models must fail.
//!
//! Packs are small: 4096 bytes is 64 chunks, one bitmap word; 8192 bytes is two
//! words. Each model ends with the allocator quiescent and checks
//! [`PackAlloc::check_consistency`] (summary level against the bitmap, `used`
//! against the popcount, free slots empty), and that every pack went back to
//! the source. Only the allocator's public API is used.
//!
//! Bookkeeping of the tests themselves (who owns which chunk, which packs the
//! source handed out) uses plain `std` types: it is not part of what is
//! modelled, and loom runs the model's threads one at a time.
#![cfg(loom)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex as StdMutex;

use loom::sync::Arc;
use loom::thread;
use packmodel::kernel::optimised::pack::{CHUNK_SIZE, Chunk, FreeOutcome, PackAlloc, PackSource};

/// Where the source's packs start. Bases are never reused, so that a stale
/// base is told apart from a live one.
const BASE: u64 = 0x1000_0000_0000;

/// What the source knows: packs handed out and given back, and how many chunks
/// the test's threads hold in each.
#[derive(Default)]
struct Log {
    made: u64,
    live: BTreeSet<u64>,
    /// Chunks held, by pack base: a thread adds its chunks after `alloc`
    /// returned and takes them away just before it calls `free`.
    held: BTreeMap<u64, usize>,
}

/// The [`PackSource`] of a model: fresh bases, and a check that no pack is
/// given back while a thread holds a chunk in it.
struct Src {
    log: std::sync::Arc<StdMutex<Log>>,
    size: u64,
}

impl PackSource for Src {
    fn alloc_pack(&mut self, size: u64) -> Option<u64> {
        assert_eq!(size, self.size);
        let mut log = self.log.lock().unwrap();
        let base = BASE + log.made * size;
        log.made += 1;
        assert!(log.live.insert(base));
        Some(base)
    }

    fn free_pack(&mut self, base: u64, size: u64) {
        assert_eq!(size, self.size);
        let mut log = self.log.lock().unwrap();
        assert!(log.live.remove(&base), "pack {base:#x} given back twice");
        let held = log.held.get(&base).copied().unwrap_or(0);
        assert_eq!(
            held, 0,
            "pack {base:#x} given back while {held} chunks in it are held"
        );
    }
}

/// One model's allocator, source and ownership records.
struct World {
    pa: PackAlloc,
    log: std::sync::Arc<StdMutex<Log>>,
    /// Owner of each chunk address.
    owners: StdMutex<BTreeMap<u64, u32>>,
}

impl World {
    fn new(pack_size: u64, slots: usize) -> Arc<World> {
        Arc::new(World {
            pa: PackAlloc::new(pack_size, slots),
            log: Default::default(),
            owners: Default::default(),
        })
    }

    fn src(&self) -> Src {
        Src {
            log: self.log.clone(),
            size: self.pa.pack_size(),
        }
    }

    fn base_of(c: &Chunk) -> u64 {
        c.addr - u64::from(c.pos) * CHUNK_SIZE
    }

    fn addrs(c: &Chunk) -> impl Iterator<Item = u64> {
        (0..u64::from(c.nbits)).map(move |i| c.addr + i * CHUNK_SIZE)
    }

    /// Allocates `size` bytes for thread `me` and checks the result: the pack
    /// is live at the source and in the chunk's slot, and no chunk of it is
    /// held by anyone else.
    fn alloc(&self, size: u64, me: u32) -> Option<Chunk> {
        let c = self.pa.alloc(size, &mut self.src())?;
        let base = Self::base_of(&c);
        {
            let mut log = self.log.lock().unwrap();
            assert!(
                log.live.contains(&base),
                "{c:?} handed to {me} in pack {base:#x}, which was given back"
            );
            *log.held.entry(base).or_default() += 1;
        }
        assert_eq!(
            self.pa.base(c.slot),
            Some(base),
            "{c:?}: slot has another base"
        );
        assert_eq!(self.pa.find(c.addr), Some((c.slot, base)));
        let mut owners = self.owners.lock().unwrap();
        for a in Self::addrs(&c) {
            if let Some(prev) = owners.insert(a, me) {
                panic!("chunk {a:#x} of {c:?} handed to {me} while {prev} holds it");
            }
        }
        Some(c)
    }

    /// Frees thread `me`'s chunk, which must still be its own and in a live
    /// pack.
    fn free(&self, c: Chunk, me: u32) {
        let base = Self::base_of(&c);
        {
            let mut owners = self.owners.lock().unwrap();
            for a in Self::addrs(&c) {
                assert_eq!(
                    owners.remove(&a),
                    Some(me),
                    "chunk {a:#x} of {c:?} changed hands"
                );
            }
            let mut log = self.log.lock().unwrap();
            assert!(
                log.live.contains(&base),
                "{c:?} held in a pack that was given back"
            );
            *log.held.get_mut(&base).unwrap() -= 1;
        }
        let (n, outcome) = self
            .pa
            .free_bits(c.slot, c.pos.into(), c.nbits.into(), &mut self.src());
        assert_eq!(n, u64::from(c.nbits), "{c:?}: bits were not all set");
        if let FreeOutcome::PackReleased { base: b } = outcome {
            assert_eq!(b, base, "free of {c:?} released another pack");
        }
    }

    fn consistent(&self) {
        if let Err(e) = self.pa.check_consistency() {
            panic!("{e}");
        }
    }

    /// Quiescent and empty: consistent, no pack left, none held at the source.
    fn check_empty(&self) {
        self.consistent();
        assert_eq!(self.pa.live_packs(), 0);
        assert_eq!(self.pa.used_chunks(), 0);
        let log = self.log.lock().unwrap();
        assert!(log.live.is_empty(), "packs not given back: {:x?}", log.live);
        assert!(self.owners.lock().unwrap().is_empty());
    }
}

/// Runs `f` under loom with the preemption bound from `LOOM_MAX_PREEMPTIONS`,
/// 3 if unset.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

// ---- (a) allocations racing for the same free run ---------------------------

/// Two allocations race for the same free chunk of an existing pack.
#[test]
fn allocs_race_for_one_run() {
    model(|| {
        let w = World::new(4096, 1);
        let keep = w.alloc(64, 1).unwrap();
        let w2 = w.clone();
        let t = thread::spawn(move || {
            let c = w2.alloc(128, 2).unwrap();
            w2.free(c, 2);
        });
        let c = w.alloc(64, 1).unwrap();
        w.free(c, 1);
        t.join().unwrap();
        w.consistent();
        w.free(keep, 1);
        w.check_empty();
    });
}

/// Two allocations race for chunk 0 of the same new pack (the slow path).
#[test]
fn allocs_race_for_a_new_pack() {
    model(|| {
        let w = World::new(4096, 2);
        let w2 = w.clone();
        let t = thread::spawn(move || {
            let c = w2.alloc(64, 2).unwrap();
            w2.free(c, 2);
        });
        let c = w.alloc(64, 1).unwrap();
        w.free(c, 1);
        t.join().unwrap();
        w.check_empty();
    });
}

// ---- (b) alloc racing free on one bitmap word -------------------------------

/// A free and an allocation that may reuse the freed chunks, in one word.
#[test]
fn alloc_races_free_in_one_word() {
    model(|| {
        let w = World::new(4096, 1);
        let a = w.alloc(2 * 64, 1).unwrap();
        let keep = w.alloc(64, 1).unwrap();
        let w2 = w.clone();
        let t = thread::spawn(move || w2.alloc(2 * 64, 2).unwrap());
        w.free(a, 1);
        let b = t.join().unwrap();
        assert!(b.pos == 0 || b.pos == 3, "{b:?}");
        w.consistent();
        w.free(b, 2);
        w.free(keep, 1);
        w.check_empty();
    });
}

// ---- (c) a claim straddling two words ---------------------------------------

/// A claim straddling words 0 and 1 races an allocation inside word 0 and a
/// free inside word 1 that makes the straddling run possible.
///
/// Layout: chunks 0..62 held; 62..64 free (word 0); `e` holds 64..66 (word
/// 1); `f` holds 66; 67.. free. The straddling allocation of 4 chunks fits at
/// 62..66 only once `e` is freed and before the word-0 allocation takes 62.
#[test]
fn straddling_claim_races_one_op_in_each_word() {
    model(|| {
        let w = World::new(8192, 1);
        let low = w.alloc(62 * 64, 1).unwrap();
        let d = w.alloc(2 * 64, 1).unwrap();
        let e = w.alloc(2 * 64, 1).unwrap();
        let f = w.alloc(64, 1).unwrap();
        assert_eq!((low.pos, d.pos, e.pos, f.pos), (0, 62, 64, 66));
        w.free(d, 1);
        let (w1, w0) = (w.clone(), w.clone());
        let t1 = thread::spawn(move || w1.free(e, 1));
        let t0 = thread::spawn(move || w0.alloc(2 * 64, 3).unwrap());
        let s = w.alloc(4 * 64, 2).unwrap();
        assert!(s.pos == 62 || s.pos == 67, "{s:?}");
        t1.join().unwrap();
        let c0 = t0.join().unwrap();
        w.consistent();
        w.free(s, 2);
        w.free(c0, 3);
        w.free(f, 1);
        w.free(low, 1);
        w.check_empty();
    });
}

/// Runs straddling a word boundary collide: claims are rolled back.
#[test]
fn straddling_claims_collide() {
    model(|| {
        let w = World::new(8192, 1);
        let first = w.alloc(64 * 60, 1).unwrap();
        let w2 = w.clone();
        let t = thread::spawn(move || {
            if let Some(d) = w2.alloc(64 * 40, 2) {
                w2.free(d, 2);
            }
        });
        let c = w.alloc(64 * 30, 1);
        t.join().unwrap();
        w.consistent();
        w.free(first, 1);
        if let Some(c) = c {
            w.free(c, 1);
        }
        w.check_empty();
    });
}

// ---- (d) the summary level --------------------------------------------------

/// A word filled by one thread while another empties it: the summary bit ends
/// up matching the word.
#[test]
fn summary_converges() {
    model(|| {
        let w = World::new(8192, 1);
        let keep = w.alloc(64 * 64, 1).unwrap();
        let a = w.alloc(64 * 63, 1).unwrap();
        let w2 = w.clone();
        let t = thread::spawn(move || w2.alloc(64, 2).unwrap());
        w.free(a, 1);
        let b = t.join().unwrap();
        w.consistent();
        w.free(b, 2);
        w.free(keep, 1);
        w.check_empty();
    });
}

/// A wrong-size free (the whole pack) races an allocation that may be
/// claiming across a word boundary: counts stay equal to the bitmap. (The
/// wrong-size free is the kernel's own bug, modelled: the allocation may lose
/// its chunks, so ownership is not tracked here.)
#[test]
fn wrong_size_free_vs_alloc() {
    model(|| {
        let w = World::new(8192, 1);
        let a = w.pa.alloc(64 * 60, &mut w.src()).unwrap();
        let w2 = w.clone();
        let t = thread::spawn(move || w2.pa.alloc(64 * 10, &mut w2.src()));
        let (n, _) = w.pa.free_bits(a.slot, 0, u64::MAX, &mut w.src());
        assert!((60..=70).contains(&n), "{n}");
        let x = t.join().unwrap();
        w.consistent();
        if let Some(x) = x {
            w.pa.free_bits(x.slot, 0, u64::MAX, &mut w.src());
        }
        w.check_empty();
    });
}

// ---- (e) the last free of a pack racing an allocation into it ----------------

/// The last free of a pack races an allocation that may land in it: the pack
/// is never given back while the allocation holds a chunk in it, and the
/// allocation's base is that of a live pack.
#[test]
fn last_free_vs_alloc() {
    model(|| {
        let w = World::new(4096, 2);
        let c = w.alloc(64, 1).unwrap();
        let w2 = w.clone();
        let t = thread::spawn(move || {
            let d = w2.alloc(128, 2).unwrap();
            w2.free(d, 2);
        });
        w.free(c, 1);
        t.join().unwrap();
        w.check_empty();
    });
}

/// A pack is released and made again while another allocation backs off from
/// its slot: the back-off's increment survives the re-install, and the
/// allocation never holds a chunk in a given-back pack.
#[test]
fn release_and_reinstall_vs_alloc() {
    model(|| {
        let w = World::new(4096, 2);
        let c = w.alloc(64, 1).unwrap();
        let w2 = w.clone();
        let t = thread::spawn(move || {
            let e = w2.alloc(64, 2).unwrap();
            w2.free(e, 2);
        });
        w.free(c, 1);
        let d = w.alloc(64, 1).unwrap();
        w.free(d, 1);
        t.join().unwrap();
        w.check_empty();
    });
}

/// The last free of a pack races the same pack being emptied, released, made
/// again in the same slot and emptied once more by another thread: the first
/// freer, having brought `used` to 0 of the old pack, must not release the
/// new one (an ABA on the slot; found by the `pack_concurrent` fuzz target).
#[test]
fn stale_release_vs_reinstall() {
    model(|| {
        let w = World::new(4096, 1);
        let c = w.alloc(64, 1).unwrap();
        let w2 = w.clone();
        let t = thread::spawn(move || {
            for _ in 0..2 {
                if let Some(d) = w2.alloc(64, 2) {
                    w2.free(d, 2);
                }
            }
        });
        w.free(c, 1);
        t.join().unwrap();
        w.check_empty();
    });
}
