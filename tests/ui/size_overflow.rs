use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { dense(18446744073709551615), dense(2) }
}

fn main() {}
