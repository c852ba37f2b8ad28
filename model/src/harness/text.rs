//! The "JIT": the text of every program a trace loads, made from its id and
//! length alone ([`Text`] computes the bytes).

use super::op::ProgId;
use crate::kernel::Text;

/// The text of program `id`, `len` bytes: different for every program.
pub fn prog_text(id: ProgId, len: u32) -> Text {
    Text::new(0x243f_6a88_85a3_08d3 ^ ((id.0 as u64) << 32), len)
}

/// The text of subprogram `i` of a multi-subprogram load (never a live
/// program's: the ids count down from the top).
pub fn subprog_text(i: usize, len: u32) -> Text {
    prog_text(ProgId(u32::MAX - i as u32), len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prog_text_differs_per_program_and_never_int3() {
        let a = prog_text(ProgId(0), 300).to_vec();
        let b = prog_text(ProgId(1), 300).to_vec();
        assert_ne!(a, b);
        assert_eq!(&a[..9], &b[..9]);
        assert_eq!(&a[298..], &[0xc9, 0xc3]);
        assert!(a.iter().chain(b.iter()).all(|&x| x != 0xcc));
        assert_eq!(&prog_text(ProgId(0), 3).to_vec()[..], &[0x0f, 0x1f, 0x44]);
        assert_eq!(
            prog_text(ProgId(1), 300).to_vec(),
            b,
            "the kept text is the same"
        );
        assert_eq!(&prog_text(ProgId(1), 299).to_vec()[..297], &b[..297]);
        assert_ne!(subprog_text(0, 300).to_vec(), a);
    }
}
