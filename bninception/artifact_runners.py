"""One Runner per artifact of a run: the PyTorch models, every ONNX file, every TensorRT engine.

validate and bench speak only to these. Each :class:`ArtifactRunner` is a Runner (``name``,
``input_spec``, ``run``) that also says which file it runs, its kind, backend and precision.
Runners are created lazily (a session is opened on first use), so listing them is cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.core.runner import InputSpec, Runner

log = logging.getLogger(__name__)

REFERENCE = "pytorch"  # the kind every other artifact is compared with

# (file, kind, precision, label): the ONNX artifacts of a run, in pipeline order.
ONNX_ARTIFACTS = (
    ("model.onnx", "onnx", "fp32", "ORT FP32 (BN kept)"),
    ("model.folded.onnx", "onnx-folded", "fp32", "ORT FP32 folded"),
    ("model.fp16.onnx", "onnx-fp16", "fp16", "ORT FP16"),
    ("model.int8.onnx", "onnx-int8", "int8", "ORT INT8 (Q/DQ)"),
    ("model.int8.cpu.onnx", "onnx-int8-cpu", "int8", "ORT INT8 CPU (U8S8 QLinear)"),
)


@dataclass
class Skipped:
    """An artifact (or a family of them) that has no runner here, and why."""

    artifact: str
    kind: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"artifact": self.artifact, "kind": self.kind, "reason": self.reason}


@dataclass
class ArtifactRunner:
    """A lazily created Runner for one artifact of a run."""

    name: str
    artifact: str
    kind: str  # pytorch-ema | pytorch | onnx | onnx-folded | onnx-fp16 | onnx-int8[-cpu] | tensorrt
    backend: str  # pytorch | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | int8
    factory: Callable[[], Runner] = field(repr=False)
    optimization: str | None = None  # ONNX Runtime graph optimization level, when it applies
    _runner: Runner | None = field(default=None, repr=False)

    @property
    def informational(self) -> bool:
        """True for the train-mode-statistics model: reported, never gated."""
        return self.kind == "pytorch-ema"

    @property
    def is_reference(self) -> bool:
        return self.kind == REFERENCE

    def load(self) -> Runner:
        if self._runner is None:
            self._runner = self.factory()
        return self._runner

    @property
    def input_spec(self) -> InputSpec:
        return self.load().input_spec

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.load().run(batch)

    def close(self) -> None:
        """Drop the underlying session/model (frees memory between bench rows)."""
        self._runner = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "artifact": self.artifact, "kind": self.kind, "backend": self.backend,
                "precision": self.precision, "optimization": self.optimization}


# -- PyTorch -------------------------------------------------------------------------------------
def _spec_for(preprocess: dict[str, Any] | Any) -> InputSpec:
    from bninception.core.preprocess import Preprocess

    pre = preprocess if isinstance(preprocess, Preprocess) else Preprocess.from_dict(preprocess)
    return InputSpec(name="data", channels=pre.channels, height=pre.size, width=pre.size)


def _torch_reference(run: RunDir, device: str) -> Callable[[], Runner]:
    def make() -> Runner:
        from bninception.core.runner import TorchRunner
        from bninception.model.checkpoint import load_model

        model, pre, _, _ = load_model(run.path("model.pt"))
        return TorchRunner(model, _spec_for(pre), name="pytorch", device=device)

    return make


def _torch_ema(run: RunDir, device: str) -> Callable[[], Runner]:
    def make() -> Runner:
        from bninception.core.runner import TorchRunner
        from bninception.model.checkpoint import CHECKPOINT_FORMAT, load, model_from_state

        path = run.path("checkpoint.pt")
        state = load(path, CHECKPOINT_FORMAT)
        model = model_from_state(state, str(path)).eval()  # BN uses the EMA running statistics
        return TorchRunner(model, _spec_for(state["preprocess"]), name="pytorch-ema", device=device)

    return make


# -- ONNX Runtime --------------------------------------------------------------------------------
def default_optimization(kind: str) -> str:
    """The parity gates of FP32 ONNX run with graph optimizations off (DESIGN.md); the rest as served."""
    return "disable" if kind in ("onnx", "onnx-folded") else "all"


def _ort(path: str, name: str, optimization: str, threads: int) -> Callable[[], Runner]:
    def make() -> Runner:
        from bninception.core.runner import OrtRunner

        return OrtRunner(path, name=name, providers=["CPUExecutionProvider"], optimization=optimization,
                         threads=threads)

    return make


# -- TensorRT ------------------------------------------------------------------------------------
def _engine_runners(run: RunDir) -> tuple[list[ArtifactRunner], list[Skipped]]:
    """Runners for ``engines/*.plan`` when TensorRT and CUDA are here, else one skip reason."""
    try:
        from bninception.engines import available, list_engines
    except ImportError as exc:
        return [], [Skipped("engines/", "tensorrt", f"bninception.engines cannot be imported: {exc}")]
    records = list_engines(run)
    ok, reason = available()
    if not ok:
        what = f"{len(records)} engine(s) in engines/ not run" if records else "no engines built"
        return [], [Skipped("engines/", "tensorrt", f"TensorRT skipped: {reason} ({what})")]
    runners: list[ArtifactRunner] = []
    skipped: list[Skipped] = []
    for record in records:
        rel = f"engines/{record.plan_path.name}"
        if record.problem:
            skipped.append(Skipped(rel, "tensorrt", record.problem))
            continue
        precision = record.precision or "fp32"

        def make(plan: str = str(record.plan_path), key: str = record.key) -> Runner:
            try:
                from bninception.engines.runner import TensorRTRunner
            except ImportError as exc:
                raise BninceptionError(f"bninception.engines.runner cannot be imported: {exc}") from exc
            return TensorRTRunner(plan, name=f"tensorrt-{key}")

        runners.append(ArtifactRunner(name=f"TensorRT {precision.upper()}", artifact=rel, kind="tensorrt",
                                      backend="tensorrt", precision=precision, factory=make))
    if not records:
        skipped.append(Skipped("engines/", "tensorrt", "no engines built (run `bninception build-engine`)"))
    return runners, skipped


def discover(run: RunDir, include_engines: bool = True, include_ema: bool = True,
             optimization: str | None = None, threads: int = 0, device: str = "cpu"
             ) -> tuple[list[ArtifactRunner], list[Skipped]]:
    """Every artifact of ``run`` with a runner here, plus those skipped (with the reason).

    ``optimization`` None picks :func:`default_optimization` per kind (what the gates need);
    a level (e.g. ``"all"``, for benchmarks) applies to every ONNX file.
    """
    runners: list[ArtifactRunner] = []
    skipped: list[Skipped] = []
    if include_ema:
        if run.path("checkpoint.pt").is_file():
            runners.append(ArtifactRunner("PyTorch EMA statistics", "checkpoint.pt", "pytorch-ema", "pytorch",
                                          "fp32", _torch_ema(run, device)))
        else:
            skipped.append(Skipped("checkpoint.pt", "pytorch-ema",
                                   "no training checkpoint (imported weights): no EMA statistics"))
    if not run.path("model.pt").is_file():
        raise BninceptionError(f"{run.path('model.pt')} is missing: the PyTorch inference-form model is the "
                               f"reference (run `bninception population` or `import-weights`)")
    runners.append(ArtifactRunner("PyTorch population (reference)", "model.pt", REFERENCE, "pytorch", "fp32",
                                  _torch_reference(run, device)))
    for name, kind, precision, label in ONNX_ARTIFACTS:
        path = run.path(name)
        if not path.is_file():
            skipped.append(Skipped(name, kind, "not built"))
            continue
        level = optimization or default_optimization(kind)
        runners.append(ArtifactRunner(label, name, kind, "onnxruntime", precision,
                                      _ort(str(path), kind, level, threads), optimization=level))
    if include_engines:
        more, why = _engine_runners(run)
        runners += more
        skipped += why
    return runners, skipped


def runners_for_run(run: RunDir, include_engines: bool = True) -> list[ArtifactRunner]:
    """A Runner for every artifact present in ``run`` (see :func:`discover` for the skipped ones)."""
    return discover(run, include_engines=include_engines)[0]


class _Runs(Protocol):
    """What :func:`run_all` needs: a Runner, or an ArtifactRunner (whose input_spec is read-only)."""

    @property
    def name(self) -> str: ...

    @property
    def input_spec(self) -> InputSpec: ...

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def run_all(runner: _Runs, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits for ``images``, in batches that respect the runner's batch range (padding the last)."""
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
    return np.concatenate(outputs, axis=0)
