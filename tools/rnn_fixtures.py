#!/usr/bin/env python3
"""Reference outputs and gradients of PyTorch's recurrent layers for typenet's tests.

Writes tests/fixtures/rnn.safetensors (float64), checked by tests/rnn_torch.rs.

Regenerate (from the repository root; needs torch, safetensors and numpy):

    python3 tools/rnn_fixtures.py            # writes tests/fixtures/rnn.safetensors

For each case NAME in rnn_tanh, rnn_relu, lstm, gru and their bidirectional variants
(NAME_bi) the file holds, with keys prefixed by `NAME.`:

- the layer's parameters under PyTorch's own names (`weight_ih_l0`, `weight_hh_l0`,
  `bias_ih_l0`, `bias_hh_l0`, and `..._reverse` for the backward direction);
- `x` [B, T, F] (batch_first), `y` [B, T, D*H] (all hidden states, `nn.RNN/LSTM/GRU` output);
- `r` [B, T, D*H], random weights of the scalar loss `sum(y * r)`;
- `grad.x` and `grad.<param>`: the gradients of that loss.

Sizes: B=2, T=5, F=3, H=4, seed 0. Parameters use PyTorch's default initialisation.
"""
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

B, T, F, H = 2, 5, 3, 4


def case(kind, bidirectional, gen):
    if kind == "lstm":
        layer = torch.nn.LSTM(F, H, batch_first=True, bidirectional=bidirectional)
    elif kind == "gru":
        layer = torch.nn.GRU(F, H, batch_first=True, bidirectional=bidirectional)
    else:
        act = "tanh" if kind == "rnn_tanh" else "relu"
        layer = torch.nn.RNN(F, H, nonlinearity=act, batch_first=True, bidirectional=bidirectional)
    layer = layer.double()
    d = 2 if bidirectional else 1
    x = torch.randn(B, T, F, dtype=torch.float64, generator=gen, requires_grad=True)
    r = torch.randn(B, T, d * H, dtype=torch.float64, generator=gen)
    y, _ = layer(x)
    (y * r).sum().backward()
    name = kind + ("_bi" if bidirectional else "")
    out = {}
    for pname, p in layer.named_parameters():
        out[f"{name}.{pname}"] = p.detach().numpy().copy()
        out[f"{name}.grad.{pname}"] = p.grad.numpy().copy()
    out[f"{name}.x"] = x.detach().numpy().copy()
    out[f"{name}.y"] = y.detach().numpy().copy()
    out[f"{name}.r"] = r.numpy().copy()
    out[f"{name}.grad.x"] = x.grad.numpy().copy()
    return out


def main():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for kind in ["rnn_tanh", "rnn_relu", "lstm", "gru"]:
        for bi in [False, True]:
            tensors.update(case(kind, bi, gen))
    tensors = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "fixtures", "rnn.safetensors")
    save_file(tensors, path, metadata={"generator": "tools/rnn_fixtures.py", "torch": torch.__version__})
    print(f"wrote {path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
