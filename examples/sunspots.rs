//! Forecast next month's sunspot number from the previous 24 months with an LSTM.
//!
//! Data: monthly mean sunspot numbers 1749–2008 (NOAA NGDC, public domain;
//! `data/README.md`). Chronological split: the first 80 % of months train, the rest
//! test. Reports the test RMSE (in sunspot units) against the naive forecast "next month =
//! this month".
//!
//! `cargo run --release --example sunspots`

use typenet::layers::{Dense, Last, Lstm};
use typenet::prelude::*;
use typenet::train::Step;

const WINDOW: usize = 24;
const HIDDEN: usize = 32;
const BATCH: usize = 64;
const EPOCHS: usize = 30;
const SCALE: f32 = 200.0;

type Model = (Lstm<1, HIDDEN, f32, Cpu>, Last, Dense<HIDDEN, 1, f32, Cpu>);

fn load() -> Vec<f32> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sunspots_monthly.csv");
    let text = std::fs::read_to_string(path).expect("data/sunspots_monthly.csv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.rsplit(',').next().unwrap().trim().parse::<f32>().expect("a number"))
        .collect()
}

/// Windows `series[i..i+W]` and targets `series[i+W]` for every `i + W` in `range`.
fn windows(series: &[f32], range: std::ops::Range<usize>) -> (Vec<f32>, Vec<f32>) {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for end in range {
        if end < WINDOW {
            continue;
        }
        xs.extend(series[end - WINDOW..end].iter().map(|v| v / SCALE));
        ys.push(series[end] / SCALE);
    }
    (xs, ys)
}

fn rmse(a: &[f32], b: &[f32]) -> f32 {
    (a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>() / a.len() as f32).sqrt()
}

fn predict(model: &Model, dev: &Cpu, xs: &[f32]) -> Vec<f32> {
    let n = xs.len() / WINDOW;
    let x = dev.tensor_from_vec(xs.to_vec(), (n, Const::<WINDOW>, Const::<1>));
    model.forward(x).as_vec().iter().map(|v| v * SCALE).collect()
}

fn main() {
    let t0 = std::time::Instant::now();
    let series = load();
    let split = series.len() * 8 / 10;
    let (xtr, ytr) = windows(&series, 0..split);
    let (xte, yte) = windows(&series, split..series.len());
    let ntr = ytr.len();
    println!(
        "sunspots: {} months, {} training windows, {} test windows (test from {})",
        series.len(),
        ntr,
        yte.len(),
        1749 + split / 12
    );

    let dev = Cpu::seed_from_u64(0);
    let mut model: Model = (Lstm::build(&dev), Last, Dense::build(&dev));
    let mut opt = Adam::new(&model, AdamConfig { lr: 3e-3, ..Default::default() });
    let mut step = Step::new();
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut order: Vec<usize> = (0..ntr).collect();
    for epoch in 0..EPOCHS {
        // seeded Fisher–Yates shuffle (xorshift)
        for i in (1..ntr).rev() {
            rng_state ^= rng_state << 13;
            rng_state ^= rng_state >> 7;
            rng_state ^= rng_state << 17;
            order.swap(i, (rng_state % (i as u64 + 1)) as usize);
        }
        let mut total = 0.0;
        for batch in order.chunks(BATCH) {
            let mut xb = Vec::with_capacity(batch.len() * WINDOW);
            let mut yb = Vec::with_capacity(batch.len());
            for &i in batch {
                xb.extend_from_slice(&xtr[i * WINDOW..(i + 1) * WINDOW]);
                yb.push(ytr[i]);
            }
            let x = dev.tensor_from_vec(xb, (batch.len(), Const::<WINDOW>, Const::<1>));
            let y = dev.tensor_from_vec(yb, (batch.len(), Const::<1>));
            let loss = step.run(&mut model, &mut opt, |m, ctx| mse_loss(m.forward_mut(ctx.input(x)), y)).expect("a finite loss");
            total += loss as f32 * batch.len() as f32;
        }
        if epoch % 5 == 4 || epoch == 0 {
            let train_rmse = (total / ntr as f32).sqrt() * SCALE;
            let test_rmse = rmse(&predict(&model, &dev, &xte), &yte.iter().map(|v| v * SCALE).collect::<Vec<_>>());
            println!("epoch {:>2}: train RMSE {train_rmse:6.2}, test RMSE {test_rmse:6.2}", epoch + 1);
        }
    }
    let truth: Vec<f32> = yte.iter().map(|v| v * SCALE).collect();
    let lstm = rmse(&predict(&model, &dev, &xte), &truth);
    // naive: next month = the last month of the window
    let naive: Vec<f32> = (0..yte.len()).map(|i| xte[i * WINDOW + WINDOW - 1] * SCALE).collect();
    let naive = rmse(&naive, &truth);
    println!("test RMSE: LSTM {lstm:.2}, naive last value {naive:.2} ({:+.1} %)", 100.0 * (lstm / naive - 1.0));
    println!("({:.1} s)", t0.elapsed().as_secs_f64());
}
