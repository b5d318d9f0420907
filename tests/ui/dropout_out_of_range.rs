use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { dense(8), dropout(1.5), dense(2) }
}

fn main() {}
