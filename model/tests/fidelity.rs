//! The kernels against what the kernel sources do, scenario by scenario: each
//! test runs a short trace and checks one kernel behaviour by its effect, and
//! would fail if the model did something else.

use packmodel::harness::session::Session;
use packmodel::harness::trace::{Trace, parse};
use packmodel::kernel::{KernelKind, Quirks, Text};
use packmodel::machine::consts::{PAGE_SIZE, PMD_SIZE};

fn trace(body: &str) -> Trace {
    let text = format!("# packmodel trace v1\nconfig: nodes=1 mem=64M dmap=2M\n{body}");
    parse("fidelity.trace", &text).unwrap_or_else(|e| panic!("{e}"))
}

/// `kind` booted with `quirks` after the trace's ops (no teardown).
fn after(kind: KernelKind, quirks: Quirks, body: &str) -> Session {
    let t = trace(body);
    let mut s = Session::new(kind, t.config, quirks);
    for op in &t.ops {
        s.step(op);
    }
    s
}

/// `bpf_prog_pack_alloc()`'s oversize path protects `round_up(size,
/// PAGE_SIZE)` of its `module_alloc()`, not the PMD-rounded area: for a
/// 2.1 MB program, 513 pages, which splits the area's second PMD leaf and the
/// direct-map leaf of its second order-9 block.
#[test]
fn an_oversize_program_protects_its_pages_not_its_pmds() {
    let s = after(
        KernelKind::Optimised,
        Quirks::NONE,
        "big = bpf_prog_load(2100000)\n",
    );
    let m = s.kernel.machine();
    let header = s.kernel.images()[0].image.header;
    let pages = (2_100_000u64 + 8 + 16).div_ceil(PAGE_SIZE);
    assert_eq!(pages, 513);
    let rox = (0..1024u64)
        .filter(|i| {
            let leaf = m.pgtables.lookup(header + i * PAGE_SIZE).expect("mapped");
            leaf.prot.executable() && !leaf.prot.writable()
        })
        .count() as u64;
    assert_eq!(rox, pages, "RO+X pages of the 4 MiB huge area");
    assert_eq!(m.pgtables.pmd_splits, 1, "the second PMD leaf is split");
    let d = m.dmap.stats();
    assert_eq!((d.direct_map_level2_splits, d.directmap_4k_kb), (1, 2048));
}

/// `set_memory_*()` on a driver's vmalloc area: the mapping changes, and the
/// direct-map alias of each page behind it follows `cpa_process_alias()` —
/// RW changes reach it, NX-only changes do not, `set_memory_rox()` takes RW
/// but never gives X. A range past the area meets the guard page: "CPA:
/// called for zero pte", `-EFAULT`, the pages before it changed.
#[test]
fn set_memory_on_a_driver_area_follows_the_alias_rule() {
    use packmodel::harness::obs::Obs;
    use packmodel::kernel::Errno;
    use packmodel::machine::Prot;
    let body = "v = vmalloc(16K)\n\
        set_memory_ro(v + 0x1000, 2)\n\
        set_memory_x(v + 0x1000, 1)\n\
        set_memory_rox(v + 0x3000, 1)\n";
    for kind in KernelKind::ALL {
        let mut s = after(kind, Quirks::NONE, body);
        let v = s.kernel.area_addr(s.area(0).unwrap());
        let m = s.kernel.machine();
        let page = |i: u64| {
            let leaf = m.pgtables.lookup(v + i * PAGE_SIZE).unwrap();
            (
                leaf.prot,
                m.dmap
                    .prot(leaf.pfn + (v + i * PAGE_SIZE - leaf.va) / PAGE_SIZE),
            )
        };
        assert_eq!(page(0), (Prot::PAGE_KERNEL, Prot::PAGE_KERNEL), "{kind:?}");
        assert_eq!(
            page(1),
            (Prot::PAGE_KERNEL_ROX, Prot::PAGE_KERNEL_RO),
            "{kind:?}"
        );
        assert_eq!(
            page(2),
            (Prot::PAGE_KERNEL_RO, Prot::PAGE_KERNEL_RO),
            "{kind:?}"
        );
        assert_eq!(
            page(3),
            (Prot::PAGE_KERNEL_ROX, Prot::PAGE_KERNEL_RO),
            "{kind:?}"
        );
        let past = trace("v = vmalloc(16K)\nset_memory_ro(v, 5)\n");
        let st = s.step(&past.ops[1]);
        assert_eq!(st.obs, Obs::Err(Errno::Efault), "{kind:?}");
        let text = st.oopses.iter().map(|o| o.to_string()).collect::<String>();
        assert!(
            text.contains(&format!(
                "CPA: called for zero pte. vaddr = {:x} cpa->vaddr = {:x}",
                v + 0x4000,
                v
            )),
            "{kind:?}: {text}"
        );
        let m = s.kernel.machine();
        assert!(
            !m.pgtables.lookup(v).unwrap().prot.writable(),
            "changed before the guard"
        );
    }
}

/// `__vmalloc_node(size, align, …)`: the lowest address of the vmalloc range
/// with that alignment (`alloc_vmap_area()`), and `NULL` where there is none —
/// or where no free gap has room for `size + align - 1` bytes, the length
/// `__alloc_vmap_area()` searches by for alignments above a page: with the
/// range 32 TiB long, 2^45 already fails (Linux 6.1 returned `NULL` for it in
/// `replay --on linux corpus/examples/vmalloc-align.trace`), 2^44 does not.
#[test]
fn vmalloc_node_gives_the_alignment_asked_for_or_fails() {
    use packmodel::harness::obs::Obs;
    use packmodel::kernel::Errno;
    let body = "a = __vmalloc_node(20K, 0x8000, GFP_KERNEL)\n\
        b = __vmalloc_node(4K, 0x100000000000, GFP_KERNEL)\n\
        c = __vmalloc_node(4K, 0x200000000000, GFP_KERNEL)\n";
    for kind in KernelKind::ALL {
        let t = trace(body);
        let mut s = Session::new(kind, t.config, Quirks::NONE);
        let obs: Vec<Obs> = t.ops.iter().map(|op| s.step(op).obs).collect();
        assert_eq!(obs, [Obs::Ok, Obs::Ok, Obs::Err(Errno::Enomem)], "{kind:?}");
        let addr = |i| s.kernel.area_addr(s.area(i).unwrap());
        assert_eq!(addr(0) % 0x8000, 0, "{kind:?}");
        assert_eq!(addr(1), 0xffff_d000_0000_0000, "{kind:?}");
    }
}

/// `vfree()` unmaps an area at once but hands its range out again only after
/// a purge (`free_vmap_area_noflush()`, `__purge_vmap_area_lazy()`), which
/// every CPA call starts with (`change_page_attr_set_clr()` →
/// `vm_unmap_aliases()`): until then a stale pointer faults, afterwards it
/// may read the range's next owner. The reference kernel reuses at once.
#[test]
fn a_freed_range_is_reused_only_after_a_purge() {
    use packmodel::harness::obs::Obs;
    use packmodel::machine::oops::FaultCause;
    let t = trace(
        "old = vmalloc(8K)\n\
         vwrite(old, \"11\")\n\
         vfree(old)\n\
         a = vmalloc(8K)\n\
         vwrite(a, \"22\")\n\
         stale_vread(old, 1)\n\
         set_memory_ro(a, 1)\n\
         b = vmalloc(8K)\n\
         vwrite(b, \"33\")\n\
         stale_vread(old, 1)\n",
    );
    let stale = |kind| {
        let mut s = Session::new(kind, t.config, Quirks::NONE);
        let obs: Vec<Obs> = t.ops.iter().map(|op| s.step(op).obs).collect();
        let v = s.kernel.vmap_view();
        (obs[5].clone(), obs[9].clone(), v.unpurged.len())
    };
    let fault = Obs::NoAccess(FaultCause::NotPresent);
    assert_eq!(
        stale(KernelKind::Optimised),
        (fault, Obs::Bytes(vec![0x33]), 0),
        "lazily freed until set_memory_ro() purged it; then b got the range"
    );
    assert_eq!(
        stale(KernelKind::Reference),
        (Obs::Bytes(vec![0x22]), Obs::Bytes(vec![0x22]), 0),
        "reused at once by a"
    );
}

/// A machine full of packs: with nothing else allocated, every frame can back
/// a pack (`alloc_new_pack()` has no limit of its own), and one more fails.
#[test]
fn packs_can_fill_all_of_memory() {
    use packmodel::harness::obs::Obs;
    use packmodel::kernel::Errno;
    for (nodes, fits) in [(1u8, 32), (2, 16)] {
        let pack = (2u64 << 20) * nodes as u64;
        let len = pack - 8 - 16;
        let body: String = (0..=fits)
            .map(|_| format!("bpf_prog_load({len})\n"))
            .collect();
        let text = format!("# packmodel trace v1\nconfig: nodes={nodes} mem=64M dmap=2M\n{body}");
        let t = parse("fill.trace", &text).unwrap();
        let mut s = Session::new(KernelKind::Optimised, t.config, Quirks::NONE);
        let obs: Vec<Obs> = t.ops.iter().map(|op| s.step(op).obs).collect();
        assert!(
            obs[..fits].iter().all(|o| *o == Obs::Ok),
            "{nodes} nodes: {obs:?}"
        );
        assert_eq!(obs[fits], Obs::Err(Errno::Enomem), "{nodes} nodes");
        assert_eq!(s.kernel.packs().len(), fits);
        assert_eq!(s.kernel.machine().nr_free_pages(), 0);
    }
}

/// The huge-page decision of `__vmalloc_node_range()` (5.18): with
/// `NUMA_NO_NODE` the size is shared among the online nodes, and only
/// `size / nodes >= PMD_SIZE` is mapped by PMDs.
#[test]
fn huge_vmalloc_needs_a_pmd_per_node() {
    for (nodes, size, pmd) in [(1u8, "2M", true), (2, "2M", false), (2, "4M", true)] {
        let text = format!(
            "# packmodel trace v1\nconfig: nodes={nodes} mem=64M dmap=2M\nv = vmalloc_huge({size})\n"
        );
        let t = parse("huge.trace", &text).unwrap();
        let mut s = Session::new(KernelKind::Optimised, t.config, Quirks::NONE);
        s.step(&t.ops[0]);
        let v = s.kernel.area_addr(s.area(0).unwrap());
        let level = s.kernel.machine().pgtables.lookup(v).unwrap().level;
        assert_eq!(
            level == packmodel::machine::pgtable::Level::Pmd,
            pmd,
            "{nodes} nodes, {size}"
        );
    }
}

/// What each driver-side page op does to the `struct page` it names, word by
/// word, on both kernels: `page->mapping` and `->index` stores, `list_add` /
/// `list_del` / `INIT_LIST_HEAD` on `lru` (list.h, no CONFIG_DEBUG_LIST),
/// `SetPageReserved` / `ClearPageReserved` (PG_reserved, bit 12),
/// `set_page_private`, and `get_page` / `put_page` on `_refcount` — and what
/// the reads give back.
#[test]
fn driver_page_ops_change_the_words_the_kernel_macros_do() {
    use packmodel::harness::obs::Obs;
    use packmodel::machine::list::{DRIVER_LIST, page_lru};
    use packmodel::machine::page::{
        LIST_POISON1, LIST_POISON2, W_FLAGS, W_INDEX, W_LRU_NEXT, W_LRU_PREV, W_MAPPING, W_PRIVATE,
    };
    let t = trace(
        "v = vmalloc(8K)\n\
         pg = vmalloc_to_page(v + 0x1000)\n\
         pg->mapping = 0xffff88800a5c0e18\n\
         pg->index = 7\n\
         set_page_private(pg, 0x2a)\n\
         SetPageReserved(pg)\n\
         get_page(pg)\n\
         list_add(&pg->lru, &driver_list)\n\
         page_count(pg)\n\
         pg->mapping\n\
         page_index(pg)\n\
         page_private(pg)\n\
         list_del(&pg->lru)\n\
         INIT_LIST_HEAD(&pg->lru)\n\
         ClearPageReserved(pg)\n\
         put_page(pg)\n\
         page_count(pg)\n",
    );
    for kind in KernelKind::ALL {
        let mut s = Session::new(kind, t.config, Quirks::NONE);
        let mut obs = Vec::new();
        let mut words = Vec::new();
        for op in &t.ops {
            obs.push(s.step(op).obs);
            if let Some(pg) = s.page(0) {
                words.push(s.kernel.machine().mm.page(pg.0).words());
            }
        }
        let pfn = s.page(0).unwrap().0;
        let lru = page_lru(pfn);
        let w = |op: usize| words[op - 1];
        assert_eq!(w(2)[W_MAPPING], 0xffff_8880_0a5c_0e18, "{kind:?}");
        assert_eq!(w(3)[W_INDEX], 7, "{kind:?}");
        assert_eq!(w(4)[W_PRIVATE], 0x2a, "{kind:?}");
        assert_ne!(w(5)[W_FLAGS] & 1 << 12, 0, "{kind:?}: PG_reserved");
        assert_eq!(
            (w(7)[W_LRU_NEXT], w(7)[W_LRU_PREV]),
            (DRIVER_LIST, DRIVER_LIST),
            "{kind:?}"
        );
        assert_eq!(
            obs[8..12],
            [
                Obs::Count(2),
                Obs::Word(0xffff_8880_0a5c_0e18),
                Obs::Word(7),
                Obs::Word(0x2a)
            ],
            "{kind:?}"
        );
        assert_eq!(
            (w(12)[W_LRU_NEXT], w(12)[W_LRU_PREV]),
            (LIST_POISON1, LIST_POISON2),
            "{kind:?}"
        );
        assert_eq!(
            (w(13)[W_LRU_NEXT], w(13)[W_LRU_PREV]),
            (lru, lru),
            "{kind:?}"
        );
        assert_eq!(w(14)[W_FLAGS] & 1 << 12, 0, "{kind:?}: PG_reserved cleared");
        assert_eq!(obs[16], Obs::Count(1), "{kind:?}");
    }
}

/// `free_vmap_area_noflush()` purges only when `vmap_lazy_nr` exceeds
/// `lazy_max_pages()` (32 MiB of pages with one CPU): exactly that many
/// waiting pages stay unpurged, one more purges them all.
#[test]
fn the_lazy_purge_starts_above_lazy_max_pages() {
    // 8191 pages and a guard page: exactly lazy_max_pages() when freed.
    let t = trace(
        "a = vmalloc(33550336)\n\
         vfree(a)\n\
         b = vmalloc(4K)\n\
         vfree(b)\n",
    );
    let mut s = Session::new(KernelKind::Optimised, t.config, Quirks::NONE);
    s.step(&t.ops[0]);
    s.step(&t.ops[1]);
    let v = s.kernel.vmap_view();
    assert_eq!(
        (v.lazy_pages, v.unpurged.len()),
        (8192, 1),
        "at the limit: kept"
    );
    s.step(&t.ops[2]);
    s.step(&t.ops[3]);
    let v = s.kernel.vmap_view();
    assert_eq!(
        (v.lazy_pages, v.unpurged.len()),
        (0, 0),
        "over it: all purged"
    );
}

/// `__vmalloc_node_range()`'s size checks: `WARN_ON_ONCE(!size)` and
/// `(size >> PAGE_SHIFT) > totalram_pages()` give NULL; all of memory, on a
/// machine where all of it is free, is allowed (and is all the pages).
#[test]
fn vmalloc_refuses_nothing_and_more_than_memory_but_not_all_of_it() {
    use packmodel::kernel::{Errno, VmallocFlags};
    use packmodel::machine::MachineConfig;
    let cfg = MachineConfig {
        mem_mib: 16,
        ..Default::default()
    };
    for kind in KernelKind::ALL {
        let mut k = kind.boot(cfg, Quirks::NONE);
        let flags = VmallocFlags::default();
        assert_eq!(k.vmalloc(0, flags), Err(Errno::Enomem), "{kind:?}");
        assert_eq!(
            k.vmalloc((16 << 20) + 1, flags),
            Err(Errno::Enomem),
            "{kind:?}"
        );
        assert!(k.vmalloc(16 << 20, flags).is_ok(), "{kind:?}");
        assert_eq!(k.machine().nr_free_pages(), 0, "{kind:?}");
    }
}

/// `__vmalloc_node_range()` refuses a size over `totalram_pages()` before it
/// reserves an area or takes a page: what the next allocations get is what
/// they would have got without the attempt (an attempt that took every free
/// page and gave it back would leave the free lists in another order).
#[test]
fn a_vmalloc_larger_than_memory_takes_no_page() {
    use packmodel::kernel::VmallocFlags;
    use packmodel::machine::MachineConfig;
    let cfg = MachineConfig {
        mem_mib: 16,
        ..Default::default()
    };
    let flags = VmallocFlags::default();
    for kind in KernelKind::ALL {
        let pfns = |attempt: bool| {
            let mut k = kind.boot(cfg, Quirks::NONE);
            let held = k.vmalloc(3 << 20, flags).unwrap();
            let _ = k.vmalloc(5 << 20, flags).unwrap();
            k.vfree(held);
            if attempt {
                assert!(k.vmalloc((16 << 20) + 1, flags).is_err(), "{kind:?}");
            }
            let a = k.vmalloc(6 << 20, flags).unwrap();
            (0..6 << 8)
                .map(|i| k.vmalloc_to_page(a, i << 12).unwrap().0)
                .collect::<Vec<_>>()
        };
        let (with, without) = (pfns(true), pfns(false));
        let first = with.iter().zip(&without).position(|(a, b)| a != b);
        assert_eq!(
            first.map(|i| (i, with[i], without[i])),
            None,
            "{kind:?}: (page, pfn after the attempt, pfn without it)"
        );
    }
}

/// A JIT whose binary cannot be allocated fails the load with `-ENOMEM`, on
/// the error path and in `jit_subprogs()` alike.
#[test]
fn a_failing_load_reports_enomem_when_memory_is_gone() {
    use packmodel::kernel::{Errno, VmallocFlags};
    for kind in KernelKind::ALL {
        let mut k = kind.boot(Default::default(), Quirks::NONE);
        k.vmalloc(64 << 20, VmallocFlags::default()).unwrap();
        assert_eq!(k.bpf_prog_load_fail(100, 0), Err(Errno::Enomem), "{kind:?}");
        let texts = [Text::new(1, 64), Text::new(2, 64)];
        assert_eq!(
            k.bpf_prog_load_subprogs_fail(&texts, 1, 0),
            Err(Errno::Enomem),
            "{kind:?}"
        );
    }
}

/// `/proc/vmallocinfo` of both kernels: a live area is busy with its guard
/// page; a freed one is gone (reference) or unpurged until a purge
/// (optimised).
#[test]
fn vmallocinfo_lists_busy_and_unpurged_areas() {
    use packmodel::kernel::VmallocFlags;
    for kind in KernelKind::ALL {
        let mut k = kind.boot(Default::default(), Quirks::NONE);
        let a = k.vmalloc(8 << 10, VmallocFlags::default()).unwrap();
        let addr = k.area_addr(a);
        let v = k.vmap_view();
        assert_eq!(
            (v.busy, v.unpurged),
            (vec![(addr, addr + 0x3000)], vec![]),
            "{kind:?}"
        );
        k.vfree(a);
        let v = k.vmap_view();
        let lazy = kind == KernelKind::Optimised;
        let unpurged = if lazy {
            vec![(addr, addr + 0x3000)]
        } else {
            vec![]
        };
        assert_eq!((v.busy, v.unpurged), (vec![], unpurged), "{kind:?}");
        k.vm_unmap_aliases();
        assert_eq!(k.vmap_view().unpurged, vec![], "{kind:?}");
    }
}

/// `bpf_jit_binary_pack_alloc()` (kernel/bpf/core.c, 5.18 to 6.1) for stated
/// inputs, worked out by hand from its three lines:
///
/// ```c
/// size = round_up(proglen + sizeof(*ro_header) + 16, BPF_PROG_CHUNK_SIZE);
/// hole = min_t(unsigned int, size - (proglen + sizeof(*ro_header)),
///              BPF_PROG_CHUNK_SIZE - sizeof(*ro_header));
/// start = (get_random_int() % hole) & ~(alignment - 1);
/// *image_ptr = &ro_header->image[start];
/// ```
///
/// with `sizeof(struct bpf_binary_header)` = 8 (a `u32 size` and `image[]`
/// aligned to `BPF_IMAGE_ALIGNMENT` = 8) and `BPF_PROG_CHUNK_SIZE` = 64.
/// The expected numbers are written out, not computed, so a wrong formula
/// in the model cannot agree with itself here.
#[test]
fn the_image_starts_in_the_hole_the_jit_leaves() {
    // (proglen, alignment, random) -> (image offset from the header, size)
    let cases = [
        // 64 + 8 + 16 = 88 -> 128; hole = min(128 - 72, 56) = 56; 55 % 56 = 55.
        ((64, 1, 55), (8 + 55, 128)),
        // 56 % 56 = 0: the image right after the header.
        ((64, 1, 56), (8, 128)),
        // 100 + 24 = 124 -> 128; hole = min(128 - 108, 56) = 20; 15 % 20 = 15.
        ((100, 1, 15), (8 + 15, 128)),
        // 23 % 20 = 3.
        ((100, 1, 23), (8 + 3, 128)),
        // hole 56; 47 % 56 = 47, & ~7 = 40.
        ((64, 8, 47), (8 + 40, 128)),
        // 40 + 24 = 64 -> 64; hole = min(64 - 48, 56) = 16; 17 % 16 = 1.
        ((40, 1, 17), (8 + 1, 64)),
        // 8 + 24 = 32 -> 64; hole = min(64 - 16, 56) = 48; 50 % 48 = 2, & ~1 = 2.
        ((8, 2, 50), (8 + 2, 64)),
        // 1000 + 24 = 1024 -> 1024; hole = min(1024 - 1008, 56) = 16; 31 % 16 = 15, & ~3 = 12.
        ((1000, 4, 31), (8 + 12, 1024)),
    ];
    for ((len, align, rand), expected) in cases {
        let mut k = KernelKind::Optimised.boot(Default::default(), Quirks::NONE);
        let p = k.bpf_prog_load(&Text::new(3, len), align, rand).unwrap();
        let img = &k.images()[p.0 as usize].image;
        assert_eq!(
            (img.text_start - img.header, img.alloc_size),
            expected,
            "len {len} align {align} random {rand}"
        );
    }
}

/// A program larger than a pack gets a `module_alloc()` of
/// `round_up(size, PAGE_SIZE)` of its own (`bpf_prog_pack_alloc()`), and its
/// image spans all of it.
#[test]
fn an_oversize_image_spans_its_pages() {
    let mut k = KernelKind::Optimised.boot(Default::default(), Quirks::NONE);
    let len = (2 << 20) + 100_000;
    let p = k.bpf_prog_load(&Text::new(3, len), 1, 0).unwrap();
    let img = &k.images()[p.0 as usize].image;
    let size = (len as u64 + 8 + 16).div_ceil(64) * 64;
    assert_eq!(img.header % PAGE_SIZE, 0);
    assert_eq!(img.alloc_size, size.div_ceil(PAGE_SIZE) * PAGE_SIZE);
}

/// The reference kernel's execmem user is x86 ftrace's
/// `arch_ftrace_update_trampoline()` on a plain module-space allocation:
/// INT3 over the whole area, then `set_memory_rox()` on every page of it.
#[test]
fn a_reference_execmem_allocation_is_int3_and_rox_to_its_last_page() {
    use packmodel::machine::Prot;
    let s = after(
        KernelKind::Reference,
        Quirks::NONE,
        "x = execmem_alloc(9000)\n",
    );
    let m = s.kernel.machine();
    let addr = s.kernel.area_addr(s.area(0).expect("allocated"));
    for i in 0..3 {
        let va = addr + i * PAGE_SIZE;
        let leaf = m.pgtables.lookup(va).expect("mapped");
        assert_eq!(leaf.prot, Prot::PAGE_KERNEL_ROX, "page {i}");
        let mut buf = [0; PAGE_SIZE as usize];
        m.frames
            .read(m.pgtables.vmalloc_to_pfn(va).unwrap(), 0, &mut buf);
        assert!(buf.iter().all(|&b| b == 0xcc), "page {i} is INT3");
    }
    assert!(
        m.pgtables.lookup(addr + 3 * PAGE_SIZE).is_none(),
        "the guard page"
    );
}

/// A classic program prefers a pack that needs no predictor flush
/// (`was_classic ^ pack->arch_flush_needed`): with a freed program in the
/// first pack and a clean second pack, it goes to the second and no IBPB is
/// issued; first fit would have flushed.
#[test]
fn a_classic_program_prefers_a_pack_that_needs_no_flush() {
    let s = after(
        KernelKind::Optimised,
        Quirks::NONE,
        "a = bpf_prog_load(1000000)\n\
         b = bpf_prog_load(1000000)\n\
         c = bpf_prog_load(1000000)\n\
         f = bpf_prog_create(200)\n\
         bpf_prog_free(a)\n\
         g = bpf_prog_create(200)\n",
    );
    let img = |i: usize| s.kernel.images()[i].image.header;
    // One node: a pack is PMD_SIZE.
    let pack = |va: u64| va & !(PMD_SIZE - 1);
    assert_ne!(pack(img(0)), pack(img(2)), "a and c are in two packs");
    assert_eq!(s.kernel.pred_flushes(), 1, "one flush, for f");
    assert_eq!(pack(img(4)), pack(img(2)), "g is in c's pack");
}

/// The reference's JIT binary starts with v5.17's `struct
/// bpf_binary_header`, whose `u32 pages` is the image's page count
/// (`bpf_jit_binary_alloc()`: `size = round_up(proglen + sizeof(*hdr) + 128,
/// PAGE_SIZE)`, `hdr->pages = size / PAGE_SIZE`): 100 bytes of text take one
/// page, 5000 two, 9000 three.
#[test]
fn a_reference_jit_header_holds_its_page_count() {
    let s = after(
        KernelKind::Reference,
        Quirks::NONE,
        "a = bpf_prog_load(100)\n\
         b = bpf_prog_load(5000)\n\
         c = bpf_prog_load(9000)\n",
    );
    let m = s.kernel.machine();
    let pages: Vec<u32> = (0..3)
        .map(|i| {
            let hdr = s.kernel.images()[i].image.header;
            let mut buf = [0; 4];
            m.frames
                .read(m.pgtables.vmalloc_to_pfn(hdr).unwrap(), 0, &mut buf);
            u32::from_le_bytes(buf)
        })
        .collect();
    assert_eq!(pages, [1, 2, 3]);
}
