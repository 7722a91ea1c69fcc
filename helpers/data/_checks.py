"""Argument checks shared by the ETL, split, statistics and loader functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _check_fraction(name: str, value: Any, *, allow_zero: bool) -> None:
    """Raise ``ValueError`` unless ``value`` is a number in [0, 1) (or (0, 1))."""
    low = "[0" if allow_zero else "(0"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0 <= value < 1) or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a number in {low}, 1), got {value!r}.")


def _as_labels(labels: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Labels as a 1-D int64 CPU tensor; non-empty, non-negative integers."""
    tensor = torch.as_tensor(labels).detach().cpu()
    if tensor.ndim != 1 or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise ValueError(
            "labels must be a 1-D sequence of integer class indices, got shape "
            f"{tuple(tensor.shape)} and dtype {tensor.dtype}."
        )
    if tensor.numel() == 0:
        raise ValueError("labels is empty; there is nothing to split or count.")
    if int(tensor.min()) < 0:
        raise ValueError(f"labels must be non-negative, found {int(tensor.min())}.")
    return tensor.to(torch.int64)


def _check_num_classes(labels: torch.Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` when a label is not below ``num_classes``."""
    _check_positive_int("num_classes", num_classes)
    if int(labels.max()) >= num_classes:
        raise ValueError(f"Found label {int(labels.max())}, but num_classes is {num_classes}.")
