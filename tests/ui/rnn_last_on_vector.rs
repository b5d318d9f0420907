use typenet::prelude::*;

// `last` needs a sequence `[t, f]`; a dense layer's output is a single vector.
network! {
    pub Net: [32] -> [16] { dense(16), last }
}

fn main() {}
