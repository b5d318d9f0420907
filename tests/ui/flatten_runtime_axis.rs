use typenet::prelude::*;

network! {
    pub Net: [t, 4] -> [2] { flatten, dense(2) }
}

fn main() {}
