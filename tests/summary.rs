//! The summary counts the work (issue 14): multiply–accumulates of one sample's forward pass
//! and the elements of every layer's output, per layer and in total, checked against hand
//! computations (never against the code under test).

use typenet::prelude::*;
use typenet::{Count, LayerRow};

const H: usize = 5;

network! {
    /// LeNet-5 as in the DSL (§1).
    pub LeNet5: [1, 28, 28] -> [10] {
        conv2d(6, kernel = 5, padding = 2), relu, max_pool2d(2),
        conv2d(16, kernel = 5), relu, max_pool2d(2),
        flatten,
        dense(120), relu,
        dense(84), relu,
        dense(10),
    }

    pub Mlp: [8] -> [3] { dense(16), relu, dense(3) }

    pub Seq: [t, 8] -> [t, 4] { dense(16), relu, dense(4) }

    pub Attn: [t, 8] -> [t, 8] { attention(heads = 2) }

    pub Sets: [n, 4] -> [2] { each { dense(3), relu }, set_dense(2), pool(sum) }

    pub Inner: [s, 8] -> [s, 4] { dense(4) }
    pub Outer: [t, 8] -> [t, 4] { Inner, relu }

    pub Konst: [3] -> [H] { dense(H) }

    pub Routed: (pos: [n, 3], z: [n]) -> [1] {
        radial_basis(4, cutoff = 3.0),
        route(z) { { dense(1) }, { dense(2), tanh, dense(1) } },
        pool(sum),
    }

    pub Mp: (x: [n, 2], g: graph[n, 1]) -> [n, 3] { message_passing(aggr = sum) { dense(3), tanh } }

    pub Encoder: [6] -> (mean: [2], log_var: [3]) {
        dense(4), relu,
        heads { mean: { dense(2) }, log_var: { dense(3) } },
    }
}

fn column<N: Network>(f: impl Fn(&LayerRow) -> &Count) -> Vec<Option<usize>> {
    N::layers().iter().map(|r| f(r).value()).collect()
}

#[test]
fn lenet5_macs_and_activations_by_hand() {
    // Multiply–accumulates of one sample, layer by layer (products of a weight and an input):
    //   conv2d(6, kernel = 5, padding = 2) on [1, 28, 28]: 6·28·28 outputs × 1·5·5 = 117,600
    //   conv2d(16, kernel = 5) on [6, 14, 14]:           16·10·10 outputs × 6·5·5 = 240,000
    //   dense(400 -> 120): 48,000;  dense(120 -> 84): 10,080;  dense(84 -> 10): 840
    //   relu, max_pool2d, flatten: 0
    //   total 117,600 + 240,000 + 48,000 + 10,080 + 840 = 416,520
    let macs = [117_600, 0, 0, 240_000, 0, 0, 0, 48_000, 0, 10_080, 0, 840];
    assert_eq!(column::<LeNet5>(|r| &r.macs), macs.map(Some));
    assert_eq!(<LeNet5 as Network>::macs().value(), Some(416_520));
    // Output elements: 6·28·28 = 4,704 (conv, relu), 6·14·14 = 1,176, 16·10·10 = 1,600
    // (conv, relu), 16·5·5 = 400 (pool, flatten), 120 (dense, relu), 84 (dense, relu), 10.
    let elems = [4704, 4704, 1176, 1600, 1600, 400, 400, 120, 120, 84, 84, 10];
    assert_eq!(column::<LeNet5>(|r| &r.activations), elems.map(Some));
    assert_eq!(<LeNet5 as Network>::activations().value(), Some(15_002));

    // The table shows both, and the f32 size: 4·61,706 = 246,824 bytes of parameters plus
    // 4·15,002 = 60,008 of activations = 306,832 bytes (299.6 KiB).
    let s = <LeNet5 as Network>::summary();
    assert!(s.contains("MACs") && s.contains("Output elems"), "{s}");
    assert!(s.contains("117,600") && s.contains("240,000") && s.contains("4,704"), "{s}");
    assert!(s.contains("Total MACs (one sample): 416,520\n"), "{s}");
    assert!(s.contains("Output elements (one sample): 15,002\n"), "{s}");
    assert!(s.contains("Estimated total size (f32): 306,832 bytes (299.6 KiB) = params 246,824 + activations 60,008"), "{s}");
}

#[test]
fn mlp_by_hand() {
    // dense(8 -> 16): 128 MACs, 16 values; relu: 16 values; dense(16 -> 3): 48 MACs, 3 values.
    assert_eq!(column::<Mlp>(|r| &r.macs), [Some(128), Some(0), Some(48)]);
    assert_eq!(column::<Mlp>(|r| &r.activations), [Some(16), Some(16), Some(3)]);
    assert_eq!(<Mlp as Network>::macs().value(), Some(176));
    assert_eq!(<Mlp as Network>::activations().value(), Some(35));
    // A size only rustc knows: dense(3 -> H = 5) is 15 MACs and 5 values.
    assert_eq!(<Konst as Network>::macs().value(), Some(15));
    assert_eq!(<Konst as Network>::activations().value(), Some(H));
}

#[test]
fn run_time_axes_are_terms() {
    // On [t, 8]: dense(8 -> 16) at each of t steps is 128·t, dense(16 -> 4) 64·t.
    let m = <Seq as Network>::macs();
    assert_eq!(m.to_string(), "192·t");
    assert_eq!((m.value(), m.at(&[("t", 10)])), (None, Some(1920)));
    assert_eq!(<Seq as Network>::activations().at(&[("t", 10)]), Some((16 + 16 + 4) * 10));
    let s = <Seq as Network>::summary();
    assert!(s.contains("128·t") && s.contains("Total MACs (one sample): 192·t\n"), "{s}");
    // Self-attention of width 8: four 8×8 projections per step (256·t), scores and the
    // weighted sum 2·8 per pair of steps (16·t²).
    assert_eq!(<Attn as Network>::macs().to_string(), "256·t + 16·t²");
    assert_eq!(<Attn as Network>::macs().at(&[("t", 3)]), Some(256 * 3 + 16 * 9));
    // each { dense(4 -> 3), relu } over n elements: 12·n; set_dense(3 -> 2): weight on each
    // element and weight_pool once, 6·(n + 1).
    assert_eq!(column::<Sets>(|r| &r.macs)[1], None);
    assert_eq!(<Sets as Network>::layers()[1].macs.to_string(), "12·n");
    assert_eq!(<Sets as Network>::macs().to_string(), "6 + 18·n");
    // each's output 3n, dense 3n, relu 3n, set_dense 2n, pool 2.
    assert_eq!(<Sets as Network>::activations().to_string(), "2 + 11·n");
    // A network used as a layer counts its own total, its axis `s` named `t` here.
    let rows = <Outer as Network>::layers();
    assert_eq!((rows[0].macs.to_string(), rows[0].activations.to_string()), ("32·t".into(), "4·t".into()));
    assert_eq!(<Outer as Network>::activations().to_string(), "8·t");
}

#[test]
fn what_no_shape_states_is_not_guessed() {
    // `route` sends each row to one branch, chosen at run time: its branches' rows are "—",
    // and so is the total.
    let rows = <Routed as Network>::layers();
    let route_branch: Vec<String> = rows.iter().filter(|r| r.depth == 1).map(|r| r.macs.to_string()).collect();
    assert_eq!(route_branch, ["—", "—", "—", "—"]);
    assert!(!<Routed as Network>::macs().is_known());
    assert!(<Routed as Network>::summary().contains("Total MACs (one sample): —"));
    // The message block runs once per edge: dense(5 -> 3) is 15 MACs per edge.
    assert_eq!(<Mp as Network>::macs().to_string(), "15·edges");
    assert_eq!(<Mp as Network>::macs().at(&[("edges", 7)]), Some(105));
    // Several outputs: `heads` itself produces nothing new; dense(6 -> 4) 24, dense(4 -> 2) 8,
    // dense(4 -> 3) 12.
    assert_eq!(<Encoder as Network>::macs().value(), Some(44));
    assert_eq!(<Encoder as Network>::activations().value(), Some(4 + 4 + 2 + 3));
}

