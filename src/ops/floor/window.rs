//! Sliding-window geometry shared by convolutions, pools and any kernel that slides a window:
//! [`Window2D`], PyTorch's output-size arithmetic and the valid index range of a window offset.

/// Shape of a 4-d dynamically sized batched feature map `[batch, channels, h, w]`.
pub type Dyn4 = (usize, usize, usize, usize);

/// The sliding-window geometry shared by convolutions and pools, per spatial axis
/// `[h, w]`: kernel size, stride, zero padding before and after, dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window2D {
    /// Kernel size `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Padding before (top, left).
    pub pad_lo: [usize; 2],
    /// Padding after (bottom, right).
    pub pad_hi: [usize; 2],
    /// Dilation `[dh, dw]`.
    pub dilation: [usize; 2],
}

impl Window2D {
    /// A window with symmetric padding.
    pub const fn new(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2]) -> Self {
        Self { kernel, stride, pad_lo: padding, pad_hi: padding, dilation }
    }

    /// The 1-d window (`h` axis of size 1 left untouched).
    pub const fn new_1d(kernel: usize, stride: usize, padding: usize, dilation: usize) -> Self {
        Self::new([1, kernel], [1, stride], [0, padding], [1, dilation])
    }

    /// Output size along axis `ax` (0 = h, 1 = w) for an input of size `len`; 0 when the
    /// (dilated) kernel does not fit the padded input.
    pub const fn out_len(&self, ax: usize, len: usize) -> usize {
        out_len_asym(len, self.kernel[ax], self.stride[ax], self.pad_lo[ax], self.pad_hi[ax], self.dilation[ax])
    }

    /// `[oh, ow]` for an input of spatial size `[h, w]`.
    pub const fn out_dims(&self, h: usize, w: usize) -> [usize; 2] {
        [self.out_len(0, h), self.out_len(1, w)]
    }

    /// Panics unless every size is positive and the window fits the padded input.
    pub(crate) fn validate(&self, h: usize, w: usize) {
        for ax in 0..2 {
            assert!(
                self.kernel[ax] > 0 && self.stride[ax] > 0 && self.dilation[ax] > 0,
                "window kernel, stride and dilation must be positive: {self:?}"
            );
        }
        let [oh, ow] = self.out_dims(h, w);
        assert!(oh > 0 && ow > 0, "window {self:?} does not fit a {h}×{w} input");
    }
}

/// PyTorch's floor arithmetic: `(len + 2·padding − dilation·(kernel − 1) − 1) / stride + 1`,
/// or 0 when the dilated kernel is larger than the padded input.
pub const fn out_len(len: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> usize {
    out_len_asym(len, kernel, stride, padding, padding, dilation)
}

/// [`out_len`] with different padding before (`lo`) and after (`hi`); the rule is
/// [`crate::shapes::window_out`] (checked arithmetic), 0 where it has no output.
pub const fn out_len_asym(len: usize, kernel: usize, stride: usize, lo: usize, hi: usize, dilation: usize) -> usize {
    match crate::shapes::window_out(len, kernel, stride, lo, hi, dilation) {
        Some(n) => n,
        None => 0,
    }
}

/// The padding after the input (bottom/right) that gives the declared output size `out`
/// with padding `lo` before: `lo` itself (PyTorch's symmetric padding) when that fits, or,
/// for `padding = same`, the rest of `dilation·(kernel−1)`; `None` when the declared output
/// size is wrong. The rule is [`crate::shapes::pad_after`].
pub const fn pad_after(len: usize, kernel: usize, stride: usize, lo: usize, dilation: usize, out: usize) -> Option<usize> {
    crate::shapes::pad_after(len, kernel, stride, lo, dilation, out)
}

/// Output indices `o` in `[lo, hi)` whose input index `o·stride + off` lies in `[0, len)`.
#[inline]
pub fn valid_range(off: isize, stride: usize, len: usize, out: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s } as usize;
    let lim = len as isize - off;
    let hi = if lim <= 0 { 0 } else { ((lim + s - 1) / s) as usize }.min(out);
    (lo.min(hi), hi)
}

