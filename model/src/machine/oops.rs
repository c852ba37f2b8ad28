//! Oopses: what the kernel prints when something goes wrong, recorded rather than
//! fatal so that a run can report them and go on.
//!
//! The text follows the kernel's own messages (`bad_page()`/`__dump_page()` of
//! v5.18, the x86 `page_fault_oops()` lines, `VM_BUG_ON_PAGE`), with the
//! model's deterministic addresses instead of hashed `%p` values.

use std::fmt;

use super::page::{Memmap, PAGE_MAPPING_FLAGS, Page, format_flags, page_ptr};

/// A `struct page` as `__dump_page()` saw it at the moment of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageDump {
    pub pfn: u64,
    pub words: [u64; 8],
    /// The head page, when `page` is a (sane) tail of a compound page.
    pub head: Option<(u64, [u64; 8])>,
    /// `head:… order:… compound_mapcount:… compound_pincount:…`, read from the
    /// first tail, when the page is compound.
    pub compound: Option<CompoundInfo>,
}

/// The compound metadata `__dump_page()` prints for a compound page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompoundInfo {
    pub head_pfn: u64,
    pub order: u8,
    pub mapcount: i32,
    pub pincount: i32,
}

impl PageDump {
    /// Captures page `pfn`, and its head when it is a tail whose
    /// `compound_head` resolves to a page less than `MAX_ORDER_NR_PAGES` below.
    pub fn capture(mm: &Memmap, pfn: u64) -> Self {
        let page = mm.page(pfn);
        let head_pfn = match mm.compound_head(pfn) {
            Ok(h) if h <= pfn && pfn - h < 1024 => Some(h),
            _ => None,
        };
        let head = head_pfn
            .filter(|&h| h != pfn)
            .map(|h| (h, mm.page(h).words()));
        let compound = match head_pfn {
            Some(h) if page.is_compound() && h + 1 < mm.nr_pages() => {
                let t = mm.page(h + 1);
                Some(CompoundInfo {
                    head_pfn: h,
                    order: t.compound_order(),
                    mapcount: t.compound_mapcount_raw().wrapping_add(1),
                    pincount: t.compound_pincount(),
                })
            }
            _ => None,
        };
        Self {
            pfn,
            words: page.words(),
            head,
            compound,
        }
    }

    fn page(words: &[u64; 8]) -> Page {
        let mut p = Page::default();
        for (i, w) in words.iter().enumerate() {
            p.set_word(i, *w);
        }
        p
    }
}

impl fmt::Display for PageDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let page = Self::page(&self.words);
        let head = match &self.head {
            Some((_, w)) => Self::page(w),
            None => page,
        };
        // page_mapping(): the head's mapping, NULL for anonymous pages.
        let mapping = if head.mapping() & PAGE_MAPPING_FLAGS != 0 {
            0
        } else {
            head.mapping()
        };
        writeln!(
            f,
            "page:{:016x} refcount:{} mapcount:{} mapping:{:016x} index:{:#x} pfn:{:#x}",
            page_ptr(self.pfn),
            head.refcount(),
            page.mapcount_raw().wrapping_add(1),
            mapping,
            page.index(),
            self.pfn
        )?;
        if let Some(c) = &self.compound {
            writeln!(
                f,
                "head:{:016x} order:{} compound_mapcount:{} compound_pincount:{}",
                page_ptr(c.head_pfn),
                c.order,
                c.mapcount,
                c.pincount
            )?;
        }
        writeln!(f, "flags: {}", format_flags(head.flags()))?;
        write_raw(f, "raw", &self.words)?;
        if let Some((_, w)) = &self.head {
            write_raw(f, "head", w)?;
        }
        Ok(())
    }
}

fn write_raw(f: &mut fmt::Formatter<'_>, label: &str, w: &[u64; 8]) -> fmt::Result {
    for row in w.chunks(4) {
        writeln!(
            f,
            "{label}: {:016x} {:016x} {:016x} {:016x}",
            row[0], row[1], row[2], row[3]
        )?;
    }
    Ok(())
}

/// The kind of CPU access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

/// Why a CPU access faulted (the `#PF` error code's story).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultCause {
    /// No present leaf maps the address.
    NotPresent,
    /// A write to a leaf without RW.
    WriteToReadOnly,
    /// An instruction fetch from a leaf with NX.
    ExecNx,
    /// The address is not canonical (a `#GP`, not a `#PF`).
    NonCanonical,
}

impl FaultCause {
    /// Short name used in observations and reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultCause::NotPresent => "not-present",
            FaultCause::WriteToReadOnly => "write to read-only",
            FaultCause::ExecNx => "exec of NX",
            FaultCause::NonCanonical => "non-canonical address",
        }
    }
}

/// A CPU access that the MMU refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub addr: u64,
    pub access: Access,
    pub cause: FaultCause,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cause == FaultCause::NonCanonical {
            return writeln!(
                f,
                "general protection fault, probably for non-canonical address {:#018x}: 0000 [#1] PREEMPT SMP NOPTI",
                self.addr
            );
        }
        if self.cause == FaultCause::ExecNx {
            writeln!(
                f,
                "kernel tried to execute NX-protected page - exploit attempt? (uid: 0)"
            )?;
        }
        if self.addr < 4096 {
            writeln!(
                f,
                "BUG: kernel NULL pointer dereference, address: {:016x}",
                self.addr
            )?;
        } else {
            writeln!(
                f,
                "BUG: unable to handle page fault for address: {:016x}",
                self.addr
            )?;
        }
        let (what, code) = match self.access {
            Access::Read => ("read access", 0),
            Access::Write => ("write access", 2),
            Access::Fetch => ("instruction fetch", 0x10),
        };
        let (present, why) = match self.cause {
            FaultCause::NotPresent => (0, "not-present page"),
            _ => (1, "permissions violation"),
        };
        writeln!(f, "#PF: supervisor {what} in kernel mode")?;
        writeln!(f, "#PF: error_code({:#06x}) - {why}", code | present)
    }
}

/// A `BUG_ON()`, `VM_BUG_ON_PAGE()` or `VM_BUG_ON_FOLIO()` of the kernel: the
/// file and line `kernel BUG at …!` names and the condition it prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BugSite {
    pub file: &'static str,
    pub line: u32,
    pub condition: &'static str,
}

/// The checks the model has, at their v5.18 lines (`text_poke`'s at the
/// 5.19 line, as text_poke_copy/_set came with 5.19). The lines were counted
/// in a v5.18 `mm/page_alloc.c` and `include/linux/mm.h`, and 1329 and
/// mm.h:720 also appear in 5.18-rc oopses ("kernel BUG at
/// mm/page_alloc.c:1329!", "kernel BUG at include/linux/mm.h:720!");
/// alternative.c:1041 is syzbot 87f65c75f4a72db05445's text_poke_copy()
/// BUG on 5.19-rc4.
pub mod bug {
    use super::BugSite;

    const fn site(file: &'static str, line: u32, condition: &'static str) -> BugSite {
        BugSite {
            file,
            line,
            condition,
        }
    }

    /// `free_pages_prepare()`.
    pub const FREE_PAGES_PREPARE_TAIL: BugSite =
        site("mm/page_alloc.c", 1305, "VM_BUG_ON_PAGE(PageTail(page))");
    /// `free_pages_prepare()`, for a high-order block.
    pub const FREE_PAGES_PREPARE_ORDER: BugSite = site(
        "mm/page_alloc.c",
        1329,
        "VM_BUG_ON_PAGE(compound && compound_order(page) != order)",
    );
    /// `split_page()`.
    pub const SPLIT_PAGE_COMPOUND: BugSite = site(
        "mm/page_alloc.c",
        SPLIT_PAGE_LINE,
        "VM_BUG_ON_PAGE(PageCompound(page))",
    );
    /// `split_page()`.
    pub const SPLIT_PAGE_COUNT: BugSite = site(
        "mm/page_alloc.c",
        SPLIT_PAGE_LINE + 1,
        "VM_BUG_ON_PAGE(!page_count(page))",
    );
    const SPLIT_PAGE_LINE: u32 = 3515;
    /// `put_page_testzero()`, which `folio_put_testzero()` calls on the
    /// head page.
    pub const PUT_PAGE_TESTZERO: BugSite = site(
        "include/linux/mm.h",
        720,
        "VM_BUG_ON_PAGE(page_ref_count(page) == 0)",
    );
    /// `folio_entire_mapcount()`, which `compound_mapcount()` is in 5.18.
    pub const FOLIO_ENTIRE_MAPCOUNT: BugSite = site(
        "include/linux/mm.h",
        788,
        "VM_BUG_ON_FOLIO(!folio_test_large(folio))",
    );
    /// `folio_get()`, which `get_page()` is in 5.18.
    pub const FOLIO_GET: BugSite = site(
        "include/linux/mm.h",
        1164,
        "VM_BUG_ON_FOLIO(folio_ref_zero_or_close_to_overflow(folio))",
    );
    /// `__text_poke()`: a page of the target is not mapped.
    pub const TEXT_POKE_PAGES: BugSite = site(
        "arch/x86/kernel/alternative.c",
        1041,
        "BUG_ON(!pages[0] || (cross_page_boundary && !pages[1]))",
    );
}

/// One oops, in the order the machine recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Oops {
    /// `bad_page()`: the page failed a `CONFIG_DEBUG_VM` check and was leaked.
    BadPage {
        reason: &'static str,
        dump: PageDump,
    },
    /// A CPU access fault in kernel mode (`page_fault_oops()` / `#GP`).
    Fault(Fault),
    /// `VM_BUG_ON_PAGE()` / `VM_BUG_ON_FOLIO()` / `BUG_ON()`.
    Bug {
        site: BugSite,
        dump: Option<PageDump>,
    },
    /// `WARN()` / `WARN_ONCE()`.
    Warn {
        function: &'static str,
        message: String,
    },
}

impl Oops {
    /// The oracle class of the oops.
    pub fn is_bad_page(&self) -> bool {
        matches!(self, Oops::BadPage { .. })
    }
}

impl fmt::Display for Oops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Oops::BadPage { reason, dump } => {
                writeln!(
                    f,
                    "BUG: Bad page state in process packmodel  pfn:{:05x}",
                    dump.pfn
                )?;
                write!(f, "{dump}")?;
                writeln!(f, "page dumped because: {reason}")
            }
            Oops::Fault(fault) => write!(f, "{fault}"),
            Oops::Bug { site, dump } => {
                if let Some(d) = dump {
                    write!(f, "{d}")?;
                    writeln!(f, "page dumped because: {}", site.condition)?;
                } else {
                    writeln!(f, "{}", site.condition)?;
                }
                writeln!(f, "------------[ cut here ]------------")?;
                writeln!(f, "kernel BUG at {}:{}!", site.file, site.line)?;
                writeln!(f, "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI")
            }
            Oops::Warn { function, message } => {
                writeln!(f, "WARNING: CPU: 0 PID: 1 at {function}")?;
                if message.is_empty() {
                    return Ok(());
                }
                writeln!(f, "{message}")
            }
        }
    }
}
