//! typenet's shape rules, written once: output sizes of windowed layers (convolutions and
//! pools, PyTorch's floor arithmetic), the asymmetric `padding = same`, parameter counts and
//! gate counts. Every function is a `const fn` with checked arithmetic (`None` on overflow or
//! when the window does not fit), so the `network!` macro calls them for its messages and the
//! runtime calls them in its `const` assertions and `NUM_PARAMS`; sizes near `usize::MAX`
//! never wrap.
#![no_std]
#![forbid(unsafe_code)]

/// `checked_add` / `checked_mul` chains in `const fn`s.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return None,
        }
    };
}

/// The dilated kernel's extent: `dilation·(kernel − 1) + 1`. `None` for a zero kernel or
/// dilation, or on overflow.
pub const fn dilated_span(kernel: usize, dilation: usize) -> Option<usize> {
    if kernel == 0 || dilation == 0 {
        return None;
    }
    let d = tri!(dilation.checked_mul(kernel - 1));
    d.checked_add(1)
}

/// `padding = same` (stride 1): `(before, after)` with `before = ⌊dilation·(kernel − 1)/2⌋`
/// and the rest after, as PyTorch's `padding='same'` does for even kernels.
pub const fn same_padding(kernel: usize, dilation: usize) -> Option<(usize, usize)> {
    let total = tri!(dilation_total(kernel, dilation));
    Some((total / 2, total - total / 2))
}

const fn dilation_total(kernel: usize, dilation: usize) -> Option<usize> {
    if kernel == 0 || dilation == 0 {
        return None;
    }
    dilation.checked_mul(kernel - 1)
}

/// The input length padded by `lo` before and `hi` after (`None` on overflow).
pub const fn padded(len: usize, lo: usize, hi: usize) -> Option<usize> {
    let a = tri!(len.checked_add(lo));
    a.checked_add(hi)
}

/// Output length of a window (convolution or pool) along one axis with padding `lo` before and
/// `hi` after: `(len + lo + hi − dilation·(kernel − 1) − 1) / stride + 1` (floor). `None` when
/// the dilated kernel is larger than the padded input, a size is zero, or on overflow.
pub const fn window_out(len: usize, kernel: usize, stride: usize, lo: usize, hi: usize, dilation: usize) -> Option<usize> {
    if stride == 0 {
        return None;
    }
    let span = tri!(dilated_span(kernel, dilation));
    let p = tri!(padded(len, lo, hi));
    if p < span {
        return None;
    }
    Some((p - span) / stride + 1)
}

/// [`window_out`] with PyTorch's symmetric `padding` on both sides.
pub const fn conv_out(len: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> Option<usize> {
    window_out(len, kernel, stride, padding, padding, dilation)
}

/// A pool's output length (dilation 1, symmetric padding of at most half the kernel, as in
/// PyTorch). `None` when the padding is larger or the window shrinks the axis to 0.
pub const fn pool_out(len: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    if padding > kernel / 2 {
        return None;
    }
    conv_out(len, kernel, stride, padding, 1)
}

/// The padding after the input that gives a convolution with padding `lo` before the
/// declared output length `out`: `lo` itself (symmetric) when that fits, else, for
/// `padding = same` (stride 1, `out == len`, `lo` the "before" part of [`same_padding`]), the
/// "after" part. `None` when neither fits: the declared output size is wrong.
pub const fn pad_after(len: usize, kernel: usize, stride: usize, lo: usize, dilation: usize, out: usize) -> Option<usize> {
    if let Some(o) = conv_out(len, kernel, stride, lo, dilation) {
        if o == out {
            return Some(lo);
        }
    }
    if stride == 1 && out == len && len > 0 {
        if let Some((before, after)) = same_padding(kernel, dilation) {
            if before == lo {
                return Some(after);
            }
        }
    }
    None
}

/// Gates of a recurrent cell: 1 for a plain RNN, 4 for an LSTM, 3 for a GRU.
pub mod gates {
    /// Elman RNN (`tanh` or `relu`).
    pub const RNN: usize = 1;
    /// LSTM: input, forget, cell, output.
    pub const LSTM: usize = 4;
    /// GRU: reset, update, new.
    pub const GRU: usize = 3;
}

/// `dense(i -> o)`: weight `[o, i]` plus, with `bias`, `[o]`.
pub const fn dense_params(i: usize, o: usize, bias: bool) -> Option<usize> {
    let w = tri!(i.checked_mul(o));
    if bias {
        w.checked_add(o)
    } else {
        Some(w)
    }
}

/// `conv(o, kernel)` over `i` channels: weight `[o, i, ..kernel]` (`area` = product of the
/// kernel sizes) and bias `[o]`.
pub const fn conv_params(i: usize, o: usize, area: usize) -> Option<usize> {
    let w = tri!(tri!(o.checked_mul(i)).checked_mul(area));
    w.checked_add(o)
}

/// A recurrent layer with `gates` gates, input width `f`, hidden size `h`, one or two
/// directions: per direction `weight_ih [g·h, f]`, `weight_hh [g·h, h]`, `bias_ih`, `bias_hh`
/// `[g·h]` (PyTorch's layout).
pub const fn recurrent_params(gates: usize, f: usize, h: usize, bidirectional: bool) -> Option<usize> {
    let gh = tri!(gates.checked_mul(h));
    let per = tri!(tri!(f.checked_add(h)).checked_add(2));
    let one = tri!(gh.checked_mul(per));
    if bidirectional {
        one.checked_mul(2)
    } else {
        Some(one)
    }
}

/// `batch_norm` / `layer_norm` over `c` features: a scale and a shift per feature.
pub const fn norm_params(c: usize) -> Option<usize> {
    c.checked_mul(2)
}

/// `prelu`: one slope.
pub const PRELU_PARAMS: usize = 1;

/// `set_dense(i -> o)`: `weight` and `weight_pool` `[o, i]` and `bias` `[o]`.
pub const fn set_dense_params(i: usize, o: usize) -> Option<usize> {
    let w = tri!(tri!(i.checked_mul(2)).checked_mul(o));
    w.checked_add(o)
}

/// A parameter count in a `const` context (`NUM_PARAMS`): panics (a compile-time error in a
/// `const`) when it overflows `usize`.
pub const fn count(v: Option<usize>) -> usize {
    unwrap(v, "typenet: a parameter count overflows `usize`")
}

/// The value of a checked count in a `const` context: panics (a compile-time error in a
/// `const`) on `None`, with a message saying which rule overflowed.
pub const fn unwrap(v: Option<usize>, what: &str) -> usize {
    match v {
        Some(v) => v,
        None => panic!("{}", what),
    }
}

/// A message built at compile time, for `const` assertions whose message shows the value of
/// a constant (`HIDDEN (= 32)`): `const` panics format only `&str`, so the digits are written
/// here. Capacity 480 bytes; a longer message is cut at a character boundary.
#[derive(Clone, Copy)]
pub struct Msg {
    buf: [u8; 480],
    len: usize,
}

impl Msg {
    /// An empty message.
    pub const fn new() -> Msg {
        Msg { buf: [0; 480], len: 0 }
    }

    /// Appends text.
    pub const fn s(mut self, s: &str) -> Msg {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() && self.len < self.buf.len() {
            self.buf[self.len] = b[i];
            self.len += 1;
            i += 1;
        }
        // Never end inside a character.
        while self.len > 0 && self.len < self.buf.len() && i < b.len() && (b[i] & 0xC0) == 0x80 {
            self.len -= 1;
            i -= 1;
        }
        self
    }

    /// Appends a number in decimal.
    pub const fn n(mut self, mut v: usize) -> Msg {
        let mut digits = [0u8; 20];
        let mut k = 0;
        loop {
            digits[k] = b'0' + (v % 10) as u8;
            k += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while k > 0 && self.len < self.buf.len() {
            k -= 1;
            self.buf[self.len] = digits[k];
            self.len += 1;
        }
        self
    }

    /// The text so far.
    pub const fn as_str(&self) -> &str {
        match core::str::from_utf8(self.buf.split_at(self.len).0) {
            Ok(s) => s,
            Err(_) => "typenet: a size check failed",
        }
    }
}

impl Default for Msg {
    fn default() -> Self {
        Msg::new()
    }
}

// ---------------------------------------------------------------- work (issue 14, item 4)
//
// Multiply–accumulates of ONE sample's forward pass, counted as torchinfo's "Mult-Adds":
// the products of a weight with an input (matrix products and convolutions); bias additions,
// activations, pooling and normalisation count 0. `positions` is the product of the axes a
// layer is applied along (1 for `dense` on `[f]`, `t` for `dense` on `[t, f]`, the output
// area for a convolution). `None` when a count overflows `usize`.

/// `dense(i -> o)` applied at `positions` places: `i·o` products each.
pub const fn dense_macs(i: usize, o: usize, positions: usize) -> Option<usize> {
    tri!(i.checked_mul(o)).checked_mul(positions)
}

/// A convolution from `i` to `o` channels with a kernel of `area` elements (product of the
/// kernel sizes), producing `out_positions` output positions (product of the output sizes).
pub const fn conv_macs(i: usize, o: usize, area: usize, out_positions: usize) -> Option<usize> {
    tri!(tri!(i.checked_mul(o)).checked_mul(area)).checked_mul(out_positions)
}

/// A recurrent layer over `t` steps: per step and direction `gates·h·(f + h)` (the input and
/// the hidden products; the gates' element-wise products are not counted).
pub const fn recurrent_macs(gates: usize, f: usize, h: usize, t: usize, bidirectional: bool) -> Option<usize> {
    let per = tri!(tri!(gates.checked_mul(h)).checked_mul(tri!(f.checked_add(h))));
    let all = tri!(per.checked_mul(t));
    if bidirectional {
        all.checked_mul(2)
    } else {
        Some(all)
    }
}

/// `set_dense(i -> o)` over `n` elements: `weight` on every element, `weight_pool` once on the
/// pooled set.
pub const fn set_dense_macs(i: usize, o: usize, n: usize) -> Option<usize> {
    tri!(i.checked_mul(o)).checked_mul(tri!(n.checked_add(1)))
}

/// Self-attention of model width `m` over `t` positions: the four `m × m` projections at every
/// position (`4·t·m²`), the scores and the weighted sum (`2·t²·m`, the heads splitting `m`).
pub const fn attention_macs(t: usize, m: usize) -> Option<usize> {
    let proj = tri!(tri!(tri!(m.checked_mul(m)).checked_mul(t)).checked_mul(4));
    let mix = tri!(tri!(tri!(t.checked_mul(t)).checked_mul(m)).checked_mul(2));
    proj.checked_add(mix)
}

/// `a · b` of two checked counts (`None` when either is, or on overflow): how the `network!`
/// macro combines the rules above with sizes only rustc knows (`HIDDEN`).
pub const fn times(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    tri!(a).checked_mul(tri!(b))
}

/// `a + b` of two checked counts (`None` when either is, or on overflow).
pub const fn plus(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    tri!(a).checked_add(tri!(b))
}

/// The number of elements of a per-sample shape (a layer's output): the activation memory of
/// one sample is the sum over the layers of this times the element size.
pub const fn elements(dims: &[usize]) -> Option<usize> {
    let mut n: usize = 1;
    let mut k = 0;
    while k < dims.len() {
        n = tri!(n.checked_mul(dims[k]));
        k += 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_and_pool_lengths_follow_pytorch() {
        // torch.nn.Conv1d(1, 1, 3)(torch.zeros(1, 1, 10)).shape[-1] == 8, etc.
        assert_eq!(conv_out(10, 3, 1, 0, 1), Some(8));
        assert_eq!(conv_out(10, 3, 2, 1, 1), Some(5));
        assert_eq!(conv_out(10, 3, 1, 0, 2), Some(6));
        assert_eq!(conv_out(2, 3, 1, 0, 1), None);
        assert_eq!(pool_out(7, 2, 2, 0), Some(3));
        assert_eq!(pool_out(7, 2, 2, 2), None);
        assert_eq!(same_padding(4, 1), Some((1, 2)));
        assert_eq!(same_padding(3, 2), Some((2, 2)));
        assert_eq!(window_out(9, 4, 1, 1, 2, 1), Some(9));
        assert_eq!(pad_after(9, 4, 1, 1, 1, 9), Some(2));
        assert_eq!(pad_after(9, 3, 1, 1, 1, 9), Some(1));
        assert_eq!(pad_after(9, 3, 1, 0, 1, 9), None);
    }

    #[test]
    fn near_usize_max_is_none_not_a_wrap() {
        let m = usize::MAX;
        assert_eq!(conv_out(m, 3, 1, 1, 1), None);
        assert_eq!(conv_out(m, 3, 1, 0, 1), Some(m - 2));
        assert_eq!(dense_params(m, 2, false), None);
        assert_eq!(dense_params(m, 1, true), None);
        assert_eq!(conv_params(m / 2, 2, 2), None);
        assert_eq!(recurrent_params(gates::LSTM, m / 4, 1, false), None);
        assert_eq!(dilated_span(m, 2), None);
    }

    #[test]
    fn messages_show_values() {
        const M: Msg = Msg::new().s("expects HIDDEN (= ").n(32).s(") – ").n(0).s(", ").n(usize::MAX);
        assert_eq!(M.as_str(), "expects HIDDEN (= 32) – 0, 18446744073709551615");
        let long = Msg::new().s(&"é".repeat(400));
        assert!(long.as_str().chars().all(|c| c == 'é') && long.as_str().len() == 480);
    }

    #[test]
    fn parameter_counts() {
        assert_eq!(dense_params(4, 3, true), Some(15));
        assert_eq!(conv_params(2, 4, 9), Some(76));
        // torch.nn.LSTM(3, 5): 4·5·(3 + 5 + 2) = 200
        assert_eq!(recurrent_params(gates::LSTM, 3, 5, false), Some(200));
        assert_eq!(recurrent_params(gates::GRU, 3, 5, true), Some(300));
    }

    #[test]
    fn lenet5_work_by_hand() {
        // The DSL's LeNet-5 on [1, 28, 28], by hand:
        //   conv2d(6, kernel = 5, padding = 2): 6×28×28 outputs × 1·5·5   = 117,600
        //   conv2d(16, kernel = 5) on 6×14×14: 16×10×10 outputs × 6·5·5  = 240,000
        //   dense(400 -> 120): 48,000; dense(120 -> 84): 10,080; dense(84 -> 10): 840
        //   total 117,600 + 240,000 + 48,000 + 10,080 + 840             = 416,520
        let conv1 = conv_macs(1, 6, 25, 28 * 28).unwrap();
        let conv2 = conv_macs(6, 16, 25, 10 * 10).unwrap();
        assert_eq!((conv1, conv2), (117_600, 240_000));
        let dense = [(400, 120), (120, 84), (84, 10)].map(|(i, o)| dense_macs(i, o, 1).unwrap());
        assert_eq!(dense, [48_000, 10_080, 840]);
        assert_eq!(conv1 + conv2 + dense.iter().sum::<usize>(), 416_520);
        // activations: conv, relu (6×28×28 each), pool 6×14×14, conv, relu (16×10×10 each),
        // pool and flatten (400 each), dense+relu 120 twice, 84 twice, 10 = 15,002 values
        let outs: [&[usize]; 12] = [
            &[6, 28, 28], &[6, 28, 28], &[6, 14, 14], &[16, 10, 10], &[16, 10, 10], &[16, 5, 5],
            &[400], &[120], &[120], &[84], &[84], &[10],
        ];
        let total: usize = outs.iter().map(|d| elements(d).unwrap()).sum();
        assert_eq!(total, 2 * 4704 + 1176 + 2 * 1600 + 2 * 400 + 2 * 120 + 2 * 84 + 10);
        assert_eq!(total, 15_002);
    }

    #[test]
    fn work_of_the_other_families() {
        // torch.nn.LSTM(3, 5) over 7 steps: 4·5·(3 + 5)·7 = 1,120 per direction
        assert_eq!(recurrent_macs(gates::LSTM, 3, 5, 7, false), Some(1120));
        assert_eq!(recurrent_macs(gates::GRU, 3, 5, 7, true), Some(2 * 3 * 5 * 8 * 7));
        assert_eq!(dense_macs(4, 3, 5), Some(60));
        assert_eq!(set_dense_macs(4, 3, 5), Some(72));
        // t = 2, m = 4: 4·2·16 + 2·4·4 = 128 + 32
        assert_eq!(attention_macs(2, 4), Some(160));
        assert_eq!(dense_macs(usize::MAX, 2, 1), None);
        assert_eq!(elements(&[]), Some(1));
        assert_eq!(elements(&[usize::MAX, 2]), None);
        assert_eq!(times(Some(3), Some(4)), Some(12));
        assert_eq!(plus(Some(3), None), None);
        assert_eq!(times(Some(usize::MAX), Some(2)), None);
    }
}

/// How the summary and the rustdoc table write counts, shared by the macro and the runtime
/// so the two agree character for character.
pub mod text {
    use core::fmt::{Result, Write};

    /// Writes a product of axis names with repeated neighbours folded into powers:
    /// `["b", "t", "t"]` → `b·t²` (`³` for three, `^p` beyond).
    pub fn write_monomial<S: AsRef<str>>(out: &mut impl Write, axes: &[S]) -> Result {
        let mut k = 0;
        while k < axes.len() {
            let name = axes[k].as_ref();
            let mut p = 1;
            while k + p < axes.len() && axes[k + p].as_ref() == name {
                p += 1;
            }
            if k > 0 {
                out.write_str("·")?;
            }
            match p {
                1 => out.write_str(name)?,
                2 => write!(out, "{name}²")?,
                3 => write!(out, "{name}³")?,
                p => write!(out, "{name}^{p}")?,
            }
            k += p;
        }
        Ok(())
    }

    /// Writes `n` with a comma between groups of three digits: `61706` → `61,706`.
    pub fn write_thousands(out: &mut impl Write, n: usize) -> Result {
        // usize::MAX has 20 digits.
        let mut digits = [0u8; 20];
        let (mut len, mut m) = (0, n);
        loop {
            digits[len] = b'0' + (m % 10) as u8;
            len += 1;
            m /= 10;
            if m == 0 {
                break;
            }
        }
        for i in 0..len {
            if i > 0 && (len - i) % 3 == 0 {
                out.write_char(',')?;
            }
            out.write_char(char::from(digits[len - 1 - i]))?;
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        struct Buf([u8; 64], usize);
        impl Write for Buf {
            fn write_str(&mut self, s: &str) -> Result {
                let b = s.as_bytes();
                self.0[self.1..self.1 + b.len()].copy_from_slice(b);
                self.1 += b.len();
                Ok(())
            }
        }
        fn show(f: impl Fn(&mut Buf) -> Result) -> Buf {
            let mut b = Buf([0; 64], 0);
            f(&mut b).unwrap();
            b
        }
        fn text(b: &Buf) -> &str {
            core::str::from_utf8(&b.0[..b.1]).unwrap()
        }

        #[test]
        fn monomials_fold_powers() {
            assert_eq!(text(&show(|b| write_monomial(b, &["b", "t", "t"]))), "b·t²");
            assert_eq!(text(&show(|b| write_monomial(b, &["n", "n", "n"]))), "n³");
            assert_eq!(text(&show(|b| write_monomial(b, &["t", "t", "t", "t", "e"]))), "t^4·e");
            assert_eq!(text(&show(|b| write_monomial(b, &["a", "b", "a"]))), "a·b·a");
            assert_eq!(text(&show(|b| write_monomial::<&str>(b, &[]))), "");
        }

        #[test]
        fn thousands_group_digits() {
            assert_eq!(text(&show(|b| write_thousands(b, 0))), "0");
            assert_eq!(text(&show(|b| write_thousands(b, 999))), "999");
            assert_eq!(text(&show(|b| write_thousands(b, 61706))), "61,706");
            assert_eq!(text(&show(|b| write_thousands(b, 1_000_000))), "1,000,000");
            assert_eq!(text(&show(|b| write_thousands(b, usize::MAX))), "18,446,744,073,709,551,615");
        }
    }
}
