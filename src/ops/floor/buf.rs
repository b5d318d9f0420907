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
    let mut v = Buf::<E>::take(n).into_vec();
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
    drop(Buf(v));
}

/// Frees every idle scratch buffer the CPU kernels keep between calls (they are reused by the
/// next training step; their total size follows the largest recent batch).
pub fn clear_scratch_buffers() {
    f32::pool().lock().unwrap_or_else(|e| e.into_inner()).clear();
    f64::pool().lock().unwrap_or_else(|e| e.into_inner()).clear();
    u32::pool().lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// A zero-filled buffer from the pool, given back on drop.
pub(crate) struct Buf<E: Scratch>(Vec<E>);

impl<E: Scratch> Buf<E> {
    /// A buffer of `len` zeros.
    pub fn zeros(len: usize) -> Self {
        let mut v = Self::take(len);
        v.0.resize(len, E::default());
        v
    }

    /// A buffer of `len` elements with unspecified (initialised) contents, for buffers the
    /// caller overwrites completely: an idle buffer holding at least `len` elements is only
    /// truncated, saving the zero fill (a memset of up to megabytes per call).
    /// A pooled buffer whose allocation fits but whose length (from its last use) is shorter
    /// is extended by initialising only the missing tail.
    pub fn dirty(len: usize) -> Self {
        let mut pool = E::pool().lock().unwrap_or_else(|e| e.into_inner());
        let found = take_best_fit(&mut pool, len, Vec::capacity);
        drop(pool);
        match found {
            Some(mut v) => {
                if v.len() >= len {
                    v.truncate(len);
                } else {
                    v.resize(len, E::default());
                }
                Buf(v)
            }
            None => Self::zeros(len),
        }
    }

    /// The buffer as a plain `Vec`, no longer returned to the pool on drop.
    pub fn into_vec(mut self) -> Vec<E> {
        std::mem::take(&mut self.0)
    }

    /// An empty buffer with capacity for `len` elements.
    fn take(len: usize) -> Self {
        let mut pool = E::pool().lock().unwrap_or_else(|e| e.into_inner());
        let mut v = take_best_fit(&mut pool, len, Vec::capacity).unwrap_or_else(|| Vec::with_capacity(len));
        v.clear();
        Buf(v)
    }
}

impl<E: Scratch> Drop for Buf<E> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
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
        &self.0
    }
}

impl<E: Scratch> std::ops::DerefMut for Buf<E> {
    fn deref_mut(&mut self) -> &mut [E] {
        &mut self.0
    }
}

/// Removes from `pool` and returns the smallest buffer whose `size` (`Vec::len` or
/// `Vec::capacity`) is at least `n`, if any.
pub(crate) fn take_best_fit<T>(pool: &mut Vec<Vec<T>>, n: usize, size: impl Fn(&Vec<T>) -> usize) -> Option<Vec<T>> {
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, v)| size(v) >= n)
        .min_by_key(|(_, v)| size(v))
        .map(|(i, _)| i)?;
    Some(pool.swap_remove(best))
}

/// A new tensor of `shape` holding `data`, its buffer drawn from (and returned to) the
/// device's allocation cache: [`super::upload::from_slice`].
pub(crate) use super::upload::from_slice as to_tensor;
