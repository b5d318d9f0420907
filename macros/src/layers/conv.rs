//! `conv1d(out, kernel = k, stride = 1, padding = 0, dilation = 1)` and `conv2d(..)` (each of
//! `kernel`, `stride`, `padding`, `dilation` also as `(h, w)`; `padding = same` for stride 1).
//!
//! Shape rule (PyTorch's floor arithmetic, per spatial axis):
//! `out = (len + 2·padding − dilation·(kernel − 1) − 1) / stride + 1`; an error when the
//! (dilated) kernel is larger than the padded input, or when applied to a vector.
//! The macro computes the output sizes (the layer types carry them as const generics), so
//! spatial sizes are integers the macro knows or constants (`img::H`), whose output sizes are
//! constant expressions (`{ img::H - 4 }` in effect) checked by rustc.

use proc_macro2::TokenStream;
use quote::quote;

use super::dense::init_arg;
use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::{LayerCall, Value};
use crate::check::{Built, Checker, Layer, LayerError};
use crate::runtime::SHAPES;
use crate::shape::{Dim, Shape};
use crate::work::{Coef, Poly};
use typenet_shapes as shapes;

/// Padding along one axis: a count, or `same` (resolved once the kernel is known).
#[derive(Clone, Copy)]
pub(super) enum Pad {
    N(usize),
    Same,
}

/// Per-axis window parameters (one entry for 1-d, two for 2-d).
pub(super) struct Window {
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub padding: Vec<Pad>,
    pub dilation: Vec<usize>,
}

/// Either an integer for every axis or a tuple with one integer per axis.
pub(super) fn per_axis(v: &Value, axes: usize, what: &str, min: usize) -> syn::Result<Vec<usize>> {
    let one = |v: &Value| -> syn::Result<usize> {
        let n = args::count(v, what)?;
        if n < min {
            return Err(args::err(v, format!("{what} must be at least {min}, not {n}")));
        }
        Ok(n)
    };
    match v {
        Value::Tuple(items, _) => {
            if axes == 1 {
                return Err(args::err(v, format!("a 1-d layer takes a single value for {what}, not a tuple")));
            }
            if items.len() != axes {
                return Err(args::err(v, format!("{what} takes {axes} values `(h, w)`, not {}", items.len())));
            }
            items.iter().map(one).collect()
        }
        _ => Ok(vec![one(v)?; axes]),
    }
}

pub(super) fn padding_arg(v: Option<&Value>, axes: usize, allow_same: bool) -> syn::Result<Vec<Pad>> {
    match v {
        None => Ok(vec![Pad::N(0); axes]),
        Some(v) => match args::word(v) {
            Some(w) if w == "same" && allow_same => Ok(vec![Pad::Same; axes]),
            Some(w) if w == "same" => Err(args::err(v, "`padding = same` is for convolutions; pools take a number")),
            Some(w) => Err(args::err(v, format!("padding must be a non-negative integer, `(h, w)`{}, not `{w}`", if allow_same { " or `same`" } else { "" }))),
            None => Ok(per_axis(v, axes, "padding", 0)?.into_iter().map(Pad::N).collect()),
        },
    }
}

pub struct Conv {
    axes: usize,
    out: Dim,
    win: Window,
    init: TokenStream,
    ty: TokenStream,
}

fn parse_conv(call: &LayerCall, kind: &'static Kind, axes: usize) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    let a = Args::new(call, usage, 1, &["kernel", "stride", "padding", "dilation", "init"])?;
    let out = args::dim(a.require(0, "its number of output channels", usage)?, "the number of output channels")?;
    let Some(k) = a.kw("kernel") else {
        return Err(syn::Error::new_spanned(&call.tokens, format!("`{}` needs `kernel = ..`: `{usage}`", call.kind_text())));
    };
    let kernel = per_axis(k, axes, "the kernel size", 1)?;
    let stride = match a.kw("stride") {
        Some(v) => per_axis(v, axes, "the stride", 1)?,
        None => vec![1; axes],
    };
    let dilation = match a.kw("dilation") {
        Some(v) => per_axis(v, axes, "the dilation", 1)?,
        None => vec![1; axes],
    };
    let padding = padding_arg(a.kw("padding"), axes, true)?;
    if matches!(padding[0], Pad::Same) && stride.iter().any(|&s| s != 1) {
        return Err(args::err(a.kw("padding").unwrap(), "`padding = same` needs stride 1 (as in PyTorch)"));
    }
    Ok(Box::new(Conv { axes, out, win: Window { kernel, stride, padding, dilation }, init: init_arg(&a)?, ty: kind.ty(0) }))
}

pub fn parse_conv1d(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    parse_conv(call, kind, 1)
}

pub fn parse_conv2d(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    parse_conv(call, kind, 2)
}

/// The spatial sizes of `input` for a layer over `axes` spatial axes after a channel axis.
pub(super) fn spatial(kind: &str, input: &Shape, axes: usize) -> Result<(Dim, Vec<Dim>), String> {
    let want = if axes == 1 { "`[c, l]`" } else { "`[c, h, w]`" };
    if input.rank() != axes + 1 {
        let what = match input.rank() {
            1 => "a vector".to_string(),
            _ => format!("{} ({} axes)", input.text(), input.rank()),
        };
        return Err(format!("`{kind}` takes a feature map {want}, but it is given {what}"));
    }
    // Integers, or constants (`img::H`): the output size of a constant one is a constant
    // expression rustc evaluates, with a compile-time assertion that the window fits.
    for d in &input.dims[1..] {
        if let Dim::Runtime(n) = d {
            return Err(format!(
                "`{kind}` needs spatial sizes known at compile time (integers or constants), but {} has the run-time axis `{n}`",
                input.text()
            ));
        }
    }
    if let Dim::Runtime(n) = &input.dims[0] {
        return Err(format!("`{kind}` needs a channel axis of known size, but in {} it is the run-time axis `{n}`", input.text()));
    }
    Ok((input.dims[0].clone(), input.dims[1..].to_vec()))
}

/// The output length of a window over a constant length `len` (a `Dim::Const`), as a
/// constant expression by the rule `call` of `typenet::shapes` (`None` when the window does
/// not fit, which the assertion `cx` gets reports with `message`; the size is then 0 so that
/// nothing else fails). `lo + hi` is the padding, `span` the (dilated) kernel.
pub(super) fn const_window(cx: &mut Checker, len: &Dim, call: TokenStream, (lo, hi, span, stride): (usize, usize, usize, usize), message: &str) -> Dim {
    cx.require_const(quote!(#call.is_some()), message, &[len]);
    let text = {
        let (add, sub) = ((lo + hi) as i128, span as i128);
        let body = match add - sub + 1 {
            _ if stride != 1 => format!("({} - {}) / {stride} + 1", len.text(), sub - add),
            0 => len.text(),
            d if d > 0 => format!("{} + {d}", len.text()),
            d => format!("{} - {}", len.text(), -d),
        };
        if body == len.text() { body } else { format!("({body})") }
    };
    len.derived(quote!(match #call { ::core::option::Option::Some(n) => n, ::core::option::Option::None => 0 }), text)
}

const AXIS: [&str; 2] = ["height", "width"];

pub(super) fn axis_name(axes: usize, i: usize) -> &'static str {
    if axes == 1 {
        "length"
    } else {
        AXIS[i]
    }
}

/// One spatial axis of a convolution, by the shared rules in `typenet-shapes`: the padding
/// before and the output length, or the message saying why the window does not fit.
#[allow(clippy::too_many_arguments)]
fn conv_axis(kind: &str, axis: &str, len: usize, k: usize, s: usize, pad: Pad, d: usize, input: &Shape) -> Result<(usize, usize), String> {
    let too_big = || format!("`{kind}`'s sizes overflow `usize` (kernel {k}, dilation {d}, input {})", input.text());
    let span = shapes::dilated_span(k, d).ok_or_else(too_big)?;
    let (lo, hi) = match pad {
        Pad::N(p) => (p, p),
        Pad::Same => shapes::same_padding(k, d).ok_or_else(too_big)?,
    };
    let padded = shapes::padded(len, lo, hi).ok_or_else(too_big)?;
    match shapes::window_out(len, k, s, lo, hi, d) {
        Some(out) => Ok((lo, out)),
        None => {
            let dil = if d > 1 { format!(" (dilated to {span})") } else { String::new() };
            let pad = if lo + hi > 0 { format!(" padded to {padded}") } else { String::new() };
            Err(format!("`{kind}`'s kernel {k}{dil} is larger than the input's {axis} {len}{pad} (input {})", input.text()))
        }
    }
}

impl Layer for Conv {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let kind = if self.axes == 1 { "conv1d" } else { "conv2d" };
        let (c, sizes) = spatial(kind, input, self.axes)?;
        let mut dims = vec![self.out.clone()];
        // (pad before, spatial out) per axis.
        let mut resolved: Vec<(usize, Dim)> = Vec::new();
        for (i, len) in sizes.iter().enumerate() {
            let (k, s, d) = (self.win.kernel[i], self.win.stride[i], self.win.dilation[i]);
            let axis = axis_name(self.axes, i);
            let out = match len {
                Dim::Known(len) => {
                    let (lo, out) = conv_axis(kind, axis, *len, k, s, self.win.padding[i], d, input)?;
                    (lo, Dim::Known(out))
                }
                _ => {
                    let too_big = || format!("`{kind}`'s sizes overflow `usize` (kernel {k}, dilation {d}, input {})", input.text());
                    let span = shapes::dilated_span(k, d).ok_or_else(too_big)?;
                    let (lo, hi) = match self.win.padding[i] {
                        Pad::N(p) => (p, p),
                        Pad::Same => shapes::same_padding(k, d).ok_or_else(too_big)?,
                    };
                    let v = len.value();
                    let call = quote!(#SHAPES::window_out(#v, #k, #s, #lo, #hi, #d));
                    let dil = if d > 1 { format!(" (dilated to {span})") } else { String::new() };
                    let pad = if lo + hi > 0 { format!(" padded by {}", lo + hi) } else { String::new() };
                    let msg = format!("`{kind}`'s kernel {k}{dil} is larger than the input's {axis} {}{pad} (input {})", len.text(), input.text());
                    (lo, const_window(cx, len, call, (lo, hi, span, s), &msg))
                }
            };
            dims.push(out.1.clone());
            resolved.push(out);
        }
        let area = self.win.kernel.iter().try_fold(1usize, |a, k| a.checked_mul(*k));
        if let (Dim::Known(i), Dim::Known(o)) = (&c, &self.out) {
            if area.and_then(|a| shapes::conv_params(*i, *o, a)).is_none() {
                return Err(format!("`{kind}` from {i} to {o} channels has more parameters than `usize` can count").into());
            }
        }
        let (i, o) = (c.arg(), self.out.arg());
        let (init, ty) = (&self.init, &self.ty);
        let w = &self.win;
        let field = if self.axes == 1 {
            let (k, s, d) = (w.kernel[0], w.stride[0], w.dilation[0]);
            let (p, ol) = (resolved[0].0, resolved[0].1.arg());
            quote!(#ty<#i, #o, #k, #s, #p, #d, #ol, __E, __D, #init>)
        } else {
            let ([kh, kw], [sh, sw], [dh, dw]) = ([w.kernel[0], w.kernel[1]], [w.stride[0], w.stride[1]], [w.dilation[0], w.dilation[1]]);
            let ((ph, oh), (pw, ow)) = ((resolved[0].0, resolved[0].1.arg()), (resolved[1].0, resolved[1].1.arg()));
            quote!(#ty<#i, #o, #kh, #kw, #sh, #sw, #ph, #pw, #dh, #dw, #oh, #ow, __E, __D, #init>)
        };
        let (i, o) = (c.value(), self.out.value());
        let area = area.unwrap_or(usize::MAX);
        let params = crate::runtime::count(quote!(conv_params(#i, #o, #area)));
        // Every output position: `i · o · area` products.
        let value = match (&c, &self.out) {
            (Dim::Known(ci), Dim::Known(co)) => Some(shapes::conv_macs(*ci, *co, area, 1)),
            _ => None,
        };
        let per = Coef::rule(value, quote!(conv_macs(#i, #o, #area, 1)), format!("{} × {} × {area}", c.text(), self.out.text()));
        let macs = Poly::product(&dims[1..]).mul(&Poly::konst(per));
        Ok(Built::field(Shape::new(dims).into_map(), field, params).macs(macs))
    }
}

