"""One Runner protocol for every backend: ``run(batch) -> logits`` plus an input spec, and ``run_all``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from bninception.core.errors import BninceptionError

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    import torch

# ONNX Runtime input type -> numpy dtype the session takes
ORT_INPUT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


@dataclass(frozen=True)
class InputSpec:
    """The single image input of a classifier: ``(batch, channels, height, width)``."""

    name: str
    channels: int
    height: int
    width: int
    dtype: str = "float32"
    min_batch: int = 1
    max_batch: int | None = None

    @property
    def item_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def check(self, batch: np.ndarray) -> None:
        expected = self.item_shape
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise BninceptionError(
                f"input {self.name!r}: expected shape (N, {', '.join(map(str, expected))}), "
                f"got {tuple(batch.shape)}"
            )
        n = batch.shape[0]
        if n < self.min_batch or (self.max_batch is not None and n > self.max_batch):
            raise BninceptionError(
                f"input {self.name!r}: batch {n} outside the supported range "
                f"[{self.min_batch}, {self.max_batch if self.max_batch is not None else 'any'}]"
            )


@runtime_checkable
class Runner(Protocol):
    """A backend that turns an NCHW batch into float32 logits."""

    @property
    def name(self) -> str: ...

    @property
    def input_spec(self) -> InputSpec: ...

    def run(self, batch: np.ndarray) -> np.ndarray: ...


class TorchRunner:
    """PyTorch eager inference (eval mode, no grad) on CPU or CUDA."""

    def __init__(self, module: torch.nn.Module, input_spec: InputSpec, name: str = "pytorch",
                 device: str = "cpu") -> None:
        import torch

        self.name = name
        self.input_spec = input_spec
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        self.input_spec.check(batch)
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.module(tensor).float().cpu().numpy()


def input_spec_of(session: ort.InferenceSession, what: str = "model") -> InputSpec:
    """The image InputSpec of a session whose single input is ``(N, C, H, W)`` with fixed C, H, W."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise BninceptionError(f"{what}: expected one input, found {[i.name for i in inputs]}")
    shape, kind = inputs[0].shape, inputs[0].type
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise BninceptionError(f"{what}: input {inputs[0].name!r} must be (N, C, H, W) with fixed C, H, W; "
                               f"got {shape}")
    if kind not in ORT_INPUT_DTYPES:
        raise BninceptionError(f"{what}: input {inputs[0].name!r} has type {kind}; expected a float tensor")
    fixed = shape[0] if isinstance(shape[0], int) else None
    return InputSpec(name=inputs[0].name, channels=shape[1], height=shape[2], width=shape[3],
                     dtype=ORT_INPUT_DTYPES[kind], min_batch=fixed or 1, max_batch=fixed)


class OrtRunner:
    """ONNX Runtime inference (the same session factory the server uses); first output = logits."""

    name: str
    input_spec: InputSpec

    def __init__(self, model: str | os.PathLike[str] | bytes | onnx.ModelProto, name: str = "onnxruntime",
                 providers: Sequence[str] | None = None, optimization: str = "all", threads: int = 0,
                 spinning: bool | None = None, provider_options: Mapping[str, Mapping[str, Any]] | None = None,
                 what: str | None = None) -> None:
        from bninception.core.ort import create_session

        self.name = name
        self.session = create_session(model, providers=providers, optimization=optimization, threads=threads,
                                      spinning=spinning, provider_options=provider_options, what=what)
        self.input_spec = input_spec_of(self.session, what or name)
        self.output = self.session.get_outputs()[0].name
        self._input = self.input_spec.name
        self._dtype = np.dtype(self.input_spec.dtype)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.input_spec.check(batch)
        feed = {self._input: np.ascontiguousarray(batch, dtype=self._dtype)}
        return np.asarray(self.session.run([self.output], feed)[0], dtype=np.float32)


def run_all(runner: Runner, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits for ``images``, in batches inside the runner's batch range (the last one padded up)."""
    spec = runner.input_spec
    step = batch_size if spec.max_batch is None else max(1, min(batch_size, spec.max_batch))
    outputs = []
    for start in range(0, len(images), step):
        batch = images[start:start + step]
        count = len(batch)
        if count < spec.min_batch:
            pad = np.zeros((spec.min_batch - count, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, pad])
        logits = np.asarray(runner.run(batch), dtype=np.float32)
        if logits.ndim != 2 or logits.shape[0] != len(batch):
            raise BninceptionError(f"{runner.name}: expected logits of shape ({len(batch)}, classes), "
                                   f"got {logits.shape}")
        outputs.append(logits[:count])
    if not outputs:
        raise BninceptionError(f"{runner.name}: no images to run")
    return np.concatenate(outputs, axis=0)
