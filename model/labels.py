"""Class labels: an id per class (a WordNet id for ImageNet, a folder name, a digit) and a readable name.

ImageNet-1k's 1000 WordNet ids in the standard class order (sorted ids, as every ImageNet checkpoint
indexes its outputs) and their names ship as package data (``imagenet_classes.tsv``, from timm 1.0.31's
``timm/data/_info``, Apache-2.0). A dataset's class folders are matched to a model's classes by id or
by name, never silently by position.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources

import numpy as np

from bninception.core.errors import BninceptionError

IMAGENET_CLASSES = 1000
MAX_LABELS_BYTES = 4 << 20  # a labels file of 1000 classes is about 32 KB


@dataclass(frozen=True)
class ClassLabels:
    """The ids and names of a model's classes, in output order (names default to the ids)."""

    ids: list[str]
    names: list[str]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.names):
            raise BninceptionError(f"{len(self.ids)} class ids but {len(self.names)} names")

    @classmethod
    def plain(cls, ids: list[str]) -> ClassLabels:
        return cls(list(ids), list(ids))

    @classmethod
    def of(cls, ids: list[str], names: list[str] | None) -> ClassLabels:
        """``ids`` with ``names`` when given (a record written before names existed has none)."""
        return cls(list(ids), list(names) if names is not None else list(ids))

    def __len__(self) -> int:
        return len(self.ids)


def imagenet_labels() -> ClassLabels:
    """ImageNet-1k's WordNet ids in class order (0 = n01440764, tench) and their names."""
    text = resources.files("bninception.model").joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t", 1) for line in text.splitlines() if line]
    return ClassLabels([wnid for wnid, _ in rows], [name for _, name in rows])


def read_labels_file(path: str | os.PathLike[str], classes: int | None = None) -> ClassLabels:
    """A labels file: one label per line, or ``id<TAB>name`` per line (blank lines ignored), checked to
    name ``classes`` distinct ids when given."""
    try:
        size = os.path.getsize(path)
        if size > MAX_LABELS_BYTES:
            raise BninceptionError(f"labels file {path} is {size} bytes, over {MAX_LABELS_BYTES >> 20} MiB")
        with open(path, encoding="utf-8") as handle:
            lines = [line.rstrip("\r\n") for line in handle]
    except (OSError, UnicodeDecodeError) as exc:
        raise BninceptionError(f"cannot read labels file {path}: {exc}") from None
    lines = [line.strip() for line in lines if line.strip()]
    tabbed = ["\t" in line for line in lines]
    if any(tabbed) and not all(tabbed):
        raise BninceptionError(f"labels file {path}: every line must be 'id<TAB>name' or none (line "
                               f"{tabbed.index(not tabbed[0]) + 1} differs from line 1)")
    pairs = [line.split("\t", 1) for line in lines] if all(tabbed) and lines else [[line, line] for line in lines]
    labels = ClassLabels([i.strip() for i, _ in pairs], [n.strip() for _, n in pairs])
    if classes is not None and len(labels) != classes:
        raise BninceptionError(f"labels file {path} names {len(labels)} classes; the model has {classes}")
    repeated = sorted({i for i in labels.ids if labels.ids.count(i) > 1})
    if repeated:
        raise BninceptionError(f"labels file {path} repeats class ids {repeated[:5]}")
    return labels


def dataset_labels(folders: list[str], labels_file: str | None) -> ClassLabels:
    """A dataset's classes (its folder names, sorted) with names from ``labels_file`` when given: ``id<TAB>name``
    lines must name exactly these folders; plain lines name the folders in order."""
    if not labels_file:
        return ClassLabels.plain(folders)
    given = read_labels_file(labels_file, len(folders))
    if given.ids == given.names:  # one label per line: the names of the sorted folders
        return ClassLabels(list(folders), given.names)
    if sorted(given.ids) != sorted(folders):
        missing, extra = sorted(set(folders) - set(given.ids)), sorted(set(given.ids) - set(folders))
        raise BninceptionError(f"labels file {labels_file} does not name the dataset's classes: no line for "
                               f"{missing[:5]}, lines for no folder {extra[:5]}")
    names = dict(zip(given.ids, given.names, strict=True))
    return ClassLabels(list(folders), [names[folder] for folder in folders])


def _key(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


def _by_name(labels: ClassLabels) -> dict[str, int]:
    """Every way a class folder may name a class: its id, its whole name, each of its comma-separated
    synonyms ("tabby, tabby cat": "tabby", "tabby cat"); a synonym two classes share names neither."""
    keys: dict[str, int] = {}
    shared: set[str] = set()
    for index, (wnid, name) in enumerate(zip(labels.ids, labels.names, strict=True)):
        for key in {_key(wnid), _key(name), *(_key(part) for part in name.split(","))} - {""}:
            if keys.get(key, index) != index:
                shared.add(key)
            keys[key] = index
    exact = {_key(wnid): i for i, wnid in enumerate(labels.ids)} | {_key(n): i for i, n in enumerate(labels.names)}
    return {key: index for key, index in keys.items() if key not in shared} | exact


@dataclass(frozen=True)
class LabelMapping:
    """Dataset class index -> model class index, and how it was found."""

    indices: np.ndarray
    how: str  # "identity", "by name" or "by position (asked for)"
    pairs: list[tuple[str, int, str]]  # (dataset class, model index, model id and name)

    def describe(self, most: int = 5) -> str:
        """``by name: n02123045 -> 281 (n02123045 tabby, tabby cat), ...`` (the first ``most``)."""
        if self.how == "identity":
            return "identity"
        shown = ", ".join(f"{folder} -> {index} ({label})" for folder, index, label in self.pairs[:most])
        more = f", ... ({len(self.pairs)} classes)" if len(self.pairs) > most else ""
        return f"{self.how}: {shown}{more}"


def match_classes(dataset: list[str], labels: ClassLabels, by_position: bool = False) -> LabelMapping:
    """Map a dataset's class names onto the model's classes by id or name (a subset is fine); a class that
    matches none is refused in one line that shows both sides, unless ``by_position`` is asked for."""
    def shown(index: int) -> str:
        wnid, name = labels.ids[index], labels.names[index]
        return wnid if wnid == name else f"{wnid} {name}"

    def mapping(indices: list[int], how: str) -> LabelMapping:
        return LabelMapping(np.asarray(indices, dtype=np.int64), how,
                            [(folder, i, shown(i)) for folder, i in zip(dataset, indices, strict=True)])

    if list(dataset) == labels.ids[:len(dataset)]:
        return mapping(list(range(len(dataset))), "identity")
    if by_position:
        if len(dataset) > len(labels):
            raise BninceptionError(f"the dataset has {len(dataset)} classes, the model {len(labels)}: they cannot "
                                   f"be matched by position")
        return mapping(list(range(len(dataset))), "by position (asked for)")
    keys = _by_name(labels)
    found = {folder: keys.get(_key(folder)) for folder in dataset}
    unmatched = [folder for folder, index in found.items() if index is None]
    if unmatched:
        model_side = ", ".join(shown(i) for i in range(min(5, len(labels))))
        raise BninceptionError(
            f"{len(unmatched)} of the dataset's {len(dataset)} classes match no class of the model by id or name: "
            f"dataset {unmatched[:5]}{' ...' if len(unmatched) > 5 else ''}, model [{model_side}"
            f"{', ...' if len(labels) > 5 else ''}] ({len(labels)} classes); rename the folders, or pass "
            f"--match-by-position to score folder k as class k")
    indices = [int(found[folder]) for folder in dataset]  # type: ignore[arg-type]
    repeated = sorted({shown(i) for i in indices if indices.count(i) > 1})
    if repeated:
        raise BninceptionError(f"several dataset classes match the same model class: {repeated[:5]}")
    return mapping(indices, "by name")
