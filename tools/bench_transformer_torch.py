#!/usr/bin/env python3
"""PyTorch side of benches/transformer.rs at several sequence lengths (the workload of
/work/shared/peers/bench_torch.py's transformer line: two encoder layers d 64, 4 heads,
ff 256, dropout 0, batch 32, mean over time -> dense 10, cross-entropy, Adam).

Usage: python tools/bench_transformer_torch.py [threads] [steps] [warmup] T [T ...]
Each length runs in a fresh process so that the peak RSS (ru_maxrss) is that length's.
"""
import json, resource, statistics, subprocess, sys, time

def run(threads, steps, warmup, t):
    import torch, torch.nn as nn, torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layer = lambda: nn.TransformerEncoderLayer(64, 4, dim_feedforward=256, dropout=0.0, batch_first=True)
    enc, head = nn.Sequential(layer(), layer()), nn.Linear(64, 10)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, t, 64, generator=g), torch.randint(0, 10, (32,), generator=g)
    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head(enc(x).mean(1)), y)
        loss.backward()
        opt.step()
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter(); step(); ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    print(json.dumps(dict(framework=f"torch {torch.__version__}", model=f"transformer_d64_h4_ff256_t{t}_b32_head10",
        threads=threads, steps=steps, median_ms=round(statistics.median(ts), 4), min_ms=round(ts[0], 4),
        p10_ms=round(ts[len(ts) // 10], 4), p90_ms=round(ts[len(ts) * 9 // 10], 4),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))), flush=True)

if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "--one":
        run(int(a[1]), int(a[2]), int(a[3]), int(a[4]))
    else:
        threads, steps, warmup = int(a[0]), int(a[1]), int(a[2])
        for t in a[3:] or ["32", "128", "512"]:
            subprocess.run([sys.executable, __file__, "--one", str(threads), str(steps), str(warmup), t], check=True)
