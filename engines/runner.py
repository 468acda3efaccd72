"""A Runner over a TensorRT engine: deserialize, set shapes, run ``execute_async_v3`` on a CUDA stream.

Device buffers are torch CUDA tensors; a batch outside the engine's profile is refused before TensorRT
sees it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError
from bninception.core.runner import InputSpec
from bninception.engines.detect import host_env, require_tensorrt
from bninception.engines.key import check_compatible
from bninception.engines.store import read_plan, read_sidecar, sidecar_path_for
from bninception.engines.trtlog import collect_errors, describe, process_logger

if TYPE_CHECKING:
    import tensorrt
    import torch


def torch_dtype(trt_dtype: Any) -> torch.dtype:
    """The torch dtype for an engine I/O tensor's TensorRT DataType (via its numpy type)."""
    import tensorrt as trt
    import torch

    np_type = np.dtype(trt.nptype(trt_dtype))
    return torch.from_numpy(np.zeros(0, dtype=np_type)).dtype


def dims_tuple(dims: tensorrt.Dims) -> tuple[int, ...]:
    """A TensorRT ``Dims`` as a tuple (``Dims`` indexes but is not typed as iterable)."""
    return tuple(int(dims[i]) for i in range(len(dims)))


class TensorRTRunner:
    """Run a ``engines/<key>.plan`` built by :func:`bninception.engines.stages.build_engine_stage`."""

    def __init__(self, plan_path: str | Path, name: str | None = None, device: int = 0,
                 check_host: bool = True) -> None:
        trt = require_tensorrt()
        import torch

        plan_path = Path(plan_path)
        self.sidecar = read_sidecar(sidecar_path_for(plan_path))
        if check_host:
            check_compatible(self.sidecar, host_env(device), plan=str(plan_path))
        plan = read_plan(plan_path, self.sidecar)

        self.name = name or f"tensorrt-{self.sidecar.spec.precision}"
        self.device = torch.device("cuda", device)
        self._lock = threading.Lock()
        with torch.cuda.device(self.device), collect_errors() as errors:
            self._runtime = trt.Runtime(process_logger(trt))
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise BninceptionError(f"TensorRT could not deserialize {plan_path}: {describe(errors)}")
            self._engine: tensorrt.ICudaEngine = engine
            context = engine.create_execution_context()
            if context is None:
                raise BninceptionError(f"{plan_path}: TensorRT could not create an execution context on "
                                       f"cuda:{device} ({describe(errors, 'out of GPU memory?')})")
            self._context: tensorrt.IExecutionContext = context

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BninceptionError(f"{plan_path}: expected one input and one output, found inputs "
                                   f"{inputs} and outputs {outputs}")
        self._input, self._output = inputs[0], outputs[0]
        self._input_dtype = torch_dtype(engine.get_tensor_dtype(self._input))
        self._output_dtype = torch_dtype(engine.get_tensor_dtype(self._output))
        min_shape, _opt, max_shape = engine.get_tensor_profile_shape(self._input, 0)
        shape = dims_tuple(engine.get_tensor_shape(self._input))
        if len(shape) != 4:
            raise BninceptionError(f"{plan_path}: input {self._input!r} has shape {shape}, expected NCHW")
        self.input_spec = InputSpec(name=self._input, channels=int(shape[1]), height=int(shape[2]),
                                    width=int(shape[3]), min_batch=min_shape[0],
                                    max_batch=max_shape[0])
        self._stream = torch.cuda.Stream(device=self.device)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Float32 NCHW batch (inside the profile) -> float32 logits."""
        import torch

        self.input_spec.check(batch)
        with self._lock, torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            host = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            x = host.to(self.device, dtype=self._input_dtype).contiguous()
            if not self._context.set_input_shape(self._input, tuple(x.shape)):
                raise BninceptionError(f"TensorRT rejected input shape {tuple(x.shape)} for {self._input!r}")
            out_shape = dims_tuple(self._context.get_tensor_shape(self._output))
            if any(d < 0 for d in out_shape):
                raise BninceptionError(f"TensorRT could not infer the output shape for input "
                                       f"{tuple(x.shape)}")
            y = torch.empty(out_shape, dtype=self._output_dtype, device=self.device)
            self._context.set_tensor_address(self._input, x.data_ptr())
            self._context.set_tensor_address(self._output, y.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BninceptionError(f"TensorRT execution failed for a batch of {batch.shape[0]}")
            result = y.float().cpu()  # .cpu() waits for the stream
            self._stream.synchronize()
        return result.numpy()
