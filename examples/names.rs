//! Character-level language models of surnames: a causal transformer and an LSTM.
//!
//! Data: the 88 799 surnames of the 1990 US Census (`data/census_surnames.txt.gz`, public
//! domain; `data/README.md`), lowercase a–z, at most 13 letters. A seeded shuffle holds out
//! 10 % as the test set. Each name is read as `. n a m e .`: the model sees the start mark and
//! the letters so far and predicts the next symbol (27: the letters and the end mark), so a
//! name of n letters is n + 1 predictions. Reported: the held-out cross-entropy per predicted
//! symbol (nats) of
//!
//! - the unigram baseline (symbol frequencies of the training names),
//! - a causal transformer: `embedding(27, 64), positional(max = 14)`, two
//!   `transformer(heads = 4, ff = 256, causal, dropout = 0)`, `dense(27)`,
//! - an LSTM: `embedding(27, 32), lstm(128), dense(27)`,
//!
//! each trained with Adam (cosine learning rate) for the same number of steps on the same
//! batches, and ten names sampled from each.
//!
//! Result on this machine (2 cores, `cargo run --release --example names`):
//! unigram 2.953 nats, transformer 2.183 (104 347 parameters, 1500 steps in 177 s),
//! LSTM 2.136 (87 291 parameters, 1500 steps in 82 s); about 4½ minutes in all on the
//! shared machine. Sampled: transformer `ryce schwall addunzi munnin ear sheado detrek
//! suttane rcaslank wixmra`, LSTM `rycf schwall addumseck munning ear sheadlend detrek susoff
//! reash wiwly` (the same random stream drives both samplers).
//!
//! `-- --steps N` changes the number of training steps (default 1500).

use std::error::Error;
use std::io::Read;
use std::time::Instant;

use rand::prelude::*;
use typenet::layers::NetworkError;
use typenet::prelude::*;
use typenet::train::{Ctx, LossTensor, Step, Traced};

/// The end (and start) mark is symbol 0, the letters a–z are 1..=26.
const VOCAB: usize = 27;
const MAX_LETTERS: usize = 13;
/// The longest input: the start mark and 13 letters.
const MAX_T: usize = MAX_LETTERS + 1;
const BATCH: usize = 64;
const STEPS: usize = 1500;
const SEED: u64 = 0;
const DIM: usize = 64;
const EMB: usize = 32;
const HIDDEN: usize = 128;

type Tokens = Tensor<(usize, usize), usize, Cpu>;
type Logits = Tensor<(usize, usize, Const<VOCAB>), f32, Cpu>;
type BoxErr = Box<dyn Error>;

// ---- The models (the one place the architectures are written) -----------------------------
network! {
    /// A causal transformer language model.
    pub CharLm: [t] -> [t, VOCAB] {
        embedding(VOCAB, DIM), positional(max = MAX_T),
        transformer(heads = 4, ff = 256, causal = true, dropout = 0),
        transformer(heads = 4, ff = 256, causal = true, dropout = 0),
        dense(VOCAB),
    }
    /// An LSTM language model.
    pub LstmLm: [t] -> [t, VOCAB] { embedding(VOCAB, EMB), lstm(HIDDEN), dense(VOCAB) }
}

/// A language model: next-symbol logits `[batch, t, 27]` for input symbols `[batch, t]`, in
/// evaluation (`forward`) and in training (`forward_mut` on a traced input).
trait Lm: TensorCollection<f32, Cpu> + Sized + Module<Tokens, Output = Logits, Error = NetworkError> {
    const NAME: &'static str;
    const LR: f64;
    fn fresh(dev: &Cpu) -> Self;
    /// The training loss of a batch, the tape started on the tokens.
    fn train_loss(&mut self, ctx: &mut Ctx<f32, Cpu>, x: Tokens, y: Logits, count: usize) -> LossTensor<f32, Cpu>;
}

macro_rules! lm {
    ($ty:ty, $name:expr, $lr:expr) => {
        impl Lm for $ty {
            const NAME: &'static str = $name;
            const LR: f64 = $lr;
            fn fresh(dev: &Cpu) -> Self {
                <$ty>::build(dev)
            }
            fn train_loss(&mut self, ctx: &mut Ctx<f32, Cpu>, x: Tokens, y: Logits, count: usize) -> LossTensor<f32, Cpu> {
                // Every symbol of a batch is below VOCAB, so the network cannot refuse it.
                loss(self.try_forward_mut(ctx.input(x)).expect("symbols < 27"), y, count)
            }
        }
    };
}
lm!(CharLm<f32, Cpu>, "transformer", 2e-3);
lm!(LstmLm<f32, Cpu>, "LSTM", 5e-3);
// -----------------------------------------------------------------------------------------

/// The surnames as symbols 1..=26.
fn load() -> Result<Vec<Vec<usize>>, BoxErr> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/census_surnames.txt.gz");
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut text).map_err(|e| format!("{path}: {e}"))?;
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        if line.len() > MAX_LETTERS || !line.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(format!("{path} line {}: {line:?} is not 1..=13 letters a-z", i + 1).into());
        }
        names.push(line.bytes().map(|b| (b - b'a' + 1) as usize).collect());
    }
    Ok(names)
}

/// Inputs `[b, t]` (`. n a m e`, padded with 0), one-hot targets `[b, t, 27]` (`n a m e .`,
/// padding rows all zero) and the number of predictions.
fn batch(dev: &Cpu, names: &[&Vec<usize>]) -> (Tokens, Logits, usize) {
    let t = names.iter().map(|n| n.len() + 1).max().unwrap_or(1);
    let mut x = vec![0usize; names.len() * t];
    let mut y = vec![0.0f32; names.len() * t * VOCAB];
    let mut count = 0;
    for (b, name) in names.iter().enumerate() {
        for (i, &c) in name.iter().enumerate() {
            x[b * t + i + 1] = c;
            y[(b * t + i) * VOCAB + c] = 1.0;
        }
        y[(b * t + name.len()) * VOCAB] = 1.0;
        count += name.len() + 1;
    }
    let n = names.len();
    (dev.tensor_from_vec(x, (n, t)), dev.tensor_from_vec(y, (n, t, Const)), count)
}

/// Mean cross-entropy over the predictions marked in `target` (`count` of them).
fn loss(logits: Traced<(usize, usize, Const<VOCAB>), f32, Cpu>, target: Logits, count: usize) -> LossTensor<f32, Cpu> {
    (logits.log_softmax::<Axis<2>>() * target).sum::<Rank0, _>() * (-1.0 / count as f32)
}

/// The summed cross-entropy (nats) of the predictions marked in `target`, on the host.
fn nll(logits: &[f32], target: &[f32]) -> f64 {
    logits
        .chunks(VOCAB)
        .zip(target.chunks(VOCAB))
        .filter_map(|(l, t)| t.iter().position(|&v| v == 1.0).map(|c| (l, c)))
        .map(|(l, c)| {
            let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max + l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            lse - l[c] as f64
        })
        .sum()
}

fn train<M: Lm>(dev: &Cpu, train: &[Vec<usize>], steps: usize) -> Result<M, BoxErr> {
    let mut model = M::fresh(dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: M::LR, ..Default::default() });
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rng);
    let mut step_ = Step::new();
    let (mut avg, start) = (0.0, Instant::now());
    for step in 0..steps {
        let at = (step * BATCH) % (train.len() - BATCH);
        let names: Vec<&Vec<usize>> = order[at..at + BATCH].iter().map(|&i| &train[i]).collect();
        let (x, y, count) = batch(dev, &names);
        opt.cfg.lr = M::LR * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / steps as f64).cos());
        let l = step_.run(&mut model, &mut opt, |m, ctx| m.train_loss(ctx, x, y, count))?;
        avg = if step == 0 { l } else { 0.98 * avg + 0.02 * l };
        if (step + 1) % (steps / 5).max(1) == 0 {
            println!("  {} step {:>5}: train loss {avg:.3} ({:.0} s)", M::NAME, step + 1, start.elapsed().as_secs_f64());
        }
    }
    Ok(model)
}

/// Held-out cross-entropy per predicted symbol, nats.
fn evaluate<M: Lm>(dev: &Cpu, model: &M, test: &[Vec<usize>]) -> Result<f64, BoxErr> {
    let (mut total, mut n) = (0.0, 0);
    for chunk in test.chunks(512) {
        let names: Vec<&Vec<usize>> = chunk.iter().collect();
        let (x, y, count) = batch(dev, &names);
        total += nll(&model.try_forward(x)?.as_vec(), &y.as_vec());
        n += count;
    }
    Ok(total / n as f64)
}

/// `k` names sampled symbol by symbol (temperature 1).
fn generate<M: Lm>(dev: &Cpu, model: &M, k: usize, rng: &mut StdRng) -> Result<Vec<String>, BoxErr> {
    let mut seqs = vec![vec![0usize]; k];
    let mut done = vec![false; k];
    for t in 1..=MAX_T {
        let x: Tokens = dev.tensor_from_vec(seqs.concat(), (k, t));
        let logits = model.try_forward(x)?.as_vec();
        for (b, seq) in seqs.iter_mut().enumerate() {
            let row = &logits[(b * t + t - 1) * VOCAB..(b * t + t) * VOCAB];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let p: Vec<f64> = row.iter().map(|&v| ((v - max) as f64).exp()).collect();
            // The longest name has 13 letters: the 14th symbol is always the end.
            let mut c = if t == MAX_T { 0 } else { rand::distributions::WeightedIndex::new(&p)?.sample(rng) };
            if done[b] {
                c = 0;
            }
            done[b] |= c == 0;
            seq.push(c);
        }
        if done.iter().all(|&d| d) {
            break;
        }
    }
    Ok(seqs
        .iter()
        .map(|s| s[1..].iter().take_while(|&&c| c != 0).map(|&c| (b'a' + c as u8 - 1) as char).collect())
        .collect())
}

fn report<M: Lm>(dev: &Cpu, data: (&[Vec<usize>], &[Vec<usize>]), steps: usize, seen: &std::collections::HashSet<&Vec<usize>>) -> Result<f64, BoxErr> {
    let start = Instant::now();
    let model: M = train(dev, data.0, steps)?;
    let secs = start.elapsed().as_secs_f64();
    let ce = evaluate(dev, &model, data.1)?;
    println!("{}: {} parameters, {steps} steps in {secs:.0} s, test cross-entropy {ce:.3} nats", M::NAME, model.num_trainable_params());
    let names = generate(dev, &model, 10, &mut StdRng::seed_from_u64(SEED))?;
    let new = names.iter().filter(|n| !seen.contains(&n.bytes().map(|b| (b - b'a' + 1) as usize).collect::<Vec<_>>())).count();
    println!("  sampled ({new} of 10 not in the training set): {}", names.join(" "));
    Ok(ce)
}

fn main() -> Result<(), BoxErr> {
    let mut steps = STEPS;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--steps") {
        steps = args.get(i + 1).and_then(|s| s.parse().ok()).ok_or("--steps takes a number")?;
    }

    let mut names = load()?;
    names.shuffle(&mut StdRng::seed_from_u64(SEED));
    let test = names.split_off(names.len() - names.len() / 10);
    let train_set = names;
    println!("{} surnames: {} train, {} test", train_set.len() + test.len(), train_set.len(), test.len());

    // The unigram baseline: symbol frequencies of the training names (the end mark included).
    let mut freq = [1.0f64; VOCAB];
    for n in &train_set {
        freq[0] += 1.0;
        for &c in n {
            freq[c] += 1.0;
        }
    }
    let total: f64 = freq.iter().sum();
    let (mut nll, mut count) = (0.0, 0usize);
    for n in &test {
        for &c in n.iter().chain(std::iter::once(&0)) {
            nll -= (freq[c] / total).ln();
            count += 1;
        }
    }
    let unigram = nll / count as f64;
    println!("unigram baseline: test cross-entropy {unigram:.3} nats per symbol ({count} symbols)");

    let dev = Cpu::seed_from_u64(SEED);
    let seen: std::collections::HashSet<&Vec<usize>> = train_set.iter().collect();
    let tf = report::<CharLm<f32, Cpu>>(&dev, (&train_set, &test), steps, &seen)?;
    let lstm = report::<LstmLm<f32, Cpu>>(&dev, (&train_set, &test), steps, &seen)?;
    println!("test cross-entropy (nats per symbol): unigram {unigram:.3}, transformer {tf:.3}, LSTM {lstm:.3}");
    Ok(())
}
