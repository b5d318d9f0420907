//! An image and a row of tabular data, fused (DSL §6's `Fusion`), on a task where both
//! matter: each sample is an 8×8 digit and a one-hot "shift" k ∈ {0, …, 4}; the class is
//! (digit + k) mod 10. The image alone cannot know k, the shift alone cannot know the digit.
//! Trained with `fit_with` on batches of two inputs, against an image-only and a shift-only
//! network of the same kind. Prints the three test accuracies.
//!
//! Result on this machine (13 s): Fusion 0.902, image only 0.195 (its ceiling is about 0.2:
//! one guess among the five shifts), shift only 0.102 (chance: 0.1).
//!
//!     cargo run --release --example fusion
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use typenet::data::{digits, Standardizer};
use typenet::prelude::*;
use typenet::train::{accuracy, argmax_rows, cross_entropy_with_class_indices as ce, fit_with, Ctx, FitConfig, Step, Traced};

const SHIFTS: usize = 5;
const B: usize = 64;

network! {
    /// Both inputs: the image's features joined with the shift's, then a classifier.
    pub Fusion: (image: [1, 8, 8], shift: [SHIFTS]) -> [10] {
        conv2d(16, kernel = 3, padding = same), relu, max_pool2d(2), flatten, dense(64), relu,
        concat { {}, { shift, dense(16), relu } },
        dense(64), relu, dense(10),
    }
    /// The image only.
    pub ImageOnly: [1, 8, 8] -> [10] {
        conv2d(16, kernel = 3, padding = same), relu, max_pool2d(2), flatten, dense(64), relu,
        dense(64), relu, dense(10),
    }
    /// The shift only.
    pub ShiftOnly: [SHIFTS] -> [10] { dense(16), relu, dense(64), relu, dense(10) }
}

type Images = Tensor<(usize, Const<1>, Const<8>, Const<8>), f32, Cpu>;
type Shifts = Tensor<(usize, Const<SHIFTS>), f32, Cpu>;

/// Samples: standardised pixels, a shift per sample, the class (digit + shift) mod 10.
struct Split {
    x: Vec<f32>,
    k: Vec<usize>,
    y: Vec<usize>,
}

impl Split {
    fn new(x: Vec<f32>, digits: &[usize], rng: &mut StdRng) -> Self {
        let k: Vec<usize> = digits.iter().map(|_| rng.gen_range(0..SHIFTS)).collect();
        let y = digits.iter().zip(&k).map(|(d, k)| (d + k) % 10).collect();
        Split { x, k, y }
    }
    fn batch(&self, dev: &Cpu, idx: &[usize]) -> (Images, Shifts, Vec<usize>) {
        let x = idx.iter().flat_map(|&i| self.x[i * 64..(i + 1) * 64].iter().copied()).collect();
        let k = idx.iter().flat_map(|&i| (0..SHIFTS).map(move |j| if j == self.k[i] { 1.0 } else { 0.0 })).collect();
        let y = idx.iter().map(|&i| self.y[i]).collect();
        (dev.tensor_from_vec(x, (idx.len(), Const, Const, Const)), dev.tensor_from_vec(k, (idx.len(), Const)), y)
    }
    fn len(&self) -> usize {
        self.y.len()
    }
}

/// Trains `model` for 80 epochs on `train` with `logits` choosing its inputs; returns the
/// test accuracy.
fn run<M>(
    model: &mut M,
    train: &Split,
    test: &Split,
    dev: &Cpu,
    logits: impl Fn(&mut M, &mut Ctx<f32, Cpu>, Images, Shifts) -> Traced<(usize, Const<10>), f32, Cpu>,
    predict: impl Fn(&M, Images, Shifts) -> Vec<f32>,
) -> Result<f64, Box<dyn std::error::Error>>
where
    M: TensorCollection<f32, Cpu> + Clone,
{
    let mut opt = Adam::new(model, AdamConfig { lr: 1e-3, ..Default::default() });
    let mut rng = StdRng::seed_from_u64(1);
    let cfg = FitConfig::default().epochs(80).verbose(false);
    let mut step = Step::new();
    fit_with(
        model,
        &mut opt,
        &mut step,
        &cfg,
        |_| {
            let mut order: Vec<usize> = (0..train.len()).collect();
            order.shuffle(&mut rng);
            order.chunks(B).map(|c| train.batch(dev, c)).collect::<Vec<_>>()
        },
        |m, ctx, (x, k, y)| ce(logits(m, ctx, x, k), &y),
        None,
    )?;
    let all: Vec<usize> = (0..test.len()).collect();
    let (x, k, y) = test.batch(dev, &all);
    Ok(accuracy(&y, &argmax_rows(&predict(model, x, k), 10)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut train, mut test) = digits().split(0.3, 42);
    let scaler = Standardizer::fit(&train)?;
    scaler.apply(&mut train)?;
    scaler.apply(&mut test)?;
    let mut rng = StdRng::seed_from_u64(0);
    let (ltr, lte) = (train.labels.clone().ok_or("labels")?, test.labels.clone().ok_or("labels")?);
    let (tr, te) = (Split::new(train.inputs, &ltr, &mut rng), Split::new(test.inputs, &lte, &mut rng));
    let dev = Cpu::seed_from_u64(0);

    let mut fusion = Fusion::<f32, Cpu>::build(&dev);
    let a_fusion = run(
        &mut fusion,
        &tr,
        &te,
        &dev,
        // The tape rides on the first input; the batch sizes agree by construction.
        |m, ctx, x, k| m.try_forward_mut((ctx.input(x), k)).expect("one batch size"),
        |m, x, k| m.try_forward((x, k)).expect("one batch size").as_vec(),
    )?;
    let mut image = ImageOnly::<f32, Cpu>::build(&dev);
    let a_image = run(&mut image, &tr, &te, &dev, |m, ctx, x, _| m.forward_mut(ctx.input(x)), |m, x, _| m.forward(x).as_vec())?;
    let mut shift = ShiftOnly::<f32, Cpu>::build(&dev);
    let a_shift = run(&mut shift, &tr, &te, &dev, |m, ctx, _, k| m.forward_mut(ctx.input(k)), |m, _, k| m.forward(k).as_vec())?;
    println!("test accuracy on (digit + shift) mod 10:");
    println!("  image and shift (Fusion): {a_fusion:.3}");
    println!("  image only:               {a_image:.3}");
    println!("  shift only:               {a_shift:.3}");
    Ok(())
}
