//! Per-pfn arrays that cost nothing until written: values are `T::default()`
//! until a chunk of `N` of them is first written, and only then is the chunk
//! allocated. A machine boots and drops in time proportional to the memory its
//! input touched, not to its size — which is most of what a fuzz execution
//! costs otherwise.

/// `len` values of `T`, default until written, stored in chunks of `N`.
#[derive(Clone, Debug)]
pub struct LazyArray<T: Copy + Default, const N: usize> {
    chunks: Vec<Option<Box<[T; N]>>>,
    len: usize,
    default: T,
}

impl<T: Copy + Default, const N: usize> Default for LazyArray<T, N> {
    /// An empty array.
    fn default() -> Self {
        Self::new(0)
    }
}

impl<T: Copy + Default, const N: usize> LazyArray<T, N> {
    pub fn new(len: usize) -> Self {
        Self {
            chunks: vec![None; len.div_ceil(N)],
            len,
            default: T::default(),
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
            Some(c) => &c[i % N],
            None => &self.default,
        }
    }

    /// The value at `i`, for writing (allocates its chunk).
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "index {i} out of {}", self.len);
        let d = self.default;
        &mut self.chunks[i / N].get_or_insert_with(|| Self::new_chunk(d))[i % N]
    }

    /// A chunk of defaults, written in place on the heap (`Box::new([d; N])`
    /// builds it on the stack and copies it over); out of line, so that the
    /// hot path of [`LazyArray::get_mut`] does not grow.
    #[cold]
    #[inline(never)]
    fn new_chunk(d: T) -> Box<[T; N]> {
        vec![d; N]
            .into_boxed_slice()
            .try_into()
            .unwrap_or_else(|_| unreachable!("a vec of N values"))
    }

    pub fn set(&mut self, i: usize, v: T) {
        *self.get_mut(i) = v;
    }

    /// Does `f` hold for any value in `range`? A chunk never written is
    /// asked once, through its default.
    pub fn any(&self, range: std::ops::Range<usize>, f: impl Fn(&T) -> bool) -> bool {
        assert!(range.end <= self.len, "range {range:?} out of {}", self.len);
        let mut i = range.start;
        while i < range.end {
            let hi = range.end.min((i / N + 1) * N);
            let hit = match &self.chunks[i / N] {
                Some(c) => c[i % N..(hi - 1) % N + 1].iter().any(&f),
                None => f(&self.default),
            };
            if hit {
                return true;
            }
            i = hi;
        }
        false
    }

    /// `f` on every value in `range`, for writing (allocates their chunks).
    pub fn update(&mut self, range: std::ops::Range<usize>, mut f: impl FnMut(&mut T)) {
        assert!(range.end <= self.len, "range {range:?} out of {}", self.len);
        let d = self.default;
        let mut i = range.start;
        while i < range.end {
            let hi = range.end.min((i / N + 1) * N);
            let c = self.chunks[i / N].get_or_insert_with(|| Self::new_chunk(d));
            c[i % N..(hi - 1) % N + 1].iter_mut().for_each(&mut f);
            i = hi;
        }
    }

    /// Chunks allocated so far (for reports and tests).
    pub fn chunks_allocated(&self) -> usize {
        self.chunks.iter().filter(|c| c.is_some()).count()
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
}
