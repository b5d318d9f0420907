#!/usr/bin/env python3
"""Reference outputs and gradients of PyTorch Geometric's graph layers for typenet's tests.

Writes tests/fixtures/graph.safetensors (float64), checked by tests/graph_torch.rs.

Regenerate (from the repository root; needs torch, torch-geometric, safetensors, numpy):

    /work/venv/bin/python tools/graph_fixtures.py

The graph (key `graph.edges`, [E, 2] as float64 `(source, target)` rows, and
`graph.edge_attr` [E, K]) has N=6 nodes and E=9 directed edges, with a repeated edge, a
self-loop and a node (5) without incoming edges. For each case NAME (`gcn`,
`graph_conv_sum`, `graph_conv_mean`, `graph_conv_max`, `mpnn`), keys prefixed by `NAME.`:

- the layer's parameters under PyTorch Geometric's names (`lin.weight`, `bias`,
  `lin_rel.weight`, `lin_rel.bias`, `lin_root.weight`, `nn.0.weight`, ...);
- `x` [N, F], `y` [N, O], `r` [N, O] (weights of the scalar loss `sum(y * r)`);
- `grad.x` and `grad.<param>`: the gradients of that loss.

`mpnn` is a MessagePassing layer whose message is `nn(cat[x_i, x_j, e_ij])` with
`nn = Linear(2F+K, 5) → Tanh → Linear(5, O)`, aggregated by sum. Sizes F=3, O=4, K=2, seed 0.
"""
import os

import torch
from safetensors.torch import save_file
from torch_geometric.nn import GCNConv, GraphConv, MessagePassing

N, F, O, K = 6, 3, 4, 2
EDGES = [(0, 1), (2, 1), (3, 1), (1, 0), (1, 2), (2, 2), (4, 3), (4, 3), (0, 4)]


class Mpnn(MessagePassing):
    def __init__(self):
        super().__init__(aggr="add")
        self.nn = torch.nn.Sequential(torch.nn.Linear(2 * F + K, 5), torch.nn.Tanh(), torch.nn.Linear(5, O))

    def forward(self, x, edge_index, edge_attr):
        return self.propagate(edge_index, x=x, edge_attr=edge_attr)

    def message(self, x_i, x_j, edge_attr):
        return self.nn(torch.cat([x_i, x_j, edge_attr], dim=-1))


def main():
    torch.manual_seed(0)
    out = {}
    edge_index = torch.tensor(EDGES, dtype=torch.long).t().contiguous()
    edge_attr = torch.randn(len(EDGES), K, dtype=torch.float64)
    out["graph.edges"] = torch.tensor(EDGES, dtype=torch.float64)
    out["graph.edge_attr"] = edge_attr
    cases = {
        "gcn": GCNConv(F, O),
        "graph_conv_sum": GraphConv(F, O, aggr="add"),
        "graph_conv_mean": GraphConv(F, O, aggr="mean"),
        "graph_conv_max": GraphConv(F, O, aggr="max"),
        "mpnn": Mpnn(),
    }
    for name, layer in cases.items():
        layer = layer.double()
        if name == "gcn":
            with torch.no_grad():
                layer.bias.normal_()  # zero by default; a random bias is checked too
        x = torch.randn(N, F, dtype=torch.float64, requires_grad=True)
        y = layer(x, edge_index, edge_attr) if name == "mpnn" else layer(x, edge_index)
        r = torch.randn_like(y)
        (y * r).sum().backward()
        out[f"{name}.x"] = x.detach()
        out[f"{name}.y"] = y.detach()
        out[f"{name}.r"] = r
        out[f"{name}.grad.x"] = x.grad
        for k, p in layer.named_parameters():
            out[f"{name}.{k}"] = p.detach()
            out[f"{name}.grad.{k}"] = p.grad
    out = {k: v.contiguous() for k, v in out.items()}
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "graph.safetensors")
    save_file(out, path)
    for k in sorted(out):
        print(k, list(out[k].shape))


if __name__ == "__main__":
    main()
