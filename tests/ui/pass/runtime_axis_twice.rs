// The same run-time axis name twice in one input's shape (a square matrix sized at run time) is
// a valid declaration (DSL §6: axes with the same name must agree at run time).
use typenet::prelude::*;

network! {
    pub Net: [n, n] -> [n, n] { relu }
}

fn main() {}
