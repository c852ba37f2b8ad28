//! Quirks: switches that put one piece of the optimised kernel back into a
//! historical, buggy state (DESIGN §5). Each changes only what the historical
//! code did, in the function that did it, which names the fixing commit. Names
//! are stable — traces, snapshots and `PACKMODEL_QUIRKS` use them. The default
//! set is empty: the fixed kernel.

use std::fmt;

/// One historical bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quirk {
    /// Every vmalloc of at least `PMD_SIZE × nodes` gets huge pages unless the
    /// caller passes `VM_NO_HUGE_VMAP`.
    HugeVmallocOptOut,
    /// Huge vmalloc backing is one compound page per PMD, mapped by a PMD leaf
    /// and freed with one `__free_pages(page, 9)`.
    CompoundHugeVmalloc,
    /// A new pack (and an oversize program's area) is made RO+X without being
    /// filled with INT3.
    UninitPack,
    /// A freed program's chunks are not overwritten with INT3.
    NoInvalidateOnFree,
    /// The JIT error path frees with the size read from an RO header that
    /// finalize never wrote.
    UnsetRoSize,
    /// Freeing an unfinalised subprogram finds its header with `PAGE_MASK`
    /// and frees it as a whole JIT binary.
    UnfinalizedFreeMask,
    /// A free finds its pack by masking with `PMD_MASK` (5.18-rc1..rc3 as
    /// released, 96805674e562).
    PackMaskLookup,
    /// A `__GFP_NOFAIL` huge vmalloc that falls back to order-0 pages still
    /// maps PMD leaves.
    FallbackMappedAsPmd,
    /// Freed pages keep `page->private`, so `split_page()` hands it to the
    /// next user.
    SplitKeepsPrivate,
    /// A free finds its pack by masking with the pack size (ef078600eec2 to
    /// 96805674e562, in bpf-next before 5.18-rc1).
    PackSizeMaskLookup,
    /// The ROX cache takes its blocks out of the direct map when it makes
    /// them (`execmem` design).
    RoxCacheAliasInvalid,
    /// `execmem_cache_free()` ignores a failed `execmem_cache_add()`
    /// (`execmem` design).
    ExecmemFreeLostRange,
    /// No predictor flush before a classic program reuses pack memory.
    CbpfReuseNoFlush,
    /// `execmem_alloc()` does not round the size to a page (`execmem`
    /// design).
    ExecmemUnalignedSize,
    /// `execmem_cache_clean()` frees whole-PMD free ranges that are only
    /// part of their area (`execmem` design).
    ExecmemPartialClean,
}

/// What a quirk is, for `packmodel quirks` and the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuirkInfo {
    pub quirk: Quirk,
    /// The stable name.
    pub name: &'static str,
    /// Kernel versions that had the bug.
    pub versions: &'static str,
    /// The commit(s) that fixed it.
    pub fixed_by: &'static str,
    /// What it looks like.
    pub symptom: &'static str,
}

/// Every quirk the model knows.
pub const QUIRKS: &[QuirkInfo] = &[
    QuirkInfo {
        quirk: Quirk::HugeVmallocOptOut,
        name: "huge-vmalloc-opt-out",
        versions: "5.18-rc1..rc3 (x86); 5.13+ (powerpc)",
        fixed_by: "559089e0a93d",
        symptom: "plain vmalloc() of ≥ PMD_SIZE × nodes gets PMD mappings its callers never asked for",
    },
    QuirkInfo {
        quirk: Quirk::CompoundHugeVmalloc,
        name: "compound-huge-vmalloc",
        versions: "5.18-rc1..rc3 (x86); 5.13+ (powerpc)",
        fixed_by: "3b8000ae185c",
        symptom: "vmalloc_to_page() hands drivers tail pages; their writes corrupt the compound page: \"BUG: Bad page state\"",
    },
    QuirkInfo {
        quirk: Quirk::UninitPack,
        name: "uninit-pack",
        versions: "5.18-rc1..5.18 (fixed in 5.19, 5.18.y)",
        fixed_by: "d88bb5eed04c",
        symptom: "a new pack is executable with whatever its pages held: stale data runs as code",
    },
    QuirkInfo {
        quirk: Quirk::NoInvalidateOnFree,
        name: "no-invalidate-on-free",
        versions: "5.18 (fixed in 5.19)",
        fixed_by: "aadd1b678ebe, fe736565efb7",
        symptom: "freed chunks keep their code, RO+X: a stale jump, or one past a smaller program reusing the space, runs old code",
    },
    QuirkInfo {
        quirk: Quirk::UnsetRoSize,
        name: "unset-ro-size",
        versions: "5.18-rc1 window",
        fixed_by: "676b2daabaf9",
        symptom: "the JIT error path frees with a size read from an RO header finalize never wrote: INT3 reads as a size larger than a pack, so the chunk is module_memfree()d — the whole pack when the chunk starts one of its pages, \"Trying to vfree() bad address\" otherwise; a stale header frees the wrong chunks",
    },
    QuirkInfo {
        quirk: Quirk::UnfinalizedFreeMask,
        name: "unfinalized-free-mask",
        versions: "5.18.0–5.18.17, 5.19.0–5.19.1",
        fixed_by: "1d5f82d9dd47 (CVE-2022-50168)",
        symptom: "a failed multi-subprogram load frees an unfinalised subprogram by its PAGE_MASK header: vfree() finds the pack by range and frees all of it, while other programs live in it",
    },
    QuirkInfo {
        quirk: Quirk::PackMaskLookup,
        name: "pack-mask-lookup",
        versions: "5.18-rc1..rc3 (x86, NUMA)",
        fixed_by: "ea2babac63d4 (6.0; 559089e0a93d hid it from 5.18-rc4 on)",
        symptom: "a free finds its pack as ptr & PMD_MASK: with 2 nodes a pack is 4 MiB and every program in its second 2 MiB misses, 4 MiB-aligned or not, as does any program in a pack whose huge allocation fell back to 4 KiB pages (not PMD-aligned): \"bpf_prog_pack bug\", chunks leak, the pack is never freed",
    },
    QuirkInfo {
        quirk: Quirk::FallbackMappedAsPmd,
        name: "fallback-mapped-as-pmd",
        versions: "6.x until 2024",
        fixed_by: "\"mm/vmalloc: fix page mapping if vm_area_alloc_pages() with high order fallback to order 0\" (2024)",
        symptom: "a __GFP_NOFAIL huge vmalloc that falls back to order-0 pages still maps PMD leaves: it reads and writes frames it does not own",
    },
    QuirkInfo {
        quirk: Quirk::SplitKeepsPrivate,
        name: "split-keeps-private",
        versions: "5.18-rc4 (3b8000ae185c) until 2026",
        fixed_by: "\"mm/page_alloc: clear page->private in free_pages_prepare()\" (2026)",
        symptom: "split_page() subpages keep a stale page->private from their last user, which the next user sees",
    },
    QuirkInfo {
        quirk: Quirk::PackSizeMaskLookup,
        name: "pack-size-mask-lookup",
        versions: "bpf-next, March 2022 (ef078600eec2 until 96805674e562, both merged for 5.18-rc1)",
        fixed_by: "96805674e562 (syzbot c946805b5ce6ab87df0b), ea2babac63d4",
        symptom: "with 2 nodes a pack is 4 MiB but only PMD-aligned; a free that finds its pack as ptr & ~(pack size - 1) misses one that is not 4 MiB-aligned: \"bpf_prog_pack bug\", chunks leak, the pack is never freed",
    },
    QuirkInfo {
        quirk: Quirk::RoxCacheAliasInvalid,
        name: "rox-cache-alias-invalid",
        versions: "6.13-rc1..rc7 for module text (2e45474ab14f; x86 switched the cache off for 6.13, a9bbe3413331, and the v6.15 series brought it back with the fix); BPF never ran on it",
        fixed_by: "925f42645118",
        symptom: "the ROX cache's blocks are not present in the direct map: a /proc/kcore read of a program (vread_iter → vmalloc_to_page → the page's direct-map address) faults, and read_kcore_iter retries for ever",
    },
    QuirkInfo {
        quirk: Quirk::ExecmemFreeLostRange,
        name: "execmem-free-lost-range",
        versions: "6.13-rc1 (2e45474ab14f) until 187fd8521dd8",
        fixed_by: "187fd8521dd8",
        symptom: "a free whose execmem_cache_add() fails to allocate a maple-tree node loses the range: neither busy nor free, so the cache never reuses it and never releases its 2 MiB block",
    },
    QuirkInfo {
        quirk: Quirk::CbpfReuseNoFlush,
        name: "cbpf-reuse-no-flush",
        versions: "5.18 (57631054fae6, bpf_prog_pack) until the 2026 cBPF JIT-spray hardening (v7.2-rc; 6.1.y, 6.6.y, 6.12.y, 6.18.y)",
        fixed_by: "96cce16e26dd, a23c1c5396a9 (and a3af84b0fa00, 0bb99f2cfaae, a9b1f19a6a67, b72e29e0f7ee)",
        symptom: "an unprivileged classic BPF filter is JITed into pack memory another program's code was freed from, with the indirect branch predictors still trained by the old code: no IBPB between the two",
    },
    QuirkInfo {
        quirk: Quirk::ExecmemUnalignedSize,
        name: "execmem-unaligned-size",
        versions: "6.13-rc1 (2e45474ab14f) until 6bbf0e728528 (v6.16); no caller then passed such a size (\"It should not\" have a runtime effect, Peter Zijlstra); x86 ftrace trampolines, whose sizes are not page multiples, joined the cache only after the fix",
        fixed_by: "6bbf0e728528",
        symptom: "the ROX cache hands out ranges that are not page multiples, so the next allocation starts inside a page: its execmem_free() passes CPA an unaligned address (WARN in change_page_attr_set_clr), and freeing its neighbour makes the page they share RW+NX under it for a while",
    },
    QuirkInfo {
        quirk: Quirk::ExecmemPartialClean,
        name: "execmem-partial-clean",
        versions: "6.13-rc1 (2e45474ab14f) to mainline of 2026 (the model's execmem design otherwise); reachable once BPF packs share the cache (bpf-next, 2026)",
        fixed_by: "\"mm/execmem: free ROX cache chunks only when they span an entire vm area\" (mm-unstable, 2026; id rebases)",
        symptom: "execmem_cache_clean() vfree()s a whole-PMD free range inside a bigger block, and vfree() of an address inside an area frees all of it: a live pack cut from the rest of the block is unmapped under its programs (found by the fuzzer in this model)",
    },
];

impl Quirk {
    pub fn info(self) -> &'static QuirkInfo {
        QUIRKS
            .iter()
            .find(|i| i.quirk == self)
            .expect("every quirk is listed")
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    fn bit(self) -> u32 {
        1 << QUIRKS.iter().position(|i| i.quirk == self).expect("listed")
    }
}

/// A set of quirks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Quirks(u32);

impl Quirks {
    /// The fixed kernel.
    pub const NONE: Quirks = Quirks(0);

    pub fn has(self, q: Quirk) -> bool {
        self.0 & q.bit() != 0
    }

    pub fn with(self, q: Quirk) -> Quirks {
        Quirks(self.0 | q.bit())
    }

    /// Parses names separated by commas or spaces; `""` and `none` are the
    /// empty set. Unknown names are an error that lists the valid ones.
    pub fn parse(list: &str) -> Result<Quirks, String> {
        let names: Vec<&str> = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty() && *s != "none")
            .collect();
        Self::from_names(&names)
    }

    /// The set of the named quirks.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Quirks, String> {
        let mut q = Quirks::NONE;
        for n in names {
            let n = n.as_ref();
            match QUIRKS.iter().find(|i| i.name == n) {
                Some(i) => q = q.with(i.quirk),
                None => {
                    let valid: Vec<_> = QUIRKS.iter().map(|q| q.name).collect();
                    return Err(format!(
                        "unknown quirk `{n}`; valid quirks: {}",
                        valid.join(", ")
                    ));
                }
            }
        }
        Ok(q)
    }

    /// The names in the set, in table order.
    pub fn names(self) -> Vec<&'static str> {
        QUIRKS
            .iter()
            .filter(|i| self.has(i.quirk))
            .map(|i| i.name)
            .collect()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Quirks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.names();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quirk_knows_its_row_and_its_name_selects_it_alone() {
        for row in QUIRKS {
            assert_eq!(row.quirk.info(), row);
            assert_eq!(row.quirk.name(), row.name);
            let alone = Quirks::parse(row.name).unwrap();
            assert_eq!(alone, Quirks::NONE.with(row.quirk));
            assert_eq!(alone.names(), [row.name]);
            for other in QUIRKS.iter().filter(|o| o.quirk != row.quirk) {
                assert!(
                    !alone.has(other.quirk),
                    "{} selects {}",
                    row.name,
                    other.name
                );
            }
        }
    }

    #[test]
    fn parse_print_and_errors() {
        assert_eq!(Quirks::parse(""), Ok(Quirks::NONE));
        assert_eq!(Quirks::parse(" none "), Ok(Quirks::NONE));
        let q = Quirks::parse("uninit-pack, huge-vmalloc-opt-out").unwrap();
        assert!(q.has(Quirk::UninitPack) && q.has(Quirk::HugeVmallocOptOut));
        assert!(!q.has(Quirk::CompoundHugeVmalloc));
        assert_eq!(q.to_string(), "huge-vmalloc-opt-out, uninit-pack");
        let twice = Quirks::parse("uninit-pack, uninit-pack").unwrap();
        assert_eq!(
            twice,
            Quirks::NONE.with(Quirk::UninitPack),
            "a name twice is once"
        );
        assert!(Quirks::NONE.is_empty() && !twice.is_empty());
        let e = Quirks::parse("no-such-quirk").unwrap_err();
        assert!(
            e.starts_with("unknown quirk `no-such-quirk`; valid quirks: huge-vmalloc-opt-out"),
            "{e}"
        );
    }
}
