//! `pub` networks declared with `network!` for `tests/cross_crate.rs`, which uses them as
//! layers from another crate.

use typenet::network;

network! {
    /// A run-time-length sequence of 6 features to one of 4.
    pub Encoder: [t, 6] -> [t, 4] { dense(5), relu, dense(4) }
}

pub mod vision {
    typenet::network! {
        /// A small map to a vector, in a module.
        pub Stem: [1, 8, 8] -> [16] { conv2d(2, kernel = 3), relu, max_pool2d(2), flatten, dense(16) }
    }
}
