//! Program images and where a jump lands.
//!
//! A probe's result is classified, not compared raw (DESIGN §3): the program's
//! own text at `k`; another live program's text (packing differs between the
//! kernels, so this is incomparable); a live program's `bpf_binary_header`; an
//! INT3 trap; a fault; a freed program's code still executable where it was; or
//! any other byte — the last two are always a bug, whichever kernel shows them.

use std::fmt;

use super::Prog;
use crate::machine::Machine;
use crate::machine::oops::FaultCause;
use crate::machine::text::Text;

/// What a loaded program looks like in executable memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Address of the `bpf_binary_header` (the start of the allocation).
    pub header: u64,
    /// Bytes of the header that carry data (the `u32` size/pages field); the
    /// rest of the header is INT3 padding.
    pub header_len: u64,
    /// Where the text starts (the header's end plus the random lead-in hole).
    pub text_start: u64,
    /// The program text as the JIT produced it.
    pub text: Text,
    /// Bytes the allocation spans, from `header` (chunks or pages).
    pub alloc_size: u64,
}

impl Image {
    pub fn text_range(&self) -> std::ops::Range<u64> {
        self.text_start..self.text_start + self.text.len() as u64
    }

    pub fn header_range(&self) -> std::ops::Range<u64> {
        self.header..self.header + self.header_len
    }

    /// The byte the image holds at `addr`, if `addr` is in its text.
    pub fn text_byte(&self, addr: u64) -> Option<u8> {
        self.text_range()
            .contains(&addr)
            .then(|| self.text.byte((addr - self.text_start) as usize))
    }
}

/// A program image and whether the program is still loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSlot {
    pub image: Image,
    pub live: bool,
}

/// Where a jump lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Landing {
    /// The probed program's own text, at offset `k`.
    OwnText(u32),
    /// Another live program's text.
    OtherText,
    /// A live program's `bpf_binary_header` data.
    Header,
    /// An INT3 (0xCC): the jump traps.
    Int3,
    /// The fetch faults.
    Fault(FaultCause),
    /// A freed program's code, still there and executable, at its offset `k`.
    StaleText(u32),
    /// Any other executable byte: uninitialised or stale memory.
    OtherBytes(u8),
}

impl Landing {
    /// Executing this is a bug in the kernel, whichever kernel it is.
    pub fn is_bug(self) -> bool {
        matches!(self, Landing::StaleText(_) | Landing::OtherBytes(_))
    }
}

impl fmt::Display for Landing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Landing::OwnText(k) => write!(f, "runs its own text at +{k}"),
            Landing::OtherText => f.write_str("runs another live program's text"),
            Landing::Header => f.write_str("runs a bpf_binary_header"),
            Landing::Int3 => f.write_str("INT3 trap"),
            Landing::Fault(c) => write!(f, "page fault ({})", c.name()),
            Landing::StaleText(k) => write!(f, "runs a freed program's stale code at +{k}"),
            Landing::OtherBytes(b) => write!(f, "runs other bytes ({b:#04x}...)"),
        }
    }
}

/// Classifies a jump to `addr`. `own` is the probed program, if it is live.
pub fn classify(m: &Machine, addr: u64, own: Option<Prog>, images: &[ImageSlot]) -> Landing {
    let byte = match m.probe_fetch(addr) {
        Ok(b) => b,
        Err(f) => return Landing::Fault(f.cause),
    };
    for (i, slot) in images.iter().enumerate().filter(|(_, s)| s.live) {
        if let Some(expected) = slot.image.text_byte(addr) {
            if byte != expected {
                return Landing::OtherBytes(byte);
            }
            return if own == Some(Prog(i as u32)) {
                Landing::OwnText((addr - slot.image.text_start) as u32)
            } else {
                Landing::OtherText
            };
        }
        if slot.image.header_range().contains(&addr) {
            return Landing::Header;
        }
    }
    if byte == 0xcc {
        return Landing::Int3;
    }
    let stale = images
        .iter()
        .rev()
        .filter(|s| !s.live)
        .find(|s| s.image.text_byte(addr) == Some(byte));
    match stale {
        Some(s) => Landing::StaleText((addr - s.image.text_start) as u32),
        None => Landing::OtherBytes(byte),
    }
}
