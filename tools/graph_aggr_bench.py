#!/usr/bin/env python3
"""PyTorch's `index_add_` neighbour sum (16 features, f32) on random graphs of 10^5 and 10^6
edges (10 edges per node), the counterpart of benches/gcn.rs's `graph_conv_aggregation_sum_16f`.

    /work/venv/bin/python tools/graph_aggr_bench.py [threads]
"""
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
g = torch.Generator().manual_seed(0)
for edges in (100_000, 1_000_000):
    n = edges // 10
    src = torch.randint(0, n, (edges,), generator=g)
    dst = torch.randint(0, n, (edges,), generator=g)
    x = torch.randn(n, 16, generator=g)
    ts = []
    for i in range(60):
        t0 = time.perf_counter()
        torch.zeros(n, 16).index_add_(0, dst, x[src])
        if i >= 10:
            ts.append(time.perf_counter() - t0)
    ts.sort()
    med = ts[len(ts) // 2]
    print(f"index_add_ {edges} edges: median {med * 1e3:.3f} ms, {edges / med / 1e6:.1f} M edges/s")
