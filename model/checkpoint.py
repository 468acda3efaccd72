"""``checkpoint.pt`` (training state) and ``model.pt`` (inference form): plain dicts, ``weights_only`` loads."""

from __future__ import annotations

import errno
import os
import shutil
import zipfile
from typing import Any

import torch

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_path
from bninception.core.preprocess import Preprocess
from bninception.model.architecture import BNInception, ModelConfig, build_model
from bninception.model.labels import ClassLabels

CHECKPOINT_FORMAT = "bninception-checkpoint/1"
MODEL_FORMAT = "bninception-model/1"
MAX_FILE_BYTES = 4 << 30  # bound what a user file may make us allocate
ARCHIVE_SLACK = 1 << 20  # zip headers and alignment beyond the stored bytes
REQUIRED = {  # format -> key -> type every reader relies on
    MODEL_FORMAT: {"config": dict, "state_dict": dict, "preprocess": dict, "labels": list},
    CHECKPOINT_FORMAT: {"config": dict, "train_config": dict, "state_dict": dict, "optimizer": dict,
                        "scheduler": dict, "history": list, "epoch": int, "preprocess": dict, "labels": list},
}


def save(obj: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` atomically; a write the host refused (a full disk) is an OSError naming ``path``."""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:  # torch's zip writer reports ENOSPC and EIO as RuntimeError
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
            raise OSError(errno.ENOSPC if free < (64 << 20) else errno.EIO,
                          f"writing failed ({free >> 20} MiB free on its disk)", str(path)) from exc


def check_archive(path: str, size: int) -> None:
    """Refuse a zip-format PyTorch file whose entries inflate past the file's own size: ``torch.save``
    stores tensors uncompressed, so only a crafted file (a decompression bomb) does that."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(entry.file_size for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BninceptionError(f"{path} is not a readable PyTorch zip archive: {exc}") from None
    if inflated > size + ARCHIVE_SLACK:
        raise BninceptionError(f"{path}: its entries inflate to {inflated} bytes from a {size}-byte file; "
                               "PyTorch stores tensors uncompressed, so this file is refused unloaded")


def load(path: str | os.PathLike[str], expected_format: str | None = None) -> dict[str, Any]:
    """Load a bninception file safely (weights_only) with errors that name the file."""
    path = str(path)
    if not os.path.isfile(path):
        raise BninceptionError(f"{path} does not exist")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise BninceptionError(f"{path} is larger than {MAX_FILE_BYTES >> 30} GiB; refusing to load it")
    check_archive(path, size)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors have many types
        import pickle

        why = ("it holds Python objects that safe loading refuses (the file is never unpickled)"
               if isinstance(exc, pickle.UnpicklingError) else
               (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        raise BninceptionError(f"{path} is not a PyTorch file loadable with weights_only=True: {why}") from exc
    if expected_format is not None and (not isinstance(data, dict) or data.get("format") != expected_format):
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise BninceptionError(f"{path}: expected a {expected_format} file, found {found!r}")
    for key, kind in REQUIRED.get(expected_format or "", {}).items():
        if not isinstance(data.get(key), kind):
            found = "missing" if key not in data else type(data[key]).__name__
            raise BninceptionError(f"{path}: {expected_format} file needs {key!r} as a {kind.__name__}, found "
                                   f"{found}; the file is damaged or was not written by bninception")
    return data


def model_from_state(data: dict[str, Any], path: str = "model") -> BNInception:
    """Rebuild the network from ``config`` + ``state_dict`` with a clear error on mismatched keys."""
    model = build_model(ModelConfig.from_dict(data["config"]))
    result = model.load_state_dict(data["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise BninceptionError(f"{path}: state_dict does not match the config: missing "
                               f"{result.missing_keys[:10]}, unexpected {result.unexpected_keys[:10]}")
    return model


def save_model(path: str | os.PathLike[str], model: BNInception, preprocess: Preprocess,
               labels: ClassLabels, statistics: str, extra: dict[str, Any] | None = None) -> None:
    """Write ``model.pt``: the network in inference form (eval-mode BN with the given statistics), with its
    class ids (``labels``) and their names (``label_names``)."""
    save({
        "format": MODEL_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "preprocess": preprocess.to_dict(),
        "labels": list(labels.ids),
        "label_names": list(labels.names),
        "statistics": statistics,
        **(extra or {}),
    }, path)


def class_labels(record: dict[str, Any]) -> ClassLabels:
    """The class ids and names a ``model.pt`` or checkpoint record holds (names default to the ids)."""
    names = record.get("label_names")
    ids = [str(x) for x in record["labels"]]
    return ClassLabels.of(ids, [str(x) for x in names] if isinstance(names, list) and len(names) == len(ids)
                          else None)


def load_model(path: str | os.PathLike[str]) -> tuple[BNInception, Preprocess, ClassLabels, dict[str, Any]]:
    """``model.pt`` -> (eval-mode network, preprocessing, class ids and names, the whole record)."""
    data = load(path, MODEL_FORMAT)
    model = model_from_state(data, str(path)).eval()
    return model, Preprocess.from_dict(data["preprocess"]), class_labels(data), data
