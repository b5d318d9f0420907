//! The one pool of reusable scratch buffers for the CPU kernels (convolution, pooling, the
//! recurrent kernel, dense).
//!
//! A training step allocates the same few large buffers (saved inputs, column matrices,
//! gradient partials) every time; taking them from fresh memory costs page faults that
//! rival the arithmetic at LeNet sizes. Buffers are returned here when dropped and handed
//! out again by size.

use std::sync::Mutex;

/// Element types with a buffer pool.
#[doc(hidden)]
pub trait Scratch: Copy + Default + Send + Sync + 'static {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>>;
}

macro_rules! scratch {
    ($($t:ty),*) => {$(
        impl Scratch for $t {
            fn pool() -> &'static Mutex<Vec<Vec<$t>>> {
                static POOL: Mutex<Vec<Vec<$t>>> = Mutex::new(Vec::new());
                &POOL
            }
        }
    )*};
}
scratch!(f32, f64, u32);

/// At most this many idle buffers are kept per element type (the largest ones win).
const KEEP: usize = 48;

/// A zero-filled `Vec` of `n` elements, reusing a pooled allocation when one is big enough.
/// Fresh multi-megabyte allocations cost page faults on every training step (glibc serves
/// them with `mmap`). Hand it back with [`give`].
pub(crate) fn take<E: Scratch>(n: usize) -> Vec<E> {
    // With the slack of a `Buf` of `n`: given back, it can serve `Buf::dirty(n)` too.
    let mut v = Buf::<E>::take(n + slack::<E>(n)).into_vec();
    v.resize(n, E::default());
    v
}

/// A `Vec` of `n` elements with unspecified (but initialised) contents, for buffers the caller
/// overwrites completely: a pooled buffer is only truncated, not zeroed.
pub(crate) fn take_dirty<E: Scratch>(n: usize) -> Vec<E> {
    Buf::<E>::dirty(n).into_vec()
}

/// Returns a buffer to the pool.
pub(crate) fn give<E: Scratch>(v: Vec<E>) {
    let len = v.len();
    drop(Buf { v, off: 0, len });
}

/// Frees every idle scratch buffer the CPU kernels keep between calls (they are reused by the
/// next training step; their total size follows the largest recent batch).
pub fn clear_scratch_buffers() {
    f32::pool().lock().unwrap_or_else(|e| e.into_inner()).clear();
    f64::pool().lock().unwrap_or_else(|e| e.into_inner()).clear();
    u32::pool().lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// A buffer from the pool, given back on drop: `len` elements of its `Vec` from `off`, the
/// first element on a 64-byte boundary (a cache line).
///
/// The `Vec` itself may be longer: a pooled buffer keeps every element it ever had initialised
/// (up to its capacity), so that [`Buf::dirty`] can hand out any length up to it without a
/// fill, whichever length it served before. It has room for [`slack`] elements more than it
/// serves, so that the elements can start on a cache line wherever `malloc` put the
/// allocation (16-byte alignment): the GEMM reads a row-major `B` in place 16 floats (a
/// cache line) per row, and from an unaligned buffer each of those reads touches two lines
/// (12–14 % slower products in the `gemm_alignment` timing test, issue 15).
pub(crate) struct Buf<E: Scratch> {
    v: Vec<E>,
    off: usize,
    len: usize,
}

/// Elements a pooled buffer holds beyond the `len` it serves, to start them on a cache line
/// (none for an empty buffer).
fn slack<E>(len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (64 / std::mem::size_of::<E>().max(1)).saturating_sub(1)
}

/// Whether buffers start on a cache line ([`crate::__private::set_cache_line_buffers`]).
pub(crate) static ALIGN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Elements to skip in `v` for its first served element (of `len`) to lie on a 64-byte
/// boundary; `v` holds at least `len + slack(len)` elements.
pub(crate) fn skip<E>(v: &[E], len: usize) -> usize {
    if !ALIGN.load(std::sync::atomic::Ordering::Relaxed) {
        return 0;
    }
    v.as_ptr().align_offset(64).min(slack::<E>(len))
}

impl<E: Scratch> Buf<E> {
    /// A buffer of `len` zeros.
    pub fn zeros(len: usize) -> Self {
        let mut b = Self::take(len + slack::<E>(len));
        b.v.resize(len + slack::<E>(len), E::default());
        b.off = skip(&b.v, len);
        b.len = len;
        b
    }

    /// A buffer of `len` elements with unspecified (initialised) contents, for buffers the
    /// caller overwrites completely: an idle buffer whose `Vec` holds at least `len`
    /// initialised elements is handed out as it is, saving the zero fill (a memset of up to
    /// megabytes per call).
    ///
    /// An idle buffer with room for `len` elements but fewer initialised ones is taken too;
    /// it is initialised to its whole capacity once (only past its old length), so that no
    /// later request it serves needs a fill.
    pub fn dirty(len: usize) -> Self {
        let need = len + slack::<E>(len);
        let mut pool = E::pool().lock().unwrap_or_else(|e| e.into_inner());
        // Among the buffers that fit, one that needs no fill first, then the smallest.
        let found = take_best_fit(&mut pool, need, |v| (v.len() < need, v.capacity()));
        drop(pool);
        let mut v = found.unwrap_or_else(|| Vec::with_capacity(need));
        if v.len() < need {
            // Fills only the elements past the current length.
            let cap = v.capacity().max(need);
            v.resize(cap, E::default());
        }
        let off = skip(&v, len);
        Buf { v, off, len }
    }

    /// The buffer as a plain `Vec` of its `len` elements (its first `len`: a `Vec` cannot
    /// start at the aligned offset; the contents of a [`Buf::dirty`] are unspecified anyway),
    /// no longer returned to the pool on drop.
    pub fn into_vec(mut self) -> Vec<E> {
        let mut v = std::mem::take(&mut self.v);
        v.truncate(self.len);
        v
    }

    /// An empty buffer with capacity for `len` elements.
    fn take(len: usize) -> Self {
        let mut pool = E::pool().lock().unwrap_or_else(|e| e.into_inner());
        let mut v = take_best_fit(&mut pool, len, Vec::capacity).unwrap_or_else(|| Vec::with_capacity(len));
        v.clear();
        Buf { v, off: 0, len }
    }
}

impl<E: Scratch> Drop for Buf<E> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.v);
        if v.capacity() == 0 {
            return;
        }
        let mut pool = E::pool().lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < KEEP {
            pool.push(v);
        } else if let Some((i, _)) = pool.iter().enumerate().min_by_key(|(_, b)| b.capacity()) {
            // keep the larger buffers
            if pool[i].capacity() < v.capacity() {
                pool[i] = v;
            }
        }
    }
}

impl<E: Scratch> std::ops::Deref for Buf<E> {
    type Target = [E];
    fn deref(&self) -> &[E] {
        &self.v[self.off..self.off + self.len]
    }
}

impl<E: Scratch> std::ops::DerefMut for Buf<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        &mut self.v[self.off..self.off + self.len]
    }
}

/// Removes from `pool` and returns the buffer that fits `n` elements best (the least `rank`),
/// if any fits. A buffer fits when its capacity holds `n` elements without being more than
/// twice that (plus [`SLACK`]): a small request never takes a large buffer that a large
/// request of the same step needs next (it would then be allocated afresh and zero-filled
/// every step — seen in the recurrent kernel, whose weight reads took its state buffers).
pub(crate) fn take_best_fit<T, K: Ord>(pool: &mut Vec<Vec<T>>, n: usize, rank: impl Fn(&Vec<T>) -> K) -> Option<Vec<T>> {
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, v)| v.capacity() >= n && v.capacity() <= n.saturating_mul(2).saturating_add(SLACK))
        .min_by_key(|(_, v)| rank(v))
        .map(|(i, _)| i)?;
    Some(pool.swap_remove(best))
}

/// Elements a buffer may exceed twice a request by and still serve it (small requests).
const SLACK: usize = 1024;

/// A new tensor of `shape` holding `data`, its buffer drawn from (and returned to) the
/// device's allocation cache: [`super::upload::from_slice`].
pub(crate) use super::upload::from_slice as to_tensor;

#[cfg(test)]
mod tests {
    use super::take_best_fit;

    fn pool(specs: &[(usize, usize)]) -> Vec<Vec<f32>> {
        specs
            .iter()
            .map(|&(cap, len)| {
                let mut v = Vec::with_capacity(cap);
                v.resize(len, 1.0);
                v
            })
            .collect()
    }

    /// Lengths and contents through reuse: a buffer that served a long request and then a short
    /// one (its `Vec` still longer) serves the next request of any length up to its capacity
    /// with exactly that length; `zeros` is zero whatever the buffer held.
    #[test]
    fn reused_buffers_have_the_requested_length_and_zeros_are_zero() {
        use super::{Buf, give, take_dirty};
        for round in 0..3 {
            let n = 5000 + round;
            let mut a = Buf::<f64>::dirty(n);
            a.fill(7.0);
            drop(a);
            let b = Buf::<f64>::dirty(n / 2 + 1);
            assert_eq!(b.len(), n / 2 + 1);
            drop(b);
            let c = Buf::<f64>::dirty(n);
            assert_eq!(c.len(), n);
            drop(c);
            let z = Buf::<f64>::zeros(n);
            assert_eq!(z.len(), n);
            assert!(z.iter().all(|v| *v == 0.0));
            let v = take_dirty::<f64>(n - 1);
            assert_eq!(v.len(), n - 1);
            give(v);
            assert_eq!(Buf::<f64>::dirty(n).into_vec().len(), n);
        }
    }

    /// Every non-empty buffer starts on a cache line, fresh or reused, whatever length it
    /// served before, and keeps its length and (for `zeros`) its zeros.
    #[test]
    fn buffers_start_on_a_cache_line() {
        use super::Buf;
        for n in [1usize, 7, 16, 1000, 4099, 70_000] {
            for _ in 0..3 {
                let mut a = Buf::<f32>::dirty(n);
                assert_eq!((a.len(), a.as_ptr() as usize % 64), (n, 0), "dirty f32 {n}");
                a.fill(3.0);
                drop(a);
                let z = Buf::<f64>::zeros(n);
                assert_eq!((z.len(), z.as_ptr() as usize % 64), (n, 0), "zeros f64 {n}");
                assert!(z.iter().all(|v| *v == 0.0));
                let u = Buf::<u32>::dirty(n / 2 + 1);
                assert_eq!(u.as_ptr() as usize % 64, 0, "dirty u32 {n}");
            }
        }
        assert_eq!(Buf::<f32>::dirty(0).len(), 0);
        assert_eq!(Buf::<f32>::zeros(0).len(), 0);
    }

    #[test]
    fn a_small_request_does_not_take_a_large_buffer() {
        let mut p = pool(&[(100, 100), (5000, 5000), (300_000, 300_000)]);
        assert!(take_best_fit(&mut p, 1000, Vec::capacity).is_none(), "5000 is more than 2·1000 + slack");
        assert_eq!(take_best_fit(&mut p, 80, Vec::capacity).map(|v| v.capacity()), Some(100));
        assert_eq!(take_best_fit(&mut p, 2000, Vec::capacity).map(|v| v.capacity()), Some(5000));
        assert_eq!(take_best_fit(&mut p, 200_000, Vec::capacity).map(|v| v.capacity()), Some(300_000));
        assert!(p.is_empty());
        assert!(take_best_fit(&mut p, 1, Vec::capacity).is_none());
    }

    #[test]
    fn a_dirty_request_prefers_a_buffer_that_needs_no_fill() {
        let len = 2500;
        let mut p = pool(&[(3000, 0), (4000, 4000), (3500, 10)]);
        let got = take_best_fit(&mut p, len, |v| (v.len() < len, v.capacity())).unwrap();
        assert_eq!((got.capacity(), got.len()), (4000, 4000));
        let got = take_best_fit(&mut p, len, |v| (v.len() < len, v.capacity())).unwrap();
        assert_eq!(got.capacity(), 3000, "then the smallest that fits");
    }
}
