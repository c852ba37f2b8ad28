//! The machine layer against the kernel behaviour it models. Each test would fail
//! if that behaviour were modelled wrong.

use packmodel::machine::consts::{PAGE_SIZE, PMD_SIZE, VMALLOC_START};
use packmodel::machine::list::{DRIVER_LIST, page_lru};
use packmodel::machine::oops::{Access, FaultCause, Oops};
use packmodel::machine::page::{LIST_POISON1, TAIL_MAPPING, W_LRU_NEXT};
use packmodel::machine::text::Text;
use packmodel::machine::{Gfp, Machine, MachineConfig, Prot};

fn machine() -> Machine {
    Machine::new(MachineConfig::default())
}

const COMP: Gfp = Gfp {
    zero: false,
    comp: true,
};

fn bad_pages(m: &Machine) -> Vec<(u64, &'static str)> {
    m.oopses()
        .iter()
        .filter_map(|o| match o {
            Oops::BadPage { reason, dump } => Some((dump.pfn, *reason)),
            _ => None,
        })
        .collect()
}

/// Nick Piggin's reproducer at the `struct page` level: a driver's writes on
/// tail +3 of an order-9 compound page.
#[test]
fn driver_writes_on_compound_tail_corrupt_its_mapping() {
    let mut m = machine();
    let free_before = m.nr_free_pages();
    let head = m.alloc_pages_node(None, COMP, 9).unwrap();
    let tail = head + 3;
    assert_eq!(m.mm.page(tail).mapping(), TAIL_MAPPING);
    m.mm.page_mut(tail).set_mapping(0);
    m.mm.page_mut(tail).set_index(0);
    m.init_list_head(page_lru(tail)).unwrap();
    assert!(
        !m.mm.page(tail).is_tail(),
        "INIT_LIST_HEAD wiped the tail bit"
    );

    m.__free_pages(head, 9);

    let bad = bad_pages(&m);
    assert_eq!(bad[0], (tail, "corrupted mapping in tail page"));
    assert!(m.leaked_blocks().contains(&(head, 9)));
    assert_eq!(m.nr_free_pages(), free_before - 512, "the block is leaked");
    let text = m.oopses()[0].to_string();
    assert!(text.starts_with(&format!(
        "BUG: Bad page state in process packmodel  pfn:{tail:05x}"
    )));
    assert!(text.contains("page dumped because: corrupted mapping in tail page"));
}

#[test]
fn list_del_on_a_tail_leaves_poison_where_compound_head_was() {
    let mut m = machine();
    let head = m.alloc_pages_node(None, COMP, 9).unwrap();
    let tail = head + 3;
    m.list_add(page_lru(tail), DRIVER_LIST).unwrap();
    m.list_del(page_lru(tail)).unwrap();
    assert_eq!(m.mm.page(tail).word(W_LRU_NEXT), LIST_POISON1);

    m.__free_pages(head, 9);
    assert_eq!(bad_pages(&m), vec![(tail, "PageTail not set")]);
}

#[test]
fn get_page_on_a_tail_counts_on_the_head() {
    let mut m = machine();
    let head = m.alloc_pages_node(None, COMP, 9).unwrap();
    m.get_page(head + 5);
    assert_eq!(m.mm.page(head).refcount(), 2);
    assert_eq!(m.mm.page(head + 5).refcount(), 0);
    assert_eq!(m.page_count(head + 5), Some(2));
    m.put_page(head + 5);
    assert_eq!(m.mm.page(head).refcount(), 1);
    m.__free_pages(head, 9);
    assert!(m.oopses().is_empty(), "{:?}", m.oopses());
}

#[test]
fn split_pages_are_independent_and_survive_driver_writes() {
    let mut m = machine();
    let free_before = m.nr_free_pages();
    let head = m.alloc_pages_node(None, Gfp::KERNEL, 9).unwrap();
    m.split_page(head, 9);
    for p in head..head + 512 {
        assert_eq!(m.mm.page(p).refcount(), 1);
        assert!(!m.mm.page(p).is_compound());
    }
    // The same driver writes as on the compound tail, then the driver's cleanup.
    let p = head + 3;
    m.mm.page_mut(p).set_mapping(0xffff_8880_0400_0000);
    m.mm.page_mut(p).set_index(0);
    m.init_list_head(page_lru(p)).unwrap();
    m.get_page(p);
    m.put_page(p);
    m.mm.page_mut(p).set_mapping(0);
    for p in head..head + 512 {
        m.__free_pages(p, 0);
    }
    assert!(m.oopses().is_empty(), "{:?}", m.oopses());
    assert_eq!(m.nr_free_pages(), free_before);
}

/// Maps `pfns` one page each at `va` with `PAGE_KERNEL`.
fn map_ptes(m: &mut Machine, va: u64, pfns: &[u64]) {
    for (i, &pfn) in pfns.iter().enumerate() {
        m.pgtables
            .map_pte(va + i as u64 * PAGE_SIZE, pfn, Prot::PAGE_KERNEL);
    }
}

#[test]
fn set_memory_ro_splits_the_direct_map_leaf_of_the_alias_once() {
    let mut m = machine();
    let a = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    let b = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    assert_eq!(a / 512, b / 512, "both frames in the same 2 MiB leaf");
    map_ptes(&mut m, VMALLOC_START, &[a, b]);
    let before = m.dmap.stats();

    m.set_memory_ro(VMALLOC_START, 1).unwrap();
    let after = m.dmap.stats();
    assert_eq!(
        after.direct_map_level2_splits,
        before.direct_map_level2_splits + 1
    );
    assert_eq!(after.directmap_4k_kb, before.directmap_4k_kb + 2048);
    assert_eq!(after.directmap_2m_kb, before.directmap_2m_kb - 2048);
    assert_eq!(m.dmap.prot(a), Prot::PAGE_KERNEL_RO, "the alias follows");

    m.set_memory_ro(VMALLOC_START + PAGE_SIZE, 1).unwrap();
    assert_eq!(
        m.dmap.stats(),
        after,
        "second page in the same leaf: no new split"
    );

    let c = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    map_ptes(&mut m, VMALLOC_START + 2 * PAGE_SIZE, &[c]);
    m.set_memory_x(VMALLOC_START + 2 * PAGE_SIZE, 1).unwrap();
    m.set_memory_nx(VMALLOC_START + 2 * PAGE_SIZE, 1).unwrap();
    assert_eq!(
        m.dmap.stats(),
        after,
        "NX-only changes leave the direct map alone"
    );
}

/// With gbpages (`dmap=1G`), the first CPA on a page splits its 1 GiB leaf
/// into 512 2 MiB leaves and one of those into 512 4 KiB ones:
/// `split_page_count()` moves one leaf down a level each time, as
/// `/proc/meminfo`'s `DirectMap*` lines show.
#[test]
fn a_gbpage_alias_splits_down_two_levels() {
    use packmodel::machine::direct_map::DmapLeaf;
    let mut m = Machine::new(MachineConfig {
        dmap_leaf: DmapLeaf::G1,
        ..MachineConfig::default()
    });
    let before = m.dmap.stats();
    assert_eq!(
        (
            before.directmap_1g_kb,
            before.directmap_2m_kb,
            before.directmap_4k_kb
        ),
        (1 << 20, 0, 0)
    );
    let a = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    map_ptes(&mut m, VMALLOC_START, &[a]);
    m.set_memory_ro(VMALLOC_START, 1).unwrap();
    let after = m.dmap.stats();
    assert_eq!(
        (
            after.directmap_1g_kb,
            after.directmap_2m_kb,
            after.directmap_4k_kb
        ),
        (0, 511 * 2048, 512 * 4)
    );
    assert_eq!(
        (
            after.direct_map_level3_splits,
            after.direct_map_level2_splits
        ),
        (1, 1)
    );
}

/// `check_new_pages()` checks every page of a high-order block, not just
/// its head: a free page with `mapping` set inside an order-1 block is a bad
/// page, and the block is dropped for the next one.
#[test]
fn a_bad_page_inside_a_new_block_is_found() {
    let mut m = machine();
    m.mm.page_mut(1).set_mapping(0xffff_8880_0bad_0000);
    let got = m.alloc_pages_node(None, Gfp::KERNEL, 1).unwrap();
    assert_eq!(got, 2, "the block at 0 (with the bad page 1) was dropped");
    assert_eq!(bad_pages(&m).iter().map(|b| b.0).collect::<Vec<_>>(), [1]);
}

/// `compound_order()` is the first tail's order byte for a head, and 0 for
/// any other page — also for the page just before a head, whose neighbour's
/// byte is not an order.
#[test]
fn compound_order_is_a_heads_only() {
    let mut m = machine();
    assert_eq!(m.alloc_pages_node(None, Gfp::KERNEL, 0), Some(0));
    let head = m.alloc_pages_node(None, COMP, 9).unwrap();
    assert_eq!(head, 512);
    assert_eq!(
        (
            m.compound_order(head - 1),
            m.compound_order(head),
            m.compound_order(head + 1)
        ),
        (0, 9, 0)
    );
}

/// `__free_pages()` on a non-compound order-2 block whose head someone still
/// holds: the rest goes back as an order-1 and an order-0 block at once, the
/// head when its last reference is put.
#[test]
fn free_pages_of_a_held_block_frees_its_rest() {
    let mut m = machine();
    let before = m.nr_free_pages();
    let head = m.alloc_pages_node(None, Gfp::KERNEL, 2).unwrap();
    m.get_page(head);
    m.__free_pages(head, 2);
    assert_eq!(m.nr_free_pages(), before - 1, "all but the head");
    assert!(!m.page_is_free(head) && m.page_is_free(head + 1) && m.page_is_free(head + 3));
    m.put_page(head);
    assert_eq!(m.nr_free_pages(), before);
}

#[test]
fn set_memory_nx_only_change_does_not_split_an_untouched_leaf() {
    let mut m = machine();
    let a = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    map_ptes(&mut m, VMALLOC_START, &[a]);
    let before = m.dmap.stats();
    m.set_memory_x(VMALLOC_START, 1).unwrap();
    assert_eq!(m.dmap.stats(), before);
    assert_eq!(m.dmap.prot(a), Prot::PAGE_KERNEL);
}

#[test]
fn set_memory_rox_on_a_whole_pmd_leaf_splits_nothing() {
    let mut m = machine();
    let head = m.alloc_pages_node(None, Gfp::KERNEL, 9).unwrap();
    assert_eq!(head % 512, 0);
    m.split_page(head, 9);
    m.pgtables.map_pmd(VMALLOC_START, head, Prot::PAGE_KERNEL);
    let before = m.dmap.stats();
    m.set_memory_rox(VMALLOC_START, 512).unwrap();
    assert_eq!(m.dmap.stats(), before, "no direct-map split");
    assert_eq!(m.pgtables.pmd_splits, 0, "no vmalloc split");
    let leaf = m.pgtables.lookup(VMALLOC_START).unwrap();
    assert_eq!(leaf.prot, Prot::PAGE_KERNEL_ROX);
    assert_eq!(
        m.dmap.prot(head + 7),
        Prot::PAGE_KERNEL_RO,
        "alias RO, NX kept"
    );

    // A partial change of the PMD leaf splits the vmalloc leaf, not the alias.
    m.set_memory_rw(VMALLOC_START + PAGE_SIZE, 1).unwrap();
    assert_eq!(m.pgtables.pmd_splits, 1);
    assert_eq!(
        m.dmap.stats().direct_map_level2_splits,
        1,
        "alias of one page"
    );
}

/// `cpa_collapse_large_pages()` (41d88484c71c): after `set_memory_rox()`,
/// each PMD of the primary range — from `addr & PMD_MASK` — whose PTE table
/// maps 512 consecutive pfns from a 2 MiB-aligned frame with one set of
/// flags becomes a PMD leaf again; a PMD outside the range stays split
/// however collapsible, and one PTE with other flags keeps its table.
#[test]
fn set_memory_rox_collapses_the_split_pmds_of_its_range_only() {
    use packmodel::machine::pgtable::Level;
    let mut m = machine();
    m.cpa_collapse = true;
    // Two PMDs of PTEs, the first (an even PMD index) below the second.
    let (lo, hi) = (VMALLOC_START, VMALLOC_START + PMD_SIZE);
    assert_eq!(lo % (2 * PMD_SIZE), 0);
    for va in [lo, hi] {
        let head = m.alloc_pages_node(None, Gfp::KERNEL, 9).unwrap();
        m.split_page(head, 9);
        map_ptes(&mut m, va, &(head..head + 512).collect::<Vec<_>>());
    }
    let level = |m: &Machine, va| m.pgtables.lookup(va).unwrap().level;
    m.set_memory_rox(hi, 512).unwrap();
    assert_eq!(m.pgtables.pmd_collapses, 1);
    assert_eq!(level(&m, hi), Level::Pmd, "the range's PMD collapsed");
    assert_eq!(level(&m, lo), Level::Pte, "the PMD below the range did not");
    assert_eq!(
        m.pgtables.lookup(hi + 5 * PAGE_SIZE).unwrap().prot,
        Prot::PAGE_KERNEL_ROX
    );

    // One PTE made RW again splits the leaf; ROX on another page of it
    // leaves a table with two sets of flags, which stays split.
    m.set_memory_rw(hi + PAGE_SIZE, 1).unwrap();
    assert_eq!((m.pgtables.pmd_splits, level(&m, hi)), (1, Level::Pte));
    m.set_memory_rox(hi + 2 * PAGE_SIZE, 1).unwrap();
    assert_eq!((m.pgtables.pmd_collapses, level(&m, hi)), (1, Level::Pte));
    // ROX on that page itself, an address inside the PMD: uniform again.
    m.set_memory_rox(hi + PAGE_SIZE, 1).unwrap();
    assert_eq!((m.pgtables.pmd_collapses, level(&m, hi)), (2, Level::Pmd));

    // Without CPA_COLLAPSE (kernels before v6.15) nothing heals.
    m.cpa_collapse = false;
    m.set_memory_rw(hi + PAGE_SIZE, 1).unwrap();
    m.set_memory_rox(hi + PAGE_SIZE, 1).unwrap();
    assert_eq!((m.pgtables.pmd_collapses, level(&m, hi)), (2, Level::Pte));
}

#[test]
fn cpu_faults_are_oopses_and_text_poke_writes_ro_text() {
    let mut m = machine();
    let a = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    map_ptes(&mut m, VMALLOC_START, &[a]);
    m.write(VMALLOC_START, b"hello").unwrap();
    let f = m.fetch(VMALLOC_START, 1).unwrap_err();
    assert_eq!((f.access, f.cause), (Access::Fetch, FaultCause::ExecNx));
    m.set_memory_ro(VMALLOC_START, 1).unwrap();
    let f = m.write(VMALLOC_START, b"x").unwrap_err();
    assert_eq!(
        (f.access, f.cause),
        (Access::Write, FaultCause::WriteToReadOnly)
    );
    assert_eq!(m.oopses().len(), 2);
    assert!(
        m.oopses()[0]
            .to_string()
            .contains("kernel tried to execute NX-protected page")
    );
    assert!(
        m.oopses()[1]
            .to_string()
            .contains("#PF: error_code(0x0003) - permissions violation")
    );

    m.set_memory_x(VMALLOC_START, 1).unwrap();
    m.text_poke_copy(VMALLOC_START + 2, &[0x90, 0xc3]).unwrap();
    assert_eq!(m.fetch(VMALLOC_START, 4).unwrap(), b"he\x90\xc3");
    assert_eq!(m.oopses().len(), 2, "text_poke is not a fault");
    let (text, other) = (Text::new(7, 4000), Text::new(8, 4000));
    m.text_poke_copy(VMALLOC_START + 96, &text.to_vec())
        .unwrap();
    assert_eq!(m.fetch_holds(VMALLOC_START + 96, &text), Ok(true));
    assert_eq!(m.fetch_holds(VMALLOC_START + 96, &other), Ok(false));
    assert_eq!(m.oopses().len(), 2, "a fetch that compares is no fault");
    let f = (m.fetch_holds(VMALLOC_START + 4090, &Text::new(7, 8))).unwrap_err();
    assert_eq!(f.cause, FaultCause::NotPresent, "runs off the mapping");
    assert_eq!(m.oopses().len(), 3);
    assert!(m.pgtables.wx_leaves().next().is_none());
}

#[test]
fn data_survives_free_and_comes_back_with_the_frame() {
    let mut m = machine();
    let a = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    m.frames.write(a, 100, b"secret");
    m.__free_pages(a, 0);
    let b = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    assert_eq!(a, b, "LIFO: the frame just freed is handed out again");
    let mut buf = [0; 6];
    m.frames.read(b, 100, &mut buf);
    assert_eq!(&buf, b"secret");
    m.__free_pages(b, 0);
    let z = m
        .alloc_pages_node(
            None,
            Gfp {
                zero: true,
                comp: false,
            },
            0,
        )
        .unwrap();
    assert_eq!(z, a);
    m.frames.read(z, 100, &mut buf);
    assert_eq!(buf, [0; 6], "__GFP_ZERO clears it");
}

#[test]
fn boot_garbage_is_deterministic_and_never_int3() {
    let m1 = machine();
    let m2 = machine();
    let mut a = [0u8; 4096];
    let mut b = [0u8; 4096];
    let mut c = [0u8; 4096];
    m1.frames.read(10, 0, &mut a);
    m2.frames.read(10, 0, &mut b);
    m1.frames.read(11, 0, &mut c);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|&x| x != 0xcc));
}

#[test]
fn pmd_mapping_of_a_huge_block_reads_through() {
    let mut m = machine();
    let head = m.alloc_pages_node(None, Gfp::KERNEL, 9).unwrap();
    m.split_page(head, 9);
    m.pgtables.map_pmd(VMALLOC_START, head, Prot::PAGE_KERNEL);
    m.write(VMALLOC_START + PMD_SIZE - 3, b"abc").unwrap();
    let mut buf = [0; 3];
    m.frames.read(head + 511, 4093, &mut buf);
    assert_eq!(&buf, b"abc");
    assert_eq!(
        m.pgtables.vmalloc_to_pfn(VMALLOC_START + 3 * PAGE_SIZE),
        Some(head + 3)
    );
}

/// `vm_remove_mappings()` with `VM_FLUSH_RESET_PERMS`: the per-4K invalid/default
/// toggle splits the direct-map leaf even though the final protection is the
/// default, and the split is never merged back — the ratchet.
#[test]
fn reset_perms_on_free_splits_and_never_merges() {
    let mut m = machine();
    let head = m.alloc_pages_node(None, Gfp::KERNEL, 9).unwrap();
    m.split_page(head, 9);
    m.pgtables.map_pmd(VMALLOC_START, head, Prot::PAGE_KERNEL);
    m.set_memory_rox(VMALLOC_START, 512).unwrap();
    assert_eq!(m.dmap.stats().direct_map_level2_splits, 0);
    m.pgtables.unmap(VMALLOC_START, PMD_SIZE);
    let pages: Vec<u64> = (head..head + 512).collect();
    m.vm_reset_perms(&pages);
    let s = m.dmap.stats();
    assert_eq!(s.direct_map_level2_splits, 1);
    assert!((head..head + 512).all(|p| m.dmap.prot(p) == Prot::PAGE_KERNEL));
    assert_eq!(
        s.directmap_4k_kb, 2048,
        "512 4K leaves stay after the reset"
    );
    assert_eq!(m.stats.set_direct_map_calls, 1024);
}

fn bug_lines(m: &Machine) -> Vec<String> {
    m.oopses()
        .iter()
        .filter(|o| matches!(o, Oops::Bug { .. }))
        .flat_map(|o| {
            o.to_string()
                .lines()
                .filter(|l| l.starts_with("kernel BUG at") || l.starts_with("page dumped"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `VM_BUG_ON_PAGE()` names the file and line of the check that fired, as
/// v5.18 prints it: the ones in `free_pages_prepare()` and `split_page()`
/// are in mm/page_alloc.c, `put_page_testzero()`'s in include/linux/mm.h.
#[test]
fn vm_bug_on_page_names_the_line_of_its_check() {
    let mut m = machine();
    let head = m.alloc_pages_node(None, COMP, 9).unwrap();
    m.__free_pages(head, 8);
    m.split_page(head, 9);
    let single = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    m.__free_pages(single, 0);
    m.put_page(single);
    assert_eq!(
        bug_lines(&m),
        [
            "page dumped because: VM_BUG_ON_PAGE(compound && compound_order(page) != order)",
            "kernel BUG at mm/page_alloc.c:1329!",
            "page dumped because: VM_BUG_ON_PAGE(PageCompound(page))",
            "kernel BUG at mm/page_alloc.c:3515!",
            "page dumped because: VM_BUG_ON_PAGE(page_ref_count(page) == 0)",
            "kernel BUG at include/linux/mm.h:720!",
        ]
    );
}

/// A second `list_del()` follows `LIST_POISON1`, which is not canonical: a
/// general protection fault, not a page fault.
#[test]
fn a_second_list_del_is_a_general_protection_fault() {
    let mut m = machine();
    let p = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    m.list_add(page_lru(p), DRIVER_LIST).unwrap();
    m.list_del(page_lru(p)).unwrap();
    assert!(m.list_del(page_lru(p)).is_none(), "the access oopsed");
    assert!(
        m.oopses()[0].to_string().starts_with(
            "general protection fault, probably for non-canonical address 0xdead000000000"
        ),
        "{}",
        m.oopses()[0]
    );
}

/// Loads and stores through the direct map (`__va(pfn)`) reach the frame and
/// obey the alias's protection; past the end of RAM nothing is mapped.
#[test]
fn the_direct_map_reaches_every_frame_with_its_alias_protection() {
    use packmodel::machine::consts::pfn_to_virt;
    let mut m = machine();
    let p = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    let va = pfn_to_virt(p) + 0x123;
    assert_eq!(va, 0xffff_8880_0000_0000 + (p << 12) + 0x123);
    m.write(va, &[1, 2, 3]).unwrap();
    let mut b = [0; 3];
    m.frames.read(p, 0x123, &mut b);
    assert_eq!(b, [1, 2, 3], "the store went to frame {p:#x}");
    m.dmap.change(p, 1, Prot::NONE, Prot::RW);
    let f = m.write(va, &[9]).unwrap_err();
    assert_eq!((f.cause, f.addr), (FaultCause::WriteToReadOnly, va));
    let mut r = [0; 3];
    m.read(va, &mut r).unwrap();
    assert_eq!(r, [1, 2, 3], "a read-only alias still reads");
    let end = pfn_to_virt(m.nr_pages());
    assert_eq!(
        m.read(end, &mut r).unwrap_err().cause,
        FaultCause::NotPresent
    );
    assert_eq!(m.read(end - 1, &mut r[..1]).map(|_| ()), Ok(()));
}

/// CPA rounds an unaligned address down to its page, with a WARN.
#[test]
fn cpa_on_an_unaligned_address_warns_and_changes_its_page() {
    let mut m = machine();
    let p = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    let q = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    m.pgtables
        .map_ptes(VMALLOC_START, &[p, q], Prot::PAGE_KERNEL);
    m.set_memory_ro(VMALLOC_START + PAGE_SIZE + 0x10, 1)
        .unwrap();
    assert_eq!(
        m.pgtables.lookup(VMALLOC_START).unwrap().prot,
        Prot::PAGE_KERNEL
    );
    assert_eq!(
        m.pgtables.lookup(VMALLOC_START + PAGE_SIZE).unwrap().prot,
        Prot::PAGE_KERNEL_RO
    );
    assert!(
        m.oopses()[0]
            .to_string()
            .contains("at change_page_attr_set_clr")
    );
}

/// `PAGE_FLAGS_CHECK_AT_FREE` and `_AT_PREP` of v5.18
/// (include/linux/page-flags.h), flag by flag: a page freed with one of lru,
/// locked, private, private_2, writeback, reserved, slab, active,
/// unevictable or mlocked set is a bad page, any other flag is cleared at
/// free; a free page that has any flag when it is allocated is a bad page
/// (node bits are not flags).
#[test]
fn the_flags_checked_at_free_and_at_allocation() {
    use packmodel::machine::page::pg;
    const AT_FREE: [&str; 10] = [
        "lru",
        "locked",
        "private",
        "private_2",
        "writeback",
        "reserved",
        "slab",
        "active",
        "unevictable",
        "mlocked",
    ];
    for bit in 0..pg::NR_PAGEFLAGS {
        let name = pg::NAMES[bit as usize];
        let mut m = Machine::new(MachineConfig {
            nodes: 2,
            ..Default::default()
        });
        let p = m.alloc_pages_node(Some(1), Gfp::KERNEL, 0).unwrap();
        m.mm.page_mut(p).set_flag(bit);
        m.__free_pages(p, 0);
        let bad = bad_pages(&m);
        if AT_FREE.contains(&name) {
            assert_eq!(bad, [(p, "PAGE_FLAGS_CHECK_AT_FREE flag(s) set")], "{name}");
            continue;
        }
        assert!(bad.is_empty(), "{name}: {bad:?}");
        assert_eq!(
            m.mm.page(p).flags() & ((1 << pg::NR_PAGEFLAGS) - 1),
            0,
            "{name} cleared"
        );
        m.mm.page_mut(p).set_flag(bit);
        let q = m.alloc_pages_node(Some(1), Gfp::KERNEL, 0).unwrap();
        assert_ne!(q, p, "{name}: the bad page is not handed out");
        assert_eq!(
            bad_pages(&m),
            [(p, "PAGE_FLAGS_CHECK_AT_PREP flag(s) set")],
            "{name}"
        );
    }
}

/// `__dump_page()` of a tail resolves its head (and prints the compound
/// line from the first tail); a page whose `compound_head` points more than
/// `MAX_ORDER_NR_PAGES` away, or above it, is dumped alone.
#[test]
fn a_page_dump_shows_the_head_of_a_sane_tail_only() {
    use packmodel::machine::oops::PageDump;
    let mut m = machine();
    let head = m.alloc_pages_node(None, COMP, 9).unwrap();
    let d = PageDump::capture(&m.mm, head + 5).to_string();
    assert!(
        d.contains(&format!(
            "head:{:016x} order:9 compound_mapcount:0 compound_pincount:0",
            0xffff_ea00_0000_0000u64 + head * 64
        )),
        "{d}"
    );
    assert_eq!(
        d.matches("head: ").count(),
        2,
        "the head's raw words too:\n{d}"
    );
    let h = PageDump::capture(&m.mm, head).to_string();
    assert!(h.contains("order:9") && !h.contains("head: "), "{h}");
    let single = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    let s = PageDump::capture(&m.mm, single).to_string();
    assert!(!s.contains("order:") && !s.contains("head: "), "{s}");
    // A tail bit pointing far below, or above the page: no head to show.
    let p = 3000;
    for bogus in [p - 1500, p + 1] {
        let page = 0xffff_ea00_0000_0000u64 + bogus * 64;
        m.mm.page_mut(p).set_word(W_LRU_NEXT, page | 1);
        let s = PageDump::capture(&m.mm, p).to_string();
        assert!(
            !s.contains("head: ") && !s.contains("order:"),
            "{bogus:#x}: {s}"
        );
    }
}

/// The x86 page-fault text: a NULL pointer dereference below 4 KiB, an
/// unable-to-handle fault from there on.
#[test]
fn faults_below_a_page_are_null_pointer_dereferences() {
    let mut m = machine();
    let mut b = [0; 1];
    for (addr, first) in [
        (
            0x10u64,
            "BUG: kernel NULL pointer dereference, address: 0000000000000010",
        ),
        (
            0xfff,
            "BUG: kernel NULL pointer dereference, address: 0000000000000fff",
        ),
        (
            0x1000,
            "BUG: unable to handle page fault for address: 0000000000001000",
        ),
    ] {
        let f = m.read(addr, &mut b).unwrap_err();
        assert_eq!(f.to_string().lines().next(), Some(first));
    }
}

/// The driver's static data is 16 aligned words at KDATA_START; anything
/// else there, unaligned or past them, is a wild access.
#[test]
fn kernel_data_is_sixteen_words_and_nothing_else() {
    use packmodel::machine::consts::KDATA_START;
    let mut m = machine();
    assert_eq!(
        m.kmem_read(KDATA_START),
        Some(DRIVER_LIST),
        "an empty list points at itself"
    );
    assert_eq!(m.kmem_read(KDATA_START + 8), Some(DRIVER_LIST));
    assert_eq!(m.kmem_read(KDATA_START + 15 * 8), Some(0));
    assert_eq!(m.oopses().len(), 0);
    assert_eq!(m.kmem_read(KDATA_START + 16 * 8), None);
    assert_eq!(m.kmem_read(KDATA_START + 4), None);
    assert_eq!(m.oopses().len(), 2);
}

/// Two pages on the driver's list, as list.h links them, and unlinked.
#[test]
fn the_driver_list_links_its_pages_as_list_h_does() {
    let mut m = machine();
    let a = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    let b = m.alloc_pages_node(None, Gfp::KERNEL, 0).unwrap();
    let (la, lb) = (page_lru(a), page_lru(b));
    m.list_add(la, DRIVER_LIST).unwrap();
    m.list_add(lb, DRIVER_LIST).unwrap();
    let words = |m: &mut Machine, at: u64| (m.kmem_read(at).unwrap(), m.kmem_read(at + 8).unwrap());
    assert_eq!(words(&mut m, DRIVER_LIST), (lb, la), "head: next b, prev a");
    assert_eq!(words(&mut m, lb), (la, DRIVER_LIST));
    assert_eq!(words(&mut m, la), (DRIVER_LIST, lb));
    m.list_del(lb).unwrap();
    assert_eq!(words(&mut m, DRIVER_LIST), (la, la));
    assert_eq!(words(&mut m, la), (DRIVER_LIST, DRIVER_LIST));
    assert_eq!(
        words(&mut m, lb),
        (LIST_POISON1, packmodel::machine::page::LIST_POISON2)
    );
}

/// `split_page()` of a block whose head has no reference is the second of
/// its two checks, one line further down.
#[test]
fn split_page_of_an_unreferenced_block_is_its_second_bug() {
    let mut m = machine();
    let head = m.alloc_pages_node(None, Gfp::KERNEL, 2).unwrap();
    m.mm.page_mut(head).set_refcount(0);
    m.split_page(head, 2);
    assert_eq!(
        bug_lines(&m),
        [
            "page dumped because: VM_BUG_ON_PAGE(!page_count(page))",
            "kernel BUG at mm/page_alloc.c:3516!",
        ]
    );
}

/// `free_pages_prepare()` clears `PAGE_FLAGS_CHECK_AT_PREP` in each tail's
/// flags word and nothing else: the bits above the page flags are where the
/// kernel keeps section, node and zone (`set_page_links()`), which a free
/// must not touch.
#[test]
fn a_free_clears_only_the_page_flags_of_its_tails() {
    let mut m = machine();
    let head = m.alloc_pages_node(None, Gfp::KERNEL, 2).unwrap();
    let links = 0b10 << 62; // a zone number where page_zonenum() reads it
    for p in head + 1..head + 4 {
        m.mm.page_mut(p).set_word(0, links | 1 << 3);
    }
    m.__free_pages(head, 2);
    assert!(bad_pages(&m).is_empty());
    for p in head + 1..head + 4 {
        assert_eq!(m.mm.page(p).flags(), links, "pfn {p:#x}");
    }
}

/// `free_tail_pages_check()` reads the first tail's `compound_mapcount`: a
/// compound page still mapped once (mapcount 1, stored as 0) is a bad page
/// at that tail.
#[test]
fn a_compound_page_freed_while_mapped_is_a_bad_page() {
    let mut m = machine();
    let head = m.alloc_pages_node(None, COMP, 2).unwrap();
    m.mm.page_mut(head + 1).set_compound_mapcount_raw(0);
    m.__free_pages(head, 2);
    assert_eq!(
        bad_pages(&m),
        [(head + 1, "nonzero compound_mapcount")],
        "the first tail is named"
    );
}
