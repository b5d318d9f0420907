use typenet::prelude::*;

network! {
    pub Net: [24] -> [5, 5] { reshape([5, 5]) }
}

fn main() {}
