//! BPF JIT images in packs, after `kernel/bpf/core.c` and the x86 JIT as fixed
//! through v6.10: `alloc_new_pack`, `bpf_prog_pack_alloc`,
//! `bpf_prog_pack_free`, `bpf_jit_binary_pack_alloc`, `_finalize` and `_free`.
//!
//! A new pack is a `module_alloc` of `PMD_SIZE × nodes` with huge pages (the
//! never-merged `module_alloc_huge`; in 5.18-rc1..rc3 every `module_alloc` got
//! them), filled with INT3 (d88bb5eed04c), `VM_FLUSH_RESET_PERMS`, then
//! `set_memory_rox` with its result checked (c733239f8f53). The JIT writes into
//! an RW buffer (`kvmalloc`'d in the kernel; described, not allocated, here:
//! [`RwBuffer`]) filled with INT3, and finalize copies the whole buffer with
//! `text_poke_copy`. A free reads the size from the RO header, overwrites the
//! range with INT3 by `text_poke_set` (fe736565efb7) and only then clears its
//! chunks; an empty pack is released at once, as in the kernel (no empty pack
//! is cached).

use std::ops::Range;

use super::pack::{self, PackSource};
use super::quirks::Quirk;
use super::vmalloc::{Space, VmFlags, VmStruct};
use super::{Binary, Core, Optimised, Sabotage};
use crate::kernel::{Errno, Image, ImageSlot, Prog, Text};
use crate::machine::Design;
use crate::machine::consts::{PAGE_SIZE, PMD_SIZE, round_up};
use crate::machine::cpu::frame_pieces;
use crate::machine::frames::Frames;
use crate::machine::oops::Oops;

/// `sizeof(struct bpf_binary_header)`: `u32 size` and an 8-aligned image.
const HDR: u64 = 8;

/// The JIT's RW buffer (`rw_header`, which `bpf_jit_binary_pack_alloc()`
/// `kvmalloc`s and fills with INT3): `size` bytes of INT3 with `size` in the
/// header and, once the JIT has written it, the program text at `image`.
/// Kept as that description rather than as bytes: it is only ever copied out,
/// whole or its header, and a program can be megabytes.
struct RwBuffer {
    size: u64,
    image: u64,
    text: Option<Text>,
}

impl RwBuffer {
    /// The header's `u32 size`, as `text_poke_copy` of its first bytes copies it.
    fn header(&self) -> [u8; 4] {
        (self.size as u32).to_le_bytes()
    }

    /// The JIT writes `text` at the image.
    fn jit(&mut self, text: &Text) {
        debug_assert!(self.image + text.len() as u64 <= self.size);
        self.text = Some(*text);
    }

    /// Copies bytes `r` of the buffer into frame `pfn` at `off` (a piece of
    /// [`Machine::text_poke_copy_with`](crate::machine::Machine::text_poke_copy_with)):
    /// whole pages of text as the text, INT3 as a fill, a run of whole frames
    /// of either at once.
    fn put(&self, frames: &mut Frames, pfn: u64, off: usize, r: Range<usize>) {
        let image = self.image as usize;
        let in_text = image..image + self.text.map_or(0, |t| t.len());
        let header = self.header();
        let frames_n = (r.len() / PAGE_SIZE as usize) as u64;
        let int3 = r.start >= header.len() && (r.end <= in_text.start || r.start >= in_text.end);
        match self.text {
            Some(t) if in_text.start <= r.start && r.end <= in_text.end => {
                if frames_n > 1 {
                    frames.write_text_frames(pfn, frames_n, &t, r.start - image)
                } else {
                    frames.write_text(pfn, off, &t, r.start - image..r.end - image)
                }
            }
            _ if int3 && frames_n > 1 => frames.fill_frames(pfn, frames_n, 0xcc),
            _ if int3 => frames.fill(pfn, off, r.len(), 0xcc),
            _ if frames_n > 1 => {
                for (p, o, r) in frame_pieces(pfn, off, r) {
                    self.put(frames, p, o, r);
                }
            }
            _ => {
                let mut buf = vec![0xcc; r.len()];
                if r.start < header.len() {
                    let n = (header.len() - r.start).min(r.len());
                    buf[..n].copy_from_slice(&header[r.start..r.start + n]);
                }
                let (lo, hi) = (in_text.start.max(r.start), in_text.end.min(r.end));
                if let (Some(t), true) = (self.text, lo < hi) {
                    t.read(lo - image, &mut buf[lo - r.start..hi - r.start]);
                }
                frames.write(pfn, off, &buf);
            }
        }
    }
}

impl Core {
    /// `module_alloc()` of `size` bytes (a multiple of `PAGE_SIZE`) for BPF,
    /// huge pages allowed, then `size` bytes of it filled with INT3 and made
    /// RO+X with `VM_FLUSH_RESET_PERMS`: the backing of a pack
    /// (`alloc_new_pack`: the pack size) or of an oversize program
    /// (`bpf_prog_pack_alloc`: `round_up(size, PAGE_SIZE)`). A huge area is
    /// mapped to the next `PMD_SIZE`, but only `size` bytes are filled and
    /// protected, so the protection ends inside the last PMD leaf, which CPA
    /// splits (a 2.1 MB program: 513 of 1024 pages RO+X). With `uninit-pack`
    /// the `bpf_fill_ill_insns()` that d88bb5eed04c added to both is missing,
    /// so the memory becomes executable with whatever its frames held.
    ///
    /// In the `linux-6.1` design `module_alloc()` is never huge: the pack's
    /// 512 order-0 pages are mapped by PTEs (x86 `module_alloc()` passes no
    /// `VM_ALLOW_HUGE_VMAP`; 6.1 as measured in the guest: `page_order` 0).
    pub(super) fn alloc_exec(&mut self, size: u64) -> Option<VmStruct> {
        let vm = VmFlags {
            allow_huge: self.design == Design::Pack2m,
            no_huge: false,
            nofail: false,
        };
        let mut area = self
            .vmalloc_node_range(size, 1, Space::Modules, false, vm)
            .ok()?;
        // bpf_fill_ill_insns(): jit_fill_hole is memset(0xcc) on x86; the
        // area is still RW here.
        if !self.quirks.has(Quirk::UninitPack) && self.sabotage != Some(Sabotage::SkipPackFill) {
            self.m
                .memset(area.addr, 0xcc, size as usize)
                .expect("a fresh module_alloc area is writable");
        }
        area.flush_reset_perms = true;
        debug_assert!(size % PAGE_SIZE == 0 && size <= area.size);
        // change_page_attr_set_clr() begins with vm_unmap_aliases().
        self.purge_vmap_area_lazy();
        let pages = size / PAGE_SIZE;
        let r = match self.sabotage {
            Some(Sabotage::PackWritable) => self.m.set_memory_x(area.addr, pages),
            Some(Sabotage::CpaPastTheEnd) => self.m.set_memory_rox(area.addr, pages + 1),
            _ => self.m.set_memory_rox(area.addr, pages),
        };
        if r.is_err() && self.sabotage != Some(Sabotage::CpaPastTheEnd) {
            self.vunmap(area);
            return None;
        }
        if self.sabotage == Some(Sabotage::HideExecChanges) {
            self.m.pgtables.take_exec_changed();
        }
        if self.sabotage == Some(Sabotage::AliasWritable) {
            for &pfn in &area.pages {
                self.m.set_direct_map_default_noflush(pfn);
            }
        }
        Some(area)
    }
}

impl Core {
    /// `bpf_jit_free_exec(ptr)`: `module_memfree()`, or in the `execmem`
    /// design `execmem_free()`.
    fn bpf_jit_free_exec(&mut self, ptr: u64) {
        if self.design == Design::Execmem {
            self.execmem_free(ptr);
        } else {
            self.module_memfree(ptr);
        }
    }
}

impl PackSource for Core {
    /// `alloc_new_pack()`. In the `execmem` design the pack is
    /// `bpf_jit_alloc_exec()` = `execmem_alloc(EXECMEM_BPF)` from the ROX
    /// cache, whose memory is INT3-filled and ROX already, so the fill,
    /// `set_vm_flush_reset_perms()` and `set_memory_rox()` are skipped when
    /// `bpf_jit_mem_is_rox()` (bpf-next, 6b88aaec81db / 7516714947da "x86/bpf:
    /// Enable EXECMEM_ROX_CACHE for BPF allocations" [unverified: seen only
    /// in derived text of `kernel/bpf/core.c`]).
    fn alloc_pack(&mut self, size: u64) -> Option<u64> {
        if self.design == Design::Execmem {
            return self.execmem_alloc(size);
        }
        let area = self.alloc_exec(size)?;
        let base = area.addr;
        self.pack_areas.insert(base, area);
        Some(base)
    }

    /// `bpf_jit_free_exec(pack->ptr)`.
    fn free_pack(&mut self, base: u64, _size: u64) {
        self.bpf_jit_free_exec(base);
    }
}

impl Optimised {
    /// `bpf_prog_pack_alloc(size, …, was_classic)`: the RO header address.
    ///
    /// With the 2026 cBPF JIT-spray hardening (96cce16e26dd, a23c1c5396a9
    /// and the pack preference after them, backported to 6.1–6.18) and a CPU
    /// with IBPB (`bpf_pred_flush_enabled`), each pack carries
    /// `arch_flush_needed`: set when the pack is made and whenever a chunk of
    /// it is freed, cleared on every pack by a flush. A classic program
    /// prefers a pack that needs no flush and an eBPF one a pack that does
    /// (`was_classic ^ pack->arch_flush_needed`, the first such pack with
    /// room, else the first pack with room, else a new pack); a classic
    /// program placed in a pack that needs a flush issues one
    /// (`bpf_arch_pred_flush()`: IBPB on every CPU) before its chunks are
    /// taken, so it never reuses memory freed since the last flush with the
    /// predictors still trained by the old code. A program larger than a pack
    /// gets its own memory and is never flushed for. With
    /// `cbpf-reuse-no-flush` none of this exists: plain first fit, no flush.
    fn bpf_prog_pack_alloc(&mut self, size: u64, was_classic: bool) -> Option<u64> {
        if size > self.packs.pack_size() {
            if self.core.design == Design::Execmem {
                return self.core.execmem_alloc(round_up(size, PAGE_SIZE));
            }
            let area = self.core.alloc_exec(round_up(size, PAGE_SIZE))?;
            let addr = area.addr;
            self.core.oversize.insert(addr, area);
            return Some(addr);
        }
        if let (Some(Sabotage::ReuseChunk), Some(last)) = (self.core.sabotage, self.images.last()) {
            return Some(last.image.header);
        }
        if self.core.quirks.has(Quirk::CbpfReuseNoFlush) {
            return self.packs.alloc(size, &mut self.core).map(|c| c.addr);
        }
        let (packs, clean) = (&self.packs, &self.clean_packs);
        let needs_flush = |slot: u32| packs.base(slot).is_none_or(|b| !clean.contains(&b));
        let prefer = |slot: u32| was_classic ^ needs_flush(slot);
        let c = self.packs.alloc_preferring(size, &mut self.core, &prefer)?;
        let base = c.addr - u64::from(c.pos) * pack::CHUNK_SIZE;
        if was_classic && !self.clean_packs.contains(&base) {
            self.bpf_arch_pred_flush();
        }
        Some(c.addr)
    }

    /// `bpf_arch_pred_flush()` (IBPB on all CPUs), then `arch_flush_needed`
    /// cleared on every pack.
    fn bpf_arch_pred_flush(&mut self) {
        self.pred_flushes += 1;
        self.clean_packs = (self.packs.snapshot().into_iter())
            .map(|p| p.base)
            .collect();
    }

    /// `bpf_prog_pack_free(ptr, size)` (v6.8 signature; the size comes from
    /// the caller, who read the RO header).
    fn bpf_prog_pack_free(&mut self, ptr: u64, size: u64) {
        if size > self.packs.pack_size() {
            self.core.bpf_jit_free_exec(ptr);
            return;
        }
        let Some((slot, base)) = self.find_pack(ptr) else {
            self.core.m.oops(Oops::Warn {
                function: "bpf_prog_pack_free",
                message: "bpf_prog_pack bug".to_string(),
            });
            return;
        };
        // bpf_arch_text_invalidate() (fe736565efb7, with text_poke_set() of
        // aadd1b678ebe): INT3 over the range before its bits clear. With
        // `no-invalidate-on-free` the bits are just cleared, as in 5.18, and
        // the old code stays executable until the space is reused.
        if !self.core.quirks.has(Quirk::NoInvalidateOnFree)
            && self
                .core
                .m
                .text_poke_set(ptr, 0xcc, size as usize)
                .is_none()
        {
            self.core.m.oops(Oops::Warn {
                function: "bpf_prog_pack_free",
                message: "bpf_prog_pack bug: missing bpf_arch_text_invalidate?".to_string(),
            });
        }
        let pos = (ptr - base) >> pack::CHUNK_SHIFT;
        let nbits = pack::size_to_nbits(size);
        self.packs.free_bits(slot, pos, nbits, &mut self.core);
        // arch_flush_needed = true (and a released pack is gone).
        self.clean_packs.remove(&base);
    }

    /// The pack a chunk at `ptr` belongs to: since ea2babac63d4, the pack whose
    /// range holds it (`ptr >= pack->ptr && ptr < pack->ptr + size`). Before,
    /// `bpf_prog_pack_free()` computed `pack_ptr` by a mask and matched it
    /// against each pack's address: `ptr & bpf_prog_pack_mask`, which
    /// 96805674e562 set to `PMD_MASK` for huge packs (`pack-mask-lookup`, the
    /// state 5.18-rc1..rc3 shipped) — right for a one-node pack, but a two-node
    /// pack is `PMD_SIZE × 2`, so every chunk in its second 2 MiB masks to the
    /// second PMD and matches nothing, however the pack is aligned. Earlier
    /// still (ef078600eec2 in bpf-next, `pack-size-mask-lookup`) the mask was
    /// `~(bpf_prog_pack_size - 1)`, which misses a pack that `module_alloc()`
    /// only aligned to `PMD_SIZE`.
    /// The two masks are two states of one line; with both quirks on, a
    /// lookup misses where either of them would.
    fn find_pack(&self, ptr: u64) -> Option<(u32, u64)> {
        let q = self.core.quirks;
        let masks = [
            (Quirk::PackMaskLookup, !(PMD_SIZE - 1)),
            (Quirk::PackSizeMaskLookup, !(self.packs.pack_size() - 1)),
        ];
        let (slot, base) = self.packs.find(ptr)?;
        masks
            .iter()
            .all(|&(quirk, mask)| !q.has(quirk) || ptr & mask == base)
            .then_some((slot, base))
    }

    /// `bpf_jit_binary_pack_alloc(proglen, …, alignment, …)`: the RO header and
    /// the RW buffer (INT3 with `size` in its header, the image offset chosen).
    fn jit_binary_pack_alloc(
        &mut self,
        proglen: u64,
        align: u32,
        rand: u32,
        was_classic: bool,
    ) -> Result<(u64, RwBuffer), Errno> {
        let size = round_up(proglen + HDR + 16, pack::CHUNK_SIZE);
        let ro = (self.bpf_prog_pack_alloc(size, was_classic)).ok_or(Errno::Enomem)?;
        let hole = (size - (proglen + HDR)).min(pack::CHUNK_SIZE - HDR);
        let start = (rand as u64 % hole) & !(align as u64 - 1);
        let rw = RwBuffer {
            size,
            image: HDR + start,
            text: None,
        };
        Ok((ro, rw))
    }

    /// `bpf_jit_binary_pack_finalize()`: `text_poke_copy` of the whole RW
    /// buffer to the RO image.
    fn jit_binary_pack_finalize(&mut self, ro: u64, rw: &RwBuffer) -> Option<()> {
        (self.core.m).text_poke_copy_with(ro, rw.size as usize, |frames, pfn, off, r| {
            rw.put(frames, pfn, off, r)
        })
    }

    /// `bpf_jit_binary_pack_free(ro_header, rw_header)`: the size is read from
    /// the RO header.
    fn jit_binary_pack_free(&mut self, ro: u64) {
        let mut size = [0u8; 4];
        if self.core.m.read(ro, &mut size).is_err() {
            return;
        }
        self.bpf_prog_pack_free(ro, u32::from_le_bytes(size) as u64);
    }

    /// JIT into the RW buffer, then `bpf_jit_binary_pack_finalize()`.
    pub(super) fn jit_load(
        &mut self,
        text: &Text,
        align: u32,
        rand: u32,
        was_classic: bool,
    ) -> Result<Prog, Errno> {
        let (ro, mut rw) =
            self.jit_binary_pack_alloc(text.len() as u64, align, rand, was_classic)?;
        rw.jit(text);
        if self.jit_binary_pack_finalize(ro, &rw).is_none() {
            self.bpf_prog_pack_free(ro, rw.size);
            return Err(Errno::Enomem);
        }
        self.images.push(ImageSlot {
            image: Image {
                header: ro,
                header_len: 4,
                text_start: ro + rw.image,
                text: *text,
                alloc_size: if rw.size > self.packs.pack_size() {
                    round_up(rw.size, PAGE_SIZE)
                } else {
                    rw.size
                },
            },
            live: true,
        });
        self.binaries.push(Some(Binary { ro }));
        Ok(Prog(self.images.len() as u32 - 1))
    }

    /// The x86 JIT's error path (`out_image:`): copy the size into the RO
    /// header (676b2daabaf9), then `bpf_jit_binary_pack_free()`, which reads it
    /// back. With `unset-ro-size` the copy is missing, so the free uses
    /// whatever the RO header held — INT3 from the fill (a "size" larger than a
    /// pack: `module_memfree()` of a chunk), or a freed program's header.
    fn jit_error_free(&mut self, ro: u64, rw: &RwBuffer) {
        if !self.core.quirks.has(Quirk::UnsetRoSize) {
            // A chunk of a pack freed under the allocator is unmapped: the
            // BUG_ON in text_poke is already an oops.
            let _ = self.core.m.text_poke_copy(ro, &rw.header());
        }
        self.jit_binary_pack_free(ro);
    }

    /// The JIT fails on a program before finalising it.
    pub(super) fn jit_load_fail(&mut self, len: u32, rand: u32) -> Result<(), Errno> {
        let (ro, rw) = self.jit_binary_pack_alloc(len as u64, 1, rand, false)?;
        self.jit_error_free(ro, &rw);
        Ok(())
    }

    /// `jit_subprogs()` with a failing extra pass: the first pass allocates a
    /// binary for every subprogram and JITs it into the RW buffer, keeping it
    /// unfinalised (`jit_data`); the extra pass finalises subprograms
    /// `0..fail` and fails on `fail` (the error path frees it); `out_free:`
    /// calls `bpf_jit_free()` on every other one.
    pub(super) fn jit_subprogs_fail(
        &mut self,
        texts: &[Text],
        fail: usize,
        rand: u32,
    ) -> Result<(), Errno> {
        let mut subs: Vec<(u64, RwBuffer)> = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            match self.jit_binary_pack_alloc(
                text.len() as u64,
                1,
                rand.wrapping_add(i as u32),
                false,
            ) {
                Ok((ro, mut rw)) => {
                    rw.jit(text);
                    subs.push((ro, rw));
                }
                Err(e) => {
                    for (ro, rw) in subs {
                        self.jit_free_unfinalised(ro, &rw);
                    }
                    return Err(e);
                }
            }
        }
        for (ro, rw) in &subs[..fail] {
            let _ = self.jit_binary_pack_finalize(*ro, rw);
        }
        let (ro, rw) = &subs[fail];
        self.jit_error_free(*ro, rw);
        for (i, (ro, rw)) in subs.iter().enumerate() {
            match i.cmp(&fail) {
                std::cmp::Ordering::Less => self.jit_binary_pack_free(*ro),
                std::cmp::Ordering::Equal => {}
                std::cmp::Ordering::Greater => self.jit_free_unfinalised(*ro, rw),
            }
        }
        if self.core.sabotage == Some(super::Sabotage::SubprogsMiscountLazy) {
            self.core.lazy_pages += 1;
        }
        Ok(())
    }

    /// `bpf_jit_free()` of a subprogram the extra pass never finalised. Since
    /// 1d5f82d9dd47 x86's `bpf_jit_free()` finalises it first and frees it by
    /// its chunk. Before (`unfinalized-free-mask`), `use_bpf_prog_pack` was
    /// still false, so the generic `bpf_jit_free()` took the header as
    /// `bpf_func & PAGE_MASK` and `bpf_jit_binary_free()`d it: a
    /// `module_memfree()` of that page — the whole pack, when the subprogram
    /// sits in the pack's first page, while other programs live in it
    /// (CVE-2022-50168).
    fn jit_free_unfinalised(&mut self, ro: u64, rw: &RwBuffer) {
        if self.core.quirks.has(Quirk::UnfinalizedFreeMask) {
            let hdr = (ro + rw.image) & !(PAGE_SIZE - 1);
            let mut size = [0u8; 4];
            if self.core.m.read(hdr, &mut size).is_ok() {
                self.core.bpf_jit_free_exec(hdr);
            }
            return;
        }
        let _ = self.jit_binary_pack_finalize(ro, rw);
        self.jit_binary_pack_free(ro);
    }

    /// `bpf_jit_free()`: the header is `bpf_func & BPF_PROG_CHUNK_MASK`.
    pub(super) fn jit_free(&mut self, prog: Prog) {
        let bin = self.binaries[prog.0 as usize]
            .take()
            .expect("bpf_prog_free of a freed program");
        self.images[prog.0 as usize].live = false;
        let hdr = self.images[prog.0 as usize].image.text_start & !(pack::CHUNK_SIZE - 1);
        debug_assert_eq!(hdr, bin.ro);
        self.jit_binary_pack_free(hdr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::frames::Content;

    /// `RwBuffer::put` copies each page of the buffer the cheapest way that
    /// gives the kernel's bytes: a page all of text as the text (no copy of a
    /// megabyte program), a page or piece past the text as an INT3 fill, the
    /// header's page as bytes. Every byte is what `text_poke_copy` of the
    /// buffer gives.
    #[test]
    fn put_copies_text_pages_as_text_and_fills_the_rest() {
        const PS: usize = PAGE_SIZE as usize;
        let text = Text::new(9, 2 * PS as u32);
        let rw = RwBuffer {
            size: 4 * PAGE_SIZE,
            image: HDR,
            text: Some(text),
        };
        let mut frames = Frames::new(8);
        // Pages 0-3: the buffer's pages in turn; page 4: a pack's page.
        for page in 0..4 {
            rw.put(&mut frames, page as u64, 0, page * PS..(page + 1) * PS);
        }
        // Page 1 is all text (from text offset PS - 8); page 2 holds its end.
        assert!(matches!(frames.content(0), Content::Data(_)));
        assert_eq!(
            frames.content(1),
            Content::Text {
                text,
                off: (PS - HDR as usize) as u32
            }
        );
        assert!(matches!(frames.content(2), Content::Data(_)));
        assert_eq!(frames.content(3), Content::Fill(0xcc));
        // A piece past the text on a page of a pack (INT3 since the pack was
        // made) leaves the page a fill: no buffer for a page of INT3.
        frames.fill(4, 0, PS, 0xcc);
        rw.put(&mut frames, 4, 512, 3 * PS..3 * PS + 1024);
        assert_eq!(frames.content(4), Content::Fill(0xcc));
        let mut want = vec![0xcc; 4 * PS];
        want[..4].copy_from_slice(&rw.header());
        text.read(0, &mut want[8..8 + text.len()]);
        let mut got = vec![0; 4 * PS];
        for page in 0..4 {
            frames.read(page as u64, 0, &mut got[page * PS..(page + 1) * PS]);
        }
        assert!(got == want, "the bytes of the buffer");
    }

    /// The cBPF hardening: a classic program in a pack that is new or has
    /// seen a free since the last flush flushes (and cleans every pack); in
    /// a clean pack it does not; an eBPF program never flushes. Without the
    /// hardening (`cbpf-reuse-no-flush`) nothing flushes.
    #[test]
    fn classic_programs_flush_only_where_a_pack_needs_it() {
        use crate::kernel::{Kernel, Quirks};
        use crate::machine::MachineConfig;
        let text = |n| Text::new(n, 200);
        for (quirks, want) in [
            (Quirks::NONE, [0, 1, 1, 2]),
            (Quirks::NONE.with(Quirk::CbpfReuseNoFlush), [0, 0, 0, 0]),
        ] {
            let mut k = Optimised::new(MachineConfig::default(), quirks);
            let mut got = [0; 4];
            let keep = k.bpf_prog_load(&text(1), 1, 0).unwrap();
            got[0] = k.pred_flushes(); // eBPF into a new pack: no flush
            let f1 = k.bpf_prog_create(&text(2), 0).unwrap();
            got[1] = k.pred_flushes(); // the new pack needs one
            let _f2 = k.bpf_prog_create(&text(3), 0).unwrap();
            got[2] = k.pred_flushes(); // flushed since: clean
            k.bpf_prog_free(f1);
            k.bpf_prog_create(&text(4), 0).unwrap();
            got[3] = k.pred_flushes(); // a free dirtied it
            assert_eq!(got, want, "{quirks}");
            k.bpf_prog_free(keep);
        }
    }
}
