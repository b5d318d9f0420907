//! A thin safe-ish wrapper over [`crate::ops::gemm`] for row-/column-strided matrices.

/// A matrix view: pointer plus row and column strides (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Mat<P> {
    pub ptr: P,
    pub rs: usize,
    pub cs: usize,
}

/// `dst (m×n) = [dst +] a (m×k) · b (k×n)`, single-threaded (callers parallelise over the
/// batch). `accumulate` adds to `dst` instead of overwriting it.
///
/// # Safety
/// The views must be valid for the given sizes and strides; `dst` must not alias `a`/`b`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul<E: 'static + Copy + num_traits::Float>(
    m: usize,
    n: usize,
    k: usize,
    dst: Mat<*mut E>,
    accumulate: bool,
    a: Mat<*const E>,
    b: Mat<*const E>,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    *dst.ptr.add(i * dst.rs + j * dst.cs) = E::zero();
                }
            }
        }
        return;
    }
    // f32 on AVX-512 CPUs: typenet's own microkernel; otherwise the `gemm` crate.
    crate::ops::gemm::gemm(
        (m, n, k),
        E::one(),
        a.ptr,
        (a.rs, a.cs),
        b.ptr,
        (b.rs, b.cs),
        if accumulate { E::one() } else { E::zero() },
        dst.ptr,
        (dst.rs, dst.cs),
    )
}

/// Row-major contiguous `rows × cols` view.
pub(crate) fn rm<P>(ptr: P, cols: usize) -> Mat<P> {
    Mat { ptr, rs: cols, cs: 1 }
}

/// The transpose of a row-major contiguous matrix with `cols` columns.
pub(crate) fn rm_t<P>(ptr: P, cols: usize) -> Mat<P> {
    Mat { ptr, rs: 1, cs: cols }
}
