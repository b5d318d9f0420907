use typenet::prelude::*;

// A projection widens channels, but a block that halves the map cannot be added to its input.
network! {
    pub Net: [8, 16, 16] -> [16, 8, 8] {
        residual(project) { conv2d(16, kernel = 3, stride = 2, padding = 1), relu },
    }
}

fn main() {}
