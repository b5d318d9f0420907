"""PyTorch fixtures for typenet's training code (issue 12).

Run from the repository root with the shared venv:
    /work/venv/bin/python tools/train_fixtures.py
Writes (committed):
    tests/fixtures/train_activations.safetensors  derivatives at and around the kinks
    tests/fixtures/train_rmsprop.safetensors      torch.optim.RMSprop trajectories
    tests/fixtures/torch_bn_state_dict.safetensors a state_dict with num_batches_tracked
    tests/fixtures/torch_bn_keys.txt              the keys PyTorch's module expects
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
OUT = "tests/fixtures/"

# ---- a PyTorch module whose keys match typenet's
# network! { Bn: [3] -> [2] { dense(4), batch_norm, relu, dense(2) } } ----
class Bn(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense_1 = nn.Linear(3, 4)
        self.batch_norm_1 = nn.BatchNorm1d(4)
        self.dense_2 = nn.Linear(4, 2)
    def forward(self, x):
        return self.dense_2(F.relu(self.batch_norm_1(self.dense_1(x))))

def fixtures():
    # ---- activations: value and derivative at x in XS (0 exactly included) ----
    XS = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
    act = {}
    def grad_of(f, name):
        x = XS.clone().requires_grad_(True)
        y = f(x)
        y.sum().backward()
        act[name + ".y"] = y.detach().clone()
        act[name + ".dy"] = x.grad.detach().clone()
    grad_of(F.relu, "relu")
    grad_of(lambda x: F.leaky_relu(x, 0.1), "leaky_relu")
    grad_of(F.softplus, "softplus")
    grad_of(lambda x: F.elu(x, 1.5), "elu")
    w = torch.tensor([0.25], dtype=torch.float64, requires_grad=True)
    x = XS.clone().requires_grad_(True)
    y = F.prelu(x, w)
    y.sum().backward()
    act["prelu.y"] = y.detach().clone()
    act["prelu.dy"] = x.grad.detach().clone()
    act["prelu.dw"] = w.grad.detach().clone()
    act["x"] = XS.clone()
    save_file(act, OUT + "train_activations.safetensors")

    # ---- RMSprop: loss = sum(c * theta^2), 6 steps, each theta recorded ----
    C = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    TH0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    CONFIGS = {
        "default": dict(lr=0.01),
        "full": dict(lr=0.05, alpha=0.9, eps=1e-3, momentum=0.5, centered=True, weight_decay=0.1),
    }
    rms = {"c": C.clone(), "theta0": TH0.clone()}
    for name, cfg in CONFIGS.items():
        th = TH0.clone().requires_grad_(True)
        opt = torch.optim.RMSprop([th], **cfg)
        traj = []
        for _ in range(6):
            opt.zero_grad()
            (C * th * th).sum().backward()
            opt.step()
            traj.append(th.detach().clone())
        rms[name] = torch.stack(traj)
    save_file(rms, OUT + "train_rmsprop.safetensors")



if __name__ == "__main__":
    fixtures()
    m = Bn().double()
    m.train()
    for _ in range(3):  # move the running statistics and num_batches_tracked
        m(torch.randn(8, 3, dtype=torch.float64) * 2 + 1)
    m.eval()
    sd = {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}
    assert "batch_norm_1.num_batches_tracked" in sd
    x = torch.randn(5, 3, dtype=torch.float64)
    sd_out = dict(sd)
    save_file(sd_out, OUT + "torch_bn_state_dict.safetensors")
    save_file({"x": x, "y": m(x).detach()}, OUT + "torch_bn_io.safetensors")
    with open(OUT + "torch_bn_keys.txt", "w") as f:
        for k in sorted(sd):
            if not k.endswith("num_batches_tracked"):
                f.write(f"{k} {' '.join(str(s) for s in sd[k].shape)}\n")
    print("wrote fixtures")
