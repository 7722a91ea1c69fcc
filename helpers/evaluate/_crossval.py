"""k-fold cross-validation: one model per stratified fold, each judged on its held-out fold.

One train/validation split gives one number, and on a few thousand images that number moves
by a point or more with the split alone. Cross-validation trains ``k`` models, each on all
folds but one and evaluated on the one it never saw, so every image is held out exactly once;
the spread of the ``k`` scores says how much a difference between two recipes must exceed to
mean anything. It costs ``k`` training runs, so the book runs it in the quick profile on a
subset, and the smoke profile on a handful of images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd
import torch
from sklearn import metrics as skm
from torch import nn

from helpers.config import RunConfig, replace_values
from helpers.data import ImageData, make_loaders_from_indices, stratified_kfold, stratified_subset
from helpers.models import create_model_from_config
from helpers.runtime import autocast_dtype, get_device, seed_everything
from helpers.train import fit

from ._calibration import expected_calibration_error, negative_log_likelihood
from ._predict import Predictions, predict

FoldMetric = Callable[[Predictions], float]  # a held-out fold's predictions -> one number
ModelBuilder = Callable[[RunConfig], nn.Module]  # a fold's config -> a fresh model


def _accuracy(predictions: Predictions) -> float:
    """The share of images classified correctly."""
    return float((predictions.predictions == predictions.targets).double().mean())


def _balanced_accuracy(predictions: Predictions) -> float:
    """The mean recall over the classes present."""
    return float(skm.balanced_accuracy_score(predictions.targets, predictions.predictions))


def _macro_f1(predictions: Predictions) -> float:
    """The mean F1 over classes (0 for a class never predicted)."""
    return float(
        skm.f1_score(
            predictions.targets, predictions.predictions, average="macro", zero_division=0.0
        )
    )


FOLD_METRICS: Mapping[str, FoldMetric] = MappingProxyType(
    {
        "accuracy": _accuracy,
        "balanced_accuracy": _balanced_accuracy,
        "macro_f1": _macro_f1,
        "nll": lambda p: negative_log_likelihood(p.logits, p.targets),
        "ece": lambda p: expected_calibration_error(p.probabilities, p.targets),
    }
)  # what cross_validate measures on each held-out fold unless told otherwise

_BOOKKEEPING = ("train_images", "val_images", "epochs")  # per-fold columns that are not metrics


def _fold_config(cfg: RunConfig, fold: int) -> RunConfig:
    """``cfg`` with its run name (and checkpoint folder, when set) suffixed ``_fold{fold}``."""
    changes: dict[str, Any] = {"train.run_name": f"{cfg.train.run_name}_fold{fold}"}
    if cfg.train.checkpoint_dir:
        folder = Path(cfg.train.checkpoint_dir).expanduser()
        changes["train.checkpoint_dir"] = str(folder.with_name(f"{folder.name}_fold{fold}"))
    return replace_values(cfg, changes)


def _run_fold(
    cfg: RunConfig,
    data: ImageData,
    indices: tuple[torch.Tensor, torch.Tensor],
    device: torch.device,
    options: dict[str, Any],
) -> tuple[Predictions, list[dict[str, Any]]]:
    """Train one fold's model from scratch (or resume it) and predict its held-out images."""
    train_index, val_index = indices
    loaders = make_loaders_from_indices(
        data, cfg.data, train_index, val_index, device=device, seed=cfg.train.seed
    )
    seed_everything(cfg.train.seed)  # every fold starts from the same initial weights
    model = options["build_model"](cfg)
    result = fit(
        model,
        loaders,
        cfg,
        device=device,
        class_names=data.class_names,
        resume=options["resume"],
        verbose=options["verbose"],
    )
    predictions = predict(
        result.model,  # the last epoch's weights: the held-out fold chose nothing
        loaders.val,
        device,
        autocast_dtype=autocast_dtype(device, cfg.train.precision),
        channels_last=cfg.train.channels_last,
    )
    return predictions, result.history


def _check_cross_validation(cfg: RunConfig, metrics: Mapping[str, FoldMetric]) -> None:
    """``ValueError`` for settings that would let the held-out fold choose the model."""
    if cfg.train.early_stopping_patience is not None:
        raise ValueError(
            "cross_validate evaluates each fold's last weights; early stopping would let the "
            "held-out fold decide when to stop. Set train.early_stopping_patience to None."
        )
    if not metrics or not all(callable(fn) for fn in metrics.values()):
        raise ValueError("metrics must map at least one name to a function of Predictions.")


def cross_validate(
    cfg: RunConfig,
    data: ImageData,
    *,
    folds: int = 5,
    device: torch.device | str | None = None,
    metrics: Mapping[str, FoldMetric] | None = None,
    build_model: ModelBuilder | None = None,
    resume: bool = True,
    verbose: bool = True,
) -> pd.DataFrame:
    """Train one model per stratified fold of the training split and score each on its
    held-out fold.

    The pool is a stratified subset of ``cfg.data.train_images`` training images (all of
    them when ``None``; the test split is never touched), cut into ``folds`` stratified
    folds with :func:`helpers.data.stratified_kfold` (seeded by ``cfg.train.seed``). Fold
    ``k`` trains with :func:`helpers.train.fit` on the other folds, from the same initial
    weights, and is scored with ``metrics`` on fold ``k``, using the last epoch's weights
    (fit's per-epoch validation line shows fold ``k``, but nothing is chosen by it). Its
    checkpoints go to the run name ``<cfg.train.run_name>_fold<k>`` (and
    ``<checkpoint_dir>_fold<k>`` when ``cfg.train.checkpoint_dir`` is set), so with
    ``resume`` a finished fold is not trained again.

    Args:
        cfg: the run config; its profile's sizes decide the cost (``k`` short runs).
        data: the decoded data set.
        folds: the number of folds ``k``, at least 2.
        device: where to train; :func:`helpers.runtime.get_device` when ``None``.
        metrics: a name per column and a function of a fold's :class:`Predictions`;
            :data:`FOLD_METRICS` (accuracy, balanced accuracy, macro F1, NLL, ECE) when
            ``None``.
        build_model: makes a fold's model from its config; by default
            :func:`helpers.models.create_model_from_config` of ``cfg.model``.
        resume: continue (or skip) a fold whose ``last.pt`` exists.
        verbose: print each fold's header and epoch lines.

    Returns:
        One row per fold, indexed by ``fold`` (0 to ``k - 1``): ``train_images``,
        ``val_images``, ``epochs`` and one column per metric. ``table.attrs`` holds each
        fold's held-out indices into ``data.train_images`` (``"val_index"``) and training
        history (``"histories"``). :func:`summarise_folds` gives mean and spread.

    Raises:
        ValueError: for fewer than 2 folds, a class with fewer images than folds in the
            pool, early stopping switched on, or empty metrics.
    """
    metrics = FOLD_METRICS if metrics is None else metrics
    _check_cross_validation(cfg, metrics)
    device = get_device(None if device is None else str(device))
    options = {
        "build_model": build_model or (lambda c: create_model_from_config(c.model)),
        "resume": resume,
        "verbose": verbose,
    }
    pool = stratified_subset(data.train_labels, cfg.data.train_images, seed=cfg.train.seed)
    splits = stratified_kfold(data.train_labels[pool], folds, seed=cfg.train.seed)
    rows, val_index, histories = [], {}, {}
    for fold, (train_part, val_part) in enumerate(splits):
        if verbose:
            print(
                f"fold {fold} ({fold + 1} of {folds}): {len(train_part)} training images, "
                f"{len(val_part)} held out",
                flush=True,
            )
        indices = (pool[train_part], pool[val_part])
        predictions, histories[fold] = _run_fold(
            _fold_config(cfg, fold), data, indices, device, options
        )
        val_index[fold] = indices[1].numpy()
        scores = {name: float(fn(predictions)) for name, fn in metrics.items()}
        sizes = {"train_images": len(train_part), "val_images": len(val_part)}
        rows.append({"fold": fold, **sizes, "epochs": len(histories[fold]), **scores})
    table = pd.DataFrame(rows).set_index("fold")
    table.attrs.update(val_index=val_index, histories=histories)
    return table


def summarise_folds(table: pd.DataFrame) -> pd.DataFrame:
    """The mean and standard deviation of every metric over the folds.

    Args:
        table: from :func:`cross_validate` (one row per fold).

    Returns:
        One row per metric column (sizes and epochs left out), with ``mean``, ``std``
        (the sample standard deviation over folds, ``ddof=1``) and ``folds``.

    Raises:
        ValueError: for an empty table or one without numeric metric columns.

    >>> table = pd.DataFrame({"train_images": [8, 8], "accuracy": [0.5, 0.7]})
    >>> summarise_folds(table).round(4).to_dict("index")
    {'accuracy': {'mean': 0.6, 'std': 0.1414, 'folds': 2}}
    """
    scores = table.drop(columns=[c for c in _BOOKKEEPING if c in table.columns])
    scores = scores.select_dtypes("number")
    if table.empty or scores.columns.empty:
        raise ValueError("summarise_folds needs a table with one row per fold and a metric.")
    summary = pd.DataFrame({"mean": scores.mean(), "std": scores.std(ddof=1)})
    summary["folds"] = scores.count()
    summary.index.name = "metric"
    return summary
