"""Tuning: short training runs compared side by side, for ablations and hyperparameter search.

Every comparison in the regularisation chapter has the same shape: a base :class:`RunConfig`,
a few named changes to it (``{"train.label_smoothing": 0.1}``), one short run per change with
the same data, seed and budget, and a table of the results. :func:`run_trials` does exactly
that; :func:`grid_search` and :func:`random_search` generate the changes from a search space.

A trial's budget is its config (epochs, images, steps per epoch), so the run profile decides
how long a search takes. Trials write their checkpoints to a temporary folder (kept out of
``data/``) and start afresh; the table records the best validation accuracy of each.

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
from helpers.data import ImageData, make_loaders
from helpers.models import create_model_from_config
from helpers.runtime import seed_everything
from helpers.train import fit

__all__ = ["grid_search", "random_search", "run_trials"]


def _run_one(
    cfg: RunConfig,
    data: ImageData,
    device: torch.device | str,
    build_model: Callable[[RunConfig], nn.Module],
    folder: Path,
) -> dict[str, Any]:
    """Train one trial from scratch and summarise it."""
    cfg = replace_values(cfg, {"train.checkpoint_dir": str(folder), "train.progress": False})
    loaders = make_loaders(data, cfg.data, device=device, seed=cfg.train.seed)
    seed_everything(cfg.train.seed)  # the same initial weights in every trial
    model = build_model(cfg)
    start = time.perf_counter()
    result = fit(model, loaders, cfg, device=device, resume=False, verbose=False)
    last = result.history[-1]
    return {
        "best val_acc": result.best_metric if result.monitor == "val_acc" else last["val_acc"],
        "last val_acc": last["val_acc"],
        "last train_acc": last["train_acc"],
        "epochs": len(result.history),
        "seconds": time.perf_counter() - start,
        "history": result.history,
    }


def run_trials(
    base: RunConfig,
    trials: Mapping[str, Mapping[str, Any]],
    data: ImageData,
    *,
    device: torch.device | str,
    build_model: Callable[[RunConfig], nn.Module] | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Train one short run per named change of ``base`` and tabulate the results.

    Args:
        base: the config every trial starts from (its data, seed and budget are shared).
        trials: a name per trial and the dotted keys it changes (``{}`` for the base itself).
        data: the decoded data set; every trial uses the same splits of it.
        device: where to train.
        build_model: makes the model from a trial's config; by default
            :func:`helpers.models.create_model_from_config` of ``cfg.model``.
        verbose: print one line per finished trial.

    Returns:
        One row per trial (in the given order): the changed values, the best and last
        validation accuracy, the last training accuracy, epochs run and seconds taken; the
        per-epoch histories are in ``table.attrs["histories"]``.

    Raises:
        ValueError: for no trials, or a change that names an unknown key.
    """
    if not trials:
        raise ValueError("run_trials needs at least one trial.")
    configs = {name: replace_values(base, change) for name, change in trials.items()}
    build_model = build_model or (lambda cfg: create_model_from_config(cfg.model))
    rows, histories = [], {}
    with tempfile.TemporaryDirectory(prefix="helpers-trials-") as scratch:
        for index, (name, cfg) in enumerate(configs.items()):
            summary = _run_one(cfg, data, device, build_model, Path(scratch) / str(index))
            histories[name] = summary.pop("history")
            rows.append({"trial": name, **dict(trials[name]), **summary})
            if verbose:
                print(f"{name:<40} best val_acc {summary['best val_acc']:.4f} "
                      f"({summary['seconds']:.0f} s)", flush=True)  # fmt: skip
    table = pd.DataFrame(rows).set_index("trial")
    table.attrs["histories"] = histories
    return table


def _trial_name(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key.split('.')[-1]}={value}" for key, value in values.items())


def grid_search(
    base: RunConfig,
    space: Mapping[str, Sequence[Any]],
    data: ImageData,
    *,
    device: torch.device | str,
    build_model: Callable[[RunConfig], nn.Module] | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Try every combination of the values in ``space``; results sorted best first.

    Args:
        base: the config every trial starts from.
        space: dotted keys and the values to try for each.
        data: the decoded data set.
        device: where to train.
        build_model: as in :func:`run_trials`.
        verbose: print one line per finished trial.

    Returns:
        The :func:`run_trials` table, sorted by best validation accuracy.

    Raises:
        ValueError: for an empty space or a key without values.
    """
    combos = _combinations(space)
    trials = {_trial_name(values): values for values in combos}
    table = run_trials(base, trials, data, device=device, build_model=build_model, verbose=verbose)
    return table.sort_values("best val_acc", ascending=False)


def random_search(
    base: RunConfig,
    space: Mapping[str, Sequence[Any]],
    data: ImageData,
    *,
    trials: int,
    device: torch.device | str,
    seed: int = 0,
    build_model: Callable[[RunConfig], nn.Module] | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Try ``trials`` distinct combinations drawn at random from ``space``, best first.

    With the same budget, random search covers each hyperparameter's range better than a
    grid when only a few of them matter (Bergstra and Bengio, 2012).

    Args:
        base: the config every trial starts from.
        space: dotted keys and the values to draw from for each.
        data: the decoded data set.
        trials: how many combinations to try (at most all of them).
        device: where to train.
        seed: seeds the draw of combinations.
        build_model: as in :func:`run_trials`.
        verbose: print one line per finished trial.

    Returns:
        The :func:`run_trials` table, sorted by best validation accuracy.

    Raises:
        ValueError: for an empty space, a key without values, or ``trials`` below 1.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}.")
    combos = _combinations(space)
    chosen = random.Random(seed).sample(combos, min(trials, len(combos)))
    named = {_trial_name(values): values for values in chosen}
    table = run_trials(base, named, data, device=device, build_model=build_model, verbose=verbose)
    return table.sort_values("best val_acc", ascending=False)


def _combinations(space: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the values in ``space``, as dicts of dotted keys."""
    if not space:
        raise ValueError("The search space is empty; give at least one key and its values.")
    empty = [key for key, values in space.items() if len(values) == 0]
    if empty:
        raise ValueError(f"No values to try for {empty}.")
    keys = list(space)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*space.values())]
