"""The input convention of a model: resize, centre crop, colour order, scale, mean/std.

Torch-free (numpy + Pillow), so export can record it in ONNX metadata and the server can
apply it to uploaded images with nothing but the model file.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from bninception.core.errors import BninceptionError

ChannelOrder = Literal["RGB", "BGR", "GRAY"]
MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs


@dataclass(frozen=True)
class Preprocess:
    """``(pixel / 255 * input_range - mean) / std`` after resizing the shorter side and centre cropping."""

    size: int
    resize: int
    channel_order: ChannelOrder = "RGB"
    input_range: float = 1.0
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    @property
    def channels(self) -> int:
        return 1 if self.channel_order == "GRAY" else 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        try:
            return cls(size=int(data["size"]), resize=int(data["resize"]),
                       channel_order=data["channel_order"], input_range=float(data["input_range"]),
                       mean=tuple(float(v) for v in data["mean"]), std=tuple(float(v) for v in data["std"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BninceptionError(f"invalid preprocessing record {data!r}: {exc}") from exc

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 HWC (or HW for GRAY) pixels in this order -> float32 CHW network input."""
        x = pixels.astype(np.float32) * (self.input_range / 255.0)
        if x.ndim == 2:
            x = x[:, :, None]
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1), dtype=np.float32)

    def to_pixels(self, image: Any) -> np.ndarray:
        """A PIL image -> resized, centre-cropped uint8 array in ``channel_order``."""
        from PIL import Image

        image = image.convert("L" if self.channel_order == "GRAY" else "RGB")
        width, height = image.size
        scale = self.resize / min(width, height)
        new_size = (max(self.size, round(width * scale)), max(self.size, round(height * scale)))
        image = image.resize(new_size, Image.BILINEAR)
        left = (new_size[0] - self.size) // 2
        top = (new_size[1] - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        pixels = np.asarray(image, dtype=np.uint8)
        return pixels[:, :, ::-1] if self.channel_order == "BGR" else pixels

    def __call__(self, image: Any) -> np.ndarray:
        return self.normalize(self.to_pixels(image))


def decode_image(data: bytes, source: str = "image") -> Any:
    """Decode JPEG/PNG bytes into a PIL image with a clear error and a pixel-count bound."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise BninceptionError(f"{source}: {image.width}x{image.height} exceeds "
                                   f"{MAX_IMAGE_PIXELS} pixels")
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BninceptionError(f"{source}: not a readable image ({exc})") from exc
    return image


def load_image(path: str) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BninceptionError(f"cannot read image {path}: {exc}") from exc
    return decode_image(data, source=path)
