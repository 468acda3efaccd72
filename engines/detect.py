"""Is a real TensorRT and a CUDA GPU here, and which ones (for the engine key and sidecar)?

``tensorrt-stubs`` makes ``import tensorrt`` succeed as an empty package, so a real installation is
recognised by ``tensorrt.Builder``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from bninception.core.errors import BninceptionError


def load_tensorrt() -> ModuleType | None:
    """The real ``tensorrt`` module, or None where it is absent (or only type stubs); a broken install raises."""
    try:
        module = importlib.import_module("tensorrt")
    except ModuleNotFoundError as exc:
        if exc.name == "tensorrt":
            return None
        raise BninceptionError(f"TensorRT is installed but cannot be imported: {exc}") from None
    except Exception as exc:  # ImportError / OSError from its shared libraries
        raise BninceptionError(f"TensorRT is installed but cannot be loaded: {type(exc).__name__}: {exc}") from None
    return module if hasattr(module, "Builder") else None


def cuda_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def available() -> tuple[bool, str]:
    """(True, "") when engines can be built and run here, else (False, the reason)."""
    if load_tensorrt() is None:
        return False, "TensorRT is not installed (no importable tensorrt.Builder)"
    if cuda_device_count() == 0:
        return False, "no CUDA GPU visible to PyTorch (torch.cuda.is_available() is False)"
    return True, ""


def require_tensorrt() -> ModuleType:
    """The tensorrt module and a CUDA GPU, or a BninceptionError saying which is missing."""
    ok, reason = available()
    if not ok:
        raise BninceptionError(f"TensorRT engines need TensorRT 10.x/11.x and a CUDA GPU: {reason}")
    trt = load_tensorrt()
    assert trt is not None
    return trt


@dataclass(frozen=True)
class HostEnv:
    """What an engine is tied to: the TensorRT version and the GPU."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.6"

    def describe(self) -> str:
        return (f"TensorRT {self.trt_version} on {self.gpu_name} "
                f"(compute capability {self.compute_capability})")


def probe_host(device: int = 0) -> tuple[HostEnv | None, str]:
    """(this host's TensorRT + GPU ``device``, "") or (None, why engines cannot run here); never raises."""
    try:
        ok, reason = available()
        if not ok:
            return None, reason
        return host_env(device), ""
    except BninceptionError as exc:  # an installed TensorRT that does not load
        return None, str(exc)
    except Exception as exc:  # a CUDA error from torch, a device index out of range
        return None, f"cannot query GPU {device}: {exc}"


def host_env(device: int = 0) -> HostEnv:
    """The current TensorRT version and GPU ``device`` (needs both; see :func:`require_tensorrt`)."""
    trt = require_tensorrt()
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return HostEnv(trt_version=str(trt.__version__), gpu_name=torch.cuda.get_device_name(device),
                   compute_capability=f"{major}.{minor}")
