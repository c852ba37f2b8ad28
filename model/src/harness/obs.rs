//! Observations: what one op shows, on the abstract level (handles, bytes,
//! trap-vs-run), never addresses or pfns, so that two kernels can be compared.

use std::borrow::Cow;
use std::fmt;

use super::op::HandleKind;
use crate::kernel::{Errno, Fetched, Landing, Text};
use crate::machine::direct_map::DirectMapStats;
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
    /// Bytes as a run keeps them once compared and checked ([`Obs::compact`]).
    Digest(Digest),
    /// A long program run (over [`Obs::COMPACT_OVER`] bytes) that fetched
    /// exactly the program's text: these bytes, kept as the text
    /// ([`Obs::fetched`]).
    Text(Text),
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
    /// A stale pointer's load would fault there (probed, not an oops).
    NoAccess(FaultCause),
    /// The direct map's counters.
    DirectMap(DirectMapStats),
}

/// Bytes of a byte observation that reports show.
const SHOWN: usize = 12;

/// A long byte observation without its bytes: what a report shows of it (the
/// first bytes and the length) and a hash, so that two of them compare equal
/// exactly when their bytes (almost surely) did. A program run can fetch
/// megabytes, and a run keeps every step's observations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    head: [u8; SHOWN],
    len: usize,
    hash: u64,
}

impl Digest {
    /// The length of the bytes it stands for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never: only long observations are kept as digests.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first bytes.
    pub fn head(&self) -> &[u8] {
        &self.head
    }
}

impl Obs {
    /// What a program run shows: its bytes, or the text itself when it
    /// fetched exactly that and is long. Like [`Obs::Digest`], a long run's
    /// observation is never [`Obs::Bytes`], so that equal bytes are never
    /// two variants.
    pub fn fetched(f: Fetched) -> Obs {
        match f {
            Fetched::Text(t) if t.len() > Self::COMPACT_OVER => Obs::Text(t),
            Fetched::Text(t) => Obs::Bytes(t.to_vec()),
            Fetched::Bytes(b) => Obs::Bytes(b),
        }
    }

    /// The bytes of a byte observation that still has them.
    pub fn bytes(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Obs::Bytes(b) => Some(Cow::Borrowed(b)),
            Obs::Text(t) => Some(Cow::Owned(t.to_vec())),
            _ => None,
        }
    }

    /// Byte observations longer than [`Obs::COMPACT_OVER`] become a
    /// [`Digest`]; everything else stays. For after the op's comparison and
    /// oracles, which need the bytes.
    pub fn compact(&mut self) {
        if let Obs::Bytes(b) = self {
            if b.len() > Self::COMPACT_OVER {
                *self = Obs::Digest(Digest {
                    head: b[..SHOWN].try_into().expect("long enough"),
                    len: b.len(),
                    hash: hash_bytes(b),
                });
            }
        }
    }

    /// See [`Obs::compact`].
    pub const COMPACT_OVER: usize = 4096;
}

/// A 64-bit hash of `b`, a word at a time (FNV-style multiply, with a final
/// mix): deterministic on every machine.
fn hash_bytes(b: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ b.len() as u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    for &x in words.remainder() {
        h = (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The first bytes of a byte observation, and its length if there are more.
fn show_bytes(f: &mut fmt::Formatter<'_>, head: &[u8], len: usize) -> fmt::Result {
    for x in head {
        write!(f, "{x:02x}")?;
    }
    if len > head.len() {
        write!(f, "… ({len} bytes)")?;
    }
    Ok(())
}

impl fmt::Display for Obs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Obs::Ok => f.write_str("ok"),
            Obs::Err(e) => write!(f, "-{}", e.name()),
            Obs::Bytes(b) => show_bytes(f, &b[..b.len().min(SHOWN)], b.len()),
            Obs::Text(t) => {
                let mut head = [0; SHOWN];
                t.read(0, &mut head);
                show_bytes(f, &head, t.len())
            }
            Obs::Digest(d) => show_bytes(f, &d.head, d.len),
            Obs::Count(n) => write!(f, "{n}"),
            Obs::Word(0) => f.write_str("NULL"),
            Obs::Word(w) => write!(f, "{w:#x}"),
            Obs::Landing(l) => write!(f, "{l}"),
            Obs::Fault(c) => write!(f, "oops: page fault ({})", c.name()),
            Obs::Oopsed => f.write_str("oops"),
            Obs::Skipped(k, id) => write!(f, "skipped ({}{id} was not allocated)", k.prefix()),
            Obs::NoAccess(c) => write!(f, "page fault ({})", c.name()),
            Obs::DirectMap(d) => write!(
                f,
                "4k:{}K 2M:{}K 1G:{}K l2:{} l3:{}",
                d.directmap_4k_kb,
                d.directmap_2m_kb,
                d.directmap_1g_kb,
                d.direct_map_level2_splits,
                d.direct_map_level3_splits
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_bytes_show_and_compare_as_the_bytes_did() {
        let long: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut other = long.clone();
        *other.last_mut().unwrap() ^= 1;
        let (mut a, mut b, mut c) = (
            Obs::Bytes(long.clone()),
            Obs::Bytes(long.clone()),
            Obs::Bytes(other),
        );
        let shown = a.to_string();
        for o in [&mut a, &mut b, &mut c] {
            o.compact();
            assert!(matches!(o, Obs::Digest(_)));
        }
        assert_eq!(a.to_string(), shown);
        assert_eq!(a, b);
        assert_ne!(a, c, "a difference in the last byte");
        let mut short = Obs::Bytes(long[..Obs::COMPACT_OVER].to_vec());
        short.compact();
        assert!(matches!(short, Obs::Bytes(_)));
    }
}
