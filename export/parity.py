"""Parity inputs and comparisons for export and fold (ONNX Runtime with graph optimizations off).

Inputs: the run's test images when the run records a dataset, else real photographs from
scikit-image (resized with the model's own Preprocess) plus a few random inputs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bninception.core.errors import BninceptionError, GateFailure

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

    from bninception.core.preprocess import Preprocess
    from bninception.core.rundir import RunDir

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins")
PARITY_TOL = 1e-4
RUN_IMAGES = 64


@dataclass
class Parity:
    """max |candidate - reference| over the logits, and top-1 agreement."""

    max_abs_diff: float
    max_abs_ref: float
    top1_agreement: float
    samples: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_photos(preprocess: Preprocess, limit: int = len(PHOTOS)) -> np.ndarray:
    """scikit-image's bundled photographs through ``preprocess`` -> float32 NCHW."""
    import skimage.data
    from PIL import Image

    images = [preprocess(Image.fromarray(getattr(skimage.data, name)())) for name in PHOTOS[:limit]]
    return np.stack(images).astype(np.float32)


def random_inputs(shape: tuple[int, ...], count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def run_images(run: RunDir, preprocess: Preprocess, channels: int, size: int) -> tuple[np.ndarray, str]:
    """The run's test images if it records a dataset, else photographs + random input."""
    try:
        from bninception.model import data as model_data

        loader = getattr(model_data, "load_run_bundle", None)
        bundle = loader(run) if loader is not None else None
    except BninceptionError:
        bundle = None
    if bundle is not None:
        images, _ = model_data.stack_split(bundle.test, limit=RUN_IMAGES)
        if images.shape[1:] == (channels, size, size):
            return images.astype(np.float32), f"run test split ({len(images)} images)"
    photos = sample_photos(preprocess)
    if photos.shape[1:] != (channels, size, size):
        raise BninceptionError(f"sample photographs give {photos.shape[1:]}, the model takes "
                               f"{(channels, size, size)}")
    mixed = np.concatenate([photos, random_inputs((channels, size, size))])
    return mixed, f"{len(photos)} scikit-image photographs + 2 random inputs"


def session(model: str | os.PathLike[str] | bytes | onnx.ModelProto) -> ort.InferenceSession:
    """A CPU InferenceSession with every graph optimization disabled (no hidden Conv+BN fusion)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    # no busy-waiting threads: parity checks are short, and often share the CPU with other work
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source: Any = model
    if hasattr(model, "SerializeToString"):
        source = model.SerializeToString()  # type: ignore[union-attr]
    elif isinstance(model, os.PathLike):
        source = str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise BninceptionError(f"ONNX Runtime cannot load the model: {exc}") from exc


def run_session(sess: ort.InferenceSession, images: np.ndarray, batch: int = 8) -> np.ndarray:
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: images[i:i + batch]})[0] for i in range(0, len(images), batch)]
    return np.concatenate(outs).astype(np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray, source: str) -> Parity:
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    cand = candidate.reshape(len(candidate), -1).astype(np.float64)
    if ref.shape != cand.shape:
        raise BninceptionError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    return Parity(
        max_abs_diff=float(np.max(np.abs(ref - cand))) if ref.size else 0.0,
        max_abs_ref=float(np.max(np.abs(ref))) if ref.size else 0.0,
        top1_agreement=float(np.mean(ref.argmax(1) == cand.argmax(1))) if ref.size else 1.0,
        samples=len(ref),
        source=source,
    )


def gate(parity: Parity, what: str, tol: float = PARITY_TOL) -> None:
    """Fail when max abs diff > tol, or top-1 differs where the reference's top-2 margin > 2 tol."""
    if not parity.max_abs_diff <= tol:  # also catches NaN
        raise GateFailure(f"{what}: max abs logit diff {parity.max_abs_diff:.3g} > {tol:g} "
                          f"({parity.source})")


def top1_margin_ok(reference: np.ndarray, candidate: np.ndarray, tol: float = PARITY_TOL) -> bool:
    """Top-1 agrees wherever the reference's top-2 gap exceeds 2 * tol (closer ties are noise)."""
    ref = reference.reshape(len(reference), -1)
    if ref.shape[1] < 2:
        return True
    top2 = np.sort(ref, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2 * tol
    same = ref.argmax(1) == candidate.reshape(len(candidate), -1).argmax(1)
    return bool(np.all(same[decided]))


def check(reference: np.ndarray, candidate: np.ndarray, source: str, what: str,
          tol: float = PARITY_TOL) -> Parity:
    """compare + gate (max abs diff and decided top-1 agreement)."""
    parity = compare(reference, candidate, source)
    gate(parity, what, tol)
    if not top1_margin_ok(reference, candidate, tol):
        raise GateFailure(f"{what}: top-1 differs on an input whose top-2 gap exceeds {2 * tol:g} "
                          f"({source})")
    return parity
