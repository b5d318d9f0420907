use typenet::prelude::*;

// A bidirectional LSTM's last state has 2 × 64 features; the head was written for 64.
network! {
    pub Net: [t, 32] -> [10] { lstm(64, bidirectional = true), last, dense(64 -> 10) }
}

fn main() {}
