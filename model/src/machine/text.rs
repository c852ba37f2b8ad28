//! Program text as a value: what the JIT emits for one program, given by a
//! seed and a length, its bytes computed wherever something reads them.
//!
//! The bytes look like x86 (`nop5; push rbp; mov rbp,rsp`, a body of odd
//! bytes, `leave; ret`) and are never 0xCC, so that INT3 padding and text
//! cannot be confused. The body is an xorshift64 stream: word `w` of the text
//! is the `w + 1`-th state after the seed, with every byte made odd. Since
//! xorshift is linear, any word can be reached in about twenty steps
//! ([`jump_by`]), so a frame that holds a page of a text holds just the text
//! and an offset ([`Content::Text`](super::frames::Content::Text)), and a
//! megabyte program costs nothing until somebody reads its bytes — which the
//! JIT's partial first and last pages do, and the CPU running it does not
//! (a frame that holds the text it is compared with is the same value).

const PROLOGUE: [u8; 9] = [0x0f, 0x1f, 0x44, 0x00, 0x00, 0x55, 0x48, 0x89, 0xe5];
const EPILOGUE: [u8; 2] = [0xc9, 0xc3];
/// Every body byte is odd: never 0xCC, and no per-byte branch.
const ODD: u64 = 0x0101_0101_0101_0101;

/// A program's text: `len` bytes made from `seed`. Two texts are equal as
/// values when made from the same seed and length, which implies equal bytes
/// (the converse fails only for texts too short to get past the prologue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Text {
    seed: u64,
    len: u32,
}

impl Text {
    pub const fn new(seed: u64, len: u32) -> Text {
        Text { seed, len }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes `off..off + buf.len()` of the text.
    pub fn read(&self, off: usize, buf: &mut [u8]) {
        let end = off + buf.len();
        assert!(
            end <= self.len(),
            "{off}..{end} is past a text of {}",
            self.len
        );
        if buf.is_empty() {
            return;
        }
        // The stream from the word that holds byte `off`: the rest of that
        // word, the whole words, then the start of the last one.
        let mut x = jump_by(self.seed, (off / 8) as u64);
        let head = (off.next_multiple_of(8) - off).min(buf.len());
        let (first, rest) = buf.split_at_mut(head);
        if !first.is_empty() {
            x = xorshift(x);
            let skip = off % 8;
            first.copy_from_slice(&(x | ODD).to_le_bytes()[skip..skip + head]);
        }
        let whole = rest.len() / 8 * 8;
        let (words, tail) = rest.split_at_mut(whole);
        x = xorshift_fill(x, words);
        if !tail.is_empty() {
            let n = tail.len();
            tail.copy_from_slice(&(xorshift(x) | ODD).to_le_bytes()[..n]);
        }
        let len = self.len();
        let prologue = (0, &PROLOGUE[..PROLOGUE.len().min(len)]);
        let epilogue =
            (len >= PROLOGUE.len() + EPILOGUE.len()).then(|| (len - EPILOGUE.len(), &EPILOGUE[..]));
        for (at, fixed) in [Some(prologue), epilogue].into_iter().flatten() {
            let (lo, hi) = (at.max(off), (at + fixed.len()).min(end));
            if lo < hi {
                buf[lo - off..hi - off].copy_from_slice(&fixed[lo - at..hi - at]);
            }
        }
    }

    /// Byte `i` of the text.
    pub fn byte(&self, i: usize) -> u8 {
        let mut b = [0];
        self.read(i, &mut b);
        b[0]
    }

    /// All of the text's bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len()];
        self.read(0, &mut v);
        v
    }

    /// Are bytes `off..off + data.len()` of the text `data`?
    pub fn holds(&self, off: usize, data: &[u8]) -> bool {
        const PIECE: usize = 4096;
        let mut buf = [0u8; PIECE];
        data.chunks(PIECE).enumerate().all(|(i, d)| {
            self.read(off + i * PIECE, &mut buf[..d.len()]);
            buf[..d.len()] == *d
        })
    }
}

/// One step of xorshift64 (13, 7, 17): a linear map on 64-bit words.
const fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// A linear map on 64-bit words as the images of the 64 unit vectors.
type Matrix = [u64; 64];

const fn apply(m: &Matrix, mut x: u64) -> u64 {
    let mut y = 0;
    while x != 0 {
        y ^= m[x.trailing_zeros() as usize];
        x &= x - 1;
    }
    y
}

/// Words a text can have, as a power of two (texts are under 4 GiB).
const POW_BITS: usize = 29;

/// `POW[b]` is [`xorshift`] applied `2^b` times.
const POW: [Matrix; POW_BITS] = {
    let mut pow = [[0u64; 64]; POW_BITS];
    let mut j = 0;
    while j < 64 {
        pow[0][j] = xorshift(1 << j);
        j += 1;
    }
    let mut b = 1;
    while b < POW_BITS {
        let mut j = 0;
        while j < 64 {
            pow[b][j] = apply(&pow[b - 1], pow[b - 1][j]);
            j += 1;
        }
        b += 1;
    }
    pow
};

/// The xorshift state `n` steps after `x`, in one matrix step per bit of `n`.
fn jump_by(mut x: u64, n: u64) -> u64 {
    let mut bits = n;
    while bits != 0 {
        x = apply(&POW[bits.trailing_zeros() as usize], x);
        bits &= bits - 1;
    }
    x
}

/// Fills `out` (a multiple of 8 bytes), word `i` little-endian, with the
/// `i + 1`-th xorshift state after `seed`, odd bytes only. Returns the last
/// state (`seed` if `out` is empty).
fn xorshift_fill(seed: u64, out: &mut [u8]) -> u64 {
    debug_assert_eq!(out.len() % 8, 0);
    let mut x = seed;
    for word in out.chunks_exact_mut(8) {
        x = xorshift(x);
        word.copy_from_slice(&(x | ODD).to_le_bytes());
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text the slow way: the serial stream, then prologue and epilogue.
    fn serial(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed;
        let mut t: Vec<u8> = (0..len.div_ceil(8))
            .flat_map(|_| {
                x = xorshift(x);
                (x | ODD).to_le_bytes()
            })
            .collect();
        t.truncate(len);
        let p = PROLOGUE.len().min(len);
        t[..p].copy_from_slice(&PROLOGUE[..p]);
        if len >= PROLOGUE.len() + EPILOGUE.len() {
            t[len - 2..].copy_from_slice(&EPILOGUE);
        }
        t
    }

    #[test]
    fn texts_are_the_serial_stream_with_prologue_and_epilogue() {
        let group = 64 << 10;
        for len in [
            0,
            1,
            3,
            9,
            10,
            11,
            12,
            300,
            group - 1,
            group,
            3 * group + 77,
        ] {
            let t = Text::new(0x1234_5678_9abc_def1, len as u32);
            assert!(
                t.to_vec() == serial(0x1234_5678_9abc_def1, len),
                "{len} bytes"
            );
        }
        let t = Text::new(5, 300).to_vec();
        assert_eq!(&t[..9], &PROLOGUE);
        assert_eq!(&t[298..], &EPILOGUE);
        assert!(t.iter().all(|&b| b != 0xcc));
    }

    #[test]
    fn any_range_reads_as_the_whole_text_has_it() {
        let len = 3 * (64 << 10) + 1001;
        let t = Text::new(99, len as u32);
        let all = t.to_vec();
        for (off, n) in [
            (0, 1),
            (0, 4096),
            (5, 4096),
            (4095, 2),
            (100_003, 70_000),
            (len - 3, 3),
        ] {
            let mut buf = vec![0; n];
            t.read(off, &mut buf);
            assert!(buf == all[off..off + n], "{off}+{n}");
            assert!(t.holds(off, &all[off..off + n]));
            buf[n / 2] ^= 1;
            assert!(!t.holds(off, &buf), "{off}+{n} with a byte changed");
        }
        assert_eq!(t.byte(len - 1), 0xc3);
        assert_eq!(t.byte(4), 0x00);
        // Every way a short read can start and end inside, or across, words.
        for off in 0..24 {
            for n in 0..24 {
                let mut buf = vec![0; n];
                t.read(off, &mut buf);
                assert!(buf == all[off..off + n], "{off}+{n}");
            }
        }
    }

    #[test]
    fn jumps_are_steps() {
        let mut x = 0xdead_beef;
        for n in 0..3000u64 {
            assert_eq!(jump_by(0xdead_beef, n), x, "{n}");
            x = xorshift(x);
        }
    }

    #[test]
    fn only_a_text_of_no_bytes_is_empty() {
        assert!(Text::new(7, 0).is_empty());
        assert!(!Text::new(7, 1).is_empty());
    }
}
