use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { each { dense(2) } }
}

fn main() {}
