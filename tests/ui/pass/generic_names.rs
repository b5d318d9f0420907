//! Names a user may well choose that the generated code must not clash with: a sequence
//! length `T`, networks named `D` and `E` (the generated generics are `__E`, `__D`, `__T`).
use typenet::prelude::*;

const T: usize = 6;

network! {
    pub D: [T] -> [2] { dense(4), relu, dense(2) }
}

network! {
    pub E: [2, T] -> [2] { flatten, dense(T), D }
}

fn main() {
    assert_eq!(<E as Network>::NUM_PARAMS, 12 * 6 + 6 + <D as Network>::NUM_PARAMS);
}
