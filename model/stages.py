"""The model stages of a run: train -> checkpoint.pt, population -> model.pt, import-weights -> model.pt."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from bninception.core import layout
from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_json, parse_json, sha256_file
from bninception.core.preprocess import Preprocess
from bninception.core.rundir import RunDir
from bninception.core.stage import Done, StageResult, StageSpec, run_stage
from bninception.model.config import TrainConfig

if TYPE_CHECKING:
    from bninception.model.labels import ClassLabels

log = logging.getLogger(__name__)

POPULATION_BATCHES = 16  # N training mini-batches (Algorithm 2)
POPULATION_BATCH_SIZE = 64  # M examples each


def update_metrics(run: RunDir, section: str, values: dict[str, Any]) -> None:
    """Merge one section into ``metrics.json`` (a summary file; the hashed artifacts hold the truth)."""
    path = run.path(layout.METRICS)
    metrics: dict[str, Any] = {}
    if path.is_file():
        try:
            metrics = parse_json(path.read_bytes(), path)
        except BninceptionError:  # rewritten whole below
            metrics = {}
    metrics[section] = values
    atomic_write_json(path, metrics)


def train_stage(run: RunDir, cfg: TrainConfig, resume: bool = False, force: bool = False,
                progress: bool = True) -> StageResult:
    """Train into ``checkpoint.pt`` (atomically, every epoch); ``resume`` continues it."""
    from bninception.model.checkpoint import CHECKPOINT_FORMAT, load
    from bninception.model.data import load_bundle
    from bninception.model.distributed import init_distributed
    from bninception.model.train import train

    ctx = init_distributed()
    spec = StageSpec("train", cfg.to_dict(), [], [layout.CHECKPOINT], resumable=True)

    def body() -> Done:
        bundle = load_bundle(cfg.data, cfg.image_size, cfg.seed)
        checkpoint = run.path(layout.CHECKPOINT)
        if resume:
            if not checkpoint.is_file():
                raise BninceptionError(f"--resume: {checkpoint} does not exist")
            load(checkpoint, CHECKPOINT_FORMAT)  # a bad checkpoint fails here, before the record is touched
        if ctx.is_main:
            run.forget("train")  # the checkpoint is rewritten each epoch: claim it only when done
        result = train(cfg, bundle, str(checkpoint), resume=resume, progress=progress, ctx=ctx)
        summary = {"history": result.history, "val_accuracy": result.val_accuracy,
                   "test_accuracy_ema": result.test_accuracy, "seconds": result.seconds,
                   "parameters": result.parameters, "config": cfg.to_dict(), "world_size": ctx.world_size}
        if ctx.is_main:
            update_metrics(run, "train", summary)
        return Done(summary, message=f"test accuracy {result.test_accuracy:.4f} (EMA statistics), "
                                     f"{result.parameters} parameters")

    return run_stage(run, spec, body, force=force, check_fresh=not resume, record=ctx.is_main)


def population_stage(run: RunDir, batches: int = POPULATION_BATCHES, batch_size: int = POPULATION_BATCH_SIZE,
                     force: bool = False) -> StageResult:
    """checkpoint.pt -> model.pt with Algorithm 2 population statistics (eval-mode BN)."""
    from bninception.model.distributed import init_distributed

    ctx = init_distributed()  # under torchrun every rank computes; rank 0 writes and records
    spec = StageSpec("population", {"batches": batches, "batch_size": batch_size}, [layout.CHECKPOINT],
                     [layout.MODEL_PT], hints={layout.CHECKPOINT: "run `bninception train` first"})

    def body() -> Done:
        from bninception.model.checkpoint import CHECKPOINT_FORMAT, class_labels, load, model_from_state, save_model
        from bninception.model.data import load_bundle
        from bninception.model.population import apply_population_statistics
        from bninception.model.train import evaluate

        checkpoint = run.path(layout.CHECKPOINT)
        state = load(checkpoint, CHECKPOINT_FORMAT)
        cfg = TrainConfig.from_dict(state["train_config"])
        bundle = load_bundle(cfg.data, cfg.image_size, cfg.seed)
        model = model_from_state(state, str(checkpoint)).to(ctx.device).eval()
        ema_accuracy, _ = evaluate(model, bundle.test, device=ctx.device)
        result = apply_population_statistics(model, bundle.train, batches=batches, batch_size=batch_size,
                                             seed=cfg.seed, ctx=ctx)
        population_accuracy, _ = evaluate(model, bundle.test, device=ctx.device)
        summary = {"batches": result.batches, "batch_size": result.batch_size,
                   "test_accuracy_ema": ema_accuracy, "test_accuracy_population": population_accuracy,
                   "layer_differences": result.layer_differences}
        if ctx.is_main:
            save_model(run.path(layout.MODEL_PT), model.cpu(), Preprocess.from_dict(state["preprocess"]),
                       class_labels(state), statistics="population",
                       extra={"population": {"batches": result.batches, "batch_size": batch_size}})
            update_metrics(run, "population", summary)
        return Done(summary, message=f"{result.batches} batches of {batch_size}; test accuracy EMA "
                                     f"{ema_accuracy:.4f} -> population {population_accuracy:.4f}")

    return run_stage(run, spec, body, force=force, record=ctx.is_main)


def imported_labels(classes: int, labels_file: str | None) -> ClassLabels:
    """The labels of imported weights: the user's file, else ImageNet-1k's for 1000 outputs (the order every
    ImageNet checkpoint uses), else ``class_<i>``."""
    from bninception.model.labels import IMAGENET_CLASSES, ClassLabels, imagenet_labels, read_labels_file

    if labels_file:
        return read_labels_file(labels_file, classes)
    if classes == IMAGENET_CLASSES:
        return imagenet_labels()
    return ClassLabels.plain([f"class_{i}" for i in range(classes)])


def import_weights_stage(run: RunDir, path: str, fmt: str = "pretrainedmodels",
                         labels_file: str | None = None, force: bool = False) -> StageResult:
    """A pretrained state dict file -> model.pt (conv biases absorbed, Caffe input convention), with the class
    ids and names of ``labels_file``, else ImageNet's for 1000 classes, else ``class_<i>``."""
    if fmt != "pretrainedmodels":
        raise BninceptionError(f"unknown weights format {fmt!r} (supported: pretrainedmodels)")
    try:
        source_sha256 = sha256_file(path)
    except OSError as exc:
        raise BninceptionError(f"cannot read weights file {path}: {exc}") from exc
    labels_sha256 = sha256_file(labels_file) if labels_file and os.path.isfile(labels_file) else None
    spec = StageSpec("import-weights", {"format": fmt, "source_sha256": source_sha256,
                                        "labels_sha256": labels_sha256}, [], [layout.MODEL_PT])

    def body() -> Done:
        from bninception.model.checkpoint import save_model
        from bninception.model.pretrained import CAFFE_PREPROCESS, import_pretrainedmodels

        model = import_pretrainedmodels(path)
        labels = imported_labels(model.config.num_classes, labels_file)
        save_model(run.path(layout.MODEL_PT), model, CAFFE_PREPROCESS, labels, statistics="imported",
                   extra={"source": str(path)})
        run.forget("population")
        return Done({"classes": len(labels)}, message=f"{path} -> {run.path(layout.MODEL_PT)} ({len(labels)} "
                                                       f"classes: {labels.ids[0]} {labels.names[0]}, ...)")

    return run_stage(run, spec, body, force=force)
