"""A whole run from a config, as ``python -m helpers train`` does it: data, model, fit, test."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from helpers.config import RunConfig, config_from_dict, config_to_dict
from helpers.data import ImageData, load_dataset, make_loaders
from helpers.models import create_model_from_config
from helpers.runtime import autocast_dtype, get_rank, seed_everything

from ._checkpoint import load_checkpoint, load_weights
from ._fit import FitResult, _check_resumable, _resolve_device, fit, resolve_checkpoint_dir
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


@dataclass(frozen=True)
class TrainedModel:
    """A network rebuilt from a checkpoint, with what it was trained on.

    Attributes:
        model: the network with the checkpoint's weights (EMA weights when kept), in
            evaluation mode, on the requested device.
        config: the run's config, as it was trained.
        class_names: the name of each output class, in label order.
        epoch: the last finished epoch stored in the checkpoint.
        history: one row per finished epoch, as :func:`fit` returned it.
        path: the checkpoint file.
        mean: per-channel mean the inputs were normalised with (``None`` if unknown).
        std: per-channel standard deviation, likewise.
    """

    model: nn.Module
    config: RunConfig
    class_names: list[str]
    epoch: int
    history: list[dict[str, Any]]
    path: Path
    # None for checkpoints written before fit stored them (see helpers.export)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def load_trained(
    path: str | os.PathLike[str], *, device: torch.device | str = "cpu", use_ema: bool = True
) -> TrainedModel:
    """Rebuild a trained network from a :func:`fit` checkpoint, without its optimiser.

    The checkpoint holds the run's config, so the architecture is rebuilt with
    :func:`helpers.models.create_model_from_config` and the weights loaded strictly: this is
    how later chapters reuse a model trained earlier (``best.pt`` of a run).

    Args:
        path: a checkpoint written by :func:`fit` (``best.pt`` or ``last.pt``).
        device: where to put the model.
        use_ema: take the EMA weights when the run kept them.

    Returns:
        The :class:`TrainedModel`.

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for a file that is not a readable checkpoint, or whose config is invalid.
        RuntimeError: when the weights do not fit the architecture the config names.
    """
    state = load_checkpoint(path)
    cfg = config_from_dict(RunConfig, state["config"])
    model = create_model_from_config(cfg.model)
    weights = state["ema"]["module"] if use_ema and state.get("ema") else state["model"]
    model.load_state_dict(weights)
    return TrainedModel(
        model=model.to(device).eval(),
        config=cfg,
        class_names=list(state.get("class_names") or []),
        epoch=int(state["epoch"]),
        history=list(state.get("history") or []),
        path=Path(path),
        **_normalization(state),
    )


def _normalization(state: dict[str, Any]) -> dict[str, tuple[float, ...]]:
    """``mean`` and ``std`` from a checkpoint's ``normalization`` entry, when it has one."""
    stats = state.get("normalization")
    if not stats:
        return {}
    return {"mean": tuple(stats["mean"]), "std": tuple(stats["std"])}


def _saved_run(last: Path, cfg: RunConfig) -> dict[str, Any] | None:
    """``last``'s checkpoint when a run of ``cfg`` may resume (or reuse) it, else ``None``."""
    state = load_checkpoint(last)
    try:
        _check_resumable(state["config"], cfg, last)
    except ValueError as err:
        print(f"not reusing {last}: {err}")
        return None
    return state


def fit_or_load(
    cfg: RunConfig, data: ImageData, *, device: torch.device | str | None = None
) -> TrainedModel:
    """The best model of the run ``cfg`` describes: reused when its checkpoints exist.

    Later chapters call this with the config an earlier chapter trained (the same
    :mod:`helpers.recipes` recipe, hence the same ``train.run_name``): when that run finished,
    its ``best.pt`` is loaded at once; when it was interrupted, it continues from ``last.pt``;
    when it never ran, or ran with other settings, it trains now (afresh).

    Args:
        cfg: the run config, profile applied.
        data: the data set to train on (:func:`helpers.data.load_dataset`).
        device: where to train and put the model; :func:`helpers.runtime.get_device` when
            ``None``.

    Returns:
        The :class:`TrainedModel` of the run's best checkpoint (its last, without
        validation), in evaluation mode on ``device``.

    Raises:
        ValueError: for bad settings.
        FloatingPointError: when training diverges.
    """
    device = _resolve_device(device)
    folder = resolve_checkpoint_dir(cfg)
    state = _saved_run(folder / "last.pt", cfg) if (folder / "last.pt").is_file() else None
    if state is not None and (state["epoch"] >= cfg.train.epochs or state["stopped_early"]):
        best = folder / "best.pt"
        path = best if best.is_file() else folder / "last.pt"
        print(f"reusing the finished run {folder} ({state['epoch']} epochs): {path.name}")
        return load_trained(path, device=device)
    resume = state is not None
    loaders = make_loaders(data, cfg.data, device=device, seed=cfg.train.seed)
    seed_everything(cfg.train.seed)  # the same initial weights as the run it may continue
    model = create_model_from_config(cfg.model)
    result = fit(model, loaders, cfg, device=device, class_names=data.class_names, resume=resume)
    return load_trained(result.best_checkpoint or result.last_checkpoint, device=device)


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
