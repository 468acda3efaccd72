"""BatchNorm folding: our pass vs onnxoptimizer, onnxslim and ONNX Runtime's basic level.

For BN-Inception (224x224, 1000 classes, random BN state) and three small models built here (a
DenseNet-style block where BN precedes conv, a ConvTranspose decoder, an MLP with BatchNorm1d),
count the BatchNormalization nodes left and the max abs output diff against the unfolded model
(ONNX Runtime, graph optimizations off, random inputs), plus node counts and pass time (best
of two calls).

Then the scaling of each pass with the graph size: a chain of N Conv -> BatchNormalization pairs,
N = 100 / 400 / 1600 / 6400 (a method that took over 20 s at one N is not run at the next).

    .venv/bin/python benchmarks/fold_peers.py [--budget 240] [--small-only] [--json OUT]

Bounded: a method is skipped (and says so) once the time budget is spent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import onnx

from bninception.evaluate.tables import render

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "helpers"))


def ours(model: onnx.ModelProto) -> onnx.ModelProto:
    from bninception.export.fold import fold_batchnorm

    return fold_batchnorm(model)[0]


def onnxoptimizer_fuse(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxoptimizer

    return onnxoptimizer.optimize(model, ["fuse_bn_into_conv"])


def onnxslim_default(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def ort_basic(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "opt.onnx")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = path
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(path)


METHODS: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
    "ours": ours,
    "onnxoptimizer fuse_bn_into_conv": onnxoptimizer_fuse,
    "onnxslim": onnxslim_default,
    "ORT basic (optimized_model_filepath)": ort_basic,
}


def build_models(small_only: bool) -> dict[str, tuple[onnx.ModelProto, tuple[int, ...]]]:
    import torch
    from random_bn import randomize_bn, small_models  # tests/helpers/random_bn.py

    from bninception.export.to_onnx import to_model_proto
    from bninception.model.architecture import ModelConfig, build_model

    models: dict[str, tuple[onnx.ModelProto, tuple[int, ...]]] = {}
    if not small_only:
        torch.manual_seed(0)
        net = randomize_bn(build_model(ModelConfig()), torch.randn(4, 3, 224, 224))
        models["bninception_224"] = (to_model_proto(net, (3, 224, 224)), (3, 224, 224))
    for name, (net, shape) in small_models().items():
        models[name] = (to_model_proto(net, shape), shape)
    return models


def max_diff(reference: onnx.ModelProto, candidate: onnx.ModelProto, x: np.ndarray) -> float:
    from bninception.core.ort import create_session

    ref = create_session(reference, optimization="disable")
    cand = create_session(candidate, optimization="disable")
    a = ref.run(None, {ref.get_inputs()[0].name: x})[0]
    b = cand.run(None, {cand.get_inputs()[0].name: x})[0]
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def conv_bn_chain(n: int) -> onnx.ModelProto:
    """x -> (Conv 1x1 -> BatchNormalization) x n, 4 channels."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(n):
        inits.append(numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), f"w{i}"))
        inits += [numpy_helper.from_array(np.full(4, v, np.float32), f"{p}{i}") for p, v in
                  (("s", 1.0), ("b", 0.0), ("m", 0.0), ("v", 1.0))]
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}"),
                  helper.make_node("BatchNormalization", [f"c{i}", f"s{i}", f"b{i}", f"m{i}", f"v{i}"], [f"y{i}"],
                                   name=f"bn{i}")]
        x = f"y{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def scaling(sizes: tuple[int, ...] = (100, 400, 1600, 6400)) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for method in ("ours", "onnxoptimizer fuse_bn_into_conv", "onnxslim"):
        for n in sizes:
            if any(r["method"] == method and (r.get("seconds") or 99) > 20 for r in rows):
                rows.append({"method": method, "n": n, "error": "skipped (smaller N: over 20 s or failed)"})
                continue
            model = conv_bn_chain(n)
            t0 = time.perf_counter()
            try:
                out = METHODS[method](model)
                rows.append({"method": method, "n": n, "seconds": time.perf_counter() - t0,
                             "bn_left": count(out, "BatchNormalization")})
            except (Exception, RecursionError) as exc:  # onnxslim recurses per node
                rows.append({"method": method, "n": n, "error": f"{type(exc).__name__}"})
            print(f"  chain {n:5d} {method:38s} done", file=sys.stderr, flush=True)
    return rows


def count(model: onnx.ModelProto, op: str) -> int:
    return sum(n.op_type == op for n in model.graph.node)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for the whole run")
    parser.add_argument("--small-only", action="store_true", help="skip BN-Inception 224")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    models = build_models(args.small_only)
    rows = []
    for model_name, (model, shape) in models.items():
        x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
        bn_before = count(model, "BatchNormalization")
        for method, fn in METHODS.items():
            row = {"model": model_name, "method": method, "bn_before": bn_before}
            if time.perf_counter() - start > args.budget:
                rows.append({**row, "error": "skipped: time budget spent"})
                continue
            try:
                times = []
                for _ in range(2):  # the first call pays imports and warm-up; report the faster
                    copy = onnx.ModelProto()
                    copy.CopyFrom(model)
                    t0 = time.perf_counter()
                    out = fn(copy)
                    times.append(time.perf_counter() - t0)
                row["seconds"] = min(times)
                row["bn_left"] = count(out, "BatchNormalization")
                row["nodes"] = f"{len(model.graph.node)} -> {len(out.graph.node)}"
                row["max_abs_diff"] = max_diff(model, out, x)
            except Exception as exc:  # a peer failing is a result, not a crash
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
            rows.append(row)
            print(f"  {model_name:24s} {method:38s} done", file=sys.stderr, flush=True)
    print("\n" + "\n".join(render(["model", "method", "BN before", "BN left", "max abs diff", "nodes", "time s"], [
        [r["model"], r["method"], r["bn_before"], r["error"]] if "error" in r else
        [r["model"], r["method"], r["bn_before"], r["bn_left"], f"{r['max_abs_diff']:.3g}", r["nodes"],
         f"{r['seconds']:.3f}"] for r in rows])))
    chain = scaling()
    methods = dict.fromkeys(r["method"] for r in chain)
    print("\nConv+BN chain: seconds to fold N pairs (BN left)\n" + "\n".join(render(
        ["method", *(f"N={n}" for n in (100, 400, 1600, 6400))],
        [[m, *(f"{r['seconds']:.2f} ({r['bn_left']})" if "seconds" in r else str(r["error"])[:16]
               for r in chain if r["method"] == m)] for m in methods])))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"models": rows, "chain": chain}, handle, indent=2)
    print(f"\ntotal {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
