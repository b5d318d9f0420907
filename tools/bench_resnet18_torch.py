"""PyTorch counterpart of the ResNet-18 part of `cargo bench --bench suite` (issue 15, goal 4).

One training step (zero_grad + forward + cross-entropy + backward + Adam) of ResNet-18 in its
CIFAR variant (3x32x32 inputs, a 3x3 stride-1 stem without max pooling, four stages of two
BasicBlocks with 64/128/256/512 channels, stride-2 downsampling with a 1x1 convolution and
batch norm on the skip path, global average pooling, dense 10), written by hand (no
torchvision). Convolutions carry a bias, as typenet's `conv2d` does (`--no-conv-bias` for
torchvision's bias-free convolutions); the parameter count is printed to compare.

Each batch size runs in a fresh process (this script re-executed with `--child B`), so the
peak RSS (ru_maxrss) is that batch size's.

Usage: python bench_resnet18_torch.py [threads] [steps] [warmup] [batches, e.g. 16,64,256] [--no-conv-bias]
Batch 256 runs a third of the steps (at least 2), as the suite does.
Prints one JSON line per batch size, like bench_torch.py, plus batch, params, peak_rss_mb.
"""
import json
import resource
import statistics
import subprocess
import sys
import time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
flags = [a for a in sys.argv[1:] if a.startswith("--")]
threads = int(args[0]) if len(args) > 0 else 2
steps = int(args[1]) if len(args) > 1 else 5
warmup = int(args[2]) if len(args) > 2 else 1
batches = args[3] if len(args) > 3 else "16,64,256"
conv_bias = "--no-conv-bias" not in flags


def child(batch):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def conv(cin, cout, k, stride=1):
        return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=conv_bias)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = conv(cin, cout, 3, stride), nn.BatchNorm2d(cout)
            self.c2, self.b2 = conv(cout, cout, 3), nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
            return F.relu(y + (x if self.down is None else self.down(x)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv(3, 64, 3), nn.BatchNorm2d(64), nn.ReLU())
            layers, cin = [], 64
            for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
                layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
                cin = cout
            self.layers = nn.Sequential(*layers)
            self.head = nn.Linear(512, 10)

        def forward(self, x):
            x = self.layers(self.stem(x))
            return self.head(x.mean((2, 3)))

    model = ResNet18()
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    n = steps if batch < 256 else max(2, -(-steps // 3))  # batch 256: a third of the steps, as the suite
    for _ in range(warmup):
        step()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    r = dict(framework=f"torch {torch.__version__}", model=f"resnet18_cifar_b{batch}", threads=threads,
             steps=n, median_ms=round(statistics.median(ts), 4), min_ms=round(ts[0], 4),
             max_ms=round(ts[-1], 4), batch=batch, params=params, conv_bias=conv_bias,
             peak_rss_mb=round(rss_mb))
    print(json.dumps(r), flush=True)


if "--child" in flags:
    child(int(args[4]))
else:
    for b in [int(s) for s in batches.split(",") if s.strip()]:
        cmd = [sys.executable, sys.argv[0], str(threads), str(steps), str(warmup), batches, str(b), "--child"]
        if not conv_bias:
            cmd.append("--no-conv-bias")
        subprocess.run(cmd, check=False)
