"""Stand-ins for the engine tests on hosts without a GPU: hosts, a tiny ONNX model, a plan builder.

The real builder needs TensorRT and a GPU (tests/engines/test_engines_gpu.py); ``FakeBuilder`` returns
deterministic bytes instead, so the build stage's own logic is what those tests exercise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from bninception.engines.detect import HostEnv

A10 = HostEnv("10.8.0.43", "NVIDIA A10", "8.6")
RTX3090 = HostEnv("10.8.0.43", "NVIDIA GeForce RTX 3090", "8.6")  # same compute capability as A10
H100 = HostEnv("10.8.0.43", "NVIDIA H100 80GB HBM3", "9.0")
T4 = HostEnv("10.8.0.43", "Tesla T4", "7.5")  # below Ampere


def tiny_onnx(path: Path, classes: int = 10, batch: str | int = "N", elem: int = TensorProto.FLOAT) -> None:
    """input [N,1,4,4] -> Flatten -> Gemm -> logits [N, classes]."""
    values = [0.01 * i for i in range(16 * classes)]
    weight = helper.make_tensor("W", TensorProto.FLOAT, [classes, 16], values)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]),
         helper.make_node("Gemm", ["flat", "W"], ["logits"], transB=1)],
        "tiny", [helper.make_tensor_value_info("input", elem, [batch, 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


class FakeBuilder:
    """Stands in for engines.build.build_plan: records calls, returns bytes derived from the spec."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, onnx_path, spec, onnx_input, timing_cache):
        self.calls.append((Path(onnx_path).name, spec.key()))
        sm = spec.env.compute_capability.replace(".", "")
        assert timing_cache.name == f"timing-trt{spec.env.trt_version}-sm{sm}.cache"
        assert timing_cache.parent == Path(onnx_path).parent / "engines"
        return f"PLAN {spec.key()} {onnx_input.name}".encode(), {"tf32": "off"}


def recorded_onnx(run: Any, name: str, **kwargs: Any) -> None:
    """``tiny_onnx`` as the run's ``name``, recorded in the manifest as the stage that makes it wrote it."""
    from bninception.core import layout

    tiny_onnx(run.path(name), **kwargs)
    run.record(layout.artifact(name).command.split()[1], {}, [], [name], 0.0)
