//! The CPU's view of memory: loads, stores and instruction fetches through the
//! page tables with their permissions, and `text_poke_copy` / `text_poke_set`,
//! which write program text through the physical frames.

use std::ops::Range;

use super::Machine;
use super::consts::{
    MODULES_END, MODULES_VADDR, PAGE_OFFSET, PAGE_SIZE, VMALLOC_END, VMALLOC_START, is_canonical,
};
use super::frames::Frames;
use super::oops::{Access, Fault, FaultCause, Oops};
use super::text::Text;

const PS: u64 = PAGE_SIZE;

impl Machine {
    /// Translates `va` for `access`: the pfn and offset, or the fault the MMU
    /// would raise.
    pub fn translate(&self, va: u64, access: Access) -> Result<(u64, usize), Fault> {
        let fault = |cause| Fault {
            addr: va,
            access,
            cause,
        };
        if !is_canonical(va) {
            return Err(fault(FaultCause::NonCanonical));
        }
        let (pfn, prot) = if (VMALLOC_START..=VMALLOC_END).contains(&va)
            || (MODULES_VADDR..MODULES_END).contains(&va)
        {
            let leaf = self
                .pgtables
                .lookup(va)
                .ok_or(fault(FaultCause::NotPresent))?;
            (leaf.pfn + ((va - leaf.va) / PS), leaf.prot)
        } else if va >= PAGE_OFFSET && va < PAGE_OFFSET + self.mm.nr_pages() * PS {
            let pfn = (va - PAGE_OFFSET) / PS;
            (pfn, self.dmap.prot(pfn))
        } else {
            return Err(fault(FaultCause::NotPresent));
        };
        if !prot.present() {
            return Err(fault(FaultCause::NotPresent));
        }
        match access {
            Access::Write if !prot.writable() => Err(fault(FaultCause::WriteToReadOnly)),
            Access::Fetch if !prot.executable() => Err(fault(FaultCause::ExecNx)),
            _ => Ok((pfn, (va % PS) as usize)),
        }
    }

    /// Calls `f(pfn, offset_in_frame, range_in_buffer)` for each page-sized
    /// piece of `va..va+len`, after translating it for `access`.
    fn each_piece(
        &self,
        va: u64,
        len: usize,
        access: Access,
        mut f: impl FnMut(u64, usize, Range<usize>),
    ) -> Result<(), Fault> {
        let mut done = 0usize;
        while done < len {
            let addr = va + done as u64;
            let (pfn, off) = self.translate(addr, access)?;
            let n = (PS as usize - off).min(len - done);
            f(pfn, off, done..done + n);
            done += n;
        }
        Ok(())
    }

    /// A kernel load of `buf.len()` bytes at `va`; a fault is an oops.
    pub fn read(&mut self, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let r = self.each_piece(va, buf.len(), Access::Read, |pfn, off, r| {
            self.frames.read(pfn, off, &mut buf[r])
        });
        self.oops_on(r)
    }

    /// What a load of `buf.len()` bytes at `va` would give, without recording
    /// anything: the question a stale pointer asks, like
    /// [`Machine::probe_fetch`].
    pub fn probe_read(&self, va: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.each_piece(va, buf.len(), Access::Read, |pfn, off, r| {
            self.frames.read(pfn, off, &mut buf[r])
        })
    }

    fn oops_on<T>(&mut self, r: Result<T, Fault>) -> Result<T, Fault> {
        if let Err(f) = &r {
            self.oops(Oops::Fault(*f));
        }
        r
    }

    /// A kernel store of `data` at `va`; a fault is an oops. Pages before a
    /// faulting one are written, as a `memcpy` would leave them.
    pub fn write(&mut self, va: u64, data: &[u8]) -> Result<(), Fault> {
        self.store(va, data.len(), Access::Write, |frames, pfn, off, r| {
            frames.write(pfn, off, &data[r])
        })
    }

    /// [`Machine::write`] of all of `text` (the JIT writing a program): the
    /// same bytes, with whole pages of it kept as the text itself.
    pub fn write_text(&mut self, va: u64, text: &Text) -> Result<(), Fault> {
        self.store_runs(
            va,
            text.len(),
            |frames, pfn, off, r| frames.write_text(pfn, off, text, r),
            |frames, pfn, n, at| frames.write_text_frames(pfn, n, text, at),
        )
    }

    /// A kernel `memset(va, value, len)`; a fault is an oops.
    pub fn memset(&mut self, va: u64, value: u8, len: usize) -> Result<(), Fault> {
        self.store_runs(
            va,
            len,
            |frames, pfn, off, r| frames.fill(pfn, off, r.len(), value),
            |frames, pfn, n, _| frames.fill_frames(pfn, n, value),
        )
    }

    /// [`Machine::store`] of `len` bytes at `va` with `put`, except that the
    /// whole pages of the vmalloc or module range in it, where every one is
    /// mapped writable, go to `run(frames, first_pfn, n, offset_in_store)` a
    /// run of `n` consecutive frames at a time: what the page-by-page store
    /// does to each, with no fault to meet.
    fn store_runs(
        &mut self,
        va: u64,
        len: usize,
        mut put: impl FnMut(&mut Frames, u64, usize, Range<usize>),
        mut run: impl FnMut(&mut Frames, u64, u64, usize),
    ) -> Result<(), Fault> {
        let end = va.saturating_add(len as u64);
        let (lo, hi) = (va.next_multiple_of(PS), end & !(PS - 1));
        if lo >= hi || !self.writable_pages(lo, hi) {
            return self.store(va, len, Access::Write, put);
        }
        self.store(va, (lo - va) as usize, Access::Write, &mut put)?;
        for e in self.pgtables.extents_in(lo, hi) {
            run(&mut self.frames, e.pfn, e.pages, (e.va - va) as usize);
        }
        let at = (hi - va) as usize;
        self.store(hi, (end - hi) as usize, Access::Write, |f, pfn, off, r| {
            put(f, pfn, off, r.start + at..r.end + at)
        })
    }

    /// Is every page of `lo..hi` (page-aligned, in the vmalloc or the module
    /// range) mapped present and writable?
    fn writable_pages(&self, lo: u64, hi: u64) -> bool {
        let within = |r: Range<u64>| r.contains(&lo) && r.contains(&(hi - 1));
        if !within(VMALLOC_START..VMALLOC_END + 1) && !within(MODULES_VADDR..MODULES_END) {
            return false;
        }
        let mut expect = lo;
        for e in self.pgtables.extents_in(lo, hi) {
            if e.va != expect || !e.prot.present() || !e.prot.writable() {
                return false;
            }
            expect = e.end();
        }
        expect == hi
    }

    fn store(
        &mut self,
        va: u64,
        len: usize,
        access: Access,
        mut put: impl FnMut(&mut Frames, u64, usize, Range<usize>),
    ) -> Result<(), Fault> {
        let mut done = 0usize;
        while done < len {
            let addr = va + done as u64;
            let (pfn, off) = match self.translate(addr, access) {
                Ok(t) => t,
                Err(f) => return self.oops_on(Err(f)),
            };
            let n = (PS as usize - off).min(len - done);
            put(&mut self.frames, pfn, off, done..done + n);
            done += n;
        }
        Ok(())
    }

    /// What an instruction fetch of one byte at `va` would give, without
    /// recording anything: the question a probe asks ("what would a jump here
    /// run?"), not kernel code running.
    pub fn probe_fetch(&self, va: u64) -> Result<u8, Fault> {
        let (pfn, off) = self.translate(va, Access::Fetch)?;
        Ok(self.frames.byte(pfn, off))
    }

    /// Instruction fetches of `len` bytes from `va` (running the code); a
    /// fault is an oops.
    pub fn fetch(&mut self, va: u64, len: usize) -> Result<Vec<u8>, Fault> {
        let mut out = vec![0; len];
        let r = self.each_piece(va, len, Access::Fetch, |pfn, off, r| {
            self.frames.read(pfn, off, &mut out[r])
        });
        self.oops_on(r).map(|()| out)
    }

    /// Instruction fetches of `text.len()` bytes from `va`, as
    /// [`Machine::fetch`], telling whether they are `text` rather than
    /// copying them: compared in place (a frame that holds that very page of
    /// the text is not even read).
    pub fn fetch_holds(&mut self, va: u64, text: &Text) -> Result<bool, Fault> {
        let mut same = true;
        let r = self.each_piece(va, text.len(), Access::Fetch, |pfn, off, r| {
            same = same && self.frames.holds_text(pfn, off, text, r);
        });
        self.oops_on(r).map(|()| same)
    }

    /// `__text_poke()`'s page lookup: `vmalloc_to_page()` of every page the
    /// write touches; `BUG_ON(!pages[0])` when one is not mapped. Each piece
    /// is (pfn, offset in the frame, range of the source): a part of one
    /// frame, or whole frames of consecutive pfns from `pfn` on, as many as
    /// follow each other.
    fn poke_pieces(&mut self, addr: u64, len: usize) -> Option<Vec<(u64, usize, Range<usize>)>> {
        let mut pieces: Vec<(u64, usize, Range<usize>)> = Vec::new();
        let mut done = 0usize;
        while done < len {
            let a = addr + done as u64;
            let Some(pfn) = self.pgtables.vmalloc_to_pfn(a) else {
                self.oops(Oops::Bug {
                    site: super::oops::bug::TEXT_POKE_PAGES,
                    dump: None,
                });
                return None;
            };
            let off = (a % PS) as usize;
            let n = (PS as usize - off).min(len - done);
            match pieces.last_mut() {
                Some((p, 0, r))
                    if n == PS as usize
                        && r.len() % PS as usize == 0
                        && *p + (r.len() / PS as usize) as u64 == pfn =>
                {
                    r.end += n
                }
                _ => pieces.push((pfn, off, done..done + n)),
            }
            done += n;
        }
        Some(pieces)
    }

    /// `text_poke_copy(addr, src, len)`: writes program text through a
    /// temporary alias of the frames, whatever the protection of `addr`.
    pub fn text_poke_copy(&mut self, addr: u64, src: &[u8]) -> Option<()> {
        self.text_poke_copy_with(addr, src.len(), |frames, pfn, off, r| {
            for (p, o, r) in frame_pieces(pfn, off, r) {
                frames.write(p, o, &src[r]);
            }
        })
    }

    /// [`Machine::text_poke_copy`] of `len` bytes from a source that writes
    /// itself: `put(frames, pfn, offset_in_frame, range_in_source)` for each
    /// piece, a part of one frame or whole frames of consecutive pfns (a JIT
    /// buffer of megabytes need not be built first; [`frame_pieces`] cuts a
    /// piece into frames).
    pub fn text_poke_copy_with(
        &mut self,
        addr: u64,
        len: usize,
        mut put: impl FnMut(&mut Frames, u64, usize, Range<usize>),
    ) -> Option<()> {
        for (pfn, off, r) in self.poke_pieces(addr, len)? {
            put(&mut self.frames, pfn, off, r);
        }
        Some(())
    }

    /// `text_poke_set(addr, c, len)`: fills text with one byte (INT3, 0xCC).
    pub fn text_poke_set(&mut self, addr: u64, c: u8, len: usize) -> Option<()> {
        for (pfn, off, r) in self.poke_pieces(addr, len)? {
            if r.len() > PS as usize {
                self.frames
                    .fill_frames(pfn, (r.len() / PS as usize) as u64, c);
            } else {
                self.frames.fill(pfn, off, r.len(), c);
            }
        }
        Some(())
    }
}

/// A piece of [`Machine::text_poke_copy_with`] cut into one piece per frame.
pub fn frame_pieces(
    pfn: u64,
    off: usize,
    r: Range<usize>,
) -> impl Iterator<Item = (u64, usize, Range<usize>)> {
    let ps = PS as usize;
    let frames = if r.len() > ps { r.len() / ps } else { 1 };
    (0..frames).map(move |i| {
        if frames == 1 {
            (pfn, off, r.clone())
        } else {
            (pfn + i as u64, 0, r.start + i * ps..r.start + (i + 1) * ps)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineConfig;
    use crate::machine::frames::Content;
    use crate::machine::prot::Prot;

    /// A machine with frames 40-43, 50 and 51 mapped in turn at the start
    /// of the module range with `prot`, and that address.
    fn six_frames_mapped(prot: Prot) -> (Machine, u64) {
        let mut m = Machine::new(MachineConfig::default());
        let va = MODULES_VADDR;
        m.pgtables.map_ptes(va, &[40, 41, 42, 43, 50, 51], prot);
        (m, va)
    }

    /// A text written over whole mapped pages lands as the page-by-page
    /// store would put it, its whole pages kept as the text, the pieces
    /// before and after them at their own offsets.
    #[test]
    fn a_text_over_whole_pages_is_written_as_the_store_would() {
        let (mut m, va) = six_frames_mapped(Prot::PAGE_KERNEL);
        let text = Text::new(9, 4 * PS as u32 + 300);
        m.write_text(va + 100, &text).expect("all writable");
        let mut got = vec![0; text.len()];
        m.read(va + 100, &mut got).unwrap();
        assert!(got == text.to_vec(), "the text's bytes, in order");
        for (i, pfn) in [41, 42, 43].into_iter().enumerate() {
            let off = (i + 1) * PS as usize - 100;
            assert_eq!(
                m.frames.content(pfn),
                Content::Text {
                    text,
                    off: off as u32
                }
            );
        }
    }

    /// `__text_poke()`'s pieces: a part of a frame alone, whole frames of
    /// consecutive pfns as one piece, and a frame that does not follow on
    /// as a piece of its own.
    #[test]
    fn poke_pieces_merge_whole_frames_of_consecutive_pfns() {
        let (mut m, va) = six_frames_mapped(Prot::PAGE_KERNEL_ROX);
        let ps = PS as usize;
        let pieces = m.poke_pieces(va + 100, 6 * ps - 150).unwrap();
        let a = ps - 100;
        assert_eq!(
            pieces,
            [
                (40, 100, 0..a),
                (41, 0, a..a + 3 * ps),
                (50, 0, a + 3 * ps..a + 4 * ps),
                (51, 0, a + 4 * ps..a + 5 * ps - 50),
            ]
        );
    }

    /// A memset over whole mapped pages fills them a run at a time, and
    /// meets a read-only page where the page-by-page store would: the bytes
    /// before it written, the fault its first byte, nothing after it.
    #[test]
    fn a_memset_stops_at_the_first_page_it_may_not_write() {
        let mut m = Machine::new(MachineConfig::default());
        let va = MODULES_VADDR;
        m.pgtables
            .map_ptes(va, &[40, 41, 42, 43, 50], Prot::PAGE_KERNEL);
        let mut boot = vec![0; 5 * PS as usize];
        m.read(va, &mut boot).unwrap();
        let (start, len) = (va + 100, 4 * PS as usize);
        m.memset(start, 0xab, len).expect("all writable");
        let mut buf = vec![0; 5 * PS as usize];
        m.read(va, &mut buf).unwrap();
        let filled = |i: usize| (100..100 + len).contains(&i);
        assert!((0..buf.len()).all(|i| buf[i] == if filled(i) { 0xab } else { boot[i] }));
        assert!(m.frames.all_fill(41, 3, 0xab), "whole pages as fills");
        let before = buf.clone();
        let ro = m.pgtables.lookup(va + 3 * PS).unwrap();
        m.pgtables.set_prot(ro, Prot::PRESENT);
        let fault = m.memset(va, 0x11, 5 * PS as usize).unwrap_err();
        assert_eq!(
            (fault.addr, fault.cause),
            (va + 3 * PS, FaultCause::WriteToReadOnly)
        );
        m.read(va, &mut buf).unwrap();
        let want = |i: usize| if i < 3 * PS as usize { 0x11 } else { before[i] };
        assert!((0..buf.len()).all(|i| buf[i] == want(i)));
        assert!(m.frames.all_fill(40, 3, 0x11));
    }
}
