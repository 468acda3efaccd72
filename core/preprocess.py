"""The input convention of a model (resize, centre crop, colour order, scale, mean/std), torch-free."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from bninception.core.errors import BninceptionError

ChannelOrder = Literal["RGB", "BGR", "GRAY"]
MAX_IMAGE_PIXELS = 64_000_000  # refuse decompression bombs
MAX_RESIZE = 8192  # the shorter side an image is resized to, at most
UPLOAD_FORMATS = ("JPEG", "PNG")  # what the server decodes; Pillow's other plugins are never loaded for it
FILE_FORMATS = ("JPEG", "PNG", "BMP")  # ImageFolder training data (model.data.IMAGE_SUFFIXES)
MAX_JPEG_SCANS = 64  # a progressive JPEG has about 10; tens of thousands decode for seconds


@dataclass(frozen=True)
class Preprocess:
    """``(pixel / 255 * input_range - mean) / std`` after resizing the shorter side and centre cropping."""

    size: int
    resize: int
    channel_order: ChannelOrder = "RGB"
    input_range: float = 1.0
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        """Refuse a convention that cannot work (it may come from a user's ONNX metadata)."""
        problems = []
        if self.channel_order not in ("RGB", "BGR", "GRAY"):
            problems.append(f"channel_order {str(self.channel_order)[:16]!r} is not RGB, BGR or GRAY")
        elif not len(self.mean) == len(self.std) == self.channels:
            problems.append(f"{len(self.mean)} means and {len(self.std)} stds for {self.channels} channel(s)")
        if not 1 <= self.size <= self.resize <= MAX_RESIZE:
            problems.append(f"size {self.size} and resize {self.resize} need 1 <= size <= resize <= {MAX_RESIZE}")
        values = (self.input_range, *self.mean, *self.std)
        if not all(np.isfinite(values)) or self.input_range <= 0 or min(self.std, default=1) <= 0:
            problems.append("input_range, mean and std must be finite, with input_range and std > 0")
        if problems:
            raise BninceptionError(f"preprocessing {'; '.join(problems)}")

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
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BninceptionError(f"invalid preprocessing record {str(data)[:200]}: {exc}") from None

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

        try:
            image = _to_eight_bit(image).convert("L" if self.channel_order == "GRAY" else "RGB")
        except (ValueError, OSError) as exc:
            raise BninceptionError(f"cannot convert a {image.mode} image to {self.channel_order}: {exc}") from None
        width, height = image.size
        scale = self.resize / min(width, height)
        new_size = (max(self.size, round(width * scale)), max(self.size, round(height * scale)))
        image = image.resize(new_size, Image.Resampling.BILINEAR)
        left = (new_size[0] - self.size) // 2
        top = (new_size[1] - self.size) // 2
        image = image.crop((left, top, left + self.size, top + self.size))
        pixels = np.asarray(image, dtype=np.uint8)
        return pixels[:, :, ::-1] if self.channel_order == "BGR" else pixels

    def __call__(self, image: Any) -> np.ndarray:
        return self.normalize(self.to_pixels(image))


def _to_eight_bit(image: Any) -> Any:
    """16/32-bit integer and float images -> 8-bit ``L`` (high byte of 16-bit, ``F`` as 0..1); others unchanged."""
    from PIL import Image

    if image.mode in EIGHT_BIT:
        return image
    if image.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image) >> 8).astype(np.uint8), "L")
    if image.mode == "F":
        floats = np.array(image, dtype=np.float32)
        np.nan_to_num(floats, copy=False, nan=0.0)
        floats *= 255
        np.rint(floats, out=floats)
        np.clip(floats, 0, 255, out=floats)
        return Image.fromarray(floats.astype(np.uint8), "L")
    ints = np.array(image, dtype=np.int32)
    np.clip(ints, 0, 65535, out=ints)
    np.right_shift(ints, 8, out=ints)
    return Image.fromarray(ints.astype(np.uint8), "L")


# Bytes per pixel of Pillow's in-memory modes (its 3- and 2-channel modes are stored in 4 bytes).
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
EIGHT_BIT = frozenset({"1", "L", "P", "LA", "La", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                       "LAB", "HSV"})


def decode_memory(image: Any, channel_order: ChannelOrder = "RGB") -> int:
    """Bytes that decoding ``image`` (opened, not loaded) and converting it for ``to_pixels`` hold at the
    peak: the decoded picture, the numpy copies and scaled ``L`` of a 16/32-bit one, the converted copy."""
    pixels = int(image.width) * int(image.height)
    storage = _STORAGE_BYTES.get(image.mode, 4)
    eight_bit = 0 if image.mode in EIGHT_BIT else pixels * (2 * storage + 1)
    converted = pixels * (1 if channel_order == "GRAY" else 4)  # convert() copies even when the mode matches
    return pixels * storage + eight_bit + converted


def open_image(data: bytes, source: str = "image", max_pixels: int = MAX_IMAGE_PIXELS,
               formats: tuple[str, ...] = UPLOAD_FORMATS) -> Any:
    """Read an image's header (no pixels decoded yet) with only Pillow's ``formats`` plugins, refusing
    one of more than ``max_pixels`` or a JPEG of more than ``MAX_JPEG_SCANS`` scans."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=list(formats))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise BninceptionError(f"{source}: not a readable image (read here: {', '.join(formats)}; "
                               f"{str(exc)[:120]})") from None
    if image.width * image.height > max_pixels:
        raise BninceptionError(f"{source}: {image.width}x{image.height} exceeds {max_pixels} pixels")
    if image.format == "JPEG":
        scans = data.count(b"\xff\xda")  # SOS markers: 0xFF in entropy-coded data is always stuffed
        if scans > MAX_JPEG_SCANS:
            raise BninceptionError(f"{source}: a JPEG of {scans} scans (at most {MAX_JPEG_SCANS}): a progressive "
                                   f"JPEG that would take seconds to decode")
    return image


def decode_image(data: bytes, source: str = "image", max_pixels: int = MAX_IMAGE_PIXELS,
                 formats: tuple[str, ...] = UPLOAD_FORMATS) -> Any:
    """Decode image bytes (``formats`` only) into a PIL image with a clear error and a pixel-count bound."""
    image = open_image(data, source, max_pixels, formats)
    return load_pixels(image, source)


def load_pixels(image: Any, source: str = "image") -> Any:
    """Decode the pixels of an image from :func:`open_image`, with a clear error."""
    from PIL import Image

    try:
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise BninceptionError(f"{source}: not a readable image ({exc})") from exc
    return image


def load_image(path: str) -> Any:
    """The JPEG or PNG file at ``path`` as a Pillow image; BninceptionError naming the file when it cannot be
    read or is not an image this accepts."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BninceptionError(f"cannot read image {path}: {exc}") from exc
    return decode_image(data, source=path, formats=FILE_FORMATS)
