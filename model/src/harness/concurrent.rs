//! Real threads against one lock-free [`PackAlloc`], checked by oracles that
//! need no knowledge of the interleaving: the body of the `pack_concurrent`
//! fuzz target.
//!
//! # Input
//!
//! Byte 0 is the configuration: bits 0–1 the number of threads (2–4), bits
//! 2–3 the pack size (1, 2, 4 or 1 bitmap words: 4, 8, 16 or 4 KiB), bits 4–5
//! the allocator's slots (1–4), bits 6–7 the address ranges the
//! [`PackSource`] has (1–4; fewer ranges than slots makes `alloc_pack` fail).
//! Then two bytes per op, `sel arg`: bits 0–1 of `sel` pick the thread (modulo
//! the count), bits 2–4 the op (0–3 alloc, 4–5 free, 6 write, 7 verify); for
//! an alloc, `arg` picks the number of chunks (1–8, 1–64, or nearly a whole
//! pack) and bits 5–7 of `sel` how far below a chunk multiple the byte size
//! is; for the others, `arg` picks one of the thread's live handles. Each
//! thread gets at most [`MAX_OPS_PER_THREAD`] ops; an odd last byte is
//! ignored. Every input decodes.
//!
//! # Run
//!
//! The threads start together and run their op lists: allocate, free one of
//! their own handles, write their owner id over every chunk of one handle, or
//! verify that a written handle still reads back their id. The source hands
//! out address ranges (lowest free first, a given-back range next: so
//! addresses are reused) and keeps a shared "memory": per chunk of every
//! range, the id of the thread that claims it and the id last written there.
//! Each allocator call is stamped with a global clock just before it is
//! invoked and just after it returns.
//!
//! # Oracles
//!
//! While running:
//! - a chunk is never handed to a thread while another thread holds it, and
//!   every chunk lies in a range the source handed out as a live pack, at the
//!   chunk's slot offset, with the requested size;
//! - the source is never asked to give back a pack in which a thread holds a
//!   chunk, nor to hand out a range in which one does, nor to give back a pack
//!   twice;
//! - a thread's written bytes read back intact (a pack given back is poisoned).
//!
//! At quiescence, after the threads are joined: [`PackAlloc::check_consistency`];
//! the allocator's snapshot equals exactly the chunks the threads hold (same
//! slots, bases and bitmaps, no other pack); the source's live ranges are the
//! live packs. Then everything is freed and the allocator must be empty, every
//! range back at the source.
//!
//! # Linearizability
//!
//! For short histories (at most [`LIN_MAX_OPS`] allocator calls per thread)
//! [`check_history`] also asks whether the recorded results are *explainable*
//! by a sequential order of the same calls, in the style of qcheck-stm: an
//! order that keeps each thread's program order and the real-time order (a
//! call that returned before another was invoked comes first), replayed on a
//! single-threaded reference model, a first-fit allocator over the same slots.
//! Which chunks an allocation gets under concurrency is not determined by the
//! order (a search that raced a free may pass a hole that the order puts
//! before it), so the reference takes *the chunks the real call returned* and
//! checks what is checkable:
//!
//! - every successful allocation's chunks are free in the reference at its
//!   place in the order, inside the pack, and in a slot that either holds the
//!   pack with the chunk's base or holds nothing (then no other slot holds a
//!   pack at that base, and the live packs stay within the capacity,
//!   `min(slots, ranges)`);
//! - a failed allocation happens only when the capacity is used up: at its
//!   place in the order, the reference's live packs plus the allocator calls of
//!   other threads that overlap it in real time are at least the capacity. (A
//!   concurrent call can keep one more pack alive: an allocation by its
//!   reservation or a transient claim, a free by its pin or a release it has
//!   yet to make.)
//!
//! An order exists for every correct run: put a successful allocation at its
//! last claiming compare-and-swap, a free at its first clearing `fetch_and`,
//! and a failed allocation where, under the slow-path mutex, it found no free
//! slot or the source empty. A call that overlaps no allocator call of another
//! thread runs on a quiescent allocator; its result must then be exactly the
//! reference's, whatever the order: the first fit in slot order (or chunk 0 of
//! the lowest empty slot, if the capacity allows a new pack) for an
//! allocation, failure only if neither exists, and a free reports the pack's
//! release exactly when it emptied the pack.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};

use crate::kernel::optimised::pack::{
    CHUNK_SIZE, Chunk, FreeOutcome, PackAlloc, PackSource, size_to_nbits,
};

/// Threads at most.
pub const MAX_THREADS: usize = 4;
/// Ops per thread at most; the rest of the input is ignored.
pub const MAX_OPS_PER_THREAD: usize = 64;
/// Histories with at most this many allocator calls per thread get the
/// linearizability check.
pub const LIN_MAX_OPS: usize = 8;

/// Where the source's first range starts; ranges are two pack sizes apart, so
/// an address one pack off lies in no range.
const BASE: u64 = 0x7f00_0000_0000;
/// What a pack given back is filled with.
const POISON: u32 = u32::MAX;

/// The allocator and source a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub threads: usize,
    pub pack_size: u64,
    /// The allocator's slots (`max_packs`).
    pub slots: usize,
    /// Address ranges the source can hand out as packs.
    pub ranges: usize,
}

impl Config {
    fn chunks(&self) -> u64 {
        self.pack_size / CHUNK_SIZE
    }

    /// How many packs can be live at once.
    fn capacity(&self) -> usize {
        self.slots.min(self.ranges)
    }

    fn stride(&self) -> u64 {
        2 * self.pack_size
    }

    fn range_base(&self, r: usize) -> u64 {
        BASE + r as u64 * self.stride()
    }

    /// The range whose pack starts at `base`.
    fn range_of(&self, base: u64) -> Option<usize> {
        let off = base.checked_sub(BASE)?;
        let r = (off / self.stride()) as usize;
        (off % self.stride() == 0 && r < self.ranges).then_some(r)
    }
}

/// One op of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `alloc(size)`.
    Alloc { size: u64 },
    /// Free one of the thread's live handles (`pick` modulo their number).
    Free { pick: u8 },
    /// Write the thread's id over every chunk of one of its handles.
    Write { pick: u8 },
    /// Check that a written handle still reads back the thread's id.
    Verify { pick: u8 },
}

/// A decoded input: the configuration and each thread's ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub config: Config,
    pub ops: Vec<Vec<Op>>,
}

/// Decodes any bytes (see the module doc).
pub fn decode(data: &[u8]) -> Input {
    let (&head, rest) = data.split_first().unwrap_or((&0, &[]));
    let threads = 2 + usize::from(head & 3) % 3;
    let words = [1, 2, 4, 1][usize::from(head >> 2 & 3)];
    let config = Config {
        threads,
        pack_size: words * CHUNK_SIZE * 64,
        slots: 1 + usize::from(head >> 4 & 3),
        ranges: 1 + usize::from(head >> 6 & 3),
    };
    let chunks = config.chunks();
    let mut ops = vec![Vec::new(); threads];
    for pair in rest.chunks_exact(2) {
        let (sel, arg) = (pair[0], pair[1]);
        let t = usize::from(sel & 3) % threads;
        if ops[t].len() >= MAX_OPS_PER_THREAD {
            continue;
        }
        let op = match sel >> 2 & 7 {
            0..=3 => {
                let nbits = match arg >> 6 {
                    0 | 1 => 1 + u64::from(arg & 7),
                    2 => 1 + u64::from(arg & 63),
                    _ => chunks - u64::from(arg & 63),
                };
                let slack = u64::from(sel >> 5) * 9;
                Op::Alloc {
                    size: nbits * CHUNK_SIZE - slack,
                }
            }
            4 | 5 => Op::Free { pick: arg },
            6 => Op::Write { pick: arg },
            _ => Op::Verify { pick: arg },
        };
        ops[t].push(op);
    }
    Input { config, ops }
}

/// What an allocator call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Alloc {
        nbits: u64,
        got: Option<Chunk>,
    },
    /// The free of the chunk that the thread's event `alloc` returned.
    Free {
        alloc: usize,
        chunk: Chunk,
        outcome: FreeOutcome,
    },
}

/// One allocator call of a thread: clock stamps taken just before it was
/// invoked and just after it returned, and its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub inv: u64,
    pub resp: u64,
    pub kind: EventKind,
}

/// What a clean run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub events: usize,
    pub allocs: usize,
    pub failed_allocs: usize,
    /// Verifies of a written handle that read it back intact.
    pub verified: usize,
    /// Whether the history was short enough for [`check_history`].
    pub linearized: bool,
}

/// The fuzz target: runs `data`, panics with the first violation.
pub fn fuzz(data: &[u8]) {
    if let Err(e) = check(&decode(data)) {
        panic!("{e}");
    }
}

/// Runs an input on real threads and checks every oracle (see the module
/// doc). Err describes the first violation.
pub fn check(input: &Input) -> Result<Summary, String> {
    let cfg = input.config;
    let sh = Shared::new(cfg);
    let results: Vec<(Vec<Event>, Vec<Held>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (input.ops.iter().enumerate())
            .map(|(t, ops)| {
                let sh = &sh;
                scope.spawn(move || sh.worker(t, ops))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    sh.result()?;
    let (history, held): (Vec<Vec<Event>>, Vec<Vec<Held>>) = results.into_iter().unzip();

    // Quiescent: the allocator holds exactly what the threads hold.
    sh.pa.check_consistency()?;
    let mut want = Model::new(&cfg);
    for h in held.iter().flatten() {
        want.take(&cfg, &h.chunk)
            .map_err(|e| format!("at quiescence: {e}"))?;
    }
    let got = Model::from_allocator(&cfg, &sh.pa);
    if got != want {
        return Err(format!(
            "at quiescence the allocator has\n{got:x?}\nbut the threads hold\n{want:x?}"
        ));
    }
    let live_ranges = sh.space.live.iter().filter(|l| l.load(SeqCst)).count();
    if live_ranges != sh.pa.live_packs() {
        return Err(format!(
            "{live_ranges} ranges live at the source, {} live packs",
            sh.pa.live_packs()
        ));
    }

    let linearized = history.iter().all(|h| h.len() <= LIN_MAX_OPS);
    if linearized {
        check_history(&cfg, &history)?;
    }

    // Free everything: the allocator must end empty.
    for h in held.iter().flatten() {
        let c = h.chunk;
        sh.space.release_claims(&c, h.owner)?;
        let mut src = Src(&sh.space);
        let (n, _) = sh
            .pa
            .free_bits(c.slot, c.pos.into(), c.nbits.into(), &mut src);
        if n != u64::from(c.nbits) {
            return Err(format!("final free of {c:x?} cleared {n} bits"));
        }
    }
    sh.result()?;
    sh.pa.check_consistency()?;
    let (packs, used) = (sh.pa.live_packs(), sh.pa.used_chunks());
    if (packs, used) != (0, 0) {
        return Err(format!("all freed: {packs} packs, {used} chunks left"));
    }
    sh.space.all_given_back()?;
    let events: Vec<&Event> = history.iter().flatten().collect();
    let allocs = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Alloc { .. }));
    Ok(Summary {
        events: events.len(),
        allocs: allocs.clone().count(),
        failed_allocs: allocs
            .filter(|e| matches!(e.kind, EventKind::Alloc { got: None, .. }))
            .count(),
        verified: sh.space.verified.load(SeqCst),
        linearized,
    })
}

/// A thread's live allocation.
#[derive(Clone, Copy, Debug)]
struct Held {
    chunk: Chunk,
    owner: u32,
    /// Its `alloc` event.
    event: usize,
    written: bool,
}

/// The source's ranges and the shared memory.
struct Space {
    cfg: Config,
    /// Per range: handed out as a live pack.
    live: Vec<AtomicBool>,
    /// Ranges not handed out; the last is handed out next.
    free: Mutex<Vec<usize>>,
    /// Per chunk of every range: the thread (1-based) that holds it, or 0.
    claims: Vec<AtomicU32>,
    /// Per chunk of every range: the id last written there.
    memory: Vec<AtomicU32>,
    made: AtomicUsize,
    given_back: AtomicUsize,
    /// Handles verified intact.
    verified: AtomicUsize,
    /// The first violation seen; the threads stop once there is one.
    error: Mutex<Option<String>>,
    failed: AtomicBool,
}

impl Space {
    fn new(cfg: Config) -> Self {
        let n = cfg.ranges * cfg.chunks() as usize;
        Space {
            cfg,
            live: (0..cfg.ranges).map(|_| AtomicBool::new(false)).collect(),
            free: Mutex::new((0..cfg.ranges).rev().collect()),
            claims: (0..n).map(|_| AtomicU32::new(0)).collect(),
            memory: (0..n).map(|_| AtomicU32::new(0)).collect(),
            made: AtomicUsize::new(0),
            given_back: AtomicUsize::new(0),
            verified: AtomicUsize::new(0),
            error: Mutex::new(None),
            failed: AtomicBool::new(false),
        }
    }

    fn fail(&self, msg: String) {
        let mut e = self.error.lock().unwrap_or_else(|p| p.into_inner());
        e.get_or_insert(msg);
        self.failed.store(true, SeqCst);
    }

    /// Indices into `claims` and `memory` of range `r`.
    fn range_cells(&self, r: usize) -> std::ops::Range<usize> {
        let n = self.cfg.chunks() as usize;
        r * n..(r + 1) * n
    }

    /// Indices into `claims` and `memory` of a chunk, checking that it is
    /// where its slot and position say, inside a range.
    fn cells(&self, c: &Chunk) -> Result<(usize, std::ops::Range<usize>), String> {
        let cfg = &self.cfg;
        let base = c.addr.wrapping_sub(u64::from(c.pos) * CHUNK_SIZE);
        let r = cfg
            .range_of(base)
            .ok_or_else(|| format!("{c:x?}: base {base:#x} is no range's"))?;
        if c.nbits == 0 || u64::from(c.pos) + u64::from(c.nbits) > cfg.chunks() {
            return Err(format!("{c:x?} runs past its pack"));
        }
        let at = self.range_cells(r).start + c.pos as usize;
        Ok((r, at..at + c.nbits as usize))
    }

    /// Thread `id` takes the chunk: nobody else may hold it.
    fn claim(&self, c: &Chunk, id: u32) -> Result<(), String> {
        let (r, cells) = self.cells(c)?;
        for i in cells {
            let prev = self.claims[i].swap(id, SeqCst);
            if prev != 0 {
                return Err(format!(
                    "{c:x?} handed to thread {id} while thread {prev} holds chunk {}",
                    i - self.range_cells(r).start
                ));
            }
        }
        if !self.live[r].load(SeqCst) {
            return Err(format!("{c:x?} handed to thread {id} in a pack given back"));
        }
        Ok(())
    }

    /// Thread `id` gives the chunk up: it must still be its own.
    fn release_claims(&self, c: &Chunk, id: u32) -> Result<(), String> {
        let (_, cells) = self.cells(c)?;
        for i in cells {
            let prev = self.claims[i].swap(0, SeqCst);
            if prev != id {
                return Err(format!("thread {id}'s {c:x?} was held by thread {prev}"));
            }
        }
        Ok(())
    }

    /// Thread `id` writes its id over every chunk of `c`; whether it could
    /// (`c` lies in a range).
    fn write(&self, c: &Chunk, id: u32) -> bool {
        let Ok((_, cells)) = self.cells(c) else {
            return false;
        };
        for i in cells {
            self.memory[i].store(id, SeqCst);
        }
        true
    }

    /// Thread `id`'s chunk `c`, which it wrote, still reads back its id.
    fn verify(&self, c: &Chunk, id: u32) -> Result<(), String> {
        let (_, cells) = self.cells(c)?;
        for i in cells {
            let v = self.memory[i].load(SeqCst);
            if v != id {
                let who = if v == POISON {
                    "poison: its pack was given back".to_string()
                } else {
                    format!("thread {v}'s id")
                };
                return Err(format!("thread {id}'s {c:x?} reads {who}"));
            }
        }
        self.verified.fetch_add(1, SeqCst);
        Ok(())
    }

    /// At the end, everything freed: every pack the source made was given
    /// back. (Each `alloc_pack` that made one took a range off `free` and
    /// each `free_pack` put one back, so `free` is whole too.)
    fn all_given_back(&self) -> Result<(), String> {
        let (made, back) = (self.made.load(SeqCst), self.given_back.load(SeqCst));
        if made != back {
            return Err(format!("all freed: {made} packs made, {back} given back"));
        }
        Ok(())
    }

    /// No thread holds a chunk of range `r`.
    fn unclaimed(&self, r: usize, what: &str) -> Result<(), String> {
        for i in self.range_cells(r) {
            let who = self.claims[i].load(SeqCst);
            if who != 0 {
                let base = self.cfg.range_base(r);
                return Err(format!(
                    "pack {base:#x} {what} while thread {who} holds its chunk {}",
                    i - self.range_cells(r).start
                ));
            }
        }
        Ok(())
    }
}

/// The [`PackSource`] the threads pass to the allocator.
struct Src<'a>(&'a Space);

impl PackSource for Src<'_> {
    fn alloc_pack(&mut self, size: u64) -> Option<u64> {
        let s = self.0;
        if size != s.cfg.pack_size {
            s.fail(format!("alloc_pack({size:#x})"));
        }
        let r = s.free.lock().unwrap().pop()?;
        if let Err(e) = s.unclaimed(r, "handed out again") {
            s.fail(e);
        }
        s.live[r].store(true, SeqCst);
        s.made.fetch_add(1, SeqCst);
        Some(s.cfg.range_base(r))
    }

    fn free_pack(&mut self, base: u64, size: u64) {
        let s = self.0;
        let Some(r) = s.cfg.range_of(base).filter(|_| size == s.cfg.pack_size) else {
            s.fail(format!("free_pack({base:#x}, {size:#x}) of no range"));
            return;
        };
        // Dead first, then look for holders: a thread claims first, then
        // checks liveness, so one of the two sees the other.
        if !s.live[r].swap(false, SeqCst) {
            s.fail(format!("pack {base:#x} given back twice"));
        }
        if let Err(e) = s.unclaimed(r, "given back") {
            s.fail(e);
        }
        for i in s.range_cells(r) {
            s.memory[i].store(POISON, SeqCst);
        }
        s.given_back.fetch_add(1, SeqCst);
        s.free.lock().unwrap().push(r);
    }
}

/// What the threads share.
struct Shared {
    pa: PackAlloc,
    space: Space,
    clock: AtomicU64,
    ready: AtomicUsize,
}

impl Shared {
    fn new(cfg: Config) -> Self {
        Shared {
            pa: PackAlloc::new(cfg.pack_size, cfg.slots),
            space: Space::new(cfg),
            clock: AtomicU64::new(0),
            ready: AtomicUsize::new(0),
        }
    }

    fn result(&self) -> Result<(), String> {
        let e = self.space.error.lock().unwrap_or_else(|p| p.into_inner());
        e.clone().map_or(Ok(()), Err)
    }

    fn stamp(&self) -> u64 {
        self.clock.fetch_add(1, SeqCst)
    }

    /// Thread `t` runs its ops; returns its history and what it still holds.
    fn worker(&self, t: usize, ops: &[Op]) -> (Vec<Event>, Vec<Held>) {
        let id = t as u32 + 1;
        let space = &self.space;
        let mut events = Vec::new();
        let mut held: Vec<Held> = Vec::new();
        // Start together.
        self.ready.fetch_add(1, SeqCst);
        while self.ready.load(SeqCst) < space.cfg.threads {
            std::thread::yield_now();
        }
        for &op in ops {
            if space.failed.load(SeqCst) {
                break;
            }
            match op {
                Op::Alloc { size } => {
                    let nbits = size_to_nbits(size);
                    let inv = self.stamp();
                    let got = self.pa.alloc(size, &mut Src(space));
                    let resp = self.stamp();
                    events.push(Event {
                        inv,
                        resp,
                        kind: EventKind::Alloc { nbits, got },
                    });
                    let Some(chunk) = got else { continue };
                    if u64::from(chunk.nbits) != nbits {
                        space.fail(format!("alloc({size}) returned {chunk:x?}"));
                    } else if let Err(e) = space.claim(&chunk, id) {
                        space.fail(e);
                    } else {
                        held.push(Held {
                            chunk,
                            owner: id,
                            event: events.len() - 1,
                            written: false,
                        });
                    }
                }
                Op::Free { pick } => {
                    if held.is_empty() {
                        continue;
                    }
                    let h = held.swap_remove(usize::from(pick) % held.len());
                    let c = h.chunk;
                    if let Err(e) = space.release_claims(&c, id) {
                        space.fail(e);
                        continue;
                    }
                    let inv = self.stamp();
                    let outcome = self.pa.free(c, &mut Src(space));
                    let resp = self.stamp();
                    events.push(Event {
                        inv,
                        resp,
                        kind: EventKind::Free {
                            alloc: h.event,
                            chunk: c,
                            outcome,
                        },
                    });
                    let base = c.addr - u64::from(c.pos) * CHUNK_SIZE;
                    if matches!(outcome, FreeOutcome::PackReleased { base: b } if b != base) {
                        space.fail(format!(
                            "free of {c:x?} released another pack: {outcome:x?}"
                        ));
                    }
                }
                Op::Write { pick } => {
                    let n = held.len();
                    if let Some(h) = held.get_mut(usize::from(pick) % n.max(1)) {
                        h.written |= space.write(&h.chunk, id);
                    }
                }
                Op::Verify { pick } => {
                    let n = held.len();
                    match held.get(usize::from(pick) % n.max(1)) {
                        Some(h) if h.written => {
                            if let Err(e) = space.verify(&h.chunk, id) {
                                space.fail(e);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        (events, held)
    }
}

// ---- the sequential reference ------------------------------------------------

/// A first-fit allocator's state: per slot, the pack's base and bitmap.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    slots: Vec<Option<ModelPack>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelPack {
    base: u64,
    words: Vec<u64>,
}

impl Model {
    fn new(cfg: &Config) -> Self {
        Model {
            slots: vec![None; cfg.slots],
        }
    }

    fn from_allocator(cfg: &Config, pa: &PackAlloc) -> Self {
        let mut m = Model::new(cfg);
        for p in pa.snapshot() {
            m.slots[p.slot as usize] = Some(ModelPack {
                base: p.base,
                words: p.words,
            });
        }
        m
    }

    fn live(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    fn bit(words: &[u64], i: u64) -> bool {
        words[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// The lowest run of `n` clear bits.
    fn first_fit(words: &[u64], chunks: u64, n: u64) -> Option<u64> {
        let mut run = 0;
        for i in 0..chunks {
            run = if Self::bit(words, i) { 0 } else { run + 1 };
            if run == n {
                return Some(i + 1 - n);
            }
        }
        None
    }

    /// What a sequential first fit does for `n` chunks: (slot, pos), in a
    /// live pack or at 0 of the lowest empty slot; None without room.
    fn expect_alloc(&self, cfg: &Config, n: u64) -> Option<(usize, u64)> {
        let fit = self.slots.iter().enumerate().find_map(|(i, p)| {
            let pos = Self::first_fit(&p.as_ref()?.words, cfg.chunks(), n)?;
            Some((i, pos))
        });
        fit.or_else(|| {
            let empty = self.slots.iter().position(Option::is_none)?;
            (self.live() < cfg.capacity()).then_some((empty, 0))
        })
    }

    /// Takes a successful allocation's chunks; Err if it cannot have got them
    /// in this state.
    fn take(&mut self, cfg: &Config, c: &Chunk) -> Result<(), String> {
        let (pos, n) = (u64::from(c.pos), u64::from(c.nbits));
        let base = c.addr.wrapping_sub(pos * CHUNK_SIZE);
        if c.slot as usize >= cfg.slots || n == 0 || pos + n > cfg.chunks() {
            return Err(format!("{c:x?} lies outside the slots or its pack"));
        }
        let live = self.live();
        let other_base = (self.slots.iter().enumerate())
            .position(|(i, p)| i != c.slot as usize && p.as_ref().is_some_and(|p| p.base == base));
        let slot = &mut self.slots[c.slot as usize];
        let p = match slot {
            Some(p) if p.base != base => {
                return Err(format!(
                    "{c:x?} has base {base:#x}, its slot's pack {:#x}",
                    p.base
                ));
            }
            Some(p) => p,
            None => {
                if let Some(i) = other_base {
                    return Err(format!("{c:x?}: slot {i} holds a pack at {base:#x} too"));
                }
                if live >= cfg.capacity() {
                    return Err(format!("{c:x?} makes a pack beyond the capacity"));
                }
                slot.insert(ModelPack {
                    base,
                    words: vec![0; (cfg.chunks() / 64) as usize],
                })
            }
        };
        if let Some(i) = (pos..pos + n).find(|&i| Self::bit(&p.words, i)) {
            return Err(format!("{c:x?}: chunk {i} is held"));
        }
        for i in pos..pos + n {
            p.words[(i / 64) as usize] |= 1 << (i % 64);
        }
        Ok(())
    }

    /// Gives a held allocation's chunks back; returns whether that emptied
    /// its pack (which then leaves its slot).
    fn give(&mut self, c: &Chunk) -> bool {
        let slot = &mut self.slots[c.slot as usize];
        let Some(p) = slot else { return false };
        let pos = u64::from(c.pos);
        for i in pos..pos + u64::from(c.nbits) {
            p.words[(i / 64) as usize] &= !(1 << (i % 64));
        }
        let empty = p.words.iter().all(|&w| w == 0);
        if empty {
            *slot = None;
        }
        empty
    }
}

// ---- the linearizability check --------------------------------------------------

/// Is `history` (each thread's allocator calls in program order) explainable
/// by a sequential order on the reference? See the module doc for what is
/// checked. Err describes why not, with the history.
pub fn check_history(cfg: &Config, history: &[Vec<Event>]) -> Result<(), String> {
    let dump = || {
        let mut s = String::new();
        for (t, h) in history.iter().enumerate() {
            for (i, e) in h.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "  thread {} #{i} [{}, {}] {:x?}",
                    t + 1,
                    e.inv,
                    e.resp,
                    e.kind
                );
            }
        }
        s
    };
    for (t, h) in history.iter().enumerate() {
        for (i, e) in h.iter().enumerate() {
            if let EventKind::Free { alloc, chunk, .. } = e.kind {
                let ok = alloc < i
                    && matches!(h[alloc].kind, EventKind::Alloc { got: Some(c), .. } if c == chunk);
                if !ok {
                    return Err(format!(
                        "thread {} #{i} frees what it did not allocate\n{}",
                        t + 1,
                        dump()
                    ));
                }
            }
        }
    }
    // Calls of other threads overlapping each call in real time.
    let overlap = |t: usize, e: &Event| -> usize {
        let others = history.iter().enumerate().filter(|&(u, _)| u != t);
        others
            .flat_map(|(_, h)| h)
            .filter(|x| x.inv < e.resp && e.inv < x.resp)
            .count()
    };
    let overlaps: Vec<Vec<usize>> = (history.iter().enumerate())
        .map(|(t, h)| h.iter().map(|e| overlap(t, e)).collect())
        .collect();

    // Isolated calls: exactly the reference's result.
    for (t, h) in history.iter().enumerate() {
        for (i, e) in h.iter().enumerate().filter(|&(i, _)| overlaps[t][i] == 0) {
            let before: Vec<usize> = history
                .iter()
                .map(|h| h.iter().take_while(|x| x.resp < e.inv).count())
                .collect();
            let mut m =
                state_after(cfg, history, &before).map_err(|err| format!("{err}\n{}", dump()))?;
            let what = format!("thread {} #{i}, overlapping no other call", t + 1);
            match e.kind {
                EventKind::Alloc { nbits, got } => {
                    let want = m.expect_alloc(cfg, nbits);
                    let got_at = got.map(|c| (c.slot as usize, u64::from(c.pos)));
                    if want != got_at {
                        return Err(format!(
                            "{what}: alloc of {nbits} chunks got {got_at:?} (slot, pos), \
                             a first fit gives {want:?}\n{}",
                            dump()
                        ));
                    }
                }
                EventKind::Free { chunk, outcome, .. } => {
                    let base = chunk.addr - u64::from(chunk.pos) * CHUNK_SIZE;
                    let emptied = m.give(&chunk);
                    let released = outcome == FreeOutcome::PackReleased { base };
                    if emptied != released {
                        return Err(format!(
                            "{what}: free of {chunk:x?} says {outcome:x?}, emptied: {emptied}\n{}",
                            dump()
                        ));
                    }
                }
            }
        }
    }

    // Some order consistent with program and real-time order.
    let mut search = Search {
        cfg,
        history,
        overlaps: &overlaps,
        dead: HashSet::new(),
        deepest: (0, String::new()),
    };
    let mut idx = vec![0; history.len()];
    if search.dfs(&mut idx, &Model::new(cfg)) {
        Ok(())
    } else {
        Err(format!(
            "no sequential order explains the history; the longest prefix ({} calls) \
             stopped at: {}\n{}",
            search.deepest.0,
            search.deepest.1,
            dump()
        ))
    }
}

/// The reference after the first `idx[t]` calls of each thread (in any order:
/// the chunks held do not depend on it). Err if two held allocations overlap.
fn state_after(cfg: &Config, history: &[Vec<Event>], idx: &[usize]) -> Result<Model, String> {
    let mut m = Model::new(cfg);
    for (h, &n) in history.iter().zip(idx) {
        let prefix = &h[..n];
        let freed: HashSet<usize> = (prefix.iter())
            .filter_map(|e| match e.kind {
                EventKind::Free { alloc, .. } => Some(alloc),
                EventKind::Alloc { .. } => None,
            })
            .collect();
        for (i, e) in prefix.iter().enumerate() {
            if let EventKind::Alloc { got: Some(c), .. } = e.kind {
                if !freed.contains(&i) {
                    m.take(cfg, &c)?;
                }
            }
        }
    }
    Ok(m)
}

struct Search<'a> {
    cfg: &'a Config,
    history: &'a [Vec<Event>],
    overlaps: &'a [Vec<usize>],
    /// Prefixes (calls done per thread) from which no order completes.
    dead: HashSet<Vec<usize>>,
    /// The longest prefix tried and why its next call could not go.
    deepest: (usize, String),
}

impl Search<'_> {
    fn dfs(&mut self, idx: &mut Vec<usize>, m: &Model) -> bool {
        let h = self.history;
        if idx.iter().zip(h).all(|(&i, h)| i == h.len()) {
            return true;
        }
        if self.dead.contains(idx) {
            return false;
        }
        let depth: usize = idx.iter().sum();
        for t in 0..h.len() {
            let Some(e) = h[t].get(idx[t]) else { continue };
            // Real time: no call still to place returned before e began.
            let blocked =
                (0..h.len()).any(|u| u != t && h[u].get(idx[u]).is_some_and(|x| x.resp < e.inv));
            if blocked {
                continue;
            }
            let mut next = m.clone();
            let step = match e.kind {
                EventKind::Alloc { got: Some(c), .. } => next.take(self.cfg, &c),
                EventKind::Alloc { got: None, nbits } => {
                    let room = m.live() + self.overlaps[t][idx[t]];
                    if room >= self.cfg.capacity() {
                        Ok(())
                    } else {
                        Err(format!(
                            "alloc of {nbits} chunks failed with {} of {} packs live",
                            m.live(),
                            self.cfg.capacity()
                        ))
                    }
                }
                EventKind::Free { chunk, .. } => {
                    next.give(&chunk);
                    Ok(())
                }
            };
            if let Err(why) = step {
                if depth >= self.deepest.0 {
                    self.deepest = (depth, format!("thread {} #{}: {why}", t + 1, idx[t]));
                }
                continue;
            }
            idx[t] += 1;
            let done = self.dfs(idx, &next);
            idx[t] -= 1;
            if done {
                return true;
            }
        }
        self.dead.insert(idx.clone());
        false
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::harness::rng::Rng;

    const CFG: Config = Config {
        threads: 2,
        pack_size: 4096,
        slots: 2,
        ranges: 2,
    };

    fn chunk(slot: u32, base_range: usize, pos: u32, nbits: u32) -> Chunk {
        Chunk {
            addr: CFG.range_base(base_range) + u64::from(pos) * CHUNK_SIZE,
            slot,
            pos,
            nbits,
        }
    }

    fn alloc(inv: u64, resp: u64, nbits: u64, got: Option<Chunk>) -> Event {
        Event {
            inv,
            resp,
            kind: EventKind::Alloc { nbits, got },
        }
    }

    fn free(inv: u64, resp: u64, alloc: usize, chunk: Chunk, released: bool) -> Event {
        let base = chunk.addr - u64::from(chunk.pos) * CHUNK_SIZE;
        let outcome = if released {
            FreeOutcome::PackReleased { base }
        } else {
            FreeOutcome::Freed
        };
        Event {
            inv,
            resp,
            kind: EventKind::Free {
                alloc,
                chunk,
                outcome,
            },
        }
    }

    #[test]
    fn decode_any_bytes() {
        assert_eq!(decode(&[]).ops, vec![Vec::<Op>::new(); 2]);
        let i = decode(&[0b11_10_01_10, 0x00, 0x03, 0x05, 0xff, 0x10, 0x01, 0x7f]);
        assert_eq!(
            i.config,
            Config {
                threads: 4,
                pack_size: 8192,
                slots: 3,
                ranges: 4
            }
        );
        // 0x00 0x03: thread 0 allocates 4 chunks; 0x05 0xff: thread 1
        // allocates 128 - 63; 0x10 0x01: thread 0 frees; 0x7f: ignored.
        assert_eq!(i.ops[0], [Op::Alloc { size: 4 * 64 }, Op::Free { pick: 1 }]);
        assert_eq!(i.ops[1], [Op::Alloc { size: 65 * 64 }]);
        assert!(i.ops[2..].iter().all(Vec::is_empty));
        let i = decode(&[0, 0x00, 0x00, 0x10, 0x01]);
        assert_eq!(i.ops[0], [Op::Alloc { size: 64 }, Op::Free { pick: 1 }]);
    }

    #[test]
    fn a_correct_concurrent_history_is_explained() {
        let a = chunk(0, 0, 0, 1);
        let b = chunk(0, 0, 1, 1);
        // Thread 1 frees `a` while thread 2's allocation gets chunk 0 again:
        // explained only if the free goes first.
        let h = vec![
            vec![
                alloc(0, 1, 1, Some(a)),
                alloc(2, 3, 1, Some(b)),
                free(4, 7, 0, a, false),
            ],
            vec![alloc(5, 8, 1, Some(a))],
        ];
        check_history(&CFG, &h).unwrap();
    }

    #[test]
    fn double_handout_is_caught() {
        let a = chunk(0, 0, 0, 1);
        let h = vec![vec![alloc(0, 3, 1, Some(a))], vec![alloc(1, 2, 1, Some(a))]];
        let e = check_history(&CFG, &h).unwrap_err();
        assert!(e.contains("chunk 0 is held"), "{e}");
    }

    #[test]
    fn reuse_before_the_free_is_caught() {
        let a = chunk(0, 0, 0, 1);
        let b = chunk(0, 0, 1, 1);
        // Thread 2 gets chunk 0 back before thread 1's free began.
        let h = vec![
            vec![
                alloc(0, 1, 1, Some(a)),
                alloc(2, 3, 1, Some(b)),
                free(9, 10, 0, a, false),
            ],
            vec![alloc(4, 8, 1, Some(a))],
        ];
        assert!(check_history(&CFG, &h).is_err());
    }

    #[test]
    fn isolated_calls_must_be_first_fit() {
        let a = chunk(0, 0, 0, 2);
        let late = chunk(0, 0, 5, 1);
        let h = vec![
            vec![alloc(0, 1, 2, Some(a)), alloc(2, 3, 1, Some(late))],
            vec![],
        ];
        let e = check_history(&CFG, &h).unwrap_err();
        assert!(e.contains("a first fit gives Some((0, 2))"), "{e}");
        // A new pack while the first has room.
        let other = chunk(1, 1, 0, 1);
        let h = vec![
            vec![alloc(0, 1, 2, Some(a)), alloc(2, 3, 1, Some(other))],
            vec![],
        ];
        assert!(check_history(&CFG, &h).is_err());
        // A release not reported, and one reported for a pack still in use.
        let h = vec![
            vec![alloc(0, 1, 2, Some(a)), free(2, 3, 0, a, false)],
            vec![],
        ];
        assert!(check_history(&CFG, &h).is_err());
        let b = chunk(0, 0, 2, 1);
        let h = vec![
            vec![
                alloc(0, 1, 2, Some(a)),
                alloc(2, 3, 1, Some(b)),
                free(4, 5, 0, a, true),
            ],
            vec![],
        ];
        assert!(check_history(&CFG, &h).is_err());
    }

    #[test]
    fn failures_need_the_capacity_used() {
        let a = chunk(0, 0, 0, 64);
        let b = chunk(1, 1, 0, 64);
        // Both packs full: a failure is explained.
        let full = vec![
            vec![
                alloc(0, 1, 64, Some(a)),
                alloc(2, 3, 64, Some(b)),
                alloc(4, 5, 1, None),
            ],
            vec![],
        ];
        check_history(&CFG, &full).unwrap();
        // One pack: an isolated failure is not.
        let h = vec![vec![alloc(0, 1, 64, Some(a)), alloc(2, 3, 1, None)], vec![]];
        assert!(check_history(&CFG, &h).is_err());
        // Overlapping another allocation, which may hold the second slot,
        // it is; overlapping nothing that could, it is not.
        let h = vec![
            vec![alloc(0, 1, 64, Some(a)), alloc(2, 5, 1, None)],
            vec![alloc(3, 4, 64, None)],
        ];
        check_history(&CFG, &h).unwrap();
        let h = vec![
            vec![alloc(0, 1, 64, Some(a)), alloc(6, 9, 1, None)],
            vec![alloc(3, 4, 64, None)],
        ];
        assert!(check_history(&CFG, &h).is_err());
    }

    /// The source's own checks: ranges it never had are no pack's, a chunk
    /// lies inside its pack, and a pack not given back by the end is
    /// reported.
    #[test]
    fn the_source_knows_its_ranges_and_counts_its_packs() {
        let space = Space::new(CFG);
        let past = CFG.range_base(CFG.ranges);
        assert_eq!(CFG.range_of(CFG.range_base(1)), Some(1));
        assert_eq!(CFG.range_of(past), None);
        let e = space.cells(&chunk(0, CFG.ranges, 0, 1)).unwrap_err();
        assert!(e.contains("is no range's"), "{e}");
        for bad in [chunk(0, 0, 0, 0), chunk(0, 0, 63, 2)] {
            let e = space.cells(&bad).unwrap_err();
            assert!(e.contains("runs past its pack"), "{e}");
        }
        assert_eq!(space.cells(&chunk(0, 1, 63, 1)), Ok((1, 127..128)));
        Src(&space).free_pack(past, CFG.pack_size);
        let e = space.error.lock().unwrap().take().expect("a failure");
        assert!(e.contains("of no range"), "{e}");
        space.failed.store(false, SeqCst);
        let base = Src(&space).alloc_pack(CFG.pack_size).expect("a range");
        let e = space.all_given_back().unwrap_err();
        assert!(e.contains("1 packs made, 0 given back"), "{e}");
        Src(&space).free_pack(base, CFG.pack_size);
        space.all_given_back().unwrap();
        assert!(space.error.lock().unwrap().is_none());
    }

    /// A written handle reads back its writer's id; a verify names what it
    /// read instead.
    #[test]
    fn a_verify_names_what_overwrote_a_handle() {
        let space = Space::new(CFG);
        let c = chunk(0, 1, 4, 2);
        assert!(space.write(&c, 1));
        assert!(!space.write(&chunk(0, CFG.ranges, 0, 1), 1), "no range's");
        space.verify(&c, 1).unwrap();
        assert_eq!(space.verified.load(SeqCst), 1);
        let cell = space.range_cells(1).start + 5;
        space.memory[cell].store(POISON, SeqCst);
        let e = space.verify(&c, 1).unwrap_err();
        assert!(e.contains("reads poison: its pack was given back"), "{e}");
        space.memory[cell].store(2, SeqCst);
        let e = space.verify(&c, 1).unwrap_err();
        assert!(e.ends_with("reads thread 2's id"), "{e}");
        // A run: thread 0 allocates 4 chunks, writes them, verifies them.
        let s = check(&decode(&[0, 0x00, 0x03, 0x18, 0x00, 0x1c, 0x00])).unwrap();
        assert_eq!((s.allocs, s.verified), (1, 1));
    }

    /// The first-fit model takes only chunks that lie in a slot's pack.
    #[test]
    fn the_model_refuses_a_chunk_outside_its_pack() {
        for bad in [chunk(2, 0, 0, 1), chunk(0, 0, 0, 0), chunk(0, 0, 60, 5)] {
            let e = Model::new(&CFG).take(&CFG, &bad).unwrap_err();
            assert!(e.contains("lies outside the slots or its pack"), "{e}");
        }
        Model::new(&CFG).take(&CFG, &chunk(0, 0, 60, 4)).unwrap();
    }

    #[test]
    fn random_inputs_pass() {
        let mut rng = Rng::new(0x5eed);
        let (mut lin, mut failed) = (0, 0);
        let runs = if cfg!(miri) { 4 } else { 400 };
        for i in 0..runs {
            let len = 1 + 2 * rng.below(if i % 2 == 0 { 12 } else { 80 }) as usize;
            let data = rng.bytes(len);
            match check(&decode(&data)) {
                Ok(s) => {
                    lin += usize::from(s.linearized);
                    failed += s.failed_allocs;
                }
                Err(e) => panic!("input {data:02x?}: {e}"),
            }
        }
        assert!(lin > runs / 4, "{lin} histories linearized");
        assert!(failed > 0, "no allocation ever failed");
    }

    #[test]
    fn contended_inputs_pass() {
        // Four threads hammering one small pack: allocs of 1–8 chunks, frees,
        // writes and verifies.
        let mut rng = Rng::new(99);
        for _ in 0..if cfg!(miri) { 2 } else { 100 } {
            let mut data = vec![0b01_00_00_10];
            for _ in 0..200 {
                let t = rng.below(4) as u8;
                let op = rng.below(8) as u8;
                data.push(t | op << 2);
                data.push(rng.below(64) as u8);
            }
            if let Err(e) = check(&decode(&data)) {
                panic!("{e}");
            }
        }
    }
}
