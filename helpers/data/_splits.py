"""Splits (train/validation, k-fold, subsets) and statistics (counts, weights, duplicates)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ._checks import _as_labels, _check_fraction, _check_num_classes, _check_positive_int
from ._constants import ImageData

if TYPE_CHECKING:
    import pandas as pd


# ----------------------------------------------------------------------------------------------
# Splits: train/validation, k-fold, subsets
# ----------------------------------------------------------------------------------------------


def _class_members(labels: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """The indices of each class present, in a seeded random order."""
    members = []
    for cls in torch.unique(labels).tolist():
        index = torch.nonzero(labels == cls).flatten()
        members.append(index[torch.randperm(len(index), generator=generator)])
    return members


def _held_count(size: int, fraction: float) -> int:
    """How many of ``size`` images to hold out: rounded, at least one (when there are two)
    and never all of them."""
    held = math.floor(size * fraction + 0.5)
    if fraction > 0 and size >= 2:
        held = max(held, 1)
    return max(0, min(held, size - 1))


def stratified_split(
    labels: torch.Tensor | Sequence[int], fraction: float, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into kept and held-out parts with the same class shares.

    Each class holds out ``round(fraction * class size)`` images, at least one for a class
    of two or more and never the whole class, drawn with a seeded ``torch.Generator``.

    Args:
        labels: the class index of each image.
        fraction: share held out, in [0, 1).
        seed: seeds the draw; the same seed gives the same split.

    Returns:
        ``(kept, held_out)``: sorted int64 index tensors that together cover every image.

    Raises:
        ValueError: for empty or negative labels, or a fraction outside [0, 1).

    >>> kept, held = stratified_split([0, 0, 0, 0, 1, 1, 1, 1], 0.25)
    >>> len(kept), len(held)
    (6, 2)
    """
    labels = _as_labels(labels)
    _check_fraction("fraction", fraction, allow_zero=True)
    generator = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for index in _class_members(labels, generator):
        count = _held_count(len(index), fraction)
        held.append(index[:count])
        kept.append(index[count:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def stratified_kfold(
    labels: torch.Tensor | Sequence[int], k: int = 5, *, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stratified k-fold indices: every image is validated exactly once.

    Each class is shuffled (seeded) and dealt round-robin into the ``k`` folds, continuing
    where the previous class stopped, so folds differ in size by at most one image.

    Args:
        labels: the class index of each image.
        k: number of folds, at least 2.
        seed: seeds the shuffles.

    Returns:
        ``k`` pairs ``(train_index, val_index)`` of sorted int64 tensors.

    Raises:
        ValueError: for k below 2, or a class with fewer than ``k`` images.

    >>> [len(val) for _, val in stratified_kfold([0] * 3 + [1] * 3, k=2)]
    [3, 3]
    """
    labels = _as_labels(labels)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an integer of at least 2, got {k!r}.")
    counts = torch.bincount(labels)
    small = [c for c, n in enumerate(counts.tolist()) if 0 < n < k]
    if small:
        raise ValueError(f"k={k} folds need {k} images per class; class(es) {small} have fewer.")
    fold_of = torch.empty_like(labels)
    offset = 0
    for index in _class_members(labels, torch.Generator().manual_seed(seed)):
        fold_of[index] = (torch.arange(len(index)) + offset) % k
        offset += len(index)
    everything = torch.arange(len(labels))
    return [(everything[fold_of != f], everything[fold_of == f]) for f in range(k)]


def stratified_subset(
    labels: torch.Tensor | Sequence[int], n: int | None, *, seed: int = 0
) -> torch.Tensor:
    """Pick ``n`` images keeping the class shares (largest-remainder rounding).

    Args:
        labels: the class index of each image.
        n: how many to keep; ``None`` or at least ``len(labels)`` keeps all of them.
        seed: seeds which images of each class are kept.

    Returns:
        Sorted int64 indices of the chosen images.

    Raises:
        ValueError: for n below 1.

    >>> stratified_subset([0] * 8 + [1] * 2, 5).tolist()[-1] >= 8
    True
    """
    labels = _as_labels(labels)
    if n is None or (isinstance(n, int) and n >= len(labels)):
        return torch.arange(len(labels))
    _check_positive_int("n", n)
    counts = torch.bincount(labels)
    exact = counts.double() * n / len(labels)
    quota = exact.floor().long()
    by_remainder = torch.argsort(exact - quota, descending=True, stable=True)
    quota[by_remainder[: n - int(quota.sum())]] += 1
    quota = torch.minimum(quota, counts)
    generator = torch.Generator().manual_seed(seed)
    chosen = [index[: quota[labels[index[0]]]] for index in _class_members(labels, generator)]
    return torch.cat(chosen).sort().values


def long_tailed_subset(
    labels: torch.Tensor | Sequence[int], imbalance: float, *, seed: int = 0
) -> torch.Tensor:
    """Pick a class-imbalanced subset whose class sizes fall off exponentially.

    Class ``c`` of ``C`` keeps ``n_c = n_0 * imbalance ** (-c / (C - 1))`` images, where
    ``n_0`` is the size of the smallest class: class 0 keeps ``n_0`` images and the last
    class ``n_0 / imbalance``, the usual "long-tailed" benchmark construction.

    Args:
        labels: the class index of each image.
        imbalance: the ratio between the largest and the smallest class, at least 1.
        seed: seeds which images of each class are kept.

    Returns:
        Sorted int64 indices of the chosen images.

    Raises:
        ValueError: for an imbalance below 1.

    >>> labels = [0] * 100 + [1] * 100 + [2] * 100
    >>> torch.bincount(torch.as_tensor(labels)[long_tailed_subset(labels, 10.0)]).tolist()
    [100, 32, 10]
    """
    labels = _as_labels(labels)
    if isinstance(imbalance, bool) or not isinstance(imbalance, (int, float)) or imbalance < 1:
        raise ValueError(f"imbalance must be a number of at least 1, got {imbalance!r}.")
    counts = torch.bincount(labels)
    present = int((counts > 0).sum())
    smallest = int(counts[counts > 0].min())
    keep = [
        max(1, round(smallest * imbalance ** (-c / max(1, present - 1))))
        for c in range(len(counts))
    ]
    generator = torch.Generator().manual_seed(seed)
    chosen = [index[: keep[labels[index[0]]]] for index in _class_members(labels, generator)]
    return torch.cat(chosen).sort().values


def take(
    data: ImageData,
    *,
    train: torch.Tensor | Sequence[int] | None = None,
    test: torch.Tensor | Sequence[int] | None = None,
) -> ImageData:
    """A copy of ``data`` keeping only the given training and/or test images.

    Args:
        data: from :func:`load_dataset`.
        train: indices of the training images to keep; ``None`` keeps all.
        test: indices of the test images to keep; ``None`` keeps all.

    Returns:
        A new :class:`ImageData` (class names and source unchanged).
    """
    changes = {}
    if train is not None:
        index = torch.as_tensor(train, dtype=torch.long)
        changes.update(train_images=data.train_images[index], train_labels=data.train_labels[index])
    if test is not None:
        index = torch.as_tensor(test, dtype=torch.long)
        changes.update(test_images=data.test_images[index], test_labels=data.test_labels[index])
    return dataclasses.replace(data, **changes)


# ----------------------------------------------------------------------------------------------
# Statistics and data quality: class counts, class weights, channel stats, duplicates
# ----------------------------------------------------------------------------------------------


def class_counts(labels: torch.Tensor | Sequence[int], class_names: Sequence[str]) -> pd.DataFrame:
    """A table of images per class: columns ``class``, ``count`` and ``share`` (of all).

    Args:
        labels: the class index of each image.
        class_names: the name of each class, in label order.

    Returns:
        A :class:`pandas.DataFrame` with one row per class, in label order.

    Raises:
        ValueError: when a label has no name.

    >>> class_counts([0, 1, 1], ["cat", "dog"])["count"].tolist()
    [1, 2]
    """
    import pandas as pd

    labels = _as_labels(labels)
    _check_num_classes(labels, len(class_names))
    counts = torch.bincount(labels, minlength=len(class_names)).tolist()
    shares = [count / len(labels) for count in counts]
    return pd.DataFrame({"class": list(class_names), "count": counts, "share": shares})


def class_weights(labels: torch.Tensor | Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights for a loss, normalised to mean 1.

    A class twice as frequent gets half the weight. Classes absent from ``labels`` get 0
    and the mean is taken over the classes present.

    Args:
        labels: the class index of each training image.
        num_classes: the number of classes of the model.

    Returns:
        A float32 tensor of shape ``(num_classes,)``, e.g. for
        ``nn.CrossEntropyLoss(weight=...)``.

    Raises:
        ValueError: for bad labels or a label not below ``num_classes``.

    >>> class_weights([0, 0, 0, 1], 2).tolist()
    [0.5, 1.5]
    """
    labels = _as_labels(labels)
    _check_num_classes(labels, num_classes)
    counts = torch.bincount(labels, minlength=num_classes).double()
    present = counts > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[present] = 1.0 / counts[present]
    return (weights / weights[present].mean()).float()


def sample_weights(labels: torch.Tensor | Sequence[int], num_classes: int) -> torch.Tensor:
    """Per-image weights (its class weight) that make weighted sampling class-balanced.

    Args:
        labels: the class index of each image.
        num_classes: the number of classes.

    Returns:
        A float64 tensor with one weight per image, for :class:`WeightedRandomSampler`.

    Raises:
        ValueError: as :func:`class_weights`.
    """
    labels = _as_labels(labels)
    return class_weights(labels, num_classes).double()[labels]


def channel_stats(
    images: torch.Tensor, *, chunk_size: int = 1024
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images, on [0, 1].

    Computed in chunks with float64 sums, so the 60,000 CIFAR-10 images need tens of MB of
    memory, not gigabytes. Use the training split only: test images must not leak in.

    Args:
        images: ``(N, C, H, W)`` uint8 images, on any device.
        chunk_size: images converted to float64 at a time.

    Returns:
        ``(mean, std)``, each a tuple with one float per channel.

    Raises:
        ValueError: unless ``images`` is a non-empty 4-D uint8 tensor.

    >>> channel_stats(torch.full((2, 3, 4, 4), 255, dtype=torch.uint8))[0]
    (1.0, 1.0, 1.0)
    """
    if images.ndim != 4 or images.dtype != torch.uint8 or len(images) == 0:
        raise ValueError(
            f"images must be a non-empty (N, C, H, W) uint8 tensor, got shape "
            f"{tuple(images.shape)} and dtype {images.dtype}."
        )
    _check_positive_int("chunk_size", chunk_size)
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for chunk in images.split(chunk_size):
        values = chunk.cpu().to(torch.float64) / 255.0  # (B, C, H, W)
        total += values.sum(dim=(0, 2, 3))
        total_sq += values.square().sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def find_duplicates(images: torch.Tensor) -> list[list[int]]:
    """Groups of images that are byte-for-byte identical.

    Each image is hashed (128-bit BLAKE2b of its pixels), which takes about a second for
    60,000 CIFAR-10 images. To look for test images that also occur in training, pass
    ``torch.cat([train_images, test_images])`` and look for groups that span the boundary.

    Args:
        images: ``(N, ...)`` uint8 images.

    Returns:
        Lists of two or more indices, each sorted; the groups sorted by first index.

    >>> find_duplicates(torch.tensor([[1, 2], [3, 4], [1, 2]], dtype=torch.uint8))
    [[0, 2]]
    """
    rows = images.detach().cpu().reshape(len(images), -1).contiguous().numpy()  # (N, pixels)
    groups: dict[bytes, list[int]] = {}
    for index, row in enumerate(rows):
        key = hashlib.blake2b(row.tobytes(), digest_size=16).digest()
        groups.setdefault(key, []).append(index)
    return sorted(group for group in groups.values() if len(group) > 1)
