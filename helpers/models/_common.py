"""Argument checks and the classifier layer shared by the models."""

from __future__ import annotations

from typing import Any

from torch import nn


def _check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int, or a ValueError when it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def _check_rate(value: Any, name: str) -> float:
    """A dropout probability in [0, 1), or a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}.")
    return float(value)


def _make_classifier(in_features: int, num_classes: int) -> nn.Module:
    """A linear classifier, or an identity when ``num_classes`` is 0 (features only)."""
    _check_int(num_classes, "num_classes", 0)
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
