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
    use Comparison::*;
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
                for (name, got) in [("reference", r), ("optimised", o)] {
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
        for (name, got) in [("reference", r), ("optimised", o)] {
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
        for (name, got) in [("reference", r), ("optimised", o)] {
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
    match (r, o) {
        (Obs::Err(a), Obs::Err(b)) if a == b => BothFailedAlike,
        (Obs::Err(Errno::Enomem), Obs::Ok) | (Obs::Ok, Obs::Err(Errno::Enomem)) => {
            let who = if matches!(r, Obs::Err(_)) {
                "reference"
            } else {
                "optimised"
            };
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
        // Both kernels' runs of one program fetched exactly its text.
        (Obs::Text(a), Obs::Text(b)) if a == b => Equal,
        (Obs::Bytes(_) | Obs::Text(_), Obs::Bytes(_) | Obs::Text(_)) => {
            let (a, b) = (r.bytes().expect("bytes"), o.bytes().expect("bytes"));
            let (a, b) = (&a[..], &b[..]);
            match op {
                Op::Vread { area, off, .. } => {
                    for (name, got) in [("reference", a), ("optimised", b)] {
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
                _ => Divergent(first_difference(a, b)),
            }
        }
        (Obs::Landing(a), Obs::Landing(b)) => {
            if a == b {
                Equal
            } else if matches!(a, Landing::OwnText(_)) || matches!(b, Landing::OwnText(_)) {
                Divergent(format!(
                    "a jump into the program's own text: reference {a}, optimised {b}\n"
                ))
            } else if a.is_bug() != b.is_bug() {
                Divergent(format!("the same jump: reference {a}, optimised {b}\n"))
            } else {
                Incomparable {
                    why: "the jump lands outside the program's own text, where the layouts differ",
                    stop: false,
                }
            }
        }
        (Obs::Fault(_), Obs::Fault(_)) | (Obs::Oopsed, Obs::Oopsed) if r == o => BothFailedAlike,
        _ if r == o => Equal,
        _ => Divergent(format!("reference: {r}; optimised: {o}\n")),
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "the bytes differ first at +{i}: reference {:#04x}, optimised {:#04x}\n",
            a[i], b[i]
        ),
        None => format!(
            "the lengths differ: reference {}, optimised {}\n",
            a.len(),
            b.len()
        ),
    }
}
