use typenet::prelude::*;

const DIM: usize = 10;

network! {
    pub Net: [t, DIM] -> [t, DIM] { attention(heads = 4) }
}

fn main() {}
