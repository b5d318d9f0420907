use typenet::prelude::*;

// The LSTM states its input size, and the sequence has 8 features per step, not 16.
network! {
    pub Net: [t, 8] -> [32] { lstm(16 -> 32), last }
}

fn main() {}
