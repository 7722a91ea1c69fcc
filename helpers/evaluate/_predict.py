"""Predictions: a model run once over a split, optionally with flip test-time augmentation."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from helpers.train import accuracy


@dataclass(frozen=True)
class Predictions:
    """A model's outputs for every image of a split, in loader order, as CPU tensors.

    Attributes:
        logits: ``(N, K)`` float32 raw scores (with flip TTA: the log of the averaged
            probabilities, see :func:`predict`).
        probabilities: ``(N, K)`` float32 softmax of the logits (each row sums to 1).
        predictions: ``(N,)`` int64 predicted class (the arg-max).
        targets: ``(N,)`` int64 true class.

    Raises:
        ValueError: when the shapes do not fit together.
    """

    logits: Tensor
    probabilities: Tensor
    predictions: Tensor
    targets: Tensor

    def __post_init__(self) -> None:
        _check_scores("logits", self.logits, self.targets)
        _check_scores("probabilities", self.probabilities, self.targets)
        if self.logits.shape != self.probabilities.shape:
            raise ValueError(
                f"logits {tuple(self.logits.shape)} and probabilities "
                f"{tuple(self.probabilities.shape)} must have the same (N, K) shape."
            )
        if self.predictions.shape != self.targets.shape:
            raise ValueError(
                f"predictions {tuple(self.predictions.shape)} and targets "
                f"{tuple(self.targets.shape)} must both be (N,)."
            )

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def num_classes(self) -> int:
        """``K``, the number of classes scored."""
        return int(self.logits.shape[1])


def _check_scores(name: str, scores: Tensor, targets: Tensor) -> None:
    """``ValueError`` unless ``scores`` is ``(N, K)`` and ``targets`` is ``(N,)``, N > 0."""
    if not isinstance(scores, Tensor) or not isinstance(targets, Tensor):
        raise ValueError(f"{name} and targets must be tensors, got {type(scores).__name__}.")
    if scores.ndim != 2 or targets.ndim != 1 or len(scores) != len(targets) or not len(targets):
        raise ValueError(
            f"{name} must be (N, K) and targets (N,) with N > 0, got {tuple(scores.shape)} "
            f"and {tuple(targets.shape)}."
        )


def _check_targets(targets: Tensor, num_classes: int) -> None:
    """``ValueError`` unless every target is a class index below ``num_classes``."""
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer class indices, got dtype {targets.dtype}.")
    if int(targets.min()) < 0 or int(targets.max()) >= num_classes:
        raise ValueError(
            f"targets must lie in [0, {num_classes - 1}] for {num_classes} classes, got values "
            f"from {int(targets.min())} to {int(targets.max())}."
        )


def _check_positive_int(name: str, value: Any) -> None:
    """``ValueError`` unless ``value`` is an integer of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``, or nothing for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _batch_logits(model: nn.Module, images: Tensor, tta_flip: bool) -> Tensor:
    """One batch's float32 logits; with ``tta_flip`` the log of the probabilities averaged
    over the images and their mirror images."""
    logits = model(images).float()  # (B, K)
    if not tta_flip:
        return logits
    mirrored = model(images.flip(-1)).float()  # (B, K): the same images, left-right mirrored
    # log((p + q) / 2) computed from log p and log q, stable even where p or q underflows
    stacked = torch.stack([logits.log_softmax(dim=1), mirrored.log_softmax(dim=1)])  # (2, B, K)
    return torch.logsumexp(stacked, dim=0) - math.log(2.0)


def predict(
    model: nn.Module,
    loader: Iterable[Any],
    device: torch.device | str,
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    tta_flip: bool = False,
) -> Predictions:
    """Run ``model`` over ``loader`` once, in evaluation mode, and keep what it predicted.

    With ``tta_flip`` (test-time augmentation) every image is also classified mirrored
    left to right, and the two softmax probabilities are averaged. The returned ``logits``
    are then the log of those averaged probabilities: log-probabilities, which the softmax
    maps back to the averaged probabilities exactly, so every metric (and temperature
    scaling) works on them as on plain logits. It costs a second forward pass.

    Args:
        model: the trained network, already on ``device``.
        loader: yields ``(images, labels)`` batches, e.g. ``loaders.test``.
        device: where the model is; batches are moved there.
        autocast_dtype: ``torch.bfloat16``/``torch.float16`` to autocast to; ``None``: fp32
            (logits are returned as float32 either way).
        channels_last: convert image batches to the channels-last memory format.
        tta_flip: average the probabilities of each image and its horizontal mirror.

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
                logits.append(_batch_logits(model, images, tta_flip).cpu())  # (B, K)
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


def topk_accuracy(predictions: Predictions, k: int | Sequence[int] = (1, 5)) -> dict[int, float]:
    """The share of images whose true class is among the ``k`` highest-scored classes.

    Top-5 accuracy forgives a model that ranks the right class a close second, which
    matters when classes look alike (cat and dog); top-1 is the plain accuracy.

    Args:
        predictions: from :func:`predict`.
        k: one ``k`` or several, each between 1 and the number of classes.

    Returns:
        ``{k: accuracy}`` in the order given, accuracies in [0, 1].

    Raises:
        ValueError: for ``k`` outside ``[1, K]``.

    >>> p = Predictions(torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]]), torch.zeros(2, 3),
    ...                 torch.tensor([1, 0]), torch.tensor([2, 0]))
    >>> topk_accuracy(p, k=(1, 2))
    {1: 0.5, 2: 1.0}
    """
    ks = [k] if isinstance(k, int) else list(k)
    return dict(zip(ks, accuracy(predictions.logits, predictions.targets, topk=ks), strict=True))
