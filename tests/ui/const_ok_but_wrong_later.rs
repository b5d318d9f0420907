use typenet::prelude::*;

mod config {
    pub const WIDTH: usize = 24;
}

// Constants are checked by rustc at the layer that uses them: `reshape` needs
// config::WIDTH = 25 elements here.
network! {
    pub Net: [config::WIDTH] -> [5, 5] { relu, reshape([5, 5]) }
}

fn main() {}
