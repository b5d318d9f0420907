use typenet::prelude::*;

network! {
    pub Net: (x: [4], meta: [3]) -> [6] { concat { {}, { mata, dense(2) } } }
}

fn main() {}
