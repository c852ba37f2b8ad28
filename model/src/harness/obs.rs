//! Observations: what one op shows, on the abstract level (handles, bytes,
//! trap-vs-run), never addresses or pfns, so that two kernels can be compared.

use std::fmt;

use super::op::HandleKind;
use crate::kernel::{Errno, Landing};
use crate::machine::oops::FaultCause;

/// What one op returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Obs {
    /// Done; nothing to see (an allocation that succeeded, a store, a free).
    Ok,
    /// The call failed and said so.
    Err(Errno),
    /// Bytes read (`vread`) or fetched (`bpf_prog_run`).
    Bytes(Vec<u8>),
    /// `page_count()`.
    Count(i32),
    /// A word read from a `struct page`.
    Word(u64),
    /// Where a jump landed.
    Landing(Landing),
    /// The op's own memory access faulted (an oops).
    Fault(FaultCause),
    /// The op ended in an oops before producing its value.
    Oopsed,
    /// The op was not run: the object it names was never created because its
    /// allocation failed.
    Skipped(HandleKind, u32),
}

impl fmt::Display for Obs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obs::Ok => f.write_str("ok"),
            Obs::Err(e) => write!(f, "-{}", e.name()),
            Obs::Bytes(b) => {
                for x in b.iter().take(12) {
                    write!(f, "{x:02x}")?;
                }
                if b.len() > 12 {
                    write!(f, "… ({} bytes)", b.len())?;
                }
                Ok(())
            }
            Obs::Count(n) => write!(f, "{n}"),
            Obs::Word(0) => f.write_str("NULL"),
            Obs::Word(w) => write!(f, "{w:#x}"),
            Obs::Landing(l) => write!(f, "{l}"),
            Obs::Fault(c) => write!(f, "oops: page fault ({})", c.name()),
            Obs::Oopsed => f.write_str("oops"),
            Obs::Skipped(k, id) => write!(f, "skipped ({}{id} was not allocated)", k.prefix()),
        }
    }
}
