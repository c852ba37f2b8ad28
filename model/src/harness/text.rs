//! The "JIT": the text of every program a trace loads, made from its id and
//! length alone.

use super::op::ProgId;

/// The "JIT": the text of program `id`, `len` bytes. x86-looking (`nop5; push
/// rbp; mov rbp,rsp`, a body of odd bytes, `leave; ret`), different for every
/// program, and never 0xCC, so that INT3 padding and text cannot be confused.
pub fn prog_text(id: ProgId, len: u32) -> Vec<u8> {
    const PROLOGUE: [u8; 9] = [0x0f, 0x1f, 0x44, 0x00, 0x00, 0x55, 0x48, 0x89, 0xe5];
    const EPILOGUE: [u8; 2] = [0xc9, 0xc3];
    let len = len as usize;
    let mut t = vec![0; len.next_multiple_of(8)];
    xorshift_fill(0x243f_6a88_85a3_08d3u64 ^ ((id.0 as u64) << 32), &mut t);
    t.truncate(len);
    let p = PROLOGUE.len().min(len);
    t[..p].copy_from_slice(&PROLOGUE[..p]);
    if len >= PROLOGUE.len() + EPILOGUE.len() {
        t[len - EPILOGUE.len()..].copy_from_slice(&EPILOGUE);
    }
    t
}

/// One step of xorshift64 (13, 7, 17): a linear map on 64-bit words.
const fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Independent streams [`xorshift_fill`] interleaves, and the words each
/// makes in turn.
const LANES: usize = 8;
const SEG: usize = 1024;

/// [`xorshift`] applied `SEG` times, as the images of the 64 unit vectors:
/// it moves a stream `SEG` words ahead in 64 steps.
const JUMP: [u64; 64] = {
    let mut m = [0u64; 64];
    let mut j = 0;
    while j < 64 {
        let mut x = 1u64 << j;
        let mut k = 0;
        while k < SEG {
            x = xorshift(x);
            k += 1;
        }
        m[j] = x;
        j += 1;
    }
    m
};

fn jump(x: u64) -> u64 {
    (0..64)
        .filter(|&j| x >> j & 1 != 0)
        .fold(0, |y, j| y ^ JUMP[j])
}

/// Fills `out` (a multiple of 8 bytes), word `i` little-endian, with the
/// `i + 1`-th xorshift state after `seed`, odd bytes only (never 0xCC, and
/// no per-byte branch). The stream is serial, one step per word; long texts
/// are made [`LANES`] segments at a time, each lane started by [`jump`], so
/// that the steps of different lanes overlap — the same words, about twice
/// as fast on megabyte programs. (Into a zeroed `Vec`: `calloc` of
/// fresh memory costs nothing, where appending a buffer would copy it.)
fn xorshift_fill(seed: u64, out: &mut [u8]) {
    const ODD: u64 = 0x0101_0101_0101_0101;
    debug_assert_eq!(out.len() % 8, 0);
    let mut x = xorshift(seed);
    let mut groups = out.chunks_exact_mut(8 * LANES * SEG);
    for group in &mut groups {
        let mut lanes = [x; LANES];
        for l in 1..LANES {
            lanes[l] = jump(lanes[l - 1]);
        }
        for j in 0..SEG {
            for (l, s) in lanes.iter_mut().enumerate() {
                let at = 8 * (l * SEG + j);
                group[at..at + 8].copy_from_slice(&(*s | ODD).to_le_bytes());
                *s = xorshift(*s);
            }
        }
        x = lanes[LANES - 1];
    }
    for word in groups.into_remainder().chunks_exact_mut(8) {
        word.copy_from_slice(&(x | ODD).to_le_bytes());
        x = xorshift(x);
    }
}

/// The text of subprogram `i` of a multi-subprogram load (never a live
/// program's: the ids count down from the top).
pub fn subprog_text(i: usize, len: u32) -> Vec<u8> {
    prog_text(ProgId(u32::MAX - i as u32), len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prog_text_differs_per_program_and_never_int3() {
        let a = prog_text(ProgId(0), 300);
        let b = prog_text(ProgId(1), 300);
        assert_ne!(a, b);
        assert_eq!(&a[..9], &b[..9]);
        assert_eq!(&a[298..], &[0xc9, 0xc3]);
        assert!(a.iter().chain(b.iter()).all(|&x| x != 0xcc));
        assert_eq!(&prog_text(ProgId(0), 3)[..], &[0x0f, 0x1f, 0x44]);
        assert_eq!(prog_text(ProgId(1), 300), b, "the kept text is the same");
        assert_eq!(&prog_text(ProgId(1), 299)[..297], &b[..297]);
    }

    #[test]
    fn long_texts_are_the_serial_stream() {
        let serial = |seed: u64, words: usize| -> Vec<u8> {
            let mut x = seed;
            (0..words)
                .flat_map(|_| {
                    x = xorshift(x);
                    (x | 0x0101_0101_0101_0101).to_le_bytes()
                })
                .collect()
        };
        let group = LANES * SEG;
        for words in [0, 1, SEG, group - 1, group, group + 1, 3 * group + 77] {
            let mut out = vec![0; 8 * words];
            xorshift_fill(0x1234_5678_9abc_def1, &mut out);
            assert!(out == serial(0x1234_5678_9abc_def1, words), "{words} words");
        }
    }
}
