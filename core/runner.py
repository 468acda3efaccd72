"""One Runner protocol for every backend (PyTorch, ONNX Runtime, TensorRT).

validate, bench and serve speak only to Runners: ``run(batch) -> logits`` plus an input spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class InputSpec:
    """The single image input of a classifier: ``(batch, channels, height, width)`` float32."""

    name: str
    channels: int
    height: int
    width: int
    dtype: str = "float32"
    min_batch: int = 1
    max_batch: int | None = None

    def check(self, batch: np.ndarray) -> None:
        from bninception.core.errors import BninceptionError

        expected = (self.channels, self.height, self.width)
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
    """A backend that turns a float32 NCHW batch into float32 logits."""

    name: str
    input_spec: InputSpec

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


class OrtRunner:
    """ONNX Runtime inference through the same session factory the server uses."""

    def __init__(self, model_path: str, name: str = "onnxruntime", providers: list[str] | None = None,
                 optimization: str = "all", threads: int = 0) -> None:
        from bninception.serve.session import create_session, input_spec_of

        self.name = name
        self.session = create_session(model_path, providers=providers, optimization=optimization,
                                      threads=threads)
        self.input_spec = input_spec_of(self.session)
        self._input = self.input_spec.name
        self._output = self.session.get_outputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.input_spec.check(batch)
        feed = {self._input: np.ascontiguousarray(batch, dtype=np.float32)}
        return np.asarray(self.session.run([self._output], feed)[0], dtype=np.float32)


def run_batched(runner: Runner, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Run ``images`` through ``runner`` in batches and concatenate the logits."""
    outputs = [runner.run(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs, axis=0)
