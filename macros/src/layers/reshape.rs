//! `flatten` and `reshape([..])`.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::{LayerCall, Value};
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::{Dim, Shape};

pub struct Reshape {
    /// `None` for `flatten` (the target is the input's element count).
    target: Option<Vec<Dim>>,
    ty: TokenStream,
}

pub fn parse_flatten(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    Args::new(call, kind.usage, 0, &[])?;
    Ok(Box::new(Reshape { target: None, ty: kind.ty(0) }))
}

pub fn parse_reshape(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    let a = Args::new(call, usage, 1, &[])?;
    let v = a.require(0, "the new shape", usage)?;
    let Value::List(items, _) = v else {
        return Err(args::err(v, format!("the new shape goes in brackets: `{usage}`")));
    };
    if items.is_empty() {
        return Err(args::err(v, "the new shape needs at least one dimension"));
    }
    let dims = items.iter().map(|d| args::dim(d, "a dimension of `reshape`")).collect::<syn::Result<Vec<_>>>()?;
    Ok(Box::new(Reshape { target: Some(dims), ty: kind.ty(0) }))
}

impl Layer for Reshape {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let kind = if self.target.is_some() { "reshape" } else { "flatten" };
        if let Some(Dim::Runtime(n)) = input.dims.iter().find(|d| d.is_runtime()) {
            return Err(format!(
                "`{kind}` needs every size known at compile time, but {} has the run-time axis `{n}`; to apply it to each element, use `each {{ {kind} }}`",
                input.text()
            ).into());
        }
        if input.rank() > 4 {
            return Err(format!("`{kind}` takes inputs of up to 4 axes, but it is given {}", input.text()).into());
        }
        for (shape, what) in [(Some(input), "its input"), (self.target.as_ref().map(|d| Shape::new(d.clone())).as_ref(), "the new shape")] {
            if shape.is_some_and(overflows) {
                return Err(format!("`{kind}`: the number of elements of {what} {} overflows `usize`", shape.unwrap().text()).into());
            }
        }
        let numel = input.numel();
        let product = input.dims.iter().map(Dim::text).collect::<Vec<_>>().join(" × ");
        let out = match &self.target {
            None => {
                let mut s = Shape::new(vec![numel]);
                if input.rank() > 1 {
                    s.origin = Some(product);
                }
                s
            }
            Some(dims) => {
                if dims.len() > 4 {
                    return Err("`reshape` produces shapes of up to 4 axes".into());
                }
                let target = Shape::new(dims.clone());
                let msg = format!(
                    "`reshape({})` needs {} elements, but its input {} has {}",
                    target.text(),
                    target.numel().text(),
                    input.text(),
                    if input.rank() > 1 { format!("{product} = {}", numel.text()) } else { numel.text() }
                );
                cx.require_eq(&target.numel(), &numel, &msg)?;
                target
            }
        };
        let (ty, module) = (out.ty(), &self.ty);
        Ok(Built::stateless(out, quote!(#module::<#ty>::default())))
    }
}

/// Whether the product of a shape's known sizes overflows `usize`.
fn overflows(shape: &Shape) -> bool {
    shape.dims.iter().try_fold(1usize, |acc, d| match d {
        Dim::Known(n) => acc.checked_mul(*n),
        _ => Some(acc),
    }).is_none()
}
