use typenet::prelude::*;

mod encoders {
    use typenet::prelude::*;
    network! {
        pub Encoder: [64] -> [8] { dense(16), relu, dense(8) }
    }
}

// The inner network is declared in another module and invocation; its declared input is
// still checked where it is used.
network! {
    pub Model: [32] -> [2] { dense(16), encoders::Encoder, dense(2) }
}

fn main() {}
