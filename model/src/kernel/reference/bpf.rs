//! BPF JIT images as before `bpf_prog_pack` (v5.17 `kernel/bpf/core.c` and
//! `arch/x86/net/bpf_jit_comp.c`): `bpf_jit_binary_alloc()` gives every program
//! its own `module_alloc()` of whole pages, filled with INT3, with the text at a
//! random start inside the first page; `bpf_jit_binary_lock_ro()` makes it RO
//! then X with `VM_FLUSH_RESET_PERMS`; `bpf_jit_binary_free()` is a `vfree`.

use super::{Reference, Space, VmArea};
use crate::kernel::{Errno, Image, ImageSlot, Prog, Text};
use crate::machine::Gfp;
use crate::machine::consts::{PAGE_SIZE, round_up};

/// `sizeof(struct bpf_binary_header)`: `u32 pages` and an 8-aligned image.
const HDR: u64 = 8;

/// A JIT binary before it is locked: the area, the header address, the image.
struct Binary {
    area: VmArea,
    image: u64,
}

impl Reference {
    /// `bpf_jit_binary_alloc(proglen, &image, alignment, jit_fill_hole)`.
    fn jit_binary_alloc(&mut self, proglen: u64, align: u32, rand: u32) -> Result<Binary, Errno> {
        let size = round_up(proglen + HDR + 128, PAGE_SIZE);
        let pages = size / PAGE_SIZE;
        let area = self.vmalloc_range(size, 1, Gfp::KERNEL, Space::Modules)?;
        let hdr = area.addr;
        // bpf_fill_ill_insns(hdr, size): memset 0xcc, the area is still RW.
        self.m
            .memset(hdr, 0xcc, size as usize)
            .expect("module_alloc memory is writable");
        self.m
            .write(hdr, &(pages as u32).to_le_bytes())
            .expect("header is writable");
        let hole = (size - (proglen + HDR)).min(PAGE_SIZE - HDR);
        let start = (rand as u64 % hole) & !(align as u64 - 1);
        Ok(Binary {
            area,
            image: hdr + HDR + start,
        })
    }

    /// JIT, then `bpf_jit_binary_lock_ro()`.
    pub(super) fn jit_load(&mut self, text: &Text, align: u32, rand: u32) -> Result<Prog, Errno> {
        let Binary { mut area, image } = self.jit_binary_alloc(text.len() as u64, align, rand)?;
        self.m
            .write_text(image, text)
            .expect("JIT image is writable");
        area.flush_reset_perms = true;
        let pages = area.size / PAGE_SIZE;
        self.m
            .set_memory_ro(area.addr, pages)
            .expect("image is mapped");
        self.m
            .set_memory_x(area.addr, pages)
            .expect("image is mapped");
        self.images.push(ImageSlot {
            image: Image {
                header: area.addr,
                header_len: 4,
                text_start: image,
                text: *text,
                alloc_size: area.size,
            },
            live: true,
        });
        self.prog_areas.push(Some(area));
        Ok(Prog(self.images.len() as u32 - 1))
    }

    /// The JIT fails before the image is locked: `bpf_jit_binary_free()` of
    /// memory that is still RW and has no `VM_FLUSH_RESET_PERMS`.
    pub(super) fn jit_load_fail(&mut self, len: u32, rand: u32) -> Result<(), Errno> {
        let bin = self.jit_binary_alloc(len as u64, 1, rand)?;
        self.vfree_area(bin.area);
        Ok(())
    }

    /// `jit_subprogs()` with a failing extra pass, before `bpf_prog_pack`: the
    /// first pass allocates and JITs every subprogram into its own RW
    /// `module_alloc`; the extra pass locks subprograms `0..fail` RO+X and fails
    /// on `fail`, which `bpf_jit_binary_free()`s itself; `out_free:` then
    /// `bpf_jit_free()`s the others, finding each header with `PAGE_MASK` —
    /// right here, since every image starts in the first page of its own area.
    pub(super) fn jit_subprogs_fail(
        &mut self,
        texts: &[Text],
        fail: usize,
        rand: u32,
    ) -> Result<(), Errno> {
        let mut bins = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            match self.jit_binary_alloc(text.len() as u64, 1, rand.wrapping_add(i as u32)) {
                Ok(bin) => {
                    self.m
                        .write_text(bin.image, text)
                        .expect("JIT image is writable");
                    bins.push(bin);
                }
                Err(e) => {
                    for bin in bins {
                        self.vfree_area(bin.area);
                    }
                    return Err(e);
                }
            }
        }
        for (i, mut bin) in bins.into_iter().enumerate() {
            if i < fail {
                // bpf_jit_binary_lock_ro(); bpf_jit_free() later frees it.
                bin.area.flush_reset_perms = true;
                let pages = bin.area.size / PAGE_SIZE;
                self.m
                    .set_memory_ro(bin.area.addr, pages)
                    .expect("image is mapped");
                self.m
                    .set_memory_x(bin.area.addr, pages)
                    .expect("image is mapped");
            }
            debug_assert_eq!(bin.image & !(PAGE_SIZE - 1), bin.area.addr);
            self.vfree_area(bin.area);
        }
        Ok(())
    }

    /// `bpf_jit_free()` → `bpf_jit_binary_free()` → `module_memfree()`.
    pub(super) fn jit_free(&mut self, prog: Prog) {
        let area = self.prog_areas[prog.0 as usize]
            .take()
            .expect("bpf_prog_free of a freed program");
        self.images[prog.0 as usize].live = false;
        self.vfree_area(area);
    }
}
