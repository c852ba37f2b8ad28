//! Comparing what the two kernels showed for one op, on the abstract level
//! (DESIGN §3): equal; both failed the same way; incomparable (a documented,
//! legitimate difference); or divergent (a bug).

use super::driver::Driver;
use super::obs::Obs;
use super::op::Op;
use super::shadow::Shadow;
use crate::kernel::{Errno, Landing};
use crate::machine::consts::{PAGE_SIZE, page_align};

/// The verdict on one op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    Equal,
    BothFailedAlike,
    /// A legitimate difference. `stop`: the runs have parted ways (one kernel
    /// has an object the other does not), so later ops are not compared;
    /// invariants are still checked on each.
    Incomparable {
        why: &'static str,
        stop: bool,
    },
    /// The kernels disagree, or one of them broke the API's contract.
    Divergent(String),
}

impl Comparison {
    /// A short tag for reports.
    pub fn tag(&self) -> &'static str {
        match self {
            Comparison::Equal => "=",
            Comparison::BothFailedAlike => "= (both failed)",
            Comparison::Incomparable { stop: false, .. } => "~",
            Comparison::Incomparable { stop: true, .. } => "~ (stop comparing)",
            Comparison::Divergent(_) => "DIVERGENT",
        }
    }
}

/// What the harness knows independently of both kernels, to judge reads.
pub struct Expect<'a> {
    /// What every area must read back.
    pub shadow: &'a Shadow,
    /// What the driver stored in the pages it holds.
    pub driver: &'a Driver,
    /// Whether the live objects fit the generator's declared memory budget
    /// ([`super::budget`]): an `ENOMEM` on one side is a divergence inside it
    /// and incomparable outside it.
    pub within_budget: bool,
}

/// Compares the reference's `r` with the optimised kernel's `o` for `op`.
pub fn compare(op: &Op, r: &Obs, o: &Obs, x: &Expect) -> Comparison {
    compare_named(op, ["reference", "optimised"], r, o, x)
}

/// Compares what the kernels `names` showed, `r` and `o`, for `op`: any two
/// sources of observations (two model kernels, a model kernel and Linux).
pub fn compare_named(op: &Op, names: [&str; 2], r: &Obs, o: &Obs, x: &Expect) -> Comparison {
    use Comparison::*;
    let [rn, on] = names;
    let (shadow, within_budget) = (x.shadow, x.within_budget);
    if let Op::PageIndex { page } = op {
        match x.driver.page(*page).index {
            None => {
                return Incomparable {
                    why: "page->index was never set by the driver: the page's last user left it",
                    stop: false,
                };
            }
            Some(v) => {
                for (name, got) in [(rn, r), (on, o)] {
                    if *got != Obs::Word(v) && matches!(got, Obs::Word(_)) {
                        return Divergent(format!(
                            "page_index(pg{}) on the {name} kernel is {got}, but the driver set it to {v:#x}\n",
                            page.0
                        ));
                    }
                }
            }
        }
    }
    // What the driver knows of its own page: vmalloc hands out order-0 pages
    // with one reference and no mapping (the page allocator checks both at
    // free and at allocation), so page_count() is one plus the driver's
    // get_page()s and page->mapping what the driver last stored — on every
    // kernel, whatever the two show.
    let known = match op {
        Op::PageCount { page } => Some((
            *page,
            "page_count",
            Obs::Count(1 + x.driver.page(*page).refs as i32),
        )),
        Op::PageMapping { page } => {
            Some((*page, "->mapping", Obs::Word(x.driver.page(*page).mapping)))
        }
        _ => None,
    };
    if let Some((page, what, want)) = known {
        for (name, got) in [(rn, r), (on, o)] {
            if matches!(got, Obs::Count(_) | Obs::Word(_)) && *got != want {
                return Divergent(format!(
                    "{what} of pg{} on the {name} kernel is {got}, where the driver's own references and stores make it {want}\n",
                    page.0
                ));
            }
        }
    }
    if let Op::PagePrivate { page } = op {
        // The page allocator hands out pages with private == 0 (post_alloc_hook;
        // since the 2026 fix also for split subpages): the driver's own value
        // or 0 is the only right answer.
        let want = x.driver.page(*page).private.unwrap_or(0);
        for (name, got) in [(rn, r), (on, o)] {
            if matches!(got, Obs::Word(w) if *w != want) {
                return Divergent(format!(
                    "page_private(pg{}) on the {name} kernel is {got}, where it should be {want:#x}: a value the driver never stored\n",
                    page.0
                ));
            }
        }
    }
    match op {
        Op::DirectMapStats => {
            return Incomparable {
                why: "direct-map counters are each kernel's own: the layouts split different leaves",
                stop: false,
            };
        }
        Op::StaleVread { .. } if r != o || matches!(r, Obs::Bytes(_)) => {
            return Incomparable {
                why: "a stale pointer into a freed area reads whatever reuses the range, and the kernels reuse it at different times (the optimised one after a lazy purge)",
                stop: false,
            };
        }
        Op::SetMemory {
            area, off, pages, ..
        } if r != o && off + *pages as u64 * PAGE_SIZE > page_align(x.driver.size(*area)) => {
            return Incomparable {
                why: "the range runs past the size asked for: where the mapping ends depends on the kernel's rounding (huge pages)",
                stop: false,
            };
        }
        _ => {}
    }
    // A jump into a program's own text lands at the offset it was aimed at.
    if let Op::ProgProbe { prog, off } = op {
        for (name, got) in [(rn, r), (on, o)] {
            if let Obs::Landing(Landing::OwnText(k)) = got {
                if i64::from(*k) != i64::from(*off) {
                    return Divergent(format!(
                        "a jump to prog{} {off:+} on the {name} kernel {got}\n",
                        prog.0
                    ));
                }
            }
        }
    }
    match (r, o) {
        (Obs::Err(a), Obs::Err(b)) if a == b => BothFailedAlike,
        (Obs::Err(Errno::Enomem), Obs::Ok) | (Obs::Ok, Obs::Err(Errno::Enomem)) => {
            let who = if matches!(r, Obs::Err(_)) { rn } else { on };
            if within_budget {
                Divergent(format!(
                    "the {who} kernel ran out of memory within the declared memory budget\n"
                ))
            } else {
                Incomparable {
                    why: "ENOMEM on one side, outside the declared memory budget",
                    stop: true,
                }
            }
        }
        // Both kernels' runs of one program fetched exactly its text: equal
        // without materialising it (the arm below would find the same).
        (Obs::Text(ra), Obs::Text(oa)) if ra == oa => Equal,
        (Obs::Bytes(_) | Obs::Text(_), Obs::Bytes(_) | Obs::Text(_)) => {
            let (a, b) = (r.bytes().expect("bytes"), o.bytes().expect("bytes"));
            let (a, b) = (&a[..], &b[..]);
            match op {
                Op::Vread { area, off, .. } => {
                    for (name, got) in [(rn, a), (on, b)] {
                        if let Some(mm) = shadow.check(*area, *off, got) {
                            return Divergent(format!(
                                "the {name} kernel read {:#04x} at v{} + {:#x} where the driver had written {:#04x}\n",
                                mm.got, area.0, mm.off, mm.expected
                            ));
                        }
                    }
                    Equal
                }
                _ if a == b => Equal,
                _ => Divergent(first_difference(names, a, b)),
            }
        }
        (Obs::Landing(a), Obs::Landing(b)) => {
            if a == b {
                Equal
            } else if matches!(a, Landing::OwnText(_)) || matches!(b, Landing::OwnText(_)) {
                Divergent(format!(
                    "a jump into the program's own text: {rn} {a}, {on} {b}\n"
                ))
            } else if a.is_bug() != b.is_bug() {
                Divergent(format!("the same jump: {rn} {a}, {on} {b}\n"))
            } else {
                Incomparable {
                    why: "the jump lands outside the program's own text, where the layouts differ",
                    stop: false,
                }
            }
        }
        (Obs::Fault(_), Obs::Fault(_)) | (Obs::Oopsed, Obs::Oopsed) if r == o => BothFailedAlike,
        _ if r == o => Equal,
        _ => Divergent(format!("{rn}: {r}; {on}: {o}\n")),
    }
}

fn first_difference([an, bn]: [&str; 2], a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "the bytes differ first at +{i}: {an} {:#04x}, {bn} {:#04x}\n",
            a[i], b[i]
        ),
        None => format!("the lengths differ: {an} {}, {bn} {}\n", a.len(), b.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::op::{AreaId, PageId, ProgId};
    use crate::kernel::{SetMemory, Text, VmallocFlags};
    use crate::machine::oops::FaultCause;

    const V0: AreaId = AreaId(0);

    /// Compares `r` with `o` for `op`, the driver having allocated a 16 KiB
    /// area v0 (and taken one page handle of it) and nothing else.
    fn cmp(op: &Op, r: Obs, o: Obs, within_budget: bool) -> Comparison {
        let mut driver = Driver::default();
        for op in [
            Op::Vmalloc {
                size: 16 << 10,
                flags: VmallocFlags::default(),
            },
            Op::VmallocToPage { area: V0, off: 0 },
        ] {
            driver.observe(&op);
        }
        let shadow = Shadow::default();
        let x = Expect {
            shadow: &shadow,
            driver: &driver,
            within_budget,
        };
        compare(op, &r, &o, &x)
    }

    fn divergent(c: &Comparison) -> bool {
        matches!(c, Comparison::Divergent(_))
    }

    #[test]
    fn failures_compare_by_what_failed() {
        let alloc = Op::Vmalloc {
            size: 4096,
            flags: VmallocFlags::default(),
        };
        let (enomem, einval) = (Obs::Err(Errno::Enomem), Obs::Err(Errno::Einval));
        use Comparison::*;
        assert_eq!(
            cmp(&alloc, enomem.clone(), enomem.clone(), true),
            BothFailedAlike
        );
        assert!(divergent(&cmp(&alloc, enomem.clone(), einval, true)));
        assert!(divergent(&cmp(&alloc, Obs::Ok, enomem.clone(), true)));
        assert!(matches!(
            cmp(&alloc, enomem, Obs::Ok, false),
            Incomparable { stop: true, .. }
        ));
        let run = Op::ProgRun { prog: ProgId(0) };
        let fault = |c| Obs::Fault(c);
        assert_eq!(
            cmp(
                &run,
                fault(FaultCause::NotPresent),
                fault(FaultCause::NotPresent),
                true
            ),
            BothFailedAlike
        );
        assert!(divergent(&cmp(
            &run,
            fault(FaultCause::NotPresent),
            fault(FaultCause::ExecNx),
            true
        )));
        assert_eq!(cmp(&run, Obs::Oopsed, Obs::Oopsed, true), BothFailedAlike);
        assert!(divergent(&cmp(&run, Obs::Oopsed, Obs::Ok, true)));
    }

    #[test]
    fn program_texts_compare_by_their_bytes() {
        let run = Op::ProgRun { prog: ProgId(0) };
        let (a, b) = (Text::new(1, 5000), Text::new(2, 5000));
        assert_eq!(
            cmp(&run, Obs::Text(a), Obs::Text(a), true),
            Comparison::Equal
        );
        assert!(divergent(&cmp(&run, Obs::Text(a), Obs::Text(b), true)));
        assert_eq!(
            cmp(&run, Obs::Text(a), Obs::Bytes(a.to_vec()), true),
            Comparison::Equal
        );
        // A divergence names the first byte that differs, or the lengths.
        let (x, y) = (a.to_vec(), b.to_vec());
        let i = x.iter().zip(&y).position(|(p, q)| p != q).unwrap();
        assert_eq!(
            cmp(&run, Obs::Text(a), Obs::Text(b), true),
            Comparison::Divergent(format!(
                "the bytes differ first at +{i}: reference {:#04x}, optimised {:#04x}\n",
                x[i], y[i]
            ))
        );
        assert_eq!(
            cmp(&run, Obs::Text(a), Obs::Bytes(x[..100].to_vec()), true),
            Comparison::Divergent("the lengths differ: reference 5000, optimised 100\n".into())
        );
    }

    #[test]
    fn per_kernel_observations_are_incomparable_and_stale_faults_equal() {
        let stats = Op::DirectMapStats;
        let d = Obs::DirectMap(Default::default());
        assert!(matches!(
            cmp(&stats, d.clone(), d, true),
            Comparison::Incomparable { stop: false, .. }
        ));
        let stale = Op::StaleVread {
            area: V0,
            off: 0,
            len: 1,
        };
        let gone = Obs::NoAccess(FaultCause::NotPresent);
        assert_eq!(
            cmp(&stale, gone.clone(), gone.clone(), true),
            Comparison::Equal
        );
        for (r, o) in [
            (gone.clone(), Obs::Bytes(vec![1])),
            (Obs::Bytes(vec![1]), Obs::Bytes(vec![1])),
        ] {
            assert!(matches!(
                cmp(&stale, r, o, true),
                Comparison::Incomparable { stop: false, .. }
            ));
        }
    }

    /// A `set_memory_*` that fails on one kernel only is a divergence inside
    /// the size asked for, incomparable past it (the huge rounding).
    #[test]
    fn set_memory_past_the_size_asked_for_is_incomparable() {
        let call = |off: u64, pages: u32| Op::SetMemory {
            area: V0,
            off,
            pages,
            change: SetMemory::Ro,
        };
        let (ok, fault) = (Obs::Ok, Obs::Err(Errno::Efault));
        assert!(divergent(&cmp(
            &call(0, 4),
            ok.clone(),
            fault.clone(),
            true
        )));
        assert!(divergent(&cmp(
            &call(0x3000, 1),
            fault.clone(),
            ok.clone(),
            true
        )));
        for c in [call(0, 5), call(0x3000, 2), call(0x4000, 1)] {
            assert!(matches!(
                cmp(&c, fault.clone(), ok.clone(), true),
                Comparison::Incomparable { stop: false, .. }
            ));
        }
        assert_eq!(
            cmp(&call(0, 5), fault.clone(), fault, true),
            Comparison::BothFailedAlike
        );
        assert_eq!(cmp(&call(0, 4), ok.clone(), ok, true), Comparison::Equal);
    }

    #[test]
    fn page_reads_are_checked_against_the_driver() {
        let pg = PageId(0);
        let count = Op::PageCount { page: pg };
        assert_eq!(
            cmp(&count, Obs::Count(1), Obs::Count(1), true),
            Comparison::Equal
        );
        assert!(divergent(&cmp(&count, Obs::Count(2), Obs::Count(2), true)));
        let mapping = Op::PageMapping { page: pg };
        assert_eq!(
            cmp(&mapping, Obs::Word(0), Obs::Word(0), true),
            Comparison::Equal
        );
        assert!(divergent(&cmp(&mapping, Obs::Word(1), Obs::Word(1), true)));
        let private = Op::PagePrivate { page: pg };
        assert!(divergent(&cmp(&private, Obs::Word(0), Obs::Word(5), true)));
        let probe = Op::ProgProbe {
            prog: ProgId(0),
            off: 7,
        };
        let own = |k| Obs::Landing(Landing::OwnText(k));
        assert_eq!(cmp(&probe, own(7), own(7), true), Comparison::Equal);
        assert!(divergent(&cmp(&probe, own(0), own(0), true)));
        let index = Op::PageIndex { page: pg };
        assert!(matches!(
            cmp(&index, Obs::Word(3), Obs::Word(4), true),
            Comparison::Incomparable { .. }
        ));
    }
}
