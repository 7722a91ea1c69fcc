"""How fast each runtime runs the same model: latency per call, side by side.

Timings on a shared machine move with whatever else runs on it. :func:`compare_runtimes`
therefore times the runtimes in interleaved rounds (every runtime once per round, round
after round), so that a busy moment slows all of them alike, and reports medians and the
median of the per-round ratios; ``benchmarks/serving.py`` does the same at a larger scale.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor


def _seconds_per_call(run: Callable[[Tensor], Any], batch: Tensor, calls: int) -> float:
    """The median seconds of ``calls`` calls of ``run(batch)``."""
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        run(batch)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def compare_runtimes(
    runners: Mapping[str, Callable[[Tensor], Any]],
    *,
    image_size: int,
    in_chans: int = 3,
    batch_sizes: Sequence[int] = (1, 64),
    rounds: int = 5,
    calls: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Latency and throughput of each runner on the same random batches, in interleaved rounds.

    Args:
        runners: name to a function from a ``(B, C, H, W)`` float batch to the model's
            outputs (for instance :meth:`helpers.export.Predictor.logits`). The first is
            the baseline of the speed-up columns.
        image_size: the side of the model's square input.
        in_chans: the input's channels.
        batch_sizes: the batch sizes to time.
        rounds: interleaved rounds; each runner is warmed up once first.
        calls: calls per runner, batch size and round.
        seed: seeds the random batches.

    Returns:
        One row per runner; per batch size ``b`` the columns ``batch b: ms`` (median
        milliseconds per call), ``batch b: images/s`` and ``batch b: speed-up`` (the
        median over rounds of the baseline's time divided by this runner's).

    Raises:
        ValueError: for no runners, or ``rounds``, ``calls`` or a batch size below 1.

    >>> table = compare_runtimes({"x2": lambda x: x * 2}, image_size=4, rounds=1, calls=1)
    >>> list(table.columns)[:3]
    ['batch 1: ms', 'batch 1: images/s', 'batch 1: speed-up']
    """
    if not runners:
        raise ValueError("Give at least one runner.")
    if min(rounds, calls, *batch_sizes) < 1:
        raise ValueError(
            f"rounds, calls and batch sizes must be positive, got rounds={rounds}, "
            f"calls={calls}, batch_sizes={list(batch_sizes)}."
        )
    generator = torch.Generator().manual_seed(seed)
    batches = {
        b: torch.randn(b, in_chans, image_size, image_size, generator=generator)  # (B, C, H, W)
        for b in batch_sizes
    }
    times = {(name, b): [] for name in runners for b in batch_sizes}
    for run in runners.values():  # warm-up: first calls allocate and optimise
        for batch in batches.values():
            run(batch)
    for _ in range(rounds):
        for name, run in runners.items():
            for b, batch in batches.items():
                times[name, b].append(_seconds_per_call(run, batch, calls))
    baseline = next(iter(runners))
    rows = {}
    for name in runners:
        row = {}
        for b in batch_sizes:
            median = statistics.median(times[name, b])
            ratios = [
                base / mine for base, mine in zip(times[baseline, b], times[name, b], strict=True)
            ]
            row[f"batch {b}: ms"] = 1e3 * median
            row[f"batch {b}: images/s"] = b / median
            row[f"batch {b}: speed-up"] = statistics.median(ratios)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
