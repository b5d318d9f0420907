use typenet::prelude::*;

network! {
    pub Net: (x: [4], meta: [3]) -> [4] { relu }
}

fn main() {}
