//! The batch a training loop feeds its network is *data*: no parameter lies upstream of it, so
//! the gradient with respect to it is never read. dfdx computes it all the same (a traced input
//! is a tensor like any other), and for a dense first layer that product, `gy·W`, is as large
//! as the layer's forward product: 28 % of the MLP 784-256-128-10's GEMM work. PyTorch skips it
//! (the batch does not require grad). `fit` marks its batch with [`DataInput::mark`] for the
//! forward pass; an op that finds its input marked ([`is_data`]) records no input gradient.
//!
//! Identity is the address of the tensor's first element, on `Cpu` (other devices: nothing is
//! marked, nothing skipped). The guard holds a clone of the batch, so while the mark is set
//! its buffer cannot be freed and handed to another tensor, and dfdx's in-place ops copy it
//! before writing (the buffer is shared). A tensor found at that address therefore shares the
//! batch's buffer (the batch, a clone, a reshape): data as well. A hand-written loop that
//! wants the same saving marks its batch the same way ([`crate::train::DataInput`]).

use std::cell::Cell;

use dfdx::prelude::*;

thread_local! {
    /// The marked batch's address; 0 for none.
    static MARKED: Cell<usize> = const { Cell::new(0) };
}

/// The address of a `Cpu` tensor's first element; 0 for an empty tensor.
fn address<S: Shape, E: Unit, T>(t: &Tensor<S, E, Cpu, T>) -> usize {
    if t.shape().num_elements() == 0 {
        return 0;
    }
    &t[S::Concrete::default()] as *const E as usize
}

/// While alive, marks a batch as data on this thread: the dense, convolution and recurrent
/// ops that take it (the network's first layer) do not compute the gradient with respect to
/// it, which a training loop never reads. `fit` marks its batches; a hand-written loop marks
/// its own around the forward pass. The previous mark comes back when the guard is dropped.
/// Do not mark a tensor whose gradient you read (it would stay zero). `Cpu` only; on other
/// devices marking does nothing.
///
/// ```
/// use typenet::prelude::*;
/// use typenet::train::DataInput;
///
/// network! { pub Mlp: [4] -> [2] { dense(8), relu, dense(2) } }
///
/// let dev = Cpu::seed_from_u64(0);
/// let mut model = Mlp::<f32, Cpu>::build(&dev);
/// let x: Tensor<(usize, Const<4>), f32, Cpu> = dev.sample_normal_like(&(3, Const));
/// let data = DataInput::mark(&x);
/// let y = model.forward_mut(x.traced(model.alloc_grads()));
/// drop(data);
/// let grads = y.sum().backward(); // every weight's gradient; none for `x`
/// assert!(grads.get(&model.dense_1.weight).array().iter().flatten().any(|g| *g != 0.0));
/// ```
#[must_use = "the mark lasts as long as the guard"]
pub struct DataInput<K> {
    _keep: K,
    prev: usize,
}

impl<S: Shape, E: Unit, D: Storage<E>> DataInput<Tensor<S, E, D>> {
    /// Marks `x` (a tensor without a tape: the batch before it is traced).
    pub fn mark(x: &Tensor<S, E, D>) -> Self {
        let prev = MARKED.with(Cell::get);
        if let Some(c) = (x as &dyn std::any::Any).downcast_ref::<Tensor<S, E, Cpu>>() {
            MARKED.with(|m| m.set(address(c)));
        }
        DataInput { _keep: x.clone(), prev }
    }
}

impl<K> Drop for DataInput<K> {
    fn drop(&mut self) {
        MARKED.with(|m| m.set(self.prev));
    }
}

/// Whether `t` is (a view of) the batch marked on this thread.
pub(crate) fn is_data<S: Shape, E: Unit, T>(t: &Tensor<S, E, Cpu, T>) -> bool {
    let marked = MARKED.with(Cell::get);
    marked != 0 && address(t) == marked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_the_batch_and_its_views_only_while_the_guard_lives() {
        let dev = Cpu::default();
        dev.enable_cache();
        let x: Tensor<(usize, Const<3>), f32, Cpu> = dev.sample_normal_like(&(4, Const));
        let other: Tensor<(usize, Const<3>), f32, Cpu> = dev.sample_normal_like(&(4, Const));
        assert!(!is_data(&x));
        {
            let _g = DataInput::mark(&x);
            assert!(is_data(&x));
            assert!(is_data(&x.clone().traced(Gradients::<f32, Cpu>::leaky())));
            assert!(is_data(&x.clone().reshape_like(&(2usize, 6usize))));
            assert!(!is_data(&other));
            // dfdx's in-place ops copy the shared buffer: their output is not the batch.
            assert!(!is_data(&x.clone().relu()));
            {
                let _inner = DataInput::mark(&other);
                assert!(is_data(&other) && !is_data(&x));
            }
            assert!(is_data(&x) && !is_data(&other));
        }
        assert!(!is_data(&x));
        let empty: Tensor<(usize, Const<3>), f32, Cpu> = dev.zeros_like(&(0, Const));
        let _g = DataInput::mark(&empty);
        assert!(!is_data(&empty), "an empty tensor has no address to mark");
    }
}
