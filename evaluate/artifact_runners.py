"""One lazily created Runner per artifact of a run and provider: PyTorch, every ONNX file, every engine."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bninception.core import layout
from bninception.core.rundir import RunDir
from bninception.core.runner import InputSpec, Runner

log = logging.getLogger(__name__)

REFERENCE = "pytorch"  # the kind every other artifact is compared with


@dataclass
class Skipped:
    """An artifact (or a family of them) that has no runner here, and why."""

    artifact: str
    kind: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"artifact": self.artifact, "kind": self.kind, "reason": self.reason}


@dataclass
class Identity:
    """Which artifact a validate row or a bench cell is about, and on what it ran."""

    name: str
    artifact: str
    kind: str
    backend: str
    provider: str
    precision: str
    optimization: str | None = None


@dataclass
class ArtifactRunner:
    """A lazily created Runner for one artifact of a run on one execution provider."""

    name: str
    artifact: str
    kind: str  # pytorch-ema | pytorch | onnx | onnx-folded | onnx-fp16 | onnx-int8[-cpu] | tensorrt
    backend: str  # pytorch | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | int8
    factory: Callable[[], Runner] = field(repr=False)
    provider: str = "cpu"  # cpu | openvino | cuda | tensorrt (where it runs)
    optimization: str | None = None  # ONNX Runtime graph optimization level, when it applies
    rejected: bool = False  # a stage's gate rejected it: validated and shown, never served or gating the run
    problem: str | None = None  # why the run's manifest does not vouch for it: its row is an error, never run
    _runner: Runner | None = field(default=None, repr=False)

    def identity(self) -> Identity:
        return Identity(self.name, self.artifact, self.kind, self.backend, self.provider, self.precision,
                        self.optimization)

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
        """Drop the underlying session/model (frees memory between rows)."""
        self._runner = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "artifact": self.artifact, "kind": self.kind, "backend": self.backend,
                "provider": self.provider, "precision": self.precision, "optimization": self.optimization}


# -- PyTorch -------------------------------------------------------------------------------------
def _torch(run: RunDir, file: str, name: str, device: str) -> Callable[[], Runner]:
    """``model.pt`` (inference form) or ``checkpoint.pt`` (BN with the EMA running statistics)."""

    def make() -> Runner:
        from bninception.core.preprocess import Preprocess
        from bninception.core.runner import TorchRunner
        from bninception.model.checkpoint import CHECKPOINT_FORMAT, load, load_model, model_from_state

        path = run.path(file)
        if file == layout.MODEL_PT:
            model, pre, _, _ = load_model(path)
        else:
            state = load(path, CHECKPOINT_FORMAT)
            model, pre = model_from_state(state, str(path)).eval(), Preprocess.from_dict(state["preprocess"])
        spec = InputSpec(name="data", channels=pre.channels, height=pre.size, width=pre.size)
        return TorchRunner(model, spec, name=name, device=device)

    return make


# -- ONNX Runtime --------------------------------------------------------------------------------
def default_optimization(kind: str) -> str:
    """The FP32 parity gates run with graph optimizations off (docs/DESIGN.md); the rest as served."""
    return "disable" if kind in ("onnx", "onnx-folded") else "all"


def _ort(path: str, name: str, provider: str, optimization: str, threads: int) -> Callable[[], Runner]:
    def make() -> Runner:
        from bninception.core.runner import OrtRunner

        return OrtRunner(path, name=name, providers=[provider], optimization=optimization, threads=threads)

    return make


def _refused(problem: str) -> Callable[[], Runner]:
    """A factory for a file the run does not vouch for: its row says why, and nothing runs it."""
    from bninception.core.errors import BninceptionError

    def refuse() -> Runner:
        raise BninceptionError(problem)

    return refuse


# -- TensorRT ------------------------------------------------------------------------------------
def _engine_runners(run: RunDir) -> tuple[list[ArtifactRunner], list[Skipped]]:
    """Runners for the run's usable engines: TensorRT itself, and our plan through ONNX Runtime's TensorRT
    provider where that exists. Stale (older ONNX), foreign (other GPU or TensorRT) and broken engines
    are listed as skipped with the reason: they never run and never fail a validation."""
    from bninception.core.ort import available
    from bninception.engines.detect import probe_host
    from bninception.engines.store import classify_engines

    here, why = probe_host()
    statuses = classify_engines(run, here, why)
    if not statuses:
        hint = f"TensorRT cannot run here: {why}" if here is None else "run `bninception build-engine`"
        return [], [Skipped(layout.ENGINES_DIR, "tensorrt", f"no engines built ({hint})")]
    runners: list[ArtifactRunner] = []
    skipped: list[Skipped] = []
    ort_trt = "tensorrt" in available()
    for status in statuses:
        record, rel = status.record, layout.plan_name(status.key)
        if not status.usable or record.sidecar is None:
            skipped.append(Skipped(rel, "tensorrt", f"{status.state}: {status.reason}"))
            continue
        precision = record.sidecar.spec.precision

        def plan(path: str = str(record.plan_path), key: str = status.key) -> Runner:
            from bninception.engines.runner import TensorRTRunner

            return TensorRTRunner(path, name=f"tensorrt-{key}")

        def wrapped(path: str = str(record.context_path), sidecar: Any = record.sidecar) -> Runner:
            from bninception.engines.epcontext import ContextModelRunner

            return ContextModelRunner(path, sidecar)

        runners.append(ArtifactRunner(f"TensorRT {precision.upper()}", rel, "tensorrt", "tensorrt", precision,
                                      plan, provider="tensorrt"))
        if ort_trt and record.context_path.is_file():
            runners.append(ArtifactRunner(f"ORT TensorRT EP (our plan) {precision.upper()}",
                                          layout.context_model_name(status.key), "tensorrt-ep", "onnxruntime",
                                          precision, wrapped, provider="tensorrt"))
    return runners, skipped


def vouched_inputs(runners: list[ArtifactRunner]) -> list[str]:
    """The files of ``runners`` that a stage reading them may record as inputs: those the manifest vouches
    for (a rejected file is shown, never trusted; a changed one is an error row)."""
    return list(dict.fromkeys(a.artifact for a in runners if not a.rejected and a.problem is None))


def discover(run: RunDir, include_engines: bool = True, include_ema: bool = True,
             optimization: str | None = None, threads: int = 0, device: str = "cpu",
             providers: list[str] | None = None) -> tuple[list[ArtifactRunner], list[Skipped]]:
    """Every artifact of ``run`` with a runner here (a row per ONNX file and provider), and those skipped.

    ``optimization`` None: :func:`default_optimization` per kind; ``providers`` None: all available.
    """
    runners: list[ArtifactRunner] = []
    skipped: list[Skipped] = []
    if include_ema:
        trained = run.path(layout.CHECKPOINT).is_file()
        ema_problem = run.problem(layout.CHECKPOINT) if trained else None
        if trained and not ema_problem:
            runners.append(ArtifactRunner("PyTorch EMA statistics", layout.CHECKPOINT, "pytorch-ema", "pytorch",
                                          "fp32", _torch(run, layout.CHECKPOINT, "pytorch-ema", device)))
        else:
            skipped.append(Skipped(layout.CHECKPOINT, "pytorch-ema", ema_problem or
                                   "no training checkpoint (imported weights): no EMA statistics"))
    run.verified(layout.MODEL_PT, "the PyTorch inference-form model is the reference: run `bninception "
                                 "population` or `import-weights`")
    runners.append(ArtifactRunner("PyTorch population (reference)", layout.MODEL_PT, REFERENCE, "pytorch", "fp32",
                                  _torch(run, layout.MODEL_PT, "pytorch", device)))
    from bninception.core.ort import onnx_providers

    listed = onnx_providers() if providers is None else providers
    for provider in listed:
        suffix = "" if provider == "cpu" else f" [{provider}]"
        for entry in layout.ONNX_ARTIFACTS:
            path, label, rejected = run.path(entry.file), entry.label, False
            if not path.is_file() and run.path(layout.rejected(entry.file)).is_file():
                path, label, rejected = run.path(layout.rejected(entry.file)), f"{label}, rejected", True
            if not path.is_file():
                if provider == listed[0]:
                    skipped.append(Skipped(entry.file, entry.kind, "not built"))
                continue
            level = optimization or default_optimization(entry.kind)
            problem = None if rejected else run.problem(path.name)
            factory = _refused(problem) if problem else _ort(str(path), entry.kind, provider, level, threads)
            runners.append(ArtifactRunner(label + suffix, path.name, entry.kind, "onnxruntime", entry.precision,
                                          factory, provider=provider, optimization=level, rejected=rejected,
                                          problem=problem))
    if include_engines:
        more, why = _engine_runners(run)
        runners += more
        skipped += why
    return runners, skipped
