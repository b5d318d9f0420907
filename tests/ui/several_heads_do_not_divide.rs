use typenet::prelude::*;

network! {
    pub Net: [t, 10] -> [t, 10] { attention(heads = 3) }
}

fn main() {}
