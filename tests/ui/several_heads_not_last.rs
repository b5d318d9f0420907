use typenet::prelude::*;

network! {
    pub Net: [4] -> (a: [2], b: [2]) { heads { a: { dense(2) }, b: { dense(2) } }, relu }
}

fn main() {}
