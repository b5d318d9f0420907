use typenet::prelude::*;

network! {
    pub Pair: [n, n] -> [n, n] { relu }
    pub Net: [t, s] -> [t, s] { Pair }
}

fn main() {}
