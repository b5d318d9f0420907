use typenet::prelude::*;

network! {
    pub Net: [4] -> [4] { dense(4), pool(sum) }
}

fn main() {}
