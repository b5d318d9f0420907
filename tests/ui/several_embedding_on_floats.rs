use typenet::prelude::*;

network! {
    pub Net: [t, 4] -> [t, 4, 8] { dense(4), embedding(10, 8) }
}

fn main() {}
