"""Reference values from PyTorch for typenet's convolution and pooling ops.

Writes tests/fixtures/conv.safetensors (float64): for every case NAME, the input `NAME.x`,
the parameters (`NAME.weight`, `NAME.bias` for convolutions), the output `NAME.y`, the
upstream gradient `NAME.gy` and the gradients `NAME.gx`, `NAME.gweight`, `NAME.gbias`
of `sum(y * gy)`. tests/conv_torch.rs checks typenet against them to 1e-5.

Regenerate (from the repository root; PyTorch, numpy and safetensors needed):

    /work/venv/bin/python tools/conv_fixtures.py

The cases use awkward sizes on purpose: odd spatial sizes, stride > 1, padding, dilation,
even kernels with padding='same', batches of 2 and 3.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(1234)
out = {}


def record(name, y, x, gy, params):
    y.backward(gy)
    out[f"{name}.x"] = x.detach()
    out[f"{name}.y"] = y.detach()
    out[f"{name}.gy"] = gy
    out[f"{name}.gx"] = x.grad.detach()
    for key, p in params.items():
        out[f"{name}.{key}"] = p.detach()
        out[f"{name}.g{key}"] = p.grad.detach()


def conv2d_case(name, x_shape, out_ch, kernel, stride=1, padding=0, dilation=1):
    x = torch.randn(*x_shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(out_ch, x_shape[1], *kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(out_ch, dtype=torch.float64, requires_grad=True)
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    record(name, y, x, torch.randn_like(y), {"weight": w, "bias": b})


def conv1d_case(name, x_shape, out_ch, kernel, stride=1, padding=0, dilation=1):
    x = torch.randn(*x_shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(out_ch, x_shape[1], kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(out_ch, dtype=torch.float64, requires_grad=True)
    y = F.conv1d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    record(name, y, x, torch.randn_like(y), {"weight": w, "bias": b})


def pool_case(name, x_shape, fn):
    x = torch.randn(*x_shape, dtype=torch.float64, requires_grad=True)
    y = fn(x)
    record(name, y, x, torch.randn_like(y), {})


conv2d_case("conv2d_a", (2, 3, 7, 6), 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
conv2d_case("conv2d_b", (3, 2, 9, 10), 5, (3, 3), stride=2, padding=1, dilation=2)
conv2d_case("conv2d_same_even", (2, 2, 6, 5), 3, (4, 2), padding="same")
conv2d_case("conv2d_lenet1", (2, 1, 12, 12), 6, (5, 5), padding=2)
conv1d_case("conv1d_a", (2, 3, 11), 2, 3, stride=2, padding=2, dilation=2)
conv1d_case("conv1d_same_even", (3, 2, 10), 4, 4, padding="same")
pool_case("max_pool2d_a", (2, 3, 7, 8), lambda x: F.max_pool2d(x, (3, 2), stride=(2, 3), padding=1))
pool_case("avg_pool2d_a", (2, 3, 7, 8), lambda x: F.avg_pool2d(x, (3, 2), stride=(2, 3), padding=1))
pool_case("max_pool2d_lenet", (2, 6, 12, 12), lambda x: F.max_pool2d(x, 2))
pool_case("avg_pool2d_odd", (2, 2, 9, 7), lambda x: F.avg_pool2d(x, 3))
pool_case("max_pool1d_a", (2, 3, 13), lambda x: F.max_pool1d(x, 4, stride=3, padding=2))
pool_case("avg_pool1d_a", (2, 3, 13), lambda x: F.avg_pool1d(x, 4, stride=3, padding=2))
pool_case("global_avg_2d", (2, 3, 5, 4), lambda x: x.mean(dim=(2, 3)))
pool_case("global_max_2d", (2, 3, 5, 4), lambda x: x.amax(dim=(2, 3)))
pool_case("global_avg_1d", (3, 2, 7), lambda x: x.mean(dim=2))

path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "conv.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, path)
print(f"wrote {len(out)} tensors to {os.path.normpath(path)} ({os.path.getsize(path)} bytes)")
