// A kernel larger than a spatial size given as a constant: rustc evaluates the size, and the
// assertion is reported at the convolution.
use typenet::network;

mod img {
    pub const H: usize = 4;
    pub const W: usize = 6;
}

network! {
    pub Small: [1, img::H, img::W] -> [2] {
        conv2d(2, kernel = 5), relu, global_avg_pool,
    }
}

fn main() {}
