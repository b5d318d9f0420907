use typenet::prelude::*;

// `[c, l]` maps from convolutions join on channels, so their lengths must agree.
network! {
    pub Net: [2, 12] -> [7, 12] {
        concat { { conv1d(3, kernel = 3) }, { conv1d(4, kernel = 1) } },
    }
}

fn main() {}
