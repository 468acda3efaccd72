"""The model stages of a run: train -> checkpoint.pt, population -> model.pt, import-weights -> model.pt.

Each stage is skipped when the manifest says its record is fresh (same parameters, same input
hashes, outputs present), and records itself only after its outputs were written atomically.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_json
from bninception.core.preprocess import Preprocess
from bninception.core.rundir import RunDir
from bninception.model.checkpoint import CHECKPOINT_FORMAT, load, model_from_state, save_model
from bninception.model.data import load_bundle
from bninception.model.distributed import init_distributed
from bninception.model.train import TrainConfig, evaluate, train

log = logging.getLogger(__name__)
METRICS = "metrics.json"


def update_metrics(run: RunDir, section: str, values: dict[str, Any]) -> None:
    """Merge one section into ``metrics.json`` (a summary file; the hashed artifacts hold the truth)."""
    path = run.path(METRICS)
    metrics: dict[str, Any] = {}
    if path.is_file():
        try:
            metrics = json.loads(path.read_text())
        except json.JSONDecodeError:
            metrics = {}
    metrics[section] = values
    atomic_write_json(path, metrics)


def train_stage(run: RunDir, cfg: TrainConfig, resume: bool = False, force: bool = False,
                progress: bool = True) -> dict[str, Any]:
    """Train into ``checkpoint.pt`` (atomically, every epoch); ``--resume`` continues it."""
    params = cfg.to_dict()
    if not force and not resume and run.is_fresh("train", params, [], ["checkpoint.pt"]):
        log.info("train: up to date, skipped (checkpoint.pt matches its recorded settings)")
        return {"skipped": True}
    ctx = init_distributed()
    bundle = load_bundle(cfg.data, cfg.image_size, cfg.seed)
    if resume and not run.path("checkpoint.pt").is_file():
        raise BninceptionError(f"--resume: {run.path('checkpoint.pt')} does not exist")
    if ctx.is_main:
        run.forget("train")  # the checkpoint is rewritten each epoch: claim it only when done
    result = train(cfg, bundle, str(run.path("checkpoint.pt")), resume=resume, progress=progress, ctx=ctx)
    summary = {"history": result.history, "val_accuracy": result.val_accuracy,
               "test_accuracy_ema": result.test_accuracy, "seconds": result.seconds,
               "parameters": result.parameters, "config": params, "world_size": ctx.world_size}
    if ctx.is_main:
        update_metrics(run, "train", summary)
        run.record("train", params, [], ["checkpoint.pt"], result.seconds)
    log.info("train: test accuracy %.4f (EMA statistics), %d parameters, %.1f s",
             result.test_accuracy, result.parameters, result.seconds)
    return summary


def population_stage(run: RunDir, batches: int = 16, batch_size: int = 64, force: bool = False
                     ) -> dict[str, Any]:
    """checkpoint.pt -> model.pt with Algorithm 2 population statistics (eval-mode BN)."""
    from bninception.model.population import apply_population_statistics

    params = {"batches": batches, "batch_size": batch_size}
    checkpoint = run.require("checkpoint.pt", "run `bninception train` first")
    if not force and run.is_fresh("population", params, ["checkpoint.pt"], ["model.pt"]):
        log.info("population: up to date, skipped")
        return {"skipped": True}
    ctx = init_distributed()
    started = time.perf_counter()
    state = load(checkpoint, CHECKPOINT_FORMAT)
    cfg = TrainConfig.from_dict(state["train_config"])
    bundle = load_bundle(cfg.data, cfg.image_size, cfg.seed)
    model = model_from_state(state, str(checkpoint)).to(ctx.device).eval()
    ema_accuracy, _ = evaluate(model, bundle.test, device=ctx.device)
    result = apply_population_statistics(model, bundle.train, batches=batches, batch_size=batch_size,
                                         seed=cfg.seed, ctx=ctx)
    population_accuracy, _ = evaluate(model, bundle.test, device=ctx.device)
    seconds = time.perf_counter() - started
    summary = {"batches": result.batches, "batch_size": result.batch_size,
               "test_accuracy_ema": ema_accuracy, "test_accuracy_population": population_accuracy,
               "layer_differences": result.layer_differences, "seconds": seconds}
    if ctx.is_main:
        save_model(run.path("model.pt"), model.cpu(), Preprocess.from_dict(state["preprocess"]),
                   state["labels"], statistics="population",
                   extra={"population": {"batches": result.batches, "batch_size": batch_size}})
        update_metrics(run, "population", summary)
        run.record("population", params, ["checkpoint.pt"], ["model.pt"], seconds)
    log.info("population: %d batches of %d; test accuracy EMA %.4f -> population %.4f",
             result.batches, batch_size, ema_accuracy, population_accuracy)
    return summary


def import_weights_stage(run: RunDir, path: str, fmt: str = "pretrainedmodels",
                         labels: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """A pretrained state dict file -> model.pt (conv biases absorbed, Caffe input convention)."""
    from bninception.core.files import sha256_file
    from bninception.model.pretrained import CAFFE_PREPROCESS, import_pretrainedmodels

    if fmt != "pretrainedmodels":
        raise BninceptionError(f"unknown weights format {fmt!r} (supported: pretrainedmodels)")
    params = {"format": fmt, "source_sha256": sha256_file(path), "labels": labels}
    if not force and run.is_fresh("import-weights", params, [], ["model.pt"]):
        log.info("import-weights: up to date, skipped")
        return {"skipped": True}
    started = time.perf_counter()
    model = import_pretrainedmodels(path)
    names = labels or [f"class_{i}" for i in range(model.config.num_classes)]
    if len(names) != model.config.num_classes:
        raise BninceptionError(f"{len(names)} labels given for {model.config.num_classes} classes")
    save_model(run.path("model.pt"), model, CAFFE_PREPROCESS, names, statistics="imported",
               extra={"source": str(path)})
    run.forget("population")
    run.record("import-weights", params, [], ["model.pt"], time.perf_counter() - started)
    log.info("import-weights: %s -> %s (%d classes)", path, run.path("model.pt"), len(names))
    return {"classes": len(names)}
