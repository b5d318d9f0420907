//! Set layers: `pool(sum | mean | max)`, `set_dense(out)`, `radial_basis(count, cutoff = r)`
//! (and `radial_basis(count, cutoff = r, species = z, kinds = k)`, by neighbour species).
//!
//! Their runtime types (`typenet::layers::{SetSum, SetMean, SetMax, SetDense, RadialBasis}`)
//! take the set axis as a `usize`; a set axis of known size (`[5, 4]`) is realized to `usize`
//! around the call.

use proc_macro2::TokenStream;
use quote::quote;

use super::{Env, Kind};
use crate::args::{self, Args};
use crate::ast::{InputKind, LayerCall, Value};
use crate::check::{Built, Checker, Layer, LayerError};
use crate::shape::{Dim, Shape};
use crate::work::{Coef, Poly};
use crate::runtime::{LAYERS, PRIVATE};

/// `module` (a layer whose runtime type needs a `usize` set axis) on an input whose set axis
/// may have a known size: realized to `usize` before and back after.
fn with_runtime_set_axis(input: &Shape, output: &Shape, module: TokenStream) -> TokenStream {
    if input.dims[0].is_runtime() {
        return module;
    }
    let rest = input.dims[1..].iter().map(Dim::ty);
    let out_ty = output.ty();
    quote!((
        #PRIVATE::Realize::<(usize, #(#rest,)*)>::default(),
        #module,
        #PRIVATE::Realize::<#out_ty>::default(),
    ))
}

fn set_of_vectors(kind: &str, input: &Shape) -> Result<(), String> {
    if input.rank() > 2 {
        return Err(format!(
            "`{kind}` acts on a set of feature vectors `[n, f]`, but it is given {}; flatten each element first with `each {{ flatten }}`",
            input.text()
        ));
    }
    if input.rank() != 2 {
        return Err(format!("`{kind}` acts on a set of feature vectors `[n, f]`, but it is given the vector {}", input.text()));
    }
    if let Dim::Runtime(name) = &input.dims[1] {
        return Err(format!(
            "`{kind}` needs a feature axis of known size, but the last axis of {} is the run-time axis `{name}`",
            input.text()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// pool

pub struct Pool {
    op: String,
    /// The runtime type for a run-time set axis (`SetSum`, `SetMean`, `SetMax`).
    ty: TokenStream,
}

/// The reductions, in the order of the catalogue's runtime types.
const REDUCTIONS: [&str; 3] = ["sum", "mean", "max"];

pub fn parse_pool(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    let a = Args::new(call, usage, 1, &[])?;
    let v = a.require(0, "the reduction (`sum`, `mean` or `max`)", usage)?;
    let op = args::choice(v, "reduction", &REDUCTIONS)?;
    let i = REDUCTIONS.iter().position(|r| *r == op).unwrap_or(0);
    Ok(Box::new(Pool { op, ty: kind.ty(i) }))
}

impl Pool {
    /// Whether `typenet::layers::Set*` takes this input: a run-time set axis followed by one
    /// to three known sizes.
    fn has_module(input: &Shape) -> bool {
        input.dims[0].is_runtime() && (2..=4).contains(&input.rank()) && input.dims[1..].iter().all(|d| !d.is_runtime())
    }
}

impl Layer for Pool {
    fn check(&self, input: &Shape, _: &mut Checker) -> Result<Built, LayerError> {
        if input.rank() < 2 {
            return Err(format!(
                "`pool({})` reduces axis 0 of a set or sequence `[n, ..]`, but it is given the vector {}",
                self.op,
                input.text()
            ).into());
        }
        if input.rank() > 5 {
            return Err(format!("`pool` takes inputs of up to 5 axes, but it is given {}", input.text()).into());
        }
        let output = Shape::new(input.dims[1..].to_vec());
        let built = Built::stateless(output.clone(), self.ty.clone());
        if Self::has_module(input) {
            return Ok(built);
        }
        // Any other shape: the reduction on the set axis, for any dimension types.
        let op = REDUCTIONS.iter().position(|r| *r == self.op).unwrap_or(0) as u8;
        let out = output.ty();
        Ok(built.tree(quote!(#PRIVATE::ReduceSet::<#out, #op>::default())))
    }
}

// ---------------------------------------------------------------------------------------
// set_dense

pub struct SetDense {
    declared_in: Option<Dim>,
    out: Dim,
    init: TokenStream,
    ty: TokenStream,
}

pub fn parse_set_dense(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    let a = Args::new(call, usage, 1, &["init"])?;
    let v = a.require(0, "its output size", "set_dense(out)")?;
    let (declared_in, out) = match v {
        Value::Arrow(i, o, _) => (
            Some(args::dim(i, "the input size of `set_dense`")?),
            args::dim(o, "the output size of `set_dense`")?,
        ),
        _ => (None, args::dim(v, "the output size of `set_dense`")?),
    };
    Ok(Box::new(SetDense { declared_in, out, init: super::dense::init_arg(&a)?, ty: kind.ty(0) }))
}

impl Layer for SetDense {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        set_of_vectors("set_dense", input)?;
        let last = &input.dims[1];
        if let Some(declared) = &self.declared_in {
            let layer = format!("set_dense({} -> {})", declared.text(), self.out.text());
            cx.require_features(&layer, declared, input, "")?;
        }
        let output = Shape::new(vec![input.dims[0].clone(), self.out.clone()]);
        let (i, o) = (last.arg(), self.out.arg());
        let (init, ty) = (&self.init, &self.ty);
        let field = quote!(#ty<#i, #o, __E, __D, #init>);
        let (i, o) = (last.value(), self.out.value());
        let params = crate::runtime::count(quote!(set_dense_params(#i, #o)));
        let tree = with_runtime_set_axis(input, &output, cx.field());
        // `set_dense_macs`: `weight` on each of the `n` elements, `weight_pool` once.
        let times = Poly::dim(&input.dims[0]).add(&Poly::konst(Coef::one()));
        let macs = times.mul(&Poly::konst(super::dense::dense_macs(last, &self.out)));
        Ok(Built::field(output, field, params).tree(tree).macs(macs))
    }
}

// ---------------------------------------------------------------------------------------
// radial_basis

pub struct RadialBasis {
    count: Dim,
    /// A number, or an `f64` constant (checked positive by a compile-time assertion).
    cutoff: Cutoff,
    /// `species = z, kinds = k`: the index input holding each point's species, and `k`.
    species: Option<(syn::Path, Dim)>,
    kind: &'static Kind,
}

enum Cutoff {
    Number(f64),
    Const(syn::Path),
}

pub fn parse_radial_basis(call: &LayerCall, kind: &'static Kind, _: &Env) -> syn::Result<Box<dyn Layer>> {
    let usage = kind.usage;
    let a = Args::new(call, usage, 1, &["cutoff", "species", "kinds"])?;
    let v = a.require(0, "the number of radial functions", "radial_basis(16, cutoff = 5.0)")?;
    let count = args::dim(v, "the number of radial functions")?;
    let Some(c) = a.kw("cutoff") else {
        return Err(syn::Error::new_spanned(
            &call.tokens,
            "`radial_basis` needs its cutoff radius: `radial_basis(16, cutoff = 5.0)`",
        ));
    };
    let cutoff = match c {
        Value::Path(p) if args::is_const_path(p) => Cutoff::Const(p.clone()),
        _ => {
            let r = args::number(c, "the cutoff radius")?;
            if !(r > 0.0 && r.is_finite()) {
                return Err(args::err(c, format!("the cutoff radius must be positive, not {r}")));
            }
            Cutoff::Number(r)
        }
    };
    let species = match (a.kw("species"), a.kw("kinds")) {
        (None, None) => None,
        (Some(Value::Path(z)), Some(k)) => Some((z.clone(), args::dim(k, "the number of species `kinds`")?)),
        (Some(v @ Value::Path(_)), None) => {
            return Err(args::err(v, "`species = ..` needs the number of species too: `radial_basis(16, cutoff = 5.0, species = z, kinds = 2)`"))
        }
        (Some(v), _) => return Err(args::err(v, "`species = z` names the index input holding each point's species (`z: [n]`)")),
        (None, Some(k)) => {
            return Err(args::err(k, "`kinds = ..` counts the species of `species = z`, which is missing: `radial_basis(16, cutoff = 5.0, species = z, kinds = 2)`"))
        }
    };
    Ok(Box::new(RadialBasis { count, cutoff, species, kind }))
}

impl Layer for RadialBasis {
    fn check(&self, input: &Shape, cx: &mut Checker) -> Result<Built, LayerError> {
        let msg = format!("`radial_basis` takes a set of 3-D points `[n, 3]`, but it is given {}", input.text());
        if input.rank() != 2 || input.dims[1].is_runtime() {
            return Err(msg.into());
        }
        let deferred = cx.require_eq(&Dim::Known(3), &input.dims[1], &msg)?;
        if let Cutoff::Const(p) = &self.cutoff {
            let text = crate::shape::tidy(&quote!(#p).to_string());
            cx.require_const(
                quote!({
                    #[allow(clippy::unnecessary_cast)]
                    let c = #p as f64;
                    c > 0.0 && c < f64::INFINITY
                }),
                &format!("the cutoff radius of `radial_basis` must be positive, but `{text}` is not"),
                &[],
            );
        }
        let output = Shape::new(vec![input.dims[0].clone(), self.count.clone()]);
        let count = self.count.arg();
        let cutoff = match &self.cutoff {
            Cutoff::Number(r) => quote!(#r),
            Cutoff::Const(p) => quote!({
                #[allow(clippy::unnecessary_cast)]
                let c = #p as f64;
                c
            }),
        };
        // `[n, D]` with a constant `D` (the assertion checks that it is 3): given as `[n, 3]`.
        let points = Shape::new(vec![input.dims[0].clone(), Dim::Known(3)]);
        let Some((z, kinds)) = &self.species else {
            let ty = self.kind.ty(0);
            let module = quote!(#ty::<#count>::new(#cutoff));
            let mut tree = with_runtime_set_axis(input, &output, module.clone());
            if deferred {
                tree = crate::runtime::realize_before(points.ty(), tree);
            }
            return Ok(Built::stateless(output, module).tree(tree));
        };
        // By species: like `route(z)`, the species come from another input, read on the host.
        let sel = cx.input(z, "`radial_basis(species = ..)`", InputKind::Tensor)?;
        if sel.kind != InputKind::Tensor || sel.shape.rank() != 1 {
            return Err(format!(
                "`radial_basis(species = {0})` needs one species index per point, `{0}: [n]`, but `{0}` is declared {1}{2}",
                sel.ident,
                if sel.kind == InputKind::Graph { "graph" } else if sel.kind == InputKind::Mask { "mask" } else { "" },
                sel.shape.text()
            ).into());
        }
        if !input.dims[0].is_runtime() {
            return Err(format!(
                "`radial_basis(species = {})` acts on a set of points over a run-time axis `[n, 3]`, but it is given {}",
                sel.ident,
                input.text()
            ).into());
        }
        if sel.shape.dims[0].text() != input.dims[0].text() {
            return Err(format!(
                "`radial_basis(species = {})` has one species per point of the axis `{}`, but its input {} runs over `{}`",
                sel.ident,
                sel.shape.dims[0].text(),
                input.text(),
                input.dims[0].text()
            ).into());
        }
        if let Dim::Const { .. } = kinds {
            let (k, text) = (kinds.value(), kinds.text());
            cx.require_const(quote!(#k > 0), &format!("`radial_basis` needs at least one species, but `kinds = {text}` is 0"), &[]);
        }
        let width = self.count.mul(kinds);
        let output = Shape::new(vec![input.dims[0].clone(), width.clone()]);
        let (ty, k, w) = (self.kind.ty(1), kinds.arg(), width.arg());
        let module = quote!(#ty::<#count, #k, #w>::new(#cutoff));
        let sel = crate::tree::selector(&sel.ident);
        let mut tree = quote!(#LAYERS::With(#module, &#sel[..]));
        if deferred {
            tree = crate::runtime::realize_before(points.ty(), tree);
        }
        Ok(Built::stateless(output, module).tree(tree).fallible().per_sample_only())
    }
}
