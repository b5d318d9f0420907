//! An autoencoder on the UCI digits, built from two networks declared apart: the encoder and
//! the decoder live in their own modules and `network!` invocations, and the autoencoder is
//! declared as their composition. Its weights are the encoder's and the decoder's
//! (`encoder_1.dense_1.weight`, …), so the trained encoder is used on its own afterwards.
//!
//!     cargo run --release --example autoencoder
use typenet::prelude::*;
use typenet::train::{fit, predict, FitConfig, Loss};

mod encoder {
    use typenet::prelude::*;
    network! {
        /// 8×8 digits → an 8-number code.
        pub Encoder: [64] -> [8] { dense(32), relu, dense(8) }
    }
}

mod decoder {
    use typenet::prelude::*;
    network! {
        /// An 8-number code → an 8×8 image with pixels in (0, 1).
        pub Decoder: [8] -> [64] { dense(32), relu, dense(64), sigmoid }
    }
}

network! {
    /// The composition is checked like any layer: `Decoder` must take what `Encoder` gives.
    pub Autoencoder: [64] -> [64] { encoder::Encoder, decoder::Decoder }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = std::time::Instant::now();
    println!("{}", <Autoencoder as Network>::summary());
    // Pixels 0..16 scaled to [0, 1]; the target of each image is the image itself.
    let digits = typenet::data::digits().scale(1.0 / 16.0);
    let pixels = digits.inputs.clone();
    let data = digits.with_targets(pixels, 64)?;
    let (train, test) = data.split(0.2, 7);

    let dev = Cpu::seed_from_u64(0);
    let mut model = Autoencoder::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: 3e-3, ..Default::default() });
    let cfg = FitConfig { epochs: 60, batch_size: 32, loss: Loss::Mse, verbose: false, ..Default::default() };
    let history = fit(&mut model, &mut opt, &train, None, &cfg)?;
    println!("training MSE: epoch 1 {:.4} → epoch {} {:.4}", history.epochs[0].train_loss, history.epochs.len(), history.epochs.last().unwrap().train_loss);

    // Test reconstruction error against the best constant guess (the mean image).
    let recon = predict(&model, &test, 64)?;
    let mse = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>() / a.len() as f32;
    let mut mean = vec![0.0f32; 64];
    for i in 0..train.len() {
        for (m, v) in mean.iter_mut().zip(train.input(i)) {
            *m += v / train.len() as f32;
        }
    }
    let baseline: Vec<f32> = (0..test.len()).flat_map(|_| mean.clone()).collect();
    println!("test reconstruction MSE {:.4} (mean-image baseline {:.4})", mse(&recon.values, &test.inputs), mse(&baseline, &test.inputs));

    // The trained encoder on its own: codes for the first test digit of each class.
    let labels = test.labels.clone().unwrap();
    for class in 0..3 {
        let i = labels.iter().position(|&l| l == class).unwrap();
        let x: Tensor<Rank1<64>, f32, Cpu> = dev.tensor(test.input(i).to_vec());
        let code = model.encoder_1.forward(x.clone()).as_vec();
        let shown: Vec<String> = code.iter().map(|v| format!("{v:+.2}")).collect();
        println!("digit {class}: code [{}]", shown.join(" "));
        if class == 0 {
            let y = model.forward(x).as_vec();
            println!("{}", side_by_side(test.input(i), &y));
        }
    }
    println!("total time {:.2?}", start.elapsed());
    Ok(())
}

/// An 8×8 image and its reconstruction as text.
fn side_by_side(a: &[f32], b: &[f32]) -> String {
    let shade = |v: f32| [' ', '.', ':', '*', '#'][((v.clamp(0.0, 0.999)) * 5.0) as usize];
    (0..8)
        .map(|r| {
            let row = |img: &[f32]| (0..8).map(|c| shade(img[r * 8 + c])).collect::<String>();
            format!("  {}   {}", row(a), row(b))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
