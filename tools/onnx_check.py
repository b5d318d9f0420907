#!/usr/bin/env python3
"""Checks typenet's ONNX exports with the `onnx` checker and ONNX Runtime.

Usage: tools/onnx_check.py [DIR | FILE.onnx ...]

Without DIR, runs `cargo test --test onnx` with TYPENET_ONNX_DIR set to a temporary folder,
so that every model the Rust test suite exports (and checks in tract) is written there along
with its cases: random batched inputs and typenet's own outputs for them. Each model is then
validated by `onnx.checker.check_model(full_check=True)` (which includes ONNX's shape
inference) and run in ONNX Runtime on the same inputs; the outputs must agree with typenet's
to 1e-5 (relative to 1 + |y|), and their arg-max (the predicted class) is reported. A case
is either {"shape", "input", "output"} (one float input and output) or {"inputs": {name:
{"shape", "dtype", "data"}}, "outputs": {name: data}, "batched"} (several, named as
declared; a graph network's have no batch axis). With
FILE.onnx arguments (e.g. the `digits` examples' exports), each FILE.json beside it holds the
cases. Exits non-zero on any failure.

Requires: pip install onnx onnxruntime numpy
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort


def main():
    if len(sys.argv) > 1 and all(a.endswith(".onnx") for a in sys.argv[1:]):
        paths = [a[:-5] for a in sys.argv[1:]]
    elif len(sys.argv) > 1:
        folder = sys.argv[1]
    else:
        folder = tempfile.mkdtemp(prefix="typenet_onnx_")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, TYPENET_ONNX_DIR=folder)
        subprocess.run(["cargo", "test", "--test", "onnx", "-q"], cwd=root, env=env, check=True)
    if len(sys.argv) <= 1 or not sys.argv[1].endswith(".onnx"):
        paths = sorted(os.path.join(folder, f[:-5]) for f in os.listdir(folder) if f.endswith(".onnx"))
    if not paths:
        sys.exit("no .onnx files")
    failed = 0
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    for stem in paths:
        name, path = os.path.basename(stem), stem + ".onnx"
        try:
            onnx.checker.check_model(onnx.load(path), full_check=True)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0].name
            names = [o.name for o in sess.get_outputs()]
            with open(stem + ".json") as f:
                cases = json.load(f)
            worst, same, total = 0.0, 0, 0
            for case in cases:
                if "inputs" in case:
                    # several inputs (float32, int64 indices, bool masks) and outputs, by name
                    feeds = {
                        k: np.array(v["data"], dtype=v["dtype"]).reshape(v["shape"])
                        for k, v in case["inputs"].items()
                    }
                    wants = [np.array(case["outputs"][n], dtype=np.float32) for n in names]
                    batch = next(iter(feeds.values())).shape[0]
                else:
                    x = np.array(case["input"], dtype=np.float32).reshape(case["shape"])
                    feeds, wants, batch = {inp: x}, [np.array(case["output"], dtype=np.float32)], x.shape[0]
                gots = sess.run(None, feeds)
                for got, want in zip(gots, wants):
                    # a graph network ("batched": false) has no batch axis
                    if got.size != want.size or (case.get("batched", True) and got.shape[0] != batch):
                        raise AssertionError(f"shape {got.shape} for a batch of {batch}")
                    err = np.abs(got.ravel() - want) / (1.0 + np.abs(want))
                    worst = max(worst, float(err.max()) if err.size else 0.0)
                    if got.ndim == 2 and got.size == want.size:
                        same += int((got.argmax(1) == want.reshape(got.shape).argmax(1)).sum())
                        total += got.shape[0]
            ok = worst <= 1e-5
            failed += not ok
            preds = f", same arg-max {same}/{total}" if total else ""
            print(f"{'ok  ' if ok else 'FAIL'} {name:24} {len(cases)} cases, max rel. error {worst:.2e}{preds}")
        except Exception as e:  # noqa: BLE001 - report every model
            failed += 1
            print(f"FAIL {name:24} {type(e).__name__}: {e}")
    print(f"{len(paths) - failed}/{len(paths)} models agree with typenet in ONNX Runtime")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
