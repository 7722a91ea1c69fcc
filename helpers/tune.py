"""Tuning: short training runs compared side by side, for ablations and hyperparameter search.

Every comparison in the regularisation chapter has the same shape: a base :class:`RunConfig`,
a few named changes to it (``{"train.label_smoothing": 0.1}``), one short run per change with
the same data, seed and budget, and a table of the results. :func:`run_trials` does exactly
that; :func:`grid_search` and :func:`random_search` generate the changes from a search space.

A trial's budget is its config (epochs, images, steps per epoch), so the run profile decides
how long a search takes. Trials are compared on the validation split, never on the test
split, which stays untouched for the final estimate. Each trial writes its checkpoints to a
temporary folder (kept out of ``data/``) and starts afresh; the table records its best and
last validation accuracy, and an optional ``score`` function adds columns computed from each
trained model (test-split metrics, per-class recall).

Example:
    >>> space = {"train.lr": [0.02, 0.05, 0.1], "train.weight_decay": [5e-4, 5e-3]}
    >>> table = grid_search(cfg, space, data, device=get_device())  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import random
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from helpers.config import RunConfig, replace_values
from helpers.data import ImageData, Loaders, make_loaders
from helpers.models import create_model_from_config
from helpers.runtime import seed_everything
from helpers.train import fit

__all__ = ["ModelBuilder", "Score", "grid_search", "random_search", "run_trials"]

ModelBuilder = Callable[[RunConfig], nn.Module]  # a trial's config -> a fresh model
Score = Callable[[nn.Module, Loaders], Mapping[str, float]]  # trained model -> extra columns


def _run_one(
    cfg: RunConfig,
    data: ImageData,
    device: torch.device | str,
    build_model: ModelBuilder,
    score: Score | None,
    folder: Path,
) -> dict[str, Any]:
    """Train one trial from scratch and summarise it (the history under ``"history"``)."""
    cfg = replace_values(cfg, {"train.checkpoint_dir": str(folder), "train.progress": False})
    loaders = make_loaders(data, cfg.data, device=device, seed=cfg.train.seed)
    seed_everything(cfg.train.seed)  # the same initial weights in every trial of one model
    model = build_model(cfg)
    start = time.perf_counter()
    result = fit(model, loaders, cfg, device=device, resume=False, verbose=False)
    seconds = time.perf_counter() - start
    best = max(result.history, key=lambda row: row["val_acc"])  # the first, on ties
    last = result.history[-1]
    extra = dict(score(result.model, loaders)) if score is not None else {}
    return {
        "best val_acc": best["val_acc"],
        "best epoch": best["epoch"],
        "last val_acc": last["val_acc"],
        "last train_acc": last["train_acc"],
        "epochs": len(result.history),
        "seconds": seconds,
        **extra,
        "history": result.history,
    }


def _check_trials(base: RunConfig, trials: Mapping[str, Mapping[str, Any]]) -> None:
    """``ValueError`` for no trials, a change that is not a mapping, or no validation split."""
    if not trials:
        raise ValueError("run_trials needs at least one trial, e.g. {'baseline': {}}.")
    bad = [name for name, change in trials.items() if not isinstance(change, Mapping)]
    if bad:
        raise ValueError(f"Each trial's change must map dotted keys to values; not {bad}.")
    if base.data.val_fraction <= 0:
        raise ValueError(
            "Trials are compared on the validation split, but data.val_fraction is 0; "
            "set it above 0 (0.1 holds out a tenth of the training images)."
        )


def run_trials(
    base: RunConfig,
    trials: Mapping[str, Mapping[str, Any]],
    data: ImageData,
    *,
    device: torch.device | str,
    build_model: ModelBuilder | None = None,
    score: Score | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Train one short run per named change of ``base`` and tabulate the results.

    Every trial uses the same splits of ``data``, the same seed (so the same initial
    weights, batch order and augmentations, as far as its change allows) and the budget of
    its config; only its change differs.

    Args:
        base: the config every trial starts from (its data, seed and budget are shared).
        trials: a name per trial and the dotted keys it changes (``{}`` for the base itself).
        data: the decoded data set.
        device: where to train.
        build_model: makes the model from a trial's config; by default
            :func:`helpers.models.create_model_from_config` of ``cfg.model``.
        score: called with each trained model (its last epoch's weights) and its loaders;
            the values it returns become extra columns (e.g. test accuracy).
        verbose: print one line per finished trial.

    Returns:
        One row per trial, indexed by name, in the given order: the changed values, the
        best validation accuracy and its epoch, the last validation and training accuracy,
        epochs run, seconds of training, and any ``score`` columns; accuracies are shares
        in [0, 1]. The per-epoch histories are in ``table.attrs["histories"]`` by name.

    Raises:
        ValueError: for no trials, a change that is not a mapping or names an unknown key,
            or a base config without a validation split.
    """
    _check_trials(base, trials)
    configs = {name: replace_values(base, change) for name, change in trials.items()}
    build_model = build_model or (lambda cfg: create_model_from_config(cfg.model))
    rows, histories = [], {}
    with tempfile.TemporaryDirectory(prefix="helpers-trials-") as scratch:
        for index, (name, cfg) in enumerate(configs.items()):
            folder = Path(scratch) / str(index)
            summary = _run_one(cfg, data, device, build_model, score, folder)
            histories[name] = summary.pop("history")
            rows.append({"trial": name, **dict(trials[name]), **summary})
            if verbose:
                print(_trial_line(name, summary), flush=True)
    table = pd.DataFrame(rows).set_index("trial")
    table.attrs["histories"] = histories
    return table


def _trial_line(name: str, summary: Mapping[str, Any]) -> str:
    """One fixed-width line for a finished trial."""
    return (
        f"{name:<40} best val_acc {summary['best val_acc']:7.2%} (epoch "
        f"{summary['best epoch']:>2}), {summary['seconds']:5.0f} s"
    )


def _trial_name(values: Mapping[str, Any]) -> str:
    """``"lr=0.1, weight_decay=0.0005"`` from ``{"train.lr": 0.1, ...}``."""
    return ", ".join(f"{key.split('.')[-1]}={value}" for key, value in values.items())


def grid_search(
    base: RunConfig,
    space: Mapping[str, Sequence[Any]],
    data: ImageData,
    *,
    device: torch.device | str,
    build_model: ModelBuilder | None = None,
    score: Score | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Try every combination of the values in ``space``; results sorted best first.

    Args:
        base: the config every trial starts from.
        space: dotted keys and the values to try for each.
        data: the decoded data set.
        device: where to train.
        build_model: as in :func:`run_trials`.
        score: as in :func:`run_trials`.
        verbose: print one line per finished trial.

    Returns:
        The :func:`run_trials` table, sorted by best validation accuracy (ties keep the
        order of the grid); trials are named after their values (``"lr=0.1, ..."``).

    Raises:
        ValueError: for an empty space, a key without values, or an unknown key.
    """
    trials = {_trial_name(values): values for values in _combinations(space)}
    table = run_trials(
        base, trials, data, device=device, build_model=build_model, score=score, verbose=verbose
    )
    return table.sort_values("best val_acc", ascending=False, kind="stable")


def random_search(
    base: RunConfig,
    space: Mapping[str, Sequence[Any]],
    data: ImageData,
    *,
    trials: int,
    device: torch.device | str,
    seed: int = 0,
    build_model: ModelBuilder | None = None,
    score: Score | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Try ``trials`` distinct combinations drawn at random from ``space``, best first.

    With the same budget, random search covers each hyperparameter's range better than a
    grid when only a few of them matter (Bergstra and Bengio, 2012): a grid of 9 trials
    tries 3 values of each of two keys, 9 random draws up to 9 values of each.

    Args:
        base: the config every trial starts from.
        space: dotted keys and the values to draw from for each.
        data: the decoded data set.
        trials: how many combinations to try (at most all of them).
        device: where to train.
        seed: seeds the draw of combinations (not the training, which ``base`` seeds).
        build_model: as in :func:`run_trials`.
        score: as in :func:`run_trials`.
        verbose: print one line per finished trial.

    Returns:
        The :func:`run_trials` table, sorted by best validation accuracy.

    Raises:
        ValueError: for an empty space, a key without values, an unknown key, or
            ``trials`` below 1.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}.")
    combos = _combinations(space)
    chosen = random.Random(seed).sample(combos, min(trials, len(combos)))
    named = {_trial_name(values): values for values in chosen}
    table = run_trials(
        base, named, data, device=device, build_model=build_model, score=score, verbose=verbose
    )
    return table.sort_values("best val_acc", ascending=False, kind="stable")


def _combinations(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the values in ``space``, as dicts of dotted keys."""
    if not space:
        raise ValueError("The search space is empty; give at least one key and its values.")
    for key, values in space.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"{key!r} needs a non-empty list of values to try, got {values!r}.")
    keys = list(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*space.values())]
