"""Evaluation: a trained model's predictions on a split, and metrics computed from them.

Training reports one number per epoch (loss and accuracy). Judging a model needs more: what
it predicted for every image, and how each class fared. :func:`predict` runs a model over a
loader once and keeps its logits, probabilities, predicted classes and the true labels;
metrics are then computed from those :class:`Predictions` without running the model again.
:func:`per_class_recall` is the share of each class's images the model got right, the
measure that exposes a model which ignores rare classes while its overall accuracy looks
fine.

Example:
    >>> predictions = predict(model, loaders.test, device)  # doctest: +SKIP
    >>> per_class_recall(predictions, data.class_names)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

__all__ = ["Predictions", "per_class_recall", "predict"]


@dataclass(frozen=True)
class Predictions:
    """A model's outputs for every image of a split, in loader order, as CPU tensors.

    Attributes:
        logits: ``(N, K)`` float32 raw scores.
        probabilities: ``(N, K)`` float32 softmax of the logits (each row sums to 1).
        predictions: ``(N,)`` int64 predicted class (the arg-max).
        targets: ``(N,)`` int64 true class.
    """

    logits: Tensor
    probabilities: Tensor
    predictions: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return len(self.targets)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``, or nothing for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def predict(
    model: nn.Module,
    loader: Iterable[Any],
    device: torch.device | str,
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Predictions:
    """Run ``model`` over ``loader`` once, in evaluation mode, and keep what it predicted.

    Args:
        model: the trained network, already on ``device``.
        loader: yields ``(images, labels)`` batches, e.g. ``loaders.test``.
        device: where the model is; batches are moved there.
        autocast_dtype: ``torch.bfloat16``/``torch.float16`` to autocast to; ``None``: fp32
            (logits are returned as float32 either way).
        channels_last: convert image batches to the channels-last memory format.

    Returns:
        The :class:`Predictions`, on the CPU.

    Raises:
        ValueError: when the loader yields no batch.
    """
    device = torch.device(device)
    model.eval()  # dropout off, batch norm on its running statistics
    logits, targets = [], []
    with torch.inference_mode():
        for images, labels in loader:
            images = images.to(device, non_blocking=True)  # (B, C, H, W)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with _autocast(device, autocast_dtype):
                logits.append(model(images).float().cpu())  # (B, K)
            targets.append(torch.as_tensor(labels).cpu())
    if not logits:
        raise ValueError("The loader yielded no batch: there is nothing to predict.")
    all_logits = torch.cat(logits)  # (N, K)
    return Predictions(
        logits=all_logits,
        probabilities=all_logits.softmax(dim=1),
        predictions=all_logits.argmax(dim=1),
        targets=torch.cat(targets).long(),
    )


def per_class_recall(predictions: Predictions, class_names: Sequence[str]) -> pd.Series:
    """The recall of each class: the share of its images that were predicted as it.

    Recall of class ``c`` = (images of ``c`` predicted as ``c``) / (images of ``c``). Its
    mean over classes is the *balanced accuracy*; on a split with equally many images per
    class it equals the plain accuracy.

    Args:
        predictions: from :func:`predict`.
        class_names: the name of each class, in label order.

    Returns:
        A float Series indexed by class name, in label order; ``NaN`` for a class without
        images in ``predictions``.

    Raises:
        ValueError: when a label or predicted class has no name.

    >>> p = Predictions(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0, 1, 1]),
    ...                 torch.tensor([0, 0, 1]))
    >>> per_class_recall(p, ["cat", "dog"]).tolist()
    [0.5, 1.0]
    """
    from sklearn.metrics import recall_score

    known = len(class_names)
    for name, values in (("labels", predictions.targets), ("predictions", predictions.predictions)):
        if len(values) and (int(values.min()) < 0 or int(values.max()) >= known):
            raise ValueError(
                f"{name} must lie in [0, {known - 1}] to name them with the {known} class "
                f"names, got values from {int(values.min())} to {int(values.max())}."
            )
    recall = recall_score(
        predictions.targets.numpy(),
        predictions.predictions.numpy(),
        labels=list(range(known)),
        average=None,
        zero_division=np.nan,
    )
    return pd.Series(recall, index=list(class_names), name="recall", dtype=float)
