#!/usr/bin/env python3
"""Reference outputs and gradients of PyTorch's embedding, attention and transformer layers
for typenet's tests.

Writes tests/fixtures/attention.safetensors (float64), checked by tests/attention_torch.rs.

Regenerate (from the repository root; needs torch, safetensors and numpy):

    /work/venv/bin/python tools/attention_fixtures.py

For each case NAME the file holds, with keys prefixed by `NAME.`:

- `param.<key>`: the module's parameters under PyTorch's own names (`weight`,
  `in_proj_weight`, `self_attn.out_proj.bias`, `linear1.weight`, `norm2.bias`, ...);
- `x`: the input (`[B, T]` indices as float64 for `embedding`, `[B, T, D]` otherwise);
- `mask` (padding cases): `[B, T]`, 1.0 = padding (PyTorch's `key_padding_mask`);
- `y`: the output; `r`: random weights of the scalar loss `sum(y * r)`;
- `grad.x` (float inputs) and `grad.param.<key>`: the gradients of that loss.

Cases: embedding; positional (a learned `[M, D]` table added to `x`, no PyTorch module:
`x + weight[:T]`); sinusoidal (the table of Vaswani et al. as in PyTorch's tutorial);
attn_plain, attn_causal, attn_padding (`nn.MultiheadAttention(D, H, batch_first=True)`,
self-attention); tf_post_relu, tf_pre_relu, tf_post_gelu_causal, tf_pre_gelu_padding
(`nn.TransformerEncoderLayer(D, H, FF, dropout=0, batch_first=True, norm_first=..,
activation=..)`). Sizes: B=2, T=5, D=8, H=2, FF=16, VOCAB=7, M=6; seed 0.
"""
import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

B, T, D, H, FF, VOCAB, M = 2, 5, 8, 2, 16, 7, 6


def np64(t):
    return t.detach().double().numpy().copy()


def record(name, module, x, y, r, out, x_is_float=True):
    (y * r).sum().backward()
    for pname, p in module.named_parameters():
        out[f"{name}.param.{pname}"] = np64(p)
        out[f"{name}.grad.param.{pname}"] = np64(p.grad)
    out[f"{name}.x"] = np64(x)
    out[f"{name}.y"] = np64(y)
    out[f"{name}.r"] = np64(r)
    if x_is_float:
        out[f"{name}.grad.x"] = np64(x.grad)


def padding_mask():
    # sample 1's last two steps are padding; no query row is fully masked
    m = torch.zeros(B, T, dtype=torch.bool)
    m[1, T - 2:] = True
    return m


def main():
    torch.manual_seed(0)
    out = {}

    emb = torch.nn.Embedding(VOCAB, D).double()
    idx = torch.randint(0, VOCAB, (B, T))
    y = emb(idx)
    record("embedding", emb, idx.double(), y, torch.randn(B, T, D, dtype=torch.float64), out, x_is_float=False)

    pos = torch.nn.Parameter(torch.randn(M, D, dtype=torch.float64))
    holder = torch.nn.Module()
    holder.weight = pos
    x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
    record("positional", holder, x, x + pos[:T], torch.randn(B, T, D, dtype=torch.float64), out)

    position = torch.arange(T, dtype=torch.float64).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, D, 2, dtype=torch.float64) * (-math.log(10000.0) / D))
    pe = torch.zeros(T, D, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    out["sinusoidal.table"] = pe.numpy().copy()

    causal = torch.nn.Transformer.generate_square_subsequent_mask(T, dtype=torch.float64)
    for name, kw in [
        ("attn_plain", {}),
        ("attn_causal", {"attn_mask": causal, "is_causal": True}),
        ("attn_padding", {"key_padding_mask": padding_mask()}),
    ]:
        mha = torch.nn.MultiheadAttention(D, H, batch_first=True).double()
        # PyTorch initialises the biases to zero; make them matter in the check
        with torch.no_grad():
            mha.in_proj_bias.normal_(0, 0.1)
            mha.out_proj.bias.normal_(0, 0.1)
        x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
        y, _ = mha(x, x, x, need_weights=False, **kw)
        if "key_padding_mask" in kw:
            out[f"{name}.mask"] = kw["key_padding_mask"].double().numpy()
        record(name, mha, x, y, torch.randn(B, T, D, dtype=torch.float64), out)

    for name, norm_first, act, kw in [
        ("tf_post_relu", False, "relu", {}),
        ("tf_pre_relu", True, "relu", {}),
        ("tf_post_gelu_causal", False, "gelu", {"src_mask": causal, "is_causal": True}),
        ("tf_pre_gelu_padding", True, "gelu", {"src_key_padding_mask": padding_mask()}),
    ]:
        layer = torch.nn.TransformerEncoderLayer(
            D, H, FF, dropout=0.0, activation=act, batch_first=True, norm_first=norm_first
        ).double()
        with torch.no_grad():
            for n, p in layer.named_parameters():
                if n.endswith("bias") or n.startswith("norm"):
                    p.add_(torch.randn_like(p) * 0.1)
        x = torch.randn(B, T, D, dtype=torch.float64, requires_grad=True)
        y = layer(x, **kw)
        if "src_key_padding_mask" in kw:
            out[f"{name}.mask"] = kw["src_key_padding_mask"].double().numpy()
        record(name, layer, x, y, torch.randn(B, T, D, dtype=torch.float64), out)

    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "attention.safetensors")
    save_file(out, path)
    print(f"wrote {len(out)} tensors to {path}")


if __name__ == "__main__":
    main()
