//! `max_pool1d(k)`, `avg_pool1d(k)`, `max_pool2d(k)`, `avg_pool2d(k)` (kernel also `(h, w)`;
//! `stride` defaults to the kernel; optional `padding` up to half the kernel) and
//! `global_avg_pool`, `global_max_pool` (`[c, ..spatial] -> [c]`).
//!
//! Shape rule: `out = (len + 2·padding − kernel) / stride + 1` (floor); an axis that would
//! shrink to 0 is an error.

use quote::quote;

use super::conv::{axis_name, const_window, padding_arg, per_axis, spatial, Pad, Window};
use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::LayerCall;
use crate::check::{Built, Checker, Layer, LayerError};
use crate::runtime::SHAPES;
use crate::shape::{Dim, Shape};
use typenet_shapes as shapes;

/// Windowed pools.
pub struct Pool {
    kind: &'static Kind,
    axes: usize,
    win: Window,
}

fn parse_pool(call: &LayerCall, kind: &'static Kind, axes: usize) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    let a = Args::new(call, usage, 1, &["stride", "padding"])?;
    let kernel = per_axis(a.require(0, "its kernel size", usage)?, axes, "the kernel size", 1)?;
    let stride = match a.kw("stride") {
        Some(v) => per_axis(v, axes, "the stride", 1)?,
        None => kernel.clone(),
    };
    let padding = padding_arg(a.kw("padding"), axes, false)?;
    for (i, p) in padding.iter().enumerate() {
        if let Pad::N(p) = p {
            if *p > kernel[i] / 2 {
                return Err(args::err(
                    a.kw("padding").unwrap(),
                    format!("pool padding must be at most half the kernel size ({} here), as in PyTorch", kernel[i] / 2),
                ));
            }
        }
    }
    Ok(Box::new(Pool { kind, axes, win: Window { kernel, stride, padding, dilation: vec![1; axes] } }))
}

/// `max_pool1d`, `avg_pool1d`.
pub fn parse_pool1d(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    parse_pool(call, kind, 1)
}
/// `max_pool2d`, `avg_pool2d`.
pub fn parse_pool2d(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    parse_pool(call, kind, 2)
}

impl Layer for Pool {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let kind = self.kind.name;
        let (c, sizes) = spatial(kind, input, self.axes)?;
        let mut dims = vec![c];
        let mut resolved = Vec::new();
        for (i, len) in sizes.iter().enumerate() {
            let (k, s) = (self.win.kernel[i], self.win.stride[i]);
            let Pad::N(p) = self.win.padding[i] else { unreachable!() };
            let out = match len {
                Dim::Known(len) => {
                    let len = *len;
                    let Some(out) = shapes::pool_out(len, k, s, p) else {
                        let padded = shapes::padded(len, p, p).map_or_else(|| "more than `usize::MAX`".to_string(), |n| n.to_string());
                        let pad = if p > 0 { format!(" padded to {padded}") } else { String::new() };
                        return Err(format!(
                            "`{kind}({k})` shrinks the {} {len}{pad} to 0 (input {})",
                            axis_name(self.axes, i),
                            input.text()
                        ).into());
                    };
                    Dim::Known(out)
                }
                _ => {
                    let v = len.value();
                    let call = quote!(#SHAPES::pool_out(#v, #k, #s, #p));
                    let pad = if p > 0 { format!(" padded by {}", 2 * p) } else { String::new() };
                    let msg = format!("`{kind}({k})` shrinks the {} {}{pad} to 0 (input {})", axis_name(self.axes, i), len.text(), input.text());
                    const_window(cx, len, call, (p, p, k, s), &msg)
                }
            };
            dims.push(out.clone());
            resolved.push((p, out.arg()));
        }
        let w = &self.win;
        let ty = self.kind.ty(0);
        let module = if self.axes == 1 {
            let (k, s) = (w.kernel[0], w.stride[0]);
            let (p, ol) = resolved[0].clone();
            quote!(#ty::<#k, #s, #p, #ol>)
        } else {
            let ([kh, kw], [sh, sw]) = ([w.kernel[0], w.kernel[1]], [w.stride[0], w.stride[1]]);
            let ((ph, oh), (pw, ow)) = (resolved[0].clone(), resolved[1].clone());
            quote!(#ty::<#kh, #kw, #sh, #sw, #ph, #pw, #oh, #ow>)
        };
        Ok(Built::stateless(Shape::new(dims).into_map(), module))
    }
}

/// `global_avg_pool`, `global_max_pool`: `[c, ..spatial] -> [c]`.
pub struct GlobalPool {
    kind: &'static Kind,
}

pub fn parse_global(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(GlobalPool { kind }))
}

impl Layer for GlobalPool {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        let kind = self.kind.name;
        if input.rank() < 2 || input.rank() > 4 {
            return Err(format!(
                "`{kind}` takes a feature map `[c, ..spatial]` with 1 to 3 spatial axes, but it is given {}",
                if input.rank() == 1 { "a vector".to_string() } else { input.text() }
            ).into());
        }
        if let (2, Dim::Runtime(n)) = (input.rank(), &input.dims[0]) {
            let op = if kind == "global_max_pool" { "max" } else { "mean" };
            return Err(format!(
                "`{kind}` pools a feature map `[c, ..spatial]` over its spatial axes, but {} is a sequence or set with the run-time length `{n}` \
                 (making the length known would pool over the features instead); to pool over `{n}`, use `pool({op})`",
                input.text()
            ).into());
        }
        if let Some(Dim::Runtime(n)) = input.dims.iter().find(|d| d.is_runtime()) {
            return Err(format!("`{kind}` needs every size known at compile time, but {} has the run-time axis `{n}`", input.text()).into());
        }
        Ok(Built::stateless(Shape::new(vec![input.dims[0].clone()]), self.kind.ty(0)))
    }
}
