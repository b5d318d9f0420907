use typenet::prelude::*;

mod models {
    use typenet::prelude::*;

    network! {
        /// The only error: a kernel larger than the input.
        pub Encoder: [1, 4, 4] -> [8] { conv2d(2, kernel = 5), flatten, dense(8) }

        pub Auto: [1, 4, 4] -> [16] { Encoder, dense(16) }
    }
}

network! {
    /// Another module, another invocation: no follow-on error either.
    pub Outer: [1, 4, 4] -> [2] { models::Encoder, dense(2) }
}

fn main() {
    let dev = Cpu::default();
    let _ = models::Auto::<f32, Cpu>::build(&dev);
    let _ = Outer::<f32, Cpu>::build(&dev);
}
