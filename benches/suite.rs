//! Every figure of issue 15 in one binary, one JSON line per figure, in the format of
//! `../shared/peers/bench_torch.py` (`framework`, `model`, `threads`, `steps`, `median_ms`, …)
//! plus a `variant` key, so that `tools/bench_table.py` can put typenet and PyTorch side by
//! side. `tools/bench_side_by_side.sh` runs it alternating with the PyTorch scripts.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo bench --bench suite               # everything
//! BENCH_QUICK=1 cargo bench --bench suite                     # 3 steps of each: a smoke test
//! SUITE_PARTS=peers,fit cargo bench --bench suite             # some parts only
//! ```
//!
//! Parts (`SUITE_PARTS`, comma-separated; default all); `SUITE_MODELS` (comma-separated
//! substrings of the model names: `mlp`, `lenet`, `lstm`, `transformer`, `gcn`) narrows the
//! `peers` and `fit` parts, `SUITE_VARIANTS` (`default`, `cache`, `nocache`) the `peers` part. The parts:
//! - `peers`: the five workloads of `bench_torch.py --all`, each declared with `network!` and
//!   trained by a hand-written dfdx loop on a plain `Cpu::default()` (variant `default`: what
//!   a user gets), the same with dfdx's allocation cache turned on after `build` (`cache`) and,
//!   for MLP, LeNet-5 and LSTM, turned off after `build` (`nocache`: differs from `default`
//!   once something in `build` or the layers turns the cache on).
//! - `fit`: the same networks (not GCN: `fit` takes one tensor input) trained by
//!   `typenet::train::fit` — one epoch of `SUITE_FIT_BATCHES` minibatches per call (no
//!   validation, no progress bar; shuffling and the per-epoch weight check on, as by
//!   default), time per step = epoch time / batches — interleaved round by round
//!   (`SUITE_FIT_ROUNDS`, default 40; which of the two goes first alternates) with as many
//!   steps of the hand loop on the same model and optimizer (variant `fit`, and a
//!   `fit_overhead` line with the median of the per-round ratios fit / hand loop;
//!   `SUITE_FIT_FLOOR=1` adds a `fit_floor` line, the hand loop against itself measured the
//!   same way: the noise floor). `fit` marks its batch as data (`typenet::train::DataInput`: the
//!   first layer skips the input gradient); so does this hand loop, so that the ratio is
//!   `fit`'s own overhead.
//! - `macro`: the MLP's `network!` against the identical hand-written tuple of typenet's layer
//!   types, against a second copy of the network (the measurement's noise floor) and against
//!   dfdx's own `Linear` tuple: step by step alternation (`SUITE_MACRO_ROUNDS` rounds of
//!   `SUITE_MACRO_STEPS` steps, default 1000 × 1; which goes first alternates), median of the
//!   per-round ratios. Rounds of 25 steps spread 0.915–1.035 at two threads here for code that
//!   executes the same instructions; single steps, 0.985–1.007.
//! - `macro_work`, `fit_work` (not in the default set): one arm of `macro`, or of `fit` on
//!   LeNet-5, alone and untimed, for `tools/step_instructions.sh macro` and
//!   `tools/step_instructions.sh fit` (instructions per step under valgrind).
//! - `peak`: GFLOP/s and fraction of the machine's peak: dense forward + backward at
//!   1024×1024×1024 in f32 and f64, the ResNet-sized convolution (64→64, 3×3, 56×56, batch
//!   32) forward + backward. (The LeNet-5 step as a whole is computed by the table script
//!   from the `peers` line: 0.145 GFLOP per step.)
//! - `resnet`: a ResNet-18 (CIFAR variant) declared with `network!`, step time and peak RSS at
//!   each batch size of `SUITE_RESNET_BATCHES` (default 16,64,256), each in a fresh process
//!   (this binary re-executed with `SUITE_RESNET_CHILD=batch`) so that the peak is that
//!   batch size's.
//! - `align` (not in the default set): each workload's hand loop with the CPU kernels'
//!   buffers on a cache line (as shipped) against without, interleaved rounds of one process.
//! - `share` (not in the default set): the same with split GEMMs and the kernels' parallel
//!   loops shared between the calling thread and rayon's threads (as shipped) against handed
//!   to rayon's pool whole, the caller asleep until it is done (as before session 12).
//! - `relu` (not in the default set): the same with `relu`'s own backward pass on `Cpu` (as
//!   shipped) against dfdx's `relu` whole (as before session 13).
//!
//! Step counts: `SUITE_STEPS` (default 200), `SUITE_WARMUP` (20), `SUITE_RESNET_STEPS` (5;
//! batch 256 takes a third of them, at least 2), `BENCH_QUICK=1` makes every count tiny.
//! The peak is `PEAK_GFLOPS` per core if set, else 32 f32 FLOP/cycle (two 256-bit FMA
//! pipes) × the `cpu MHz` of /proc/cpuinfo, times the number of rayon threads (half for f64).

use std::time::Instant;

use dfdx::nn::builders::Linear;
use typenet::data::Dataset;
use typenet::graph::Graph;
use typenet::layers::{Dense, ReLU};
use typenet::ops::{ConvKernel, DenseKernel, Window2D};
use typenet::prelude::*;
use typenet::train::{fit, DataInput, FitConfig};

network! {
    /// `mlp_784_256_128_10_b64`.
    pub Mlp: [784] -> [10] { dense(256), relu, dense(128), relu, dense(10) }

    /// `lenet5_b64_1x28x28` (PyTorch's `LeNet5` in `bench_torch.py`: ReLU, then pooling).
    pub LeNet5: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), relu, max_pool2d(2),
        conv2d(16, kernel = 5), relu, max_pool2d(2),
        flatten, dense(120), relu, dense(84), relu, dense(10),
    }

    /// `lstm_in32_h64_seq50_b32_head10`: the last hidden state → dense 10.
    pub LstmHead: [50, 32] -> [10] { lstm(64), last, dense(10) }

    /// `transformer_d64_h4_ff256_t32_b32_head10`: two post-norm encoder layers, mean over time.
    pub TransformerHead: [32, 64] -> [10] {
        transformer(heads = 4, ff = 256, dropout = 0),
        transformer(heads = 4, ff = 256, dropout = 0),
        pool(mean), dense(10),
    }

    /// `gcn_cora_sized_2708n_1433f_16h_7c`: Kipf & Welling's two-layer GCN.
    pub CoraGcn: (x: [n, 1433], g: graph[n]) -> [n, 7] {
        dropout(0.5), gcn(16), relu, dropout(0.5), gcn(7),
    }

    /// ResNet-18 for 3×32×32 inputs (the CIFAR variant: a 3×3 stem without max pooling),
    /// torchvision's `BasicBlock`s; the downsampling blocks add a 1×1 stride-2 convolution
    /// with batch norm on the skip path (`sum` of two branches: `residual(project)` projects
    /// channels only, it cannot change the spatial size). Convolutions carry a bias (the
    /// DSL has no `bias = false` for them); the PyTorch counterpart does the same.
    pub ResNet18: [3, 32, 32] -> [10] {
        conv2d(64, kernel = 3, padding = 1), batch_norm, relu,
        residual { conv2d(64, kernel = 3, padding = 1), batch_norm, relu, conv2d(64, kernel = 3, padding = 1), batch_norm }, relu,
        residual { conv2d(64, kernel = 3, padding = 1), batch_norm, relu, conv2d(64, kernel = 3, padding = 1), batch_norm }, relu,
        sum {
            { conv2d(128, kernel = 3, stride = 2, padding = 1), batch_norm, relu, conv2d(128, kernel = 3, padding = 1), batch_norm },
            { conv2d(128, kernel = 1, stride = 2), batch_norm },
        }, relu,
        residual { conv2d(128, kernel = 3, padding = 1), batch_norm, relu, conv2d(128, kernel = 3, padding = 1), batch_norm }, relu,
        sum {
            { conv2d(256, kernel = 3, stride = 2, padding = 1), batch_norm, relu, conv2d(256, kernel = 3, padding = 1), batch_norm },
            { conv2d(256, kernel = 1, stride = 2), batch_norm },
        }, relu,
        residual { conv2d(256, kernel = 3, padding = 1), batch_norm, relu, conv2d(256, kernel = 3, padding = 1), batch_norm }, relu,
        sum {
            { conv2d(512, kernel = 3, stride = 2, padding = 1), batch_norm, relu, conv2d(512, kernel = 3, padding = 1), batch_norm },
            { conv2d(512, kernel = 1, stride = 2), batch_norm },
        }, relu,
        residual { conv2d(512, kernel = 3, padding = 1), batch_norm, relu, conv2d(512, kernel = 3, padding = 1), batch_norm }, relu,
        global_avg_pool, dense(10),
    }
}

type Dev = Cpu;
type Tp = OwnedTape<f32, Dev>;

// ---------------------------------------------------------------------------------------
// settings and output

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

fn quick() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

struct Cfg {
    steps: usize,
    warmup: usize,
    fit_batches: usize,
    fit_rounds: usize,
    macro_rounds: usize,
    macro_steps: usize,
    peak_reps: usize,
    resnet_steps: usize,
}

impl Cfg {
    fn from_env() -> Self {
        let q = quick();
        Cfg {
            steps: env_usize("SUITE_STEPS", if q { 3 } else { 200 }).max(1),
            warmup: env_usize("SUITE_WARMUP", if q { 1 } else { 20 }),
            fit_batches: env_usize("SUITE_FIT_BATCHES", if q { 3 } else { 50 }).max(1),
            fit_rounds: env_usize("SUITE_FIT_ROUNDS", if q { 1 } else { 40 }).max(1),
            macro_rounds: env_usize("SUITE_MACRO_ROUNDS", if q { 3 } else { 1000 }).max(1),
            macro_steps: env_usize("SUITE_MACRO_STEPS", if q { 2 } else { 1 }).max(1),
            peak_reps: env_usize("SUITE_PEAK_REPS", if q { 1 } else { 7 }).max(1),
            resnet_steps: env_usize("SUITE_RESNET_STEPS", if q { 1 } else { 5 }).max(1),
        }
    }
}

fn threads() -> usize {
    rayon::current_num_threads()
}

/// Peak resident set size of this process (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn median(v: &[f64]) -> f64 {
    let s = sorted(v.to_vec());
    s[s.len() / 2]
}

/// One JSON line with `bench_torch.py`'s statistics of `ms` (sorted inside) and `extra`
/// (already formatted `"key": value` pairs).
fn line(model: &str, variant: &str, ms: Vec<f64>, extra: &str) {
    let ms = sorted(ms);
    let n = ms.len();
    let mut extra = if extra.is_empty() { String::new() } else { format!(", {extra}") };
    let cpu = LAST_CPU.with(|c| c.replace(f64::NAN));
    if cpu.is_finite() {
        // process CPU time per step (all threads): a figure that load from other processes
        // disturbs less than the wall-clock step time
        extra.push_str(&format!(", \"cpu_ms\": {cpu:.3}"));
    }
    println!(
        "{{\"framework\": \"typenet\", \"model\": \"{model}\", \"variant\": \"{variant}\", \"threads\": {}, \"steps\": {n}, \"median_ms\": {:.4}, \"min_ms\": {:.4}, \"max_ms\": {:.4}, \"p10_ms\": {:.4}, \"p90_ms\": {:.4}{extra}}}",
        threads(),
        ms[n / 2],
        ms[0],
        ms[n - 1],
        ms[n / 10],
        ms[n * 9 / 10]
    );
}

/// CPU time (user + system) of this process so far, all threads, in ms (`/proc/self/stat`,
/// clock ticks of 10 ms: meaningful over many steps only).
fn process_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) * 10.0)
        })
        .unwrap_or(f64::NAN)
}

thread_local! {
    /// Process CPU ms per step of the last `time_steps` call (printed by `line` as `cpu_ms`).
    static LAST_CPU: std::cell::Cell<f64> = const { std::cell::Cell::new(f64::NAN) };
}

/// Runs `f` `warmup` times, then times it `steps` times (ms).
fn time_steps(steps: usize, warmup: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    let c0 = process_cpu_ms();
    let v = (0..steps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    LAST_CPU.with(|c| c.set((process_cpu_ms() - c0) / steps as f64));
    v
}

// ---------------------------------------------------------------------------------------
// the hand-written dfdx loop

/// One model, its optimizer and a fixed batch: `step` is the loop dfdx's documentation shows
/// (zero grads, forward with a tape, cross-entropy, backward, Adam).
struct Hand<M: TensorCollection<f32, Dev>, S: Shape, O: Shape> {
    model: M,
    opt: Adam<M, f32, Dev>,
    grads: Option<Gradients<f32, Dev>>,
    x: Tensor<S, f32, Dev>,
    y: Tensor<O, f32, Dev>,
    /// Mark the batch as data, as `fit` does (see the `fit` part).
    mark: bool,
}

impl<M, S, O> Hand<M, S, O>
where
    M: TensorCollection<f32, Dev> + ModuleMut<Tensor<S, f32, Dev, Tp>, Output = Tensor<O, f32, Dev, Tp>>,
    S: Shape,
    O: Shape,
{
    fn new(model: M, x: Tensor<S, f32, Dev>, y: Tensor<O, f32, Dev>) -> Self {
        let opt = Adam::new(&model, AdamConfig { lr: 1e-3, ..Default::default() });
        let grads = Some(model.alloc_grads());
        Hand { model, opt, grads, x, y, mark: false }
    }

    fn marking(self) -> Self {
        Hand { mark: true, ..self }
    }

    fn step(&mut self) -> f32 {
        let mut grads = self.grads.take().unwrap();
        self.model.zero_grads(&mut grads);
        let data = self.mark.then(|| DataInput::mark(&self.x));
        let logits = self.model.forward_mut(self.x.clone().traced(grads));
        drop(data);
        let loss = cross_entropy_with_logits_loss(logits, self.y.clone());
        let l = loss.array();
        let grads = loss.backward();
        self.opt.update(&mut self.model, &grads).unwrap();
        self.grads = Some(grads);
        l
    }
}

/// One-hot targets for `b` samples of `k` classes (class `(7 i) mod k`).
fn one_hot(b: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; b * k];
    for i in 0..b {
        y[i * k + (i * 7) % k] = 1.0;
    }
    y
}

fn labels(n: usize, k: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 7) % k).collect()
}

// ---------------------------------------------------------------------------------------
// peers: network! + hand loop, default device (and the cache turned off again)

fn mlp_hand(dev: &Dev) -> Hand<Mlp<f32, Dev>, (usize, Const<784>), (usize, Const<10>)> {
    let x = dev.sample_normal_like(&(64, Const));
    let y = dev.tensor_from_vec(one_hot(64, 10), (64, Const));
    Hand::new(Mlp::build(dev), x, y)
}

type LeNetIn = (usize, Const<1>, Const<28>, Const<28>);
fn lenet_hand(dev: &Dev) -> Hand<LeNet5<f32, Dev>, LeNetIn, (usize, Const<10>)> {
    let x = dev.sample_normal_like(&(64, Const, Const, Const));
    let y = dev.tensor_from_vec(one_hot(64, 10), (64, Const));
    Hand::new(LeNet5::build(dev), x, y)
}

type LstmHand = Hand<LstmHead<f32, Dev>, (usize, Const<50>, Const<32>), (usize, Const<10>)>;
type TransformerHand = Hand<TransformerHead<f32, Dev>, (usize, Const<32>, Const<64>), (usize, Const<10>)>;

fn lstm_hand(dev: &Dev) -> LstmHand {
    let x = dev.sample_normal_like(&(32, Const, Const));
    let y = dev.tensor_from_vec(one_hot(32, 10), (32, Const));
    Hand::new(LstmHead::build(dev), x, y)
}

fn transformer_hand(dev: &Dev) -> TransformerHand {
    let x = dev.sample_normal_like(&(32, Const, Const));
    let y = dev.tensor_from_vec(one_hot(32, 10), (32, Const));
    Hand::new(TransformerHead::build(dev), x, y)
}

const MLP: &str = "mlp_784_256_128_10_b64";
const LENET: &str = "lenet5_b64_1x28x28";
const LSTM: &str = "lstm_in32_h64_seq50_b32_head10";
const TRANSFORMER: &str = "transformer_d64_h4_ff256_t32_b32_head10";
const GCN: &str = "gcn_cora_sized_2708n_1433f_16h_7c";

/// Whether workload `name` is selected by `SUITE_MODELS` (comma-separated substrings of the
/// model names, e.g. `transformer,mlp`; default all).
fn selected(name: &str) -> bool {
    match std::env::var("SUITE_MODELS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').map(str::trim).any(|m| !m.is_empty() && name.contains(m)),
        _ => true,
    }
}

/// Whether variant `v` of the `peers` part is selected by `SUITE_VARIANTS` (comma-separated,
/// e.g. `default`; default all).
fn variant_selected(v: &str) -> bool {
    match std::env::var("SUITE_VARIANTS") {
        Ok(s) if !s.trim().is_empty() => s.split(',').map(str::trim).any(|x| x == v),
        _ => true,
    }
}

fn peers(cfg: &Cfg) {
    for variant in ["default", "cache", "nocache"] {
        if !variant_selected(variant) {
            continue;
        }
        // A fresh plain device per workload, as a user's program would have; after `build`,
        // `cache` turns dfdx's allocation cache on and `nocache` off.
        let fresh = Cpu::default;
        let set = |dev: &Dev| match variant {
            "cache" => dev.enable_cache(),
            "nocache" => dev.disable_cache(),
            _ => {}
        };
        if selected(MLP) {
            let dev = fresh();
            let mut h = mlp_hand(&dev);
            set(&dev);
            line(MLP, variant, time_steps(cfg.steps, cfg.warmup, || { std::hint::black_box(h.step()); }), "");
        }
        if selected(LENET) {
            let dev = fresh();
            let mut h = lenet_hand(&dev);
            set(&dev);
            line(LENET, variant, time_steps(cfg.steps, cfg.warmup, || { std::hint::black_box(h.step()); }), "");
        }
        if selected(LSTM) {
            let dev = fresh();
            let mut h = lstm_hand(&dev);
            set(&dev);
            line(LSTM, variant, time_steps(cfg.steps, cfg.warmup, || { std::hint::black_box(h.step()); }), "");
        }
        if variant == "nocache" {
            continue;
        }
        if selected(TRANSFORMER) {
            let dev = fresh();
            let mut h = transformer_hand(&dev);
            set(&dev);
            line(TRANSFORMER, variant, time_steps(cfg.steps, cfg.warmup, || { std::hint::black_box(h.step()); }), "");
        }
        if selected(GCN) {
            gcn(cfg, variant, &set);
        }
    }
}

/// The GCN step of `bench_torch.py`'s `Gcn`: random Cora-sized graph, sparse binary features,
/// loss over the first 140 nodes.
fn gcn(cfg: &Cfg, variant: &str, set: &dyn Fn(&Dev)) {
    let mut step = gcn_step(set);
    let ms = time_steps(cfg.steps, cfg.warmup, &mut step);
    line(GCN, variant, ms, "");
}

/// One training step of the GCN workload per call (`set` applied to the device after `build`).
fn gcn_step(set: &dyn Fn(&Dev)) -> impl FnMut() {
    let dev = &Cpu::default();
    use rand::{rngs::StdRng, Rng, SeedableRng};
    const N: usize = 2708;
    let mut rng = StdRng::seed_from_u64(0);
    let pairs: Vec<(usize, usize)> = (0..5278).map(|_| (rng.gen_range(0..N), rng.gen_range(0..N))).collect();
    let g = Graph::undirected(N, &pairs).unwrap();
    let xv: Vec<f32> = (0..N * 1433).map(|_| if rng.gen::<f32>() < 0.013 { 1.0 } else { 0.0 }).collect();
    let x: Tensor<(usize, Const<1433>), f32, Dev> = dev.tensor_from_vec(xv, (N, Const));
    let y: Tensor<(usize, Const<7>), f32, Dev> = dev.tensor_from_vec(one_hot(140, 7), (140, Const));
    let mut model = CoraGcn::<f32, Dev>::build(dev);
    set(dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: 1e-3, ..Default::default() });
    let mut grads = Some(model.alloc_grads());
    move || {
        let mut gr = grads.take().unwrap();
        model.zero_grads(&mut gr);
        let out = model.try_forward_mut((x.clone().traced(gr), &g)).unwrap();
        let logits = out.slice((..140, ..)).realize::<(usize, Const<7>)>();
        let loss = cross_entropy_with_logits_loss(logits, y.clone());
        let gr = loss.backward();
        opt.update(&mut model, &gr).unwrap();
        grads = Some(gr);
    }
}

// ---------------------------------------------------------------------------------------
// fit, interleaved with the hand loop

/// `rounds` rounds of one call of `a` and one of `b`, each returning the time it measured
/// (which goes first alternates, so that an order effect cancels): every round's time of `a`,
/// of `b`, and their ratio.
fn alternate(rounds: usize, mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut ta, mut tb, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (x, y) = if round % 2 == 0 {
            let x = a();
            (x, b())
        } else {
            let y = b();
            (a(), y)
        };
        ta.push(x);
        tb.push(y);
        r.push(x / y);
    }
    (ta, tb, r)
}

/// `rounds` rounds of: one `fit` epoch of `batches` minibatches of `b` samples, then as many
/// hand-loop steps, both on the hand loop's model and optimizer (so that where the weights
/// and the optimizer's moments lie in memory is the same for both); prints the fit line and
/// the median ratio.
fn fit_vs_hand<M, S>(cfg: &Cfg, name: &str, sample: &[usize], k: usize, h: Hand<M, S, (usize, Const<10>)>)
where
    S: Shape,
    M: Network + Clone + TensorCollection<f32, Dev>,
    M::Input: typenet::train::SampleShape,
    M: ModuleMut<Tensor<S, f32, Dev, Tp>, Output = Tensor<(usize, Const<10>), f32, Dev, Tp>>
        + ModuleMut<
            Tensor<<M::Input as typenet::train::SampleShape>::WithBatch, f32, Dev, Tp>,
            Output = Tensor<(usize, Const<10>), f32, Dev, Tp>,
        > + Module<Tensor<<M::Input as typenet::train::SampleShape>::WithBatch, f32, Dev>, Output = Tensor<(usize, Const<10>), f32, Dev>>,
{
    let b = h.x.shape().concrete()[0];
    let n = b * cfg.fit_batches;
    let numel: usize = sample.iter().product();
    let dev = h.x.device().clone();
    let xs: Vec<f32> = dev.sample_normal_like(&(n * numel,)).as_vec();
    let ds = Dataset::new(xs, sample).unwrap().with_labels(labels(n, k)).unwrap();
    let fcfg = FitConfig::default().epochs(1).batch_size(b).verbose(false);
    let h = std::cell::RefCell::new(h);
    let time_fit = || {
        let h = &mut *h.borrow_mut();
        let t0 = Instant::now();
        fit(&mut h.model, &mut h.opt, &ds, None, &fcfg).unwrap();
        t0.elapsed().as_secs_f64() * 1e3 / cfg.fit_batches as f64
    };
    let time_hand = || {
        let t0 = Instant::now();
        for _ in 0..cfg.fit_batches {
            std::hint::black_box(h.borrow_mut().step());
        }
        t0.elapsed().as_secs_f64() * 1e3 / cfg.fit_batches as f64
    };
    // Warm-up: one epoch, and as many hand steps.
    time_fit();
    time_hand();
    let (tf, th, ratios) = alternate(cfg.fit_rounds, time_fit, time_hand);
    let extra = format!("\"batches_per_epoch\": {}, \"rounds\": {}", cfg.fit_batches, cfg.fit_rounds);
    line(name, "fit", tf.clone(), &extra);
    println!(
        "{{\"framework\": \"typenet\", \"model\": \"{name}\", \"variant\": \"fit_overhead\", \"threads\": {}, \"rounds\": {}, \"batches_per_epoch\": {}, \"fit_ms\": {:.4}, \"hand_ms\": {:.4}, \"ratio\": {:.4}}}",
        threads(),
        cfg.fit_rounds,
        cfg.fit_batches,
        median(&tf),
        median(&th),
        median(&ratios)
    );
    if std::env::var("SUITE_FIT_FLOOR").is_ok_and(|v| v == "1") {
        // The measurement's noise floor: the hand loop against itself, the same way.
        let (_, _, floor) = alternate(cfg.fit_rounds, time_hand, time_hand);
        println!(
            "{{\"framework\": \"typenet\", \"model\": \"{name}\", \"variant\": \"fit_floor\", \"threads\": {}, \"rounds\": {}, \"batches_per_epoch\": {}, \"ratio\": {:.4}}}",
            threads(),
            cfg.fit_rounds,
            cfg.fit_batches,
            median(&floor)
        );
    }
}

fn fit_part(cfg: &Cfg) {
    // `SUITE_MODELS` narrows this part too.
    if selected(MLP) {
        fit_vs_hand(cfg, MLP, &[784], 10, mlp_hand(&Cpu::default()).marking());
    }
    if selected(LENET) {
        fit_vs_hand(cfg, LENET, &[1, 28, 28], 10, lenet_hand(&Cpu::default()).marking());
    }
    if selected(LSTM) {
        fit_vs_hand(cfg, LSTM, &[50, 32], 10, lstm_hand(&Cpu::default()).marking());
    }
    if selected(TRANSFORMER) {
        fit_vs_hand(cfg, TRANSFORMER, &[32, 64], 10, transformer_hand(&Cpu::default()).marking());
    }
}

// ---------------------------------------------------------------------------------------
// macro overhead

type TypenetTuple = (Dense<784, 256, f32, Dev>, ReLU, Dense<256, 128, f32, Dev>, ReLU, Dense<128, 10, f32, Dev>);
type DfdxTuple = (Linear<784, 256>, dfdx::nn::builders::ReLU, Linear<256, 128>, dfdx::nn::builders::ReLU, Linear<128, 10>);

/// Rounds of `steps` steps of `a` and of `b` (which goes first alternates): (median ms of a,
/// of b, median ratio).
fn interleave(rounds: usize, steps: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64, f64) {
    for _ in 0..steps {
        a();
        b();
    }
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..steps {
            f();
        }
        t.elapsed().as_secs_f64() * 1e3 / steps as f64
    };
    let (ta, tb, r) = alternate(rounds, || time(&mut a), || time(&mut b));
    (median(&ta), median(&tb), median(&r))
}

fn macro_part(cfg: &Cfg) {
    let dev = Cpu::default();
    let mut ours = mlp_hand(&dev);
    let x = ours.x.clone();
    let y = ours.y.clone();
    let mut tuple = Hand::new(<TypenetTuple as BuildModule<Dev, f32>>::build(&dev), x.clone(), y.clone());
    let mut dfdx_tuple = Hand::new(dev.build_module::<DfdxTuple, f32>(), x.clone(), y.clone());
    // The noise floor: the network against a second copy of itself, measured the same way.
    let mut twin = Hand::new(Mlp::build(&dev), x, y);
    let emit = |against: &str, (a, b, r): (f64, f64, f64)| {
        println!(
            "{{\"framework\": \"typenet\", \"model\": \"{MLP}\", \"variant\": \"macro_overhead\", \"against\": \"{against}\", \"threads\": {}, \"rounds\": {}, \"steps_per_round\": {}, \"network_ms\": {a:.4}, \"tuple_ms\": {b:.4}, \"ratio\": {r:.4}}}",
            threads(),
            cfg.macro_rounds,
            cfg.macro_steps
        )
    };
    let r = interleave(cfg.macro_rounds, cfg.macro_steps, || { ours.step(); }, || { tuple.step(); });
    emit("typenet_layer_tuple", r);
    let r = interleave(cfg.macro_rounds, cfg.macro_steps, || { ours.step(); }, || { twin.step(); });
    emit("same_network", r);
    let r = interleave(cfg.macro_rounds, cfg.macro_steps, || { ours.step(); }, || { dfdx_tuple.step(); });
    emit("dfdx_linear_tuple", r);
}

/// `macro_work` (not in the default set): `SUITE_STEPS` steps of one arm of the `macro` part
/// alone (`SUITE_MACRO_ARM`: `network`, the default, `tuple`, or `dfdx` for dfdx's `Linear`
/// tuple, a different dense kernel that shows the count tells code apart), untimed, for
/// counting the instructions each arm executes under valgrind (`tools/step_instructions.sh
/// macro`).
fn macro_work_part(cfg: &Cfg) {
    /// `n` steps of `h`: the sum of their losses.
    fn steps<M, S, O>(mut h: Hand<M, S, O>, n: usize) -> f32
    where
        M: TensorCollection<f32, Dev> + ModuleMut<Tensor<S, f32, Dev, Tp>, Output = Tensor<O, f32, Dev, Tp>>,
        S: Shape,
        O: Shape,
    {
        (0..n).map(|_| h.step()).sum()
    }
    let dev = Cpu::default();
    let ours = mlp_hand(&dev);
    let arm = std::env::var("SUITE_MACRO_ARM").unwrap_or_else(|_| "network".into());
    let loss = match arm.as_str() {
        "network" => steps(ours, cfg.steps),
        "tuple" => steps(Hand::new(<TypenetTuple as BuildModule<Dev, f32>>::build(&dev), ours.x, ours.y), cfg.steps),
        "dfdx" => steps(Hand::new(dev.build_module::<DfdxTuple, f32>(), ours.x, ours.y), cfg.steps),
        other => panic!("SUITE_MACRO_ARM: `network`, `tuple` or `dfdx`, not `{other}`"),
    };
    println!("{{\"variant\": \"macro_work\", \"arm\": \"{arm}\", \"steps\": {}, \"loss_sum\": {loss}}}", cfg.steps);
}

/// `fit_work` (not in the default set): LeNet-5 trained `SUITE_STEPS` steps by `fit` (epochs
/// of `SUITE_FIT_BATCHES` batches; `SUITE_STEPS` rounded down to whole epochs) or by the hand
/// loop of the `fit` part (`SUITE_FIT_ARM`: `fit`, the default, or `hand`), untimed, for
/// counting the instructions each executes under valgrind (`tools/step_instructions.sh fit`).
fn fit_work_part(cfg: &Cfg) {
    let mut h = lenet_hand(&Cpu::default()).marking();
    let arm = std::env::var("SUITE_FIT_ARM").unwrap_or_else(|_| "fit".into());
    let b = 64;
    let n = b * cfg.fit_batches;
    let xs: Vec<f32> = h.x.device().sample_normal_like(&(n * 784,)).as_vec();
    let ds = Dataset::new(xs, &[1, 28, 28]).unwrap().with_labels(labels(n, 10)).unwrap();
    let fcfg = FitConfig::default().epochs(cfg.steps / cfg.fit_batches).batch_size(b).verbose(false);
    let steps = match arm.as_str() {
        "fit" => fit(&mut h.model, &mut h.opt, &ds, None, &fcfg).unwrap().epochs.len() * cfg.fit_batches,
        "hand" => {
            // `fit` turns dfdx's allocation cache on; so does this arm, so that both allocate alike.
            h.x.device().enable_cache();
            for _ in 0..cfg.steps {
                std::hint::black_box(h.step());
            }
            cfg.steps
        }
        other => panic!("SUITE_FIT_ARM: `fit` or `hand`, not `{other}`"),
    };
    println!("{{\"variant\": \"fit_work\", \"arm\": \"{arm}\", \"steps\": {steps}}}");
}

// ---------------------------------------------------------------------------------------
// align, share, relu

/// The hand loop of each workload (`SUITE_MODELS` narrows them) with a switch of typenet's
/// kernels on (as shipped) and off, interleaved rounds of one process on one model
/// (`SUITE_MACRO_ROUNDS` × `SUITE_MACRO_STEPS`), median of the per-round ratios on / off; one
/// JSON line per workload, `variant` naming the switch and `on_key`, `off_key` the two times.
fn switch_part(cfg: &Cfg, variant: &str, (on_key, off_key): (&str, &str), set: fn(bool)) {
    let dev = Cpu::default();
    // `step` alternating between the switch on and off; one JSON line.
    let measure = |name: &str, mut step: Box<dyn FnMut() + '_>| {
        let step = std::cell::RefCell::new(&mut step);
        let arm = |on: bool| {
            set(on);
            (step.borrow_mut())();
        };
        let (a, b, r) = interleave(cfg.macro_rounds, cfg.macro_steps, || arm(true), || arm(false));
        set(true);
        println!(
            "{{\"framework\": \"typenet\", \"model\": \"{name}\", \"variant\": \"{variant}\", \"threads\": {}, \"rounds\": {}, \"steps_per_round\": {}, \"{on_key}\": {a:.4}, \"{off_key}\": {b:.4}, \"ratio\": {r:.4}}}",
            threads(),
            cfg.macro_rounds,
            cfg.macro_steps
        );
    };
    macro_rules! run {
        ($name:expr, $hand:expr) => {
            if selected($name) {
                let mut hand = $hand;
                measure($name, Box::new(move || {
                    hand.step();
                }));
            }
        };
    }
    run!(MLP, mlp_hand(&dev));
    run!(LENET, lenet_hand(&dev));
    run!(LSTM, lstm_hand(&dev));
    run!(TRANSFORMER, transformer_hand(&dev));
    if selected(GCN) {
        measure(GCN, Box::new(gcn_step(&|_| {})));
    }
}

// ---------------------------------------------------------------------------------------
// peak

/// This machine's peak GFLOP/s per thread for f32: `PEAK_GFLOPS_PER_CORE`, else 32 FLOP/cycle
/// (two 256-bit FMA pipes: 2 × 8 lanes × 2) × the clock in /proc/cpuinfo.
fn peak_per_core_f32() -> (f64, String) {
    if let Some(p) = std::env::var("PEAK_GFLOPS_PER_CORE").ok().and_then(|v| v.parse().ok()) {
        return (p, "PEAK_GFLOPS_PER_CORE".into());
    }
    let mhz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("cpu MHz")).and_then(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok()))
        .unwrap_or(2445.0);
    (32.0 * mhz / 1000.0, format!("32 FLOP/cycle x {mhz:.0} MHz"))
}

fn peak_line(name: &str, dtype: &str, flop: f64, ms: Vec<f64>) {
    let (per_core, how) = peak_per_core_f32();
    let peak = per_core * threads() as f64 * if dtype == "f64" { 0.5 } else { 1.0 };
    let best = sorted(ms.clone())[0];
    let med = median(&ms);
    let g = flop / (med / 1e3) / 1e9;
    let extra = format!(
        "\"dtype\": \"{dtype}\", \"gflop\": {:.4}, \"gflops\": {g:.2}, \"gflops_best\": {:.2}, \"peak_gflops\": {peak:.1}, \"pct_peak\": {:.1}, \"peak_from\": \"{how} x {} threads\"",
        flop / 1e9,
        flop / (best / 1e3) / 1e9,
        100.0 * g / peak,
        threads()
    );
    line(name, "peak", ms, &extra);
}

fn dense_peak<E: Float>(cfg: &Cfg, dtype: &str)
where
    Cpu: DenseKernel<E>,
    rand_distr::StandardNormal: rand_distr::Distribution<E>,
{
    let dev = Cpu::seed_from_u64(0);
    dev.enable_cache();
    let n = 1024;
    let x: Tensor<(usize, usize), E, Cpu> = dev.sample_normal_like(&(n, n));
    let w: Tensor<(usize, usize), E, Cpu> = dev.sample_normal_like(&(n, n));
    let b: Tensor<(usize,), E, Cpu> = dev.sample_normal_like(&(n,));
    let ms = time_steps(cfg.peak_reps, 1, || {
        let y = Cpu::dense_op(x.leaky_trace(), w.clone(), Some(b.clone())).unwrap();
        let _ = y.sum().backward();
    });
    peak_line(&format!("dense_1024x1024x1024_fwd_bwd_{dtype}"), dtype, 3.0 * 2.0 * (n * n * n) as f64, ms);
}

fn peak_part(cfg: &Cfg) {
    dense_peak::<f32>(cfg, "f32");
    dense_peak::<f64>(cfg, "f64");
    let dev = Cpu::seed_from_u64(0);
    dev.enable_cache();
    let xc: Tensor<(usize, usize, usize, usize), f32, Cpu> = dev.sample_normal_like(&(32, 64, 56, 56));
    let wc: Tensor<(usize, usize, usize, usize), f32, Cpu> = dev.sample_normal_like(&(64, 64, 3, 3));
    let bc: Tensor<(usize,), f32, Cpu> = dev.sample_normal_like(&(64,));
    let win = Window2D::new([3, 3], [1, 1], [1, 1], [1, 1]);
    let reps = cfg.peak_reps.div_ceil(2);
    let ms = time_steps(reps, 1, || {
        let y = Cpu::conv2d_op(xc.leaky_trace(), wc.clone(), Some(bc.clone()), win).unwrap();
        let _ = y.sum().backward();
    });
    peak_line("conv_64_64_3x3_56x56_b32_fwd_bwd_f32", "f32", 3.0 * 2.0 * (32usize * 64 * 576 * 56 * 56) as f64, ms);
}

// ---------------------------------------------------------------------------------------
// ResNet-18, one process per batch size

fn resnet_child(cfg: &Cfg, b: usize) {
    let dev = Cpu::default();
    let x: Tensor<(usize, Const<3>, Const<32>, Const<32>), f32, Dev> = dev.sample_normal_like(&(b, Const, Const, Const));
    let y = dev.tensor_from_vec(one_hot(b, 10), (b, Const));
    let mut h = Hand::new(ResNet18::<f32, Dev>::build(&dev), x, y);
    let steps = if b >= 256 { cfg.resnet_steps.div_ceil(3).max(2) } else { cfg.resnet_steps };
    let steps = if quick() { 1 } else { steps };
    let ms = time_steps(steps, 1, || { h.step(); });
    let extra = format!("\"batch\": {b}, \"params\": {}, \"peak_rss_mb\": {:.0}", h.model.num_trainable_params(), peak_rss_mb());
    line(&format!("resnet18_cifar_b{b}"), "default", ms, &extra);
}

fn resnet_part() {
    let batches = std::env::var("SUITE_RESNET_BATCHES").unwrap_or_else(|_| "16,64,256".into());
    let exe = std::env::current_exe().expect("the bench binary's path");
    for b in batches.split(',').map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let status = std::process::Command::new(&exe)
            .env("SUITE_RESNET_CHILD", b)
            .status()
            .expect("re-executing the bench binary");
        if !status.success() {
            eprintln!("suite: ResNet-18 at batch {b} failed: {status}");
        }
    }
}

fn main() {
    let cfg = Cfg::from_env();
    if let Ok(b) = std::env::var("SUITE_RESNET_CHILD") {
        resnet_child(&cfg, b.parse().expect("SUITE_RESNET_CHILD: a batch size"));
        return;
    }
    let parts = std::env::var("SUITE_PARTS").unwrap_or_else(|_| "peers,fit,macro,peak,resnet".into());
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    let t0 = Instant::now();
    for p in &parts {
        let t = Instant::now();
        match *p {
            "peers" => peers(&cfg),
            "fit" => fit_part(&cfg),
            "macro" => macro_part(&cfg),
            "peak" => peak_part(&cfg),
            // The CPU kernels' buffers on a cache line (as shipped) and not.
            "align" => switch_part(&cfg, "cache_line_buffers", ("aligned_ms", "unaligned_ms"), typenet::__private::set_cache_line_buffers),
            // `relu`'s own backward pass on `Cpu` (as shipped) and dfdx's `relu` whole.
            "relu" => switch_part(&cfg, "fast_relu", ("fast_ms", "dfdx_ms"), typenet::__private::set_fast_relu),
            // Split GEMMs and the kernels' parallel loops shared by the caller and rayon's
            // threads (as shipped) and handed to rayon's pool whole, the caller asleep.
            "share" => switch_part(&cfg, "shared_tasks", ("shared_ms", "pool_ms"), typenet::__private::set_shared_tasks),
            "macro_work" => macro_work_part(&cfg),
            "fit_work" => fit_work_part(&cfg),
            "resnet" => resnet_part(),
            "" => {}
            other => eprintln!("suite: unknown part `{other}` (peers, fit, macro, peak, resnet, align, share, relu, macro_work, fit_work)"),
        }
        eprintln!("suite: part {p} took {:.1} s", t.elapsed().as_secs_f64());
    }
    eprintln!("suite: {:.1} s in all, {} threads", t0.elapsed().as_secs_f64(), threads());
}
