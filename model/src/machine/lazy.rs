//! Per-pfn arrays that cost nothing until written, and little while written
//! alike: values are `T::default()` until a chunk of `N` of them is first
//! written; a chunk that a range operation gave one value throughout keeps
//! just that value; only a chunk whose values differ is stored value by
//! value. A machine boots and drops in time proportional to the memory its
//! input touched, not to its size — which is most of what a fuzz execution
//! costs otherwise — and a run of pages that share a state (a block handed
//! out, a region's owner, a cleared range) is changed and checked a chunk at
//! a time: the extents of the state, materialised where one value differs.

use std::any::{Any, TypeId};
use std::cell::RefCell;

/// One chunk of a [`LazyArray`].
#[derive(Clone, Debug)]
enum Chunk<T, const N: usize> {
    /// Every value is this one (an unwritten chunk holds the default).
    One(T),
    /// Values of their own.
    Many(Box<[T; N]>),
}

/// Chunks stored value by value that dropped arrays left, by type, for the
/// next array of their type on this thread: a fuzz execution boots and drops
/// its machines and writes the same few hundred chunks each time, and a
/// 4 KiB `malloc()`/`free()` pair each (past glibc's per-thread cache) cost
/// more than the chunk's fill. Boxes of `dyn Any`, taken back by
/// `downcast`: no `unsafe`, and a box keeps its allocation both ways.
struct Spares {
    by_type: Vec<(TypeId, Vec<Box<dyn Any>>)>,
}

impl Spares {
    /// At most this many spare chunks of one type are kept (4 MiB of
    /// 4 KiB chunks): past it, a dropped chunk is freed.
    const MAX: usize = 1024;

    fn of<T: 'static>(&mut self) -> &mut Vec<Box<dyn Any>> {
        let id = TypeId::of::<T>();
        let i = match self.by_type.iter().position(|(t, _)| *t == id) {
            Some(i) => i,
            None => {
                self.by_type.push((id, Vec::new()));
                self.by_type.len() - 1
            }
        };
        &mut self.by_type[i].1
    }
}

thread_local! {
    static SPARES: RefCell<Spares> = const { RefCell::new(Spares { by_type: Vec::new() }) };
}

/// [`LazyArray::pieces`]: the rest of a range, cut at chunk boundaries.
struct Pieces<const N: usize>(std::ops::Range<usize>);

impl<const N: usize> Iterator for Pieces<N> {
    type Item = (usize, usize, usize);

    fn next(&mut self) -> Option<(usize, usize, usize)> {
        let i = self.0.start;
        (i < self.0.end).then(|| {
            let hi = self.0.end.min((i / N + 1) * N);
            self.0.start = hi;
            (i / N, i % N, (hi - 1) % N + 1)
        })
    }
}

/// `len` values of `T`, default until written, stored in chunks of `N`.
#[derive(Clone, Debug)]
pub struct LazyArray<T: Copy + Default + PartialEq + 'static, const N: usize> {
    chunks: Vec<Chunk<T, N>>,
    len: usize,
}

impl<T: Copy + Default + PartialEq + 'static, const N: usize> Default for LazyArray<T, N> {
    /// An empty array.
    fn default() -> Self {
        Self::new(0)
    }
}

impl<T: Copy + Default + PartialEq + 'static, const N: usize> Drop for LazyArray<T, N> {
    /// Gives the chunks stored value by value to the spares.
    fn drop(&mut self) {
        let many = self.chunks.iter().any(|c| matches!(c, Chunk::Many(_)));
        if !many {
            return;
        }
        Self::spare(self.chunks.drain(..).filter_map(|c| match c {
            Chunk::Many(b) => Some(b),
            Chunk::One(_) => None,
        }));
    }
}

impl<T: Copy + Default + PartialEq + 'static, const N: usize> LazyArray<T, N> {
    pub fn new(len: usize) -> Self {
        Self {
            chunks: vec![Chunk::One(T::default()); len.div_ceil(N)],
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value at `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        match &self.chunks[i / N] {
            Chunk::One(v) => v,
            Chunk::Many(c) => &c[i % N],
        }
    }

    /// The value at `i`, for writing (stores its chunk value by value).
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        &mut self.many(i / N)[i % N]
    }

    /// Chunk `c`, stored value by value.
    #[inline]
    fn many(&mut self, c: usize) -> &mut [T; N] {
        let chunk = &mut self.chunks[c];
        if let Chunk::One(v) = *chunk {
            *chunk = Chunk::Many(Self::new_chunk(v));
        }
        match chunk {
            Chunk::Many(values) => values,
            Chunk::One(_) => unreachable!("just stored"),
        }
    }

    /// A chunk of `v`s: a spare one filled, or one written in place on the
    /// heap (`Box::new([v; N])` builds it on the stack and copies it over);
    /// out of line, so that the hot path of [`LazyArray::get_mut`] does not
    /// grow.
    #[cold]
    #[inline(never)]
    fn new_chunk(v: T) -> Box<[T; N]> {
        let spare = SPARES.with_borrow_mut(|s| s.of::<[T; N]>().pop());
        match spare.map(|b| b.downcast::<[T; N]>()) {
            Some(Ok(mut b)) => {
                b.fill(v);
                b
            }
            _ => vec![v; N]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("a vec of N values")),
        }
    }

    /// Gives chunks' storage to the spares (freed past [`Spares::MAX`]).
    #[cold]
    fn spare(chunks: impl IntoIterator<Item = Box<[T; N]>>) {
        // A thread being torn down has no spares left to keep them in.
        let _ = SPARES.try_with(|s| {
            let mut s = s.borrow_mut();
            let spares = s.of::<[T; N]>();
            for b in chunks {
                if spares.len() < Spares::MAX {
                    spares.push(b);
                }
            }
        });
    }

    pub fn set(&mut self, i: usize, v: T) {
        if *self.get(i) != v {
            *self.get_mut(i) = v;
        }
    }

    /// The pieces of `range` by chunk: (chunk, first index in it, end).
    fn pieces(&self, range: std::ops::Range<usize>) -> Pieces<N> {
        assert!(range.end <= self.len, "range {range:?} out of {}", self.len);
        Pieces(range)
    }

    /// Does `f` hold for any value in `range`? A chunk of one value is asked
    /// once; a chunk stored value by value is asked of each in one pass with
    /// no early exit (the answer is nearly always no, and such a loop
    /// vectorises: in a fuzz build, a coverage counter bumped per pass, not
    /// per value).
    pub fn any(&self, range: std::ops::Range<usize>, f: impl Fn(&T) -> bool) -> bool {
        self.pieces(range).any(|(c, lo, hi)| match &self.chunks[c] {
            Chunk::One(v) => f(v),
            Chunk::Many(values) => values[lo..hi].iter().fold(false, |any, v| any | f(v)),
        })
    }

    /// Every value `v` in `range` becomes `f(v)`: a chunk of one value that
    /// the range covers is changed once and stays one value; where the range
    /// covers part of such a chunk and `f` changes its value, the chunk is
    /// stored value by value; a chunk stored value by value that the range
    /// covers whole is one value again if its values end equal.
    pub fn map(&mut self, range: std::ops::Range<usize>, f: impl Fn(&T) -> T) {
        for (c, lo, hi) in self.pieces(range) {
            let v = match &mut self.chunks[c] {
                Chunk::One(v) => *v,
                Chunk::Many(values) => {
                    values[lo..hi].iter_mut().for_each(|x| *x = f(x));
                    if (lo, hi) == (0, N) {
                        self.collapse(c);
                    }
                    continue;
                }
            };
            let new = f(&v);
            if new == v {
                continue;
            }
            if (lo, hi) == (0, N) {
                self.chunks[c] = Chunk::One(new);
            } else {
                self.many(c)[lo..hi].fill(new);
            }
        }
    }

    /// Chunk `c`, stored value by value, becomes one value if all of its
    /// values are equal (its storage goes to the spares).
    fn collapse(&mut self, c: usize) {
        let chunk = &mut self.chunks[c];
        let Chunk::Many(values) = chunk else { return };
        let v = values[0];
        if values.iter().any(|x| *x != v) {
            return;
        }
        if let Chunk::Many(b) = std::mem::replace(chunk, Chunk::One(v)) {
            Self::spare([b]);
        }
    }

    /// `f` on every value in `range` in turn, for writing (stores their
    /// chunks value by value): for a change that depends on where a value
    /// is, which [`LazyArray::map`] cannot make.
    pub fn update(&mut self, range: std::ops::Range<usize>, mut f: impl FnMut(&mut T)) {
        for (c, lo, hi) in self.pieces(range) {
            self.many(c)[lo..hi].iter_mut().for_each(&mut f);
        }
    }

    /// Chunks stored value by value so far (for reports and tests).
    pub fn chunks_allocated(&self) -> usize {
        (self.chunks.iter())
            .filter(|c| matches!(c, Chunk::Many(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_until_written_and_allocates_by_chunk() {
        let mut a: LazyArray<u32, 64> = LazyArray::new(1000);
        assert_eq!(*a.get(999), 0);
        assert_eq!(a.chunks_allocated(), 0);
        a.set(130, 7);
        assert_eq!(*a.get(130), 7);
        assert_eq!(*a.get(131), 0);
        assert_eq!(a.chunks_allocated(), 1);
    }

    /// A chunk a dropped array left is taken by the next array of its type
    /// and holds the value it is written from, not what it held before.
    #[test]
    fn a_spare_chunk_is_filled_before_it_is_used() {
        let before = SPARES.with_borrow_mut(|s| s.of::<[u32; 64]>().len());
        let mut a: LazyArray<u32, 64> = LazyArray::new(1024);
        a.update(0..1024, |v| *v = 0xdead);
        assert_eq!(a.chunks_allocated(), 16);
        drop(a);
        let spares = SPARES.with_borrow_mut(|s| s.of::<[u32; 64]>().len());
        assert_eq!(spares, before + 16);
        let mut b: LazyArray<u32, 64> = LazyArray::new(1024);
        b.map(0..1024, |_| 5);
        b.set(130, 7);
        let left = SPARES.with_borrow_mut(|s| s.of::<[u32; 64]>().len());
        assert_eq!(left, spares - 1, "one spare taken");
        assert!((0..1024).all(|i| *b.get(i) == if i == 130 { 7 } else { 5 }));
    }

    /// A chunk that a `map` over all of it leaves with one value is kept as
    /// that value again; one that it leaves with two, or that it covers only
    /// in part, stays stored value by value.
    #[test]
    fn a_chunk_mapped_whole_to_one_value_is_kept_once() {
        let mut a: LazyArray<u32, 64> = LazyArray::new(256);
        a.update(0..192, |v| *v = 1);
        a.set(70, 2);
        assert_eq!(a.chunks_allocated(), 3);
        a.map(0..191, |&v| if v == 2 { 2 } else { 3 });
        assert_eq!(a.chunks_allocated(), 2, "chunk 0 is one value again");
        let want = |i| match i {
            70 => 2,
            0..191 => 3,
            191 => 1,
            _ => 0,
        };
        assert!((0..256).all(|i| *a.get(i) == want(i)));
        a.map(64..192, |_| 4);
        assert_eq!(a.chunks_allocated(), 0);
        let want = |i| match i {
            0..64 => 3,
            64..192 => 4,
            _ => 0,
        };
        assert!((0..256).all(|i| *a.get(i) == want(i)));
    }

    /// Range queries and updates cross chunk boundaries and ask an unwritten
    /// chunk through its default.
    #[test]
    fn ranges_span_chunks() {
        let mut a: LazyArray<u32, 64> = LazyArray::new(1000);
        assert!(!a.any(0..1000, |&v| v != 0));
        assert!(a.any(10..20, |&v| v == 0));
        a.update(60..130, |v| *v = 3);
        assert_eq!(
            (*a.get(59), *a.get(60), *a.get(129), *a.get(130)),
            (0, 3, 3, 0)
        );
        assert_eq!(a.chunks_allocated(), 3);
        assert!(a.any(129..131, |&v| v == 3));
        assert!(!a.any(130..1000, |&v| v == 3));
        assert!(!a.any(0..60, |&v| v == 3));
        assert!(!a.any(5..5, |_| true));
    }

    /// A change that depends only on the value keeps a chunk it covers
    /// whole as one value; the chunks it covers in part are stored value by
    /// value only if the change changes something there.
    #[test]
    fn a_map_keeps_whole_chunks_of_one_value() {
        let mut a: LazyArray<u32, 64> = LazyArray::new(1000);
        a.map(64..256, |v| v + 7);
        assert_eq!(a.chunks_allocated(), 0);
        assert_eq!(
            (*a.get(63), *a.get(64), *a.get(255), *a.get(256)),
            (0, 7, 7, 0)
        );
        a.map(0..1000, |&v| if v == 7 { 7 } else { v });
        assert_eq!(a.chunks_allocated(), 0, "no change, nothing stored");
        a.map(100..300, |v| v * 2);
        assert_eq!(
            a.chunks_allocated(),
            1,
            "64..128 in part (256..320's zeros stay)"
        );
        let want = |i: usize| match i {
            64..100 => 7,
            100..256 => 14,
            _ => 0,
        };
        assert!((0..1000).all(|i| *a.get(i) == want(i)));
        a.map(0..1000, |_| 0);
        assert!(!a.any(0..1000, |&v| v != 0));
        assert_eq!(a.chunks_allocated(), 0, "64..128 is one value again");
        a.set(5, 0);
        a.map(128..192, |v| v + 1);
        a.set(130, 1);
        assert_eq!(
            a.chunks_allocated(),
            0,
            "a set of the value there stores nothing"
        );
        a.set(130, 2);
        assert_eq!((a.chunks_allocated(), *a.get(129), *a.get(130)), (1, 1, 2));
    }
}
