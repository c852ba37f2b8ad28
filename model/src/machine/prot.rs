//! Page protections as the three x86 bits that matter here.

use std::fmt;

/// `_PAGE_PRESENT`, `_PAGE_RW` and `_PAGE_NX` of a leaf entry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Prot(u8);

impl Prot {
    pub const NONE: Prot = Prot(0);
    /// `_PAGE_PRESENT`.
    pub const PRESENT: Prot = Prot(1);
    /// `_PAGE_RW`.
    pub const RW: Prot = Prot(2);
    /// `_PAGE_NX`.
    pub const NX: Prot = Prot(4);
    /// `PAGE_KERNEL`: present, writable, not executable.
    pub const PAGE_KERNEL: Prot = Prot(1 | 2 | 4);
    /// `PAGE_KERNEL_RO`.
    pub const PAGE_KERNEL_RO: Prot = Prot(1 | 4);
    /// `PAGE_KERNEL_ROX`.
    pub const PAGE_KERNEL_ROX: Prot = Prot(1);

    pub const fn union(self, o: Prot) -> Prot {
        Prot(self.0 | o.0)
    }
    pub const fn without(self, o: Prot) -> Prot {
        Prot(self.0 & !o.0)
    }
    pub const fn contains(self, o: Prot) -> bool {
        self.0 & o.0 == o.0
    }
    /// `(prot & ~clr) | set`, as CPA applies its masks.
    pub const fn apply(self, set: Prot, clr: Prot) -> Prot {
        self.without(clr).union(set)
    }
    pub const fn present(self) -> bool {
        self.contains(Prot::PRESENT)
    }
    pub const fn writable(self) -> bool {
        self.present() && self.contains(Prot::RW)
    }
    pub const fn executable(self) -> bool {
        self.present() && !self.contains(Prot::NX)
    }
    /// Writable and executable at once: what W^X forbids.
    pub const fn is_wx(self) -> bool {
        self.writable() && self.executable()
    }
    pub(crate) const fn bits(self) -> u8 {
        self.0
    }
    pub(crate) const fn from_bits(b: u8) -> Prot {
        Prot(b & 7)
    }
}

impl fmt::Debug for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Prot {
    /// `RW-`, `R-X`, `---` (not present) like a `ptdump` line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.present() {
            return f.write_str("---");
        }
        let w = if self.contains(Prot::RW) { 'W' } else { '-' };
        let x = if self.contains(Prot::NX) { '-' } else { 'X' };
        write!(f, "R{w}{x}")
    }
}
