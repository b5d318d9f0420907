use typenet::prelude::*;

network! {
    pub Net: (x: [n, 4], g: graph[n]) -> [n, 2] { gcn(2, graph = h) }
}

fn main() {}
