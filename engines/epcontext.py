"""The EPContext model: ONNX Runtime's TensorRT execution provider runs the plan we built and validated.

``engines/<key>.ctx.onnx`` is one ``com.microsoft`` ``EPContext`` node whose ``ep_cache_context``
names ``<key>.plan`` beside it (docs/decisions.md, "EPContext").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_bytes
from bninception.core.runner import InputSpec, OrtRunner
from bninception.engines.key import Sidecar
from bninception.engines.profile import read_graph_io

if TYPE_CHECKING:
    import onnx

CONTEXT_OP = "EPContext"
CONTEXT_DOMAIN = "com.microsoft"
CONTEXT_DOMAIN_VERSION = 1
PROVIDER = "TensorrtExecutionProvider"
AMPERE_PLUS = "80+"  # ORT's k_cc_hw_compatible
METADATA = ("bninception.engine_key", "bninception.plan_sha256", "bninception.tensorrt_version",
            "bninception.precision")


def hardware_architecture(sidecar: Sidecar) -> str:
    """ORT's ``hardware_architecture`` for the plan: ``"86"`` for compute capability 8.6, ``"80+"`` for ampere_plus."""
    if sidecar.spec.options.hardware_compatibility == "ampere_plus":
        return AMPERE_PLUS
    major, _, minor = sidecar.spec.env.compute_capability.partition(".")
    try:
        return str(int(major) * 10 + int(minor))
    except ValueError:
        raise BninceptionError(f"engine {sidecar.key}: bad compute capability "
                               f"{sidecar.spec.env.compute_capability!r} in its sidecar") from None


def build_context_model(sidecar: Sidecar, source_onnx: str | os.PathLike[str],
                        plan_file: str | None = None) -> onnx.ModelProto:
    """The EPContext wrapper of ``sidecar``'s plan (``plan_file`` relative to it), with the source ONNX's I/O."""
    import onnx
    from onnx import helper

    plan_file = f"{sidecar.key}.plan" if plan_file is None else plan_file
    relative = PurePosixPath(plan_file)
    if not plan_file or relative.is_absolute() or ".." in relative.parts or "\\" in plan_file:
        raise BninceptionError(f"ep_cache_context must be a path below the context model, got {plan_file!r} "
                               "(ONNX Runtime refuses absolute paths and '..')")
    source = Path(source_onnx)
    model, inputs, outputs = read_graph_io(source)
    if not inputs or not outputs:
        raise BninceptionError(f"{source}: no graph inputs or outputs to wrap")
    if sidecar.input_name not in [vi.name for vi in inputs]:
        raise BninceptionError(f"{source}: input {sidecar.input_name!r} of engine {sidecar.key} is not a graph "
                               f"input (found {[vi.name for vi in inputs]}); the ONNX changed since the build")
    node = helper.make_node(
        CONTEXT_OP, [vi.name for vi in inputs], [vo.name for vo in outputs], name=CONTEXT_OP,
        domain=CONTEXT_DOMAIN, embed_mode=0, ep_cache_context=str(relative),
        hardware_architecture=hardware_architecture(sidecar), onnx_model_filename=source.name, source=PROVIDER)
    graph = helper.make_graph([node], f"bninception_{sidecar.key}", inputs, outputs)
    default_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    wrapper = helper.make_model(graph, producer_name="bninception build-engine",
                                opset_imports=[helper.make_opsetid("", default_opset),
                                               helper.make_opsetid(CONTEXT_DOMAIN, CONTEXT_DOMAIN_VERSION)])
    wrapper.ir_version = model.ir_version  # what the ONNX Runtime that serves the source accepts
    wrapper.doc_string = (f"ONNX Runtime TensorRT EP context model for the {sidecar.spec.precision} engine "
                          f"{sidecar.key} ({sidecar.spec.env.describe()}), built from {source.name}")
    values = (sidecar.key, sidecar.plan_sha256, sidecar.spec.env.trt_version, sidecar.spec.precision)
    helper.set_model_props(wrapper, dict(zip(METADATA, values, strict=True)))
    onnx.checker.check_model(wrapper)
    return wrapper


def write_context_model(path: str | os.PathLike[str], sidecar: Sidecar,
                        source_onnx: str | os.PathLike[str]) -> Path:
    """Write ``<key>.ctx.onnx`` atomically beside the plan (``path``'s folder must hold ``<key>.plan``)."""
    path = Path(path)
    model = build_context_model(sidecar, source_onnx)
    atomic_write_bytes(path, model.SerializeToString())
    return path


def provider_options(device: int = 0) -> dict[str, str]:
    """ONNX Runtime TensorRT provider options for a context model: the GPU; nothing else is needed."""
    return {"device_id": str(int(device))}


def check_provider(available: Sequence[str] | None = None) -> None:
    """Refuse, clearly, where ONNX Runtime has no TensorRT execution provider."""
    if available is None:
        from bninception.core.ort import onnxruntime

        available = list(onnxruntime().get_available_providers())
    if PROVIDER not in available:
        raise BninceptionError(
            f"an EPContext model (our TensorRT plan) runs only on ONNX Runtime's {PROVIDER}, which this "
            f"ONNX Runtime build does not have (available: {', '.join(available) or 'none'}); install "
            "onnxruntime-gpu built for the TensorRT that made the plan (pip install 'bninception[gpu]') on a "
            "host with an NVIDIA GPU, or serve the ONNX file of that precision instead")


class ContextModelRunner(OrtRunner):
    """A Runner over ``<key>.ctx.onnx`` on ONNX Runtime's TensorRT provider, in the plan's batch range."""

    input_spec: InputSpec

    def __init__(self, context_path: str | os.PathLike[str], sidecar: Sidecar, name: str | None = None,
                 device: int = 0) -> None:
        from bninception.engines.detect import load_tensorrt

        check_provider()
        # pip's [gpu] route: ONNX Runtime's TensorRT provider finds libnvinfer only once the tensorrt
        # package has loaded it into this process
        if load_tensorrt() is None:
            raise BninceptionError("ONNX Runtime's TensorRT provider needs TensorRT's libraries: install the "
                                   "tensorrt package it was built against (pip install 'bninception[gpu]')")
        super().__init__(os.fspath(context_path), name=name or f"ort-tensorrt-{sidecar.spec.precision}",
                         providers=[PROVIDER], optimization="disable",
                         provider_options={PROVIDER: provider_options(device)},
                         what=f"EPContext model {context_path}")
        profile = sidecar.spec.profile
        self.input_spec = replace(self.input_spec, min_batch=profile.min, max_batch=profile.max)
