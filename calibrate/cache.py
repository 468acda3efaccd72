"""``calibration.json``: per-tensor ranges, the method, the sample count, and the model hash they belong to."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.files import read_json

CACHE_FORMAT = "bninception-calibration/1"
MAX_CACHE_BYTES = 64 << 20


@dataclass
class Calibration:
    """The ranges of one calibration: ``amax[name]`` for ``method``; ``minmax``/``minimum`` observed."""

    method: str
    percentile: float | None
    samples: int
    bins: int
    model_sha256: str
    data_sha256: str
    data_source: str
    amax: dict[str, float]
    minmax: dict[str, float]
    minimum: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        tensors = {name: {"amax": self.amax[name], "max_abs": self.minmax[name], "min": self.minimum[name]}
                   for name in sorted(self.amax)}
        for key in ("amax", "minmax", "minimum"):
            body.pop(key)
        return {"format": CACHE_FORMAT, **body, "tensors": tensors}


def load_calibration(path: str | Path, model_sha256: str) -> Calibration:
    """Read and check ``calibration.json``; refuse it if it was computed on another model."""
    path = Path(path)
    if not path.is_file():
        raise BninceptionError(f"--from-cache: {path} does not exist; calibrate once without --from-cache")
    data = read_json(path, MAX_CACHE_BYTES, "a calibration cache")
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise BninceptionError(f"{path} is not a bninception calibration cache (format {CACHE_FORMAT})")
    if data.get("model_sha256") != model_sha256:
        raise BninceptionError(
            f"{path} was computed on the model with sha256 {str(data.get('model_sha256'))[:12]}..., but "
            f"the model to quantize has sha256 {model_sha256[:12]}...: the cache does not apply; "
            "recalibrate without --from-cache")
    try:
        tensors = data["tensors"]
        amax, minmax, minimum = ({name: float(entry[key]) for name, entry in tensors.items()}
                                 for key in ("amax", "max_abs", "min"))
        calibration = Calibration(
            method=str(data["method"]), percentile=data.get("percentile"), samples=int(data["samples"]),
            bins=int(data["bins"]), model_sha256=model_sha256, data_sha256=str(data["data_sha256"]),
            data_source=str(data["data_source"]), amax=amax, minmax=minmax, minimum=minimum)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BninceptionError(f"{path} is not a complete calibration cache ({type(exc).__name__}: {exc})") from exc
    ranges = (*amax.values(), *minmax.values())
    if not amax or not all(map(math.isfinite, (*ranges, *minimum.values()))) or min(ranges) < 0:
        raise BninceptionError(f"{path}: the ranges must be finite and non-negative, one per tensor")
    return calibration
