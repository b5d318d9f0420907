//! `dropout(p)`: zeroes each element with probability `p` in training (`forward_mut`),
//! scaling the rest by 1/(1−p); the identity in evaluation (`forward`), with or without a tape.

use dfdx::prelude::*;

use crate::ops::DropoutKernel;
use crate::Float;

/// `dropout(p)`. Unlike dfdx's `Dropout`, evaluation works on traced inputs too (gradients
/// with respect to inputs of a model in evaluation mode) and training on untraced ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing an element, in `[0, 1)`.
    pub p: f64,
}

impl Default for Dropout {
    fn default() -> Self {
        Dropout { p: 0.5 }
    }
}

impl<E: Float, D: Device<E>> TensorCollection<E, D> for Dropout {
    type To<E2: Dtype, D2: Device<E2>> = Dropout;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(
        visitor: &mut V,
    ) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(<Self as TensorCollection<E, D>>::scalar("p", |s| &s.p, |s| &mut s.p, ScalarOptions::from_default(0.5)), |p| Dropout { p })
    }
}

impl<S: Shape, E: Float, D: Device<E>, T: Tape<E, D>> Module<Tensor<S, E, D, T>> for Dropout {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;
    fn try_forward(&self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        Ok(x)
    }
}

impl<S: Shape, E: Float, D: DropoutKernel<E>, T: Tape<E, D>> ModuleMut<Tensor<S, E, D, T>> for Dropout {
    type Output = Tensor<S, E, D, T>;
    type Error = D::Err;
    fn try_forward_mut(&mut self, x: Tensor<S, E, D, T>) -> Result<Self::Output, D::Err> {
        if self.p == 0.0 {
            return Ok(x);
        }
        D::try_dropout_op(x, self.p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn train_and_eval_differ() {
        let dev = Cpu::seed_from_u64(1);
        let mut d = Dropout { p: 0.5 };
        let x: Tensor<Rank1<1000>, f32, _> = dev.ones();
        assert_eq!(d.forward(x.clone()).as_vec(), vec![1.0; 1000]);
        let y = d.forward_mut(x).as_vec();
        let zeros = y.iter().filter(|v| **v == 0.0).count();
        assert!((400..600).contains(&zeros), "{zeros} zeros");
        assert!(y.iter().all(|v| *v == 0.0 || (*v - 2.0).abs() < 1e-6));
    }
}
