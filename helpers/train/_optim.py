"""Optimisers with weight decay on weights only, and learning-rate schedules stepped per batch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
SCHEDULES: tuple[str, ...] = ("constant", "onecycle", "cosine")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split a model's trainable parameters into a decayed and a non-decayed group.

    Weight decay pulls weights towards zero. That regularises the weights of convolutions and
    linear layers, but on biases and on the scales and shifts of normalisation layers it only
    fights the normalisation, so they get none: every parameter with fewer than two
    dimensions, and those the model names in ``no_weight_decay()`` (timm's convention, e.g.
    a ViT's position embedding), goes to the ``no_decay`` group.

    Args:
        model: the network.
        weight_decay: the decay of the ``decay`` group.

    Returns:
        Up to two optimiser parameter groups, each with ``name`` (``"decay"`` or
        ``"no_decay"``), ``params``, ``param_names`` and ``weight_decay``; empty groups are
        left out.

    Raises:
        ValueError: for a negative weight decay or a model without trainable parameters.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}.")
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups: dict[str, dict[str, Any]] = {
        "decay": {"name": "decay", "params": [], "param_names": [], "weight_decay": weight_decay},
        "no_decay": {"name": "no_decay", "params": [], "param_names": [], "weight_decay": 0.0},
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue  # frozen layers (transfer learning) are not optimised at all
        group = groups["no_decay" if param.ndim <= 1 or name in skip else "decay"]
        group["params"].append(param)
        group["param_names"].append(name)
    kept = [group for group in groups.values() if group["params"]]
    if not kept:
        raise ValueError("The model has no trainable parameters (all have requires_grad=False).")
    return kept


def build_optimizer(
    model: nn.Module,
    *,
    name: str = "sgd",
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = True,
    layer_decay: float | None = None,
) -> torch.optim.Optimizer:
    """SGD (with momentum, optionally Nesterov) or AdamW over :func:`param_groups`.

    Frozen parameters (``requires_grad=False``) are left out.

    Args:
        model: the network.
        name: ``"sgd"`` or ``"adamw"``.
        lr: the peak learning rate (a schedule scales it per step).
        weight_decay: applied to weights only, never to norms and biases.
        momentum: SGD's momentum (AdamW ignores it).
        nesterov: SGD's Nesterov variant; needs ``momentum > 0``.
        layer_decay: for a timm model, learning rates that shrink by this factor per layer
            towards the input (:func:`helpers.transfer.layer_decay_param_groups`; ``lr`` is
            the head's); ``None`` gives every parameter ``lr``.

    Returns:
        The optimiser.

    Raises:
        ValueError: for an unknown name (listing the choices) or bad values.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
    if lr <= 0 or momentum < 0:
        raise ValueError(f"lr must be > 0 and momentum >= 0, got lr={lr!r}, momentum={momentum!r}.")
    if layer_decay is None:
        groups = param_groups(model, weight_decay)
    else:
        from helpers.transfer import layer_decay_param_groups

        groups = layer_decay_param_groups(
            model, lr=lr, layer_decay=layer_decay, weight_decay=weight_decay
        )
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if nesterov and momentum == 0:
        raise ValueError("Nesterov momentum needs momentum > 0; set nesterov=False or momentum.")
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


@dataclass
class LRSchedule:
    """The factor that multiplies the peak learning rate at each optimiser step.

    * ``constant``: 1 throughout.
    * ``cosine``: a linear warm-up over ``warmup_steps`` up to 1, then half a cosine down
      to 0 at the last step.
    * ``onecycle``: a linear rise from ``start_factor`` to 1 over the first ``peak_at`` of
      the steps, then a linear fall to 0 (Smith's one-cycle, as in airbench).

    It is a plain callable (``schedule(step)``), so a book can plot it and
    :class:`~torch.optim.lr_scheduler.LambdaLR` can save its settings in a checkpoint.

    Args:
        kind: ``"constant"``, ``"cosine"`` or ``"onecycle"``.
        total_steps: optimiser steps in the whole run.
        warmup_steps: the cosine schedule's warm-up, fewer than ``total_steps``.
        peak_at: the share of the steps one-cycle spends rising, in ``(0, 1)``.
        start_factor: where one-cycle starts, as a share of the peak.

    Raises:
        ValueError: for an unknown kind (listing the choices) or out-of-range values.

    >>> schedule = LRSchedule("cosine", total_steps=10, warmup_steps=2)
    >>> [round(schedule(step), 2) for step in (0, 1, 2, 9)]
    [0.5, 1.0, 1.0, 0.04]
    """

    kind: str
    total_steps: int
    warmup_steps: int = 0
    peak_at: float = 0.25
    start_factor: float = 0.04

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(
                f"Unknown schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}."
            )
        if self.total_steps < 1 or not 0 <= self.warmup_steps < max(self.total_steps, 1):
            raise ValueError(
                f"Need total_steps >= 1 and 0 <= warmup_steps < total_steps, got "
                f"{self.total_steps} and {self.warmup_steps}."
            )
        if not 0 < self.peak_at < 1 or not 0 <= self.start_factor <= 1:
            raise ValueError(
                f"peak_at must lie in (0, 1) and start_factor in [0, 1], got {self.peak_at!r} "
                f"and {self.start_factor!r}."
            )

    def __call__(self, step: int) -> float:
        """The factor for optimiser step ``step`` (counted from 0)."""
        if self.kind == "constant":
            return 1.0
        if self.kind == "cosine":
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        peak = max(1, round(self.peak_at * self.total_steps))
        if step <= peak:
            return self.start_factor + (1.0 - self.start_factor) * step / peak
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - peak))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    kind: str,
    total_steps: int,
    warmup_steps: int = 0,
    peak_at: float = 0.25,
) -> LambdaLR:
    """A scheduler that sets each step's learning rate from an :class:`LRSchedule`.

    Call ``scheduler.step()`` after every ``optimizer.step()``.

    Args:
        optimizer: its groups' ``lr`` are the peak rates.
        kind: ``"constant"``, ``"cosine"`` or ``"onecycle"``.
        total_steps: optimiser steps in the whole run.
        warmup_steps: the cosine schedule's linear warm-up.
        peak_at: the share of the steps one-cycle spends rising.

    Returns:
        A :class:`~torch.optim.lr_scheduler.LambdaLR`.

    Raises:
        ValueError: as :class:`LRSchedule`.
    """
    schedule = LRSchedule(kind, total_steps, warmup_steps=warmup_steps, peak_at=peak_at)
    return LambdaLR(optimizer, schedule)
