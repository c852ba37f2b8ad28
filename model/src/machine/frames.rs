//! Physical frame contents, materialised lazily.
//!
//! A frame that was never written holds *boot garbage*: a deterministic hash of
//! its pfn and offset (never 0xCC, so boot garbage can never pass for INT3
//! padding). A frame filled with one byte value (a `memset` of the whole page,
//! `clear_highpage`, the pack allocator's INT3 fill) is described by that byte,
//! and a whole page of a JIT's program text by the text and an offset
//! ([`Text`]); other frames written carry a 4 KiB buffer. Freeing a page never
//! clears it, so stale data from an earlier user stays observable, as in the
//! kernel; only `__GFP_ZERO` and explicit writes change contents.

use std::ops::Range;

use super::consts::PAGE_SIZE;
use super::lazy::LazyArray;
use super::text::Text;

const PS: usize = PAGE_SIZE as usize;

/// What a frame holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Content {
    /// Boot garbage, never written since boot.
    #[default]
    Boot,
    /// Every byte is this value.
    Fill(u8),
    /// A private buffer (index into the frame pool).
    Data(u32),
    /// A page of program text: `PAGE_SIZE` bytes of `text` from byte `off`.
    Text { text: Text, off: u32 },
}

/// The contents of all frames.
#[derive(Clone)]
pub struct Frames {
    state: LazyArray<Content, 512>,
    pool: Vec<Box<[u8; PS]>>,
    /// Buffers no frame uses any more, for reuse.
    spare: Vec<u32>,
    /// Frames written since the last [`Frames::take_written`], as runs
    /// (first pfn, frames) in the order written.
    written: Vec<(u32, u32)>,
}

/// What a new frame buffer starts as.
#[derive(Clone, Copy)]
enum Init<'a> {
    Boot(u64),
    Fill(u8),
    Copy(&'a [u8]),
    Text(Text, usize),
}

impl Init<'_> {
    fn apply(self, buf: &mut [u8; PS]) {
        match self {
            Init::Boot(pfn) => boot_page(pfn, buf),
            Init::Fill(v) => buf.fill(v),
            Init::Copy(d) => buf.copy_from_slice(d),
            Init::Text(t, off) => t.read(off, buf),
        }
    }

    /// A buffer built from its contents, not zeroed and then written.
    fn make(self) -> Box<[u8; PS]> {
        let v = match self {
            Init::Boot(pfn) => (0..PS / 8).flat_map(|w| boot_word(pfn, w)).collect(),
            Init::Fill(v) => vec![v; PS],
            Init::Copy(d) => d.to_vec(),
            Init::Text(t, off) => {
                let mut v = vec![0; PS];
                t.read(off, &mut v);
                v
            }
        };
        v.into_boxed_slice().try_into().expect("a page")
    }
}

/// The boot garbage byte at (`pfn`, `off`): SplitMix64 of the 8-byte word index,
/// with 0xCC replaced so that garbage never looks like INT3.
pub fn boot_byte(pfn: u64, off: usize) -> u8 {
    let word = splitmix64(pfn.wrapping_mul(PAGE_SIZE / 8) + (off as u64 / 8));
    let b = (word >> ((off % 8) * 8)) as u8;
    if b == 0xcc { 0x4c } else { b }
}

/// The boot garbage of all of frame `pfn`: [`boot_byte`] a word at a time.
fn boot_page(pfn: u64, buf: &mut [u8; PS]) {
    for (w, word) in buf.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&boot_word(pfn, w));
    }
}

/// Bytes `8w..8w + 8` of frame `pfn`'s boot garbage.
fn boot_word(pfn: u64, w: usize) -> [u8; 8] {
    let mut b = splitmix64(pfn.wrapping_mul(PAGE_SIZE / 8) + w as u64).to_le_bytes();
    for x in b.iter_mut().filter(|x| **x == 0xcc) {
        *x = 0x4c;
    }
    b
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Frames {
    pub fn new(nr: u64) -> Self {
        Self {
            state: LazyArray::new(nr as usize),
            pool: Vec::new(),
            spare: Vec::new(),
            written: Vec::new(),
        }
    }

    /// Logs a write of frames `pfn..pfn + n`: the last run grows when they
    /// carry it on or lie inside it, else a run is added.
    fn note_writes(&mut self, pfn: u64, n: u64) {
        let (pfn, n) = (pfn as u32, n as u32);
        match self.written.last_mut() {
            Some((p, k)) if pfn >= *p && pfn <= *p + *k => *k = (*k).max(pfn + n - *p),
            _ => self.written.push((pfn, n)),
        }
    }

    fn note_write(&mut self, pfn: u64) {
        self.note_writes(pfn, 1);
    }

    /// The frames written since the last call, as runs (first pfn, frames)
    /// in the order written; a frame written again after others may be in
    /// more than one run (for incremental oracles).
    pub fn take_written(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.written)
    }

    pub fn content(&self, pfn: u64) -> Content {
        *self.state.get(pfn as usize)
    }

    /// One byte of frame `pfn`.
    pub fn byte(&self, pfn: u64, off: usize) -> u8 {
        match *self.state.get(pfn as usize) {
            Content::Boot => boot_byte(pfn, off),
            Content::Fill(b) => b,
            Content::Data(i) => self.pool[i as usize][off],
            Content::Text { text, off: o } => text.byte(o as usize + off),
        }
    }

    /// Copies `buf.len()` bytes from frame `pfn` at `off` (within the frame).
    pub fn read(&self, pfn: u64, off: usize, buf: &mut [u8]) {
        debug_assert!(off + buf.len() <= PS);
        match *self.state.get(pfn as usize) {
            Content::Boot if off == 0 && buf.len() == PS => {
                boot_page(pfn, buf.try_into().expect("a whole page"));
            }
            Content::Boot => {
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = boot_byte(pfn, off + i);
                }
            }
            Content::Fill(v) => buf.fill(v),
            Content::Data(i) => buf.copy_from_slice(&self.pool[i as usize][off..off + buf.len()]),
            Content::Text { text, off: o } => text.read(o as usize + off, buf),
        }
    }

    /// Writes `data` into frame `pfn` at `off` (within the frame).
    pub fn write(&mut self, pfn: u64, off: usize, data: &[u8]) {
        debug_assert!(off + data.len() <= PS);
        self.note_write(pfn);
        if data.len() == PS {
            if data.iter().all(|&b| b == data[0]) {
                return self.fill(pfn, 0, PS, data[0]);
            }
            // The old contents are all overwritten: do not build them first.
            self.buffer(pfn, Init::Copy(data));
            return;
        }
        let buf = self.materialise(pfn);
        buf[off..off + data.len()].copy_from_slice(data);
    }

    /// Writes bytes `r` of `text` into frame `pfn` at `off`: as the text
    /// itself if that is the whole frame, else as a copy.
    pub fn write_text(&mut self, pfn: u64, off: usize, text: &Text, r: Range<usize>) {
        debug_assert!(r.end <= text.len() && off + r.len() <= PS);
        if r.len() == PS {
            self.note_write(pfn);
            self.release(pfn);
            let off = r.start as u32;
            self.state
                .set(pfn as usize, Content::Text { text: *text, off });
        } else {
            let mut buf = [0u8; PS];
            text.read(r.start, &mut buf[..r.len()]);
            self.write(pfn, off, &buf[..r.len()]);
        }
    }

    /// [`Frames::write_text`] of each whole frame of `pfn..pfn + n`, frame
    /// `pfn + i` taking bytes `start + i * PAGE_SIZE` on of `text`: each holds
    /// that page of the text itself, written a chunk of frame states at a
    /// time.
    pub fn write_text_frames(&mut self, pfn: u64, n: u64, text: &Text, start: usize) {
        debug_assert!(start + n as usize * PS <= text.len());
        self.note_writes(pfn, n);
        let (spare, mut off) = (&mut self.spare, start as u32);
        self.state.update(pfn as usize..(pfn + n) as usize, |c| {
            if let Content::Data(i) = *c {
                spare.push(i);
            }
            *c = Content::Text { text: *text, off };
            off += PS as u32;
        });
    }

    /// Sets `len` bytes of frame `pfn` at `off` to `value`.
    pub fn fill(&mut self, pfn: u64, off: usize, len: usize, value: u8) {
        debug_assert!(off + len <= PS);
        self.note_write(pfn);
        if len == PS {
            self.release(pfn);
            self.state.set(pfn as usize, Content::Fill(value));
            return;
        }
        if *self.state.get(pfn as usize) == Content::Fill(value) {
            return;
        }
        let buf = self.materialise(pfn);
        buf[off..off + len].fill(value);
    }

    /// `clear_highpage()`.
    pub fn zero(&mut self, pfn: u64) {
        self.fill(pfn, 0, PS, 0);
    }

    /// [`Frames::zero`] of each frame of `pfn..pfn + n`, a chunk of frame
    /// states at a time.
    pub fn zero_frames(&mut self, pfn: u64, n: u64) {
        self.fill_frames(pfn, n, 0)
    }

    /// [`Frames::fill`] of all of each frame of `pfn..pfn + n` with `value`,
    /// a chunk of frame states at a time.
    pub fn fill_frames(&mut self, pfn: u64, n: u64, value: u8) {
        self.note_writes(pfn, n);
        let frames = pfn as usize..(pfn + n) as usize;
        let data = |c: &Content| matches!(c, Content::Data(_));
        if !self.state.any(frames.clone(), data) {
            return self.state.map(frames, |_| Content::Fill(value));
        }
        let spare = &mut self.spare;
        self.state.update(frames, |c| {
            if let Content::Data(i) = *c {
                spare.push(i);
            }
            *c = Content::Fill(value);
        });
    }

    /// Is every byte of frames `pfn..pfn + n` the value `v`, as a fill made
    /// it ([`Content::Fill`], a chunk of frame states at a time)? False for a
    /// frame that holds only such bytes some other way.
    pub fn all_fill(&self, pfn: u64, n: u64, v: u8) -> bool {
        let frames = pfn as usize..(pfn + n) as usize;
        !self.state.any(frames, |&c| c != Content::Fill(v))
    }

    /// Does frame `pfn` hold `data` at `off` (within the frame)?
    pub fn holds(&self, pfn: u64, off: usize, data: &[u8]) -> bool {
        debug_assert!(off + data.len() <= PS);
        match *self.state.get(pfn as usize) {
            Content::Fill(v) => data.iter().all(|&b| b == v),
            Content::Boot => (data.iter().enumerate()).all(|(i, &b)| boot_byte(pfn, off + i) == b),
            Content::Data(i) => self.pool[i as usize][off..off + data.len()] == *data,
            Content::Text { text, off: o } => text.holds(o as usize + off, data),
        }
    }

    /// Does frame `pfn` hold bytes `r` of `text` at `off` (within the frame)?
    /// At once if it holds that very page of the text.
    pub fn holds_text(&self, pfn: u64, off: usize, text: &Text, r: Range<usize>) -> bool {
        debug_assert!(off + r.len() <= PS);
        match *self.state.get(pfn as usize) {
            Content::Text { text: t, off: o } if t == *text && o as usize + off == r.start => true,
            _ => {
                let mut buf = [0u8; PS];
                text.read(r.start, &mut buf[..r.len()]);
                self.holds(pfn, off, &buf[..r.len()])
            }
        }
    }

    /// Does each frame `pfn + i` of `pfn..pfn + n` hold page `i` of `text`
    /// from byte `start` on as the text itself (what
    /// [`Frames::write_text_frames`] leaves)? False for a frame that holds
    /// those bytes some other way.
    pub fn holds_text_frames(&self, pfn: u64, n: u64, text: &Text, start: usize) -> bool {
        (0..n).all(|i| {
            let off = (start + i as usize * PS) as u32;
            *self.state.get((pfn + i) as usize) == Content::Text { text: *text, off }
        })
    }

    /// Is every byte of `off..off+len` in frame `pfn` equal to `value`?
    pub fn all_equal(&self, pfn: u64, off: usize, len: usize, value: u8) -> bool {
        match *self.state.get(pfn as usize) {
            Content::Fill(b) => b == value,
            Content::Boot => (off..off + len).all(|o| boot_byte(pfn, o) == value),
            Content::Data(i) => self.pool[i as usize][off..off + len]
                .iter()
                .all(|&b| b == value),
            Content::Text { text, off: o } => {
                let mut buf = [0u8; PS];
                text.read(o as usize + off, &mut buf[..len]);
                buf[..len].iter().all(|&b| b == value)
            }
        }
    }

    /// Frame `pfn`'s private buffer, holding what the frame held.
    fn materialise(&mut self, pfn: u64) -> &mut [u8; PS] {
        match *self.state.get(pfn as usize) {
            Content::Boot => self.buffer(pfn, Init::Boot(pfn)),
            Content::Fill(v) => self.buffer(pfn, Init::Fill(v)),
            Content::Data(i) => &mut self.pool[i as usize],
            Content::Text { text, off } => self.buffer(pfn, Init::Text(text, off as usize)),
        }
    }

    /// Frame `pfn`'s private buffer, set to `init` (all of it).
    fn buffer(&mut self, pfn: u64, init: Init) -> &mut [u8; PS] {
        let i = match *self.state.get(pfn as usize) {
            Content::Data(i) => {
                init.apply(&mut self.pool[i as usize]);
                i
            }
            _ => {
                let i = match self.spare.pop() {
                    Some(i) => {
                        init.apply(&mut self.pool[i as usize]);
                        i
                    }
                    None => {
                        self.pool.push(init.make());
                        (self.pool.len() - 1) as u32
                    }
                };
                self.release(pfn);
                self.state.set(pfn as usize, Content::Data(i));
                i
            }
        };
        &mut self.pool[i as usize]
    }

    /// Lets go of frame `pfn`'s buffer, if it has one; the caller sets its
    /// new content.
    fn release(&mut self, pfn: u64) {
        if let Content::Data(i) = *self.state.get(pfn as usize) {
            self.spare.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames against the plainest model of them — 4 KiB of bytes each, boot
    /// garbage at first — over random writes, fills, text pages and pieces,
    /// and every way of reading and comparing them back.
    #[test]
    fn frames_hold_what_a_plain_byte_array_holds() {
        const N: u64 = 6;
        let mut f = Frames::new(N);
        let mut plain: Vec<Vec<u8>> = (0..N)
            .map(|p| (0..PS).map(|o| boot_byte(p, o)).collect())
            .collect();
        let texts = [
            Text::new(11, 3 * PS as u32 + 100),
            Text::new(12, 2 * PS as u32),
        ];
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for step in 0..4000 {
            let pfn = rnd(N as usize) as u64;
            let off = if rnd(3) == 0 { 0 } else { rnd(PS) };
            let len = if off == 0 && rnd(2) == 0 {
                PS
            } else {
                1 + rnd(PS - off)
            };
            let page = &mut plain[pfn as usize];
            match rnd(6) {
                0 => {
                    let data: Vec<u8> = (0..len).map(|_| rnd(256) as u8).collect();
                    f.write(pfn, off, &data);
                    page[off..off + len].copy_from_slice(&data);
                }
                1 => {
                    let v = [0xcc, 0, rnd(256) as u8][rnd(3)];
                    f.fill(pfn, off, len, v);
                    page[off..off + len].fill(v);
                }
                2 if off == 0 && len == PS && rnd(2) == 0 => {
                    // A run of whole frames of a text at once.
                    let t = texts[rnd(2)];
                    let n = (1 + rnd(3)).min((N - pfn) as usize).min(t.len() / PS);
                    let start = rnd(t.len() - n * PS + 1);
                    f.write_text_frames(pfn, n as u64, &t, start);
                    let run = &mut plain[pfn as usize..pfn as usize + n];
                    for (i, q) in run.iter_mut().enumerate() {
                        t.read(start + i * PS, q);
                    }
                }
                2 => {
                    let t = texts[rnd(2)];
                    let start = rnd(t.len() - len + 1);
                    let start = if len == PS && rnd(2) == 0 {
                        start & !(PS - 1)
                    } else {
                        start
                    };
                    f.write_text(pfn, off, &t, start..start + len);
                    t.read(start, &mut page[off..off + len]);
                }
                3 => {
                    let data = vec![rnd(2) as u8 * 0xcc; len];
                    f.write(pfn, off, &data);
                    page[off..off + len].copy_from_slice(&data);
                }
                4 => {
                    f.zero(pfn);
                    page.fill(0);
                }
                _ => {
                    let n = (1 + rnd(3) as u64).min(N - pfn);
                    let v = [0, 0xcc, rnd(256) as u8][rnd(3)];
                    if v == 0 {
                        f.zero_frames(pfn, n);
                    } else {
                        f.fill_frames(pfn, n, v);
                    }
                    for q in &mut plain[pfn as usize..(pfn + n) as usize] {
                        q.fill(v);
                    }
                }
            }
            // Read it all back, every way, at a random range.
            let o = rnd(PS);
            let n = 1 + rnd(PS - o);
            let mut buf = vec![0; n];
            for p in 0..N {
                let want = &plain[p as usize];
                f.read(p, o, &mut buf);
                assert_eq!(buf, want[o..o + n], "step {step}: read {p} at {o:#x}+{n}");
                let mut whole = vec![0; PS];
                f.read(p, 0, &mut whole);
                assert_eq!(&whole, want, "step {step}: whole frame {p}");
                assert_eq!(f.byte(p, o), want[o]);
                assert!(f.holds(p, o, &want[o..o + n]));
                let mut other = want[o..o + n].to_vec();
                other[n - 1] ^= 1;
                assert!(!f.holds(p, o, &other), "step {step}: holds is exact");
                let v = want[o];
                let same = want[o..o + n].iter().all(|&b| b == v);
                assert_eq!(f.all_equal(p, o, n, v), same, "step {step}: all_equal {p}");
                for t in texts {
                    let k = rnd(t.len() - n + 1);
                    let mut tb = vec![0; n];
                    t.read(k, &mut tb);
                    assert_eq!(f.holds_text(p, o, &t, k..k + n), tb == want[o..o + n]);
                }
                if let Content::Text { text, off: to } = f.content(p) {
                    let r = to as usize + o..to as usize + o + n;
                    assert!(f.holds_text(p, o, &text, r.clone()), "its own text");
                    if r.end < text.len() {
                        let shifted = r.start + 1..r.end + 1;
                        let mut tb = vec![0; n];
                        text.read(shifted.start, &mut tb);
                        assert_eq!(f.holds_text(p, o, &text, shifted), tb == want[o..o + n]);
                    }
                }
            }
        }
    }

    /// Every kind of write logs its frames until the log is taken, and
    /// then again: as runs in the order written, a write that carries on or
    /// falls inside the last run joined to it.
    #[test]
    fn writes_are_logged_as_runs_until_taken() {
        let mut f = Frames::new(256);
        f.write(3, 0, &[1]);
        f.write(3, 9, &[2]);
        f.fill(130, 8, 16, 0xcc);
        f.zero(64);
        f.write_text(200, 0, &Text::new(7, 100), 0..100);
        f.write(3, 5, &[2]);
        assert_eq!(
            f.take_written(),
            [(3, 1), (130, 1), (64, 1), (200, 1), (3, 1)]
        );
        assert!(f.take_written().is_empty());
        f.write(130, 0, &[5]);
        f.write(131, 0, &[5]);
        f.write(63, 0, &[5]);
        assert_eq!(f.take_written(), [(130, 2), (63, 1)]);
        // Runs that carry on, overlap, or lie inside the last one.
        f.fill_frames(60, 75, 0xcc);
        f.write(70, 0, &[1]);
        f.zero_frames(135, 5);
        f.zero_frames(138, 10);
        f.write(147, 0, &[1]);
        f.write(149, 0, &[1]);
        assert_eq!(f.take_written(), [(60, 88), (149, 1)]);
        f.zero_frames(255, 1);
        assert_eq!(f.take_written(), [(255, 1)]);
    }

    #[test]
    fn boot_garbage_is_deterministic_distinct_and_never_int3() {
        let f = Frames::new(64);
        let mut a = [0u8; PS];
        let mut b = [0u8; PS];
        f.read(3, 0, &mut a);
        Frames::new(64).read(3, 0, &mut b);
        assert_eq!(a, b, "same pfn, same garbage on another machine");
        f.read(4, 0, &mut b);
        assert_ne!(a, b, "different frames hold different garbage");
        for pfn in 0..64 {
            assert!(!f.all_equal(pfn, 0, PS, 0xcc));
            assert!((0..PS).all(|o| f.byte(pfn, o) != 0xcc));
        }
    }

    #[test]
    fn partial_write_keeps_the_rest_and_full_fill_is_compact() {
        let mut f = Frames::new(4);
        f.write(1, 10, &[1, 2, 3]);
        assert_eq!(f.byte(1, 11), 2);
        assert_eq!(f.byte(1, 9), boot_byte(1, 9));
        f.fill(1, 0, PS, 0xcc);
        assert_eq!(f.content(1), Content::Fill(0xcc));
        f.write(2, 0, &[0xcc; PS]);
        assert_eq!(f.content(2), Content::Fill(0xcc));
    }

    #[test]
    fn text_pages_read_as_their_text() {
        let text = Text::new(42, (3 * PS + 100) as u32);
        let bytes = text.to_vec();
        let mut f = Frames::new(8);
        f.write_text(2, 0, &text, 0..PS);
        f.write_text(3, 0, &text, PS + 100..2 * PS + 100);
        assert_eq!(
            f.content(3),
            Content::Text {
                text,
                off: PS as u32 + 100
            }
        );
        let mut page = [0u8; PS];
        f.read(3, 0, &mut page);
        assert_eq!(&page[..], &bytes[PS + 100..2 * PS + 100]);
        assert_eq!(f.byte(2, 5), bytes[5]);
        assert!(f.holds(2, 0, &bytes[..PS]) && f.holds(3, 10, &bytes[PS + 110..PS + 200]));
        assert!(!f.holds(2, 0, &bytes[1..PS + 1]));
        assert!(f.holds_text(3, 10, &text, PS + 110..PS + 200));
        assert!(!f.holds_text(2, 0, &text, 1..PS + 1));
        // Another program's text at the very same offset is other bytes.
        let other = Text::new(43, text.len() as u32);
        assert!(!f.holds_text(3, 10, &other, PS + 110..PS + 200));
        // A partial text write is a copy; a partial write over a text page
        // copies the page first; a fill drops it.
        f.write_text(4, 8, &text, 0..50);
        assert!(matches!(f.content(4), Content::Data(_)) && f.holds(4, 8, &bytes[..50]));
        assert!(f.holds_text(4, 8, &text, 0..50));
        f.write(2, 10, &[0xaa]);
        assert_eq!(f.byte(2, 10), 0xaa);
        assert_eq!(f.byte(2, 11), bytes[11]);
        f.fill(3, 0, PS, 0xcc);
        assert_eq!(f.content(3), Content::Fill(0xcc));
        assert!(!f.all_equal(2, 0, PS, 0xcc));
    }

    #[test]
    fn whole_page_paths_agree_with_the_byte_paths() {
        let mut f = Frames::new(8);
        let mut page = [0u8; PS];
        f.read(5, 0, &mut page);
        assert!((0..PS).all(|o| page[o] == boot_byte(5, o)));
        // A partial write materialises the boot garbage around it.
        f.write(5, 100, &[1, 2]);
        let mut again = [0u8; PS];
        f.read(5, 0, &mut again);
        assert_eq!(&again[..100], &page[..100]);
        assert_eq!(&again[100..102], &[1, 2]);
        assert_eq!(&again[102..], &page[102..]);
        // A whole-page write over a filled frame leaves nothing of the fill.
        let data: Vec<u8> = (0..PS).map(|i| i as u8).collect();
        f.fill(6, 0, PS, 0xcc);
        f.write(6, 0, &data);
        f.read(6, 0, &mut again);
        assert_eq!(&again[..], &data[..]);
        // And over a frame that had a buffer, whose buffer it reuses.
        f.write(5, 0, &data);
        f.read(5, 0, &mut again);
        assert_eq!(&again[..], &data[..]);
        // holds() agrees with read() for every kind of content.
        f.fill(7, 0, PS, 0xcc);
        for pfn in [3, 5, 7] {
            f.read(pfn, 0, &mut page);
            assert!(f.holds(pfn, 0, &page) && f.holds(pfn, 8, &page[8..20]));
            page[9] ^= 1;
            assert!(!f.holds(pfn, 0, &page) && !f.holds(pfn, 8, &page[8..20]));
        }
    }
}
