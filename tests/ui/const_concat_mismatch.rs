use typenet::prelude::*;

const H: usize = 6;

// The second branch shrinks the height (a constant): one assertion, at its convolution.
network! {
    pub Net: [2, H, 8] -> [4, H, 8] { concat { { relu }, { conv2d(2, kernel = 3, padding = (0, 1)) } } }
}

fn main() {}
