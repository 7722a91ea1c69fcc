"""Metrics: top-k accuracy, a batch-size-weighted running mean, and sums across processes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def accuracy(logits: Tensor, targets: Tensor, topk: Sequence[int] = (1,)) -> list[float]:
    """The share of samples whose target is among the ``k`` highest logits, for each ``k``.

    Args:
        logits: ``(B, K)`` scores for ``K`` classes.
        targets: ``(B,)`` class indices.
        topk: the values of ``k``, each between 1 and ``K``.

    Returns:
        One accuracy in ``[0, 1]`` per ``k``, in the order of ``topk``.

    Raises:
        ValueError: for shapes that do not match, an empty batch, or ``k`` outside ``[1, K]``.

    >>> logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    >>> accuracy(logits, torch.tensor([2, 0]), topk=(1, 2))
    [0.5, 1.0]
    """
    if logits.ndim != 2 or targets.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise ValueError(
            f"logits must be (B, K) and targets (B,) with B > 0, got {tuple(logits.shape)} "
            f"and {tuple(targets.shape)}."
        )
    classes = logits.shape[1]
    if not topk or any(not 1 <= k <= classes for k in topk):
        raise ValueError(f"topk values must lie in [1, {classes}], got {tuple(topk)}.")
    top = logits.topk(max(topk), dim=1).indices  # (B, max k), best first
    hits = top == targets[:, None]  # (B, max k), at most one True per row
    return [hits[:, :k].any(dim=1).float().mean().item() for k in topk]


def count_correct(logits: Tensor, targets: Tensor) -> Tensor:
    """How many top-1 predictions are right, as a 0-d tensor on the logits' device (no sync)."""
    return (logits.argmax(dim=1) == targets).sum()


class AverageMeter:
    """A running mean weighted by batch size: ``update(value, n)`` counts ``value`` ``n`` times.

    Values may be Python numbers or 0-d tensors. Tensors are summed where they live, so a
    training loop can feed every step's loss without waiting for the GPU; only reading
    :attr:`avg` synchronises.

    >>> meter = AverageMeter()
    >>> meter.update(1.0, n=3)
    >>> meter.update(3.0, n=1)
    >>> meter.avg
    1.5
    """

    def __init__(self) -> None:
        self.sum: float | Tensor = 0.0
        self.count = 0

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.sum, self.count = 0.0, 0

    def update(self, value: float | Tensor, n: int = 1) -> None:
        """Add ``value``, the mean over ``n`` samples.

        Raises:
            ValueError: for a negative ``n``.
        """
        if n < 0:
            raise ValueError(f"n must be a non-negative count, got {n!r}.")
        if isinstance(value, Tensor):
            value = value.detach()
        self.sum = self.sum + value * n
        self.count += n

    @property
    def avg(self) -> float:
        """The weighted mean; NaN before the first update."""
        return float(self.sum) / self.count if self.count else math.nan


def sum_across_processes(values: Sequence[float], device: torch.device) -> list[float]:
    """Add ``values`` up over every process of a distributed run (one ``all_reduce``).

    Outside a distributed run the values come back unchanged.

    Args:
        values: this process's numbers (sums and counts, never means).
        device: a device the process group's backend can use (a CUDA GPU for NCCL).

    Returns:
        The totals over all processes.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return [float(v) for v in values]
    totals = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return totals.tolist()


def reduce_meters(meters: Sequence[AverageMeter], device: torch.device) -> None:
    """Replace each meter's sum and count by their totals over all processes."""
    totals = sum_across_processes(
        [x for meter in meters for x in (float(meter.sum), meter.count)], device
    )
    for index, meter in enumerate(meters):
        meter.sum, meter.count = totals[2 * index], round(totals[2 * index + 1])
