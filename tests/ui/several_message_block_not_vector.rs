use typenet::prelude::*;

network! {
    pub Net: (x: [n, 4], g: graph[n, 2]) -> [n, 2] { message_passing { reshape([2, 5]) } }
}

fn main() {}
