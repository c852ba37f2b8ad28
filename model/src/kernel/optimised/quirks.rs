//! Quirks: switches that put one piece of the optimised kernel back into a
//! historical, buggy state (DESIGN §5). Names are stable — traces, snapshots and
//! `PACKMODEL_QUIRKS` use them. The default set is empty: the fixed kernel.

use std::fmt;

/// One historical bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuirkInfo {
    /// The stable name.
    pub name: &'static str,
    /// Kernel versions that had the bug.
    pub versions: &'static str,
    /// The commit(s) that fixed it.
    pub fixed_by: &'static str,
    /// What it looks like.
    pub symptom: &'static str,
}

/// Every quirk the model knows, in bit order.
pub const QUIRKS: &[QuirkInfo] = &[];

/// A set of quirks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Quirks(u32);

impl Quirks {
    /// The fixed kernel.
    pub const NONE: Quirks = Quirks(0);

    /// Is quirk number `bit` (its index in [`QUIRKS`]) on?
    pub fn has(self, bit: usize) -> bool {
        self.0 & (1 << bit) != 0
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
            match QUIRKS.iter().position(|i| i.name == n) {
                Some(bit) => q.0 |= 1 << bit,
                None => return Err(format!("unknown quirk `{n}`; {}", valid_list())),
            }
        }
        Ok(q)
    }

    /// The names in the set, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        QUIRKS
            .iter()
            .enumerate()
            .filter(|(b, _)| self.has(*b))
            .map(|(_, i)| i.name)
            .collect()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

fn valid_list() -> String {
    if QUIRKS.is_empty() {
        "no quirks are modelled yet".to_string()
    } else {
        let names: Vec<_> = QUIRKS.iter().map(|q| q.name).collect();
        format!("valid quirks: {}", names.join(", "))
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
    fn empty_and_unknown() {
        assert_eq!(Quirks::parse(""), Ok(Quirks::NONE));
        assert_eq!(Quirks::parse(" none "), Ok(Quirks::NONE));
        let e = Quirks::parse("no-such-quirk").unwrap_err();
        assert!(e.starts_with("unknown quirk `no-such-quirk`"), "{e}");
    }
}
