"""Checks that a weight file saved by typenet loads into the matching PyTorch module with
strict=True.  Usage: /work/venv/bin/python tools/check_torch_load.py FILE.safetensors
(the file is what tests/train_weights.rs `pytorch_round_trip` writes; see its path there)."""
import sys
import torch
from safetensors.torch import load_file
sys.path.insert(0, "tools")
from train_fixtures import Bn  # noqa: E402

sd = load_file(sys.argv[1])
m = Bn().to(next(iter(sd.values())).dtype)
print(m.load_state_dict(sd, strict=True))
io = load_file("tests/fixtures/torch_bn_io.safetensors")
m.eval()
y = m(io["x"].to(m.dense_1.weight.dtype))
err = (y.double() - io["y"]).abs().max().item()
print("max |y - y_fixture| =", err)
assert err < 1e-5, err
print("OK")
