"""A whole run from a config, as ``python -m helpers train`` does it: data, model, fit, test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from helpers.config import RunConfig, config_to_dict
from helpers.data import ImageData, load_dataset, make_loaders
from helpers.models import create_model_from_config
from helpers.runtime import autocast_dtype, get_rank, seed_everything

from ._checkpoint import load_weights
from ._fit import FitResult, _resolve_device, fit
from ._loop import evaluate_epoch


def _load_data(cfg: RunConfig) -> ImageData:
    """The run's data set; under torchrun rank 0 loads first (and writes the ETL cache), then
    the others read the cache instead of decoding the images again."""
    distributed = dist.is_available() and dist.is_initialized()
    if distributed and get_rank() != 0:
        dist.barrier()
    data = load_dataset(
        cfg.data.source, image_size=cfg.data.image_size, profile=cfg.profile, seed=cfg.train.seed
    )
    if distributed and get_rank() == 0:
        dist.barrier()
    return data


def evaluate_best(
    result: FitResult, loader: Any, cfg: RunConfig, device: torch.device | str
) -> dict[str, float]:
    """Loss and accuracy on ``loader`` (the test split) with the best checkpoint's weights.

    Args:
        result: what :func:`fit` returned; its model gets the weights of ``best.pt``.
        loader: batches to evaluate, usually ``loaders.test``.
        cfg: the run's config (for its precision and memory layout).
        device: where to evaluate.

    Returns:
        ``loss``, ``acc`` (a share in [0, 1]) and ``images`` evaluated.
    """
    device = torch.device(device)
    model = result.model
    if result.best_checkpoint is not None:
        load_weights(model, result.best_checkpoint)
    metrics = evaluate_epoch(
        model,
        loader,
        nn.CrossEntropyLoss(),
        device,
        autocast_dtype=autocast_dtype(device, cfg.train.precision),
        channels_last=cfg.train.channels_last,
    )
    return {"loss": metrics["loss"], "acc": metrics["acc"], "images": metrics["images"]}


def _write_summary(result: FitResult, test: dict, cfg: RunConfig) -> Path:
    """``history.json`` next to the checkpoints: history, best epoch, test metrics, config."""
    summary = {
        "history": result.history,
        "monitor": result.monitor,
        "best_metric": result.best_metric,
        "best_epoch": result.best_epoch,
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "stopped_early": result.stopped_early,
        "test": test,
        "config": config_to_dict(cfg),
    }
    path = result.checkpoint_dir / "history.json"
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return path


def run_training(
    cfg: RunConfig, *, device: torch.device | str | None = None, resume: bool = True
) -> dict[str, Any]:
    """Load the data, build the loaders and the model, fit, and test the best weights.

    This is the command line's ``train``; it works alone or under ``torchrun`` (call
    :func:`helpers.runtime.init_distributed` first; the loaders then shard by rank). Apply
    the run profile first (:func:`helpers.config.load_run_config` does).

    Args:
        cfg: the run config, with ``profile`` resolved.
        device: where to train; :func:`helpers.runtime.get_device` when ``None``.
        resume: continue from the run's ``last.pt`` when it exists.

    Returns:
        The test metrics (``loss``, ``acc``, ``images``), the ``history`` and the paths of
        ``best_checkpoint`` and ``history`` (the JSON file, written by rank 0).

    Raises:
        FileNotFoundError: when the data source cannot be found.
        ValueError: for bad settings or an unusable checkpoint.
    """
    data = _load_data(cfg)
    device = _resolve_device(device)
    loaders = make_loaders(data, cfg.data, device=device, seed=cfg.train.seed)
    seed_everything(cfg.train.seed)  # the same initial weights on every process and run
    model = create_model_from_config(cfg.model)
    result = fit(model, loaders, cfg, device=device, class_names=data.class_names, resume=resume)
    test = evaluate_best(result, loaders.test, cfg, device)
    path = result.checkpoint_dir / "history.json"
    if get_rank() == 0:
        path = _write_summary(result, test, cfg)
        where = (
            f"{result.best_checkpoint.name}, epoch {result.best_epoch}"
            if result.best_checkpoint
            else "last weights"
        )
        print(
            f"test: loss {test['loss']:.4f}, accuracy {test['acc']:.2%} on {test['images']} "
            f"images ({where}); history in {path}",
            flush=True,
        )
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # leave together: a process group torn down one-sided can abort
    return {
        **test,
        "history": result.history,
        "best_checkpoint": result.best_checkpoint,
        "history_file": path,
    }
