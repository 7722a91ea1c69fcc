"""Loaders: the standard ``DataLoader`` path, the fast :class:`DeviceLoader` path, and
:func:`make_loaders`, which builds either from :class:`ImageData` and a ``DataConfig``.

Both paths are repeatable per epoch: what epoch ``e`` delivers (the order, and every random
augmentation) depends only on ``(seed, e)``, never on what ran before. That is what lets a
training run stopped after epoch ``e`` resume and continue exactly as if it had never stopped
(``set_loader_epoch``). Both also shard by process under ``torchrun``: each of the
``world_size`` processes gets its own, disjoint part of every epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler

from helpers.config import DataConfig
from helpers.runtime import get_rank, get_world_size, synchronize

from ._checks import _check_fraction, _check_positive_int
from ._constants import ImageData
from ._splits import channel_stats, sample_weights, stratified_split, stratified_subset

# ----------------------------------------------------------------------------------------------
# Loaders (a): the standard path, a Dataset with per-image transforms and a DataLoader
# ----------------------------------------------------------------------------------------------


def _check_images_labels(
    images: torch.Tensor, labels: torch.Tensor | Sequence[int]
) -> torch.Tensor:
    """Labels as an int64 tensor; ``ValueError`` unless images are ``(N, C, H, W)`` uint8
    with one label each."""
    labels = torch.as_tensor(labels)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError(
            f"images must be an (N, C, H, W) uint8 tensor, got shape {tuple(images.shape)} "
            f"and dtype {images.dtype}."
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"labels must be 1-D with one label per image: {len(images)} images, labels of "
            f"shape {tuple(labels.shape)}."
        )
    return labels.to(torch.int64)


class TensorImageDataset(Dataset):
    """A map-style dataset over uint8 image tensors, with an optional per-image transform.

    It holds only tensors and the transform (no lambdas), so it pickles to DataLoader worker
    processes on every platform, including Windows and macOS.

    An index may also be an ``(index, seed)`` pair, as :class:`EpochSampler` yields them:
    the transform then draws its random numbers from a generator seeded with ``seed``, so an
    image's augmentation depends only on that seed, whichever process or worker makes it
    (the global random state is left as it was).

    Args:
        images: ``(N, C, H, W)`` uint8 images.
        labels: ``(N,)`` class indices.
        transform: called on each ``(C, H, W)`` uint8 image, e.g. from
            :func:`helpers.transforms.build_transforms`; ``None`` returns the uint8 image.

    Raises:
        ValueError: for images that are not 4-D uint8 or a label count that differs.

    >>> ds = TensorImageDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]))
    >>> ds[1][0].shape, ds[1][1]
    (torch.Size([3, 8, 8]), 1)
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.labels = _check_images_labels(images, labels)
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        seed = None
        if isinstance(index, tuple):
            index, seed = index
        image = self.images[index]  # (C, H, W) uint8
        if self.transform is not None:
            image = _seeded_call(self.transform, image, seed)
        return image, int(self.labels[index])


def _seeded_call(
    transform: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, seed: int | None
) -> torch.Tensor:
    """``transform(image)``, drawing from the global generator reseeded with ``seed``, then
    restored (``get_state``/``set_state`` on the generator costs microseconds)."""
    if seed is None:
        return transform(image)
    generator = torch.default_generator
    saved = generator.get_state()
    generator.manual_seed(seed)
    try:
        return transform(image)
    finally:
        generator.set_state(saved)


# ----------------------------------------------------------------------------------------------
# Loaders (a'): an order that repeats per epoch and is shared out between processes
# ----------------------------------------------------------------------------------------------


def _mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from several integers (``seed, epoch, stream, ...``)."""
    state = np.random.SeedSequence([int(v) % 2**63 for v in values]).generate_state(1, np.uint64)
    return int(state[0]) % 2**63


def _epoch_order(
    count: int, *, shuffle: bool, weights: torch.Tensor | None, generator: torch.Generator
) -> torch.Tensor:
    """The indices of one epoch: ``count`` weighted draws, a permutation, or in order."""
    if weights is not None:
        return torch.multinomial(weights, count, True, generator=generator)
    if shuffle:
        return torch.randperm(count, generator=generator)
    return torch.arange(count)


def _shard(order: torch.Tensor, rank: int, world_size: int, *, even: bool) -> torch.Tensor:
    """This process's share of an epoch's order: every ``world_size``-th entry from ``rank``.

    ``even`` first drops the last ``len(order) % world_size`` entries, so that every process
    takes the same number of steps (a collective training step would wait forever for a
    process that has finished); otherwise every entry is kept once (evaluation).
    """
    if world_size == 1:
        return order
    if even:
        order = order[: len(order) - len(order) % world_size]
    return order[rank::world_size]


def _share_size(count: int, rank: int, world_size: int, *, even: bool) -> int:
    """How many of an epoch's ``count`` indices :func:`_shard` gives to ``rank``."""
    kept = count - count % world_size if even else count
    return len(range(rank, kept, world_size))


def _check_rank(rank: int, world_size: int) -> None:
    """``ValueError`` unless ``0 <= rank < world_size``."""
    _check_positive_int("world_size", world_size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}.")


class EpochSampler(Sampler):
    """Indices for one process, repeatable per epoch, each paired with an augmentation seed.

    Epoch ``e``'s order is drawn from a generator seeded with ``(seed, e)`` (a permutation,
    weighted draws with replacement, or in order), then shared out between processes: rank
    ``r`` of ``world_size`` takes every ``world_size``-th index from ``r``. A shuffled or
    weighted (training) order first drops the last ``N % world_size`` indices of the epoch,
    so every process gets the same number; an in-order (evaluation) one keeps every index.
    With ``seeds=True`` each index comes as ``(index, seed)``, which
    :class:`TensorImageDataset` uses to seed that image's augmentation, so augmentations
    too depend only on ``(seed, epoch)``, with or without worker processes.

    Each pass over the sampler advances the epoch by one; :meth:`set_epoch` says which
    epoch the next pass is (what a resumed run calls).

    Args:
        size: the number of images in the data set.
        shuffle: a new random order every epoch; ``False`` keeps the data set's order.
        seed: seeds every epoch's order and augmentation seeds.
        rank: this process, ``0 <= rank < world_size``.
        world_size: how many processes share each epoch.
        weights: per-image sampling weights: draw ``size`` images with replacement.
        seeds: yield ``(index, seed)`` pairs instead of plain indices.

    Raises:
        ValueError: for a bad size, rank or weights.

    >>> sampler = EpochSampler(6, seed=0, rank=1, world_size=2, seeds=False)
    >>> len(sampler), len(list(sampler))
    (3, 3)
    """

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: torch.Tensor | None = None,
        seeds: bool = True,
    ) -> None:
        _check_positive_int("size", size)
        _check_rank(rank, world_size)
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.seeds = rank, world_size, seeds
        self.weights = _check_weights(weights, size)
        self.epoch = 0  # the epoch of the next pass

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass deliver epoch ``epoch`` (counted from 0)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        even = self.shuffle or self.weights is not None
        return _share_size(self.size, self.rank, self.world_size, even=even)

    def __iter__(self) -> Iterator[Any]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        generator = torch.Generator().manual_seed(_mix_seed(self.seed, epoch, 0))
        order = _epoch_order(
            self.size, shuffle=self.shuffle, weights=self.weights, generator=generator
        ).tolist()
        even = self.shuffle or self.weights is not None
        positions = _shard(torch.arange(len(order)), self.rank, self.world_size, even=even)
        base = _mix_seed(self.seed, epoch, 1)  # augmentation seeds: base + position in epoch
        for position in positions.tolist():
            index = order[position]
            yield (index, (base + position) % 2**63) if self.seeds else index


class WeightedEpochSampler(EpochSampler, WeightedRandomSampler):
    """An :class:`EpochSampler` drawing with replacement by weight (class balancing).

    It is also a :class:`~torch.utils.data.WeightedRandomSampler` (same ``weights``,
    ``num_samples`` and ``replacement``), whose draws repeat per epoch and are shared out
    between processes.

    Args:
        weights: per-image sampling weights, e.g. from :func:`sample_weights`.
        seed: seeds every epoch's draws.
        rank: this process.
        world_size: how many processes share each epoch.
        seeds: yield ``(index, seed)`` pairs for seeded augmentation.
    """

    def __init__(
        self,
        weights: torch.Tensor,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        seeds: bool = True,
    ) -> None:
        EpochSampler.__init__(
            self,
            len(weights),
            seed=seed,
            rank=rank,
            world_size=world_size,
            weights=weights,
            seeds=seeds,
        )
        self.num_samples, self.replacement, self.generator = len(weights), True, None


def set_loader_epoch(loader: Any, epoch: int) -> None:
    """Say which epoch the next pass over ``loader`` is, so that it repeats exactly.

    Calls ``loader.set_epoch`` (a :class:`DeviceLoader`) or ``loader.sampler.set_epoch``
    (a ``DataLoader`` over an :class:`EpochSampler` or a ``DistributedSampler``); other
    loaders are left as they are.

    Args:
        loader: a loader of any kind.
        epoch: the epoch, counted from 0.
    """
    for owner in (loader, getattr(loader, "sampler", None)):
        if callable(getattr(owner, "set_epoch", None)):
            owner.set_epoch(epoch)
            return


def build_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    device: torch.device | str,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    sampler: torch.utils.data.Sampler | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` with settings that are safe everywhere and fast where they can be.

    ``pin_memory`` only for a CUDA device; ``persistent_workers`` only with workers; a
    seeded generator, so the shuffle order (and each worker's seed) repeats with the seed.
    With ``num_workers=0`` (the default, safe on Windows and macOS and in notebooks) random
    transforms draw from the global torch generator: seed it with
    :func:`helpers.runtime.seed_everything` for repeatable augmentation.

    Args:
        dataset: a map-style dataset, e.g. :class:`TensorImageDataset`.
        batch_size: images per batch.
        device: where the batches will be used (only decides ``pin_memory``).
        shuffle: reshuffle every epoch (ignored when a ``sampler`` is given).
        num_workers: worker processes; 0 loads in the main process.
        seed: seeds the shuffle or the sampler.
        sampler: draws the indices instead of shuffling (e.g. a weighted sampler).
        drop_last: drop the last, incomplete batch.

    Returns:
        A :class:`torch.utils.data.DataLoader`.

    Raises:
        ValueError: for a batch size below 1 or a negative worker count.
    """
    _check_positive_int("batch_size", batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}.")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=num_workers > 0,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )


# ----------------------------------------------------------------------------------------------
# Loaders (b): the fast path, the whole data set on the device
# ----------------------------------------------------------------------------------------------


def _device_generator(device: torch.device, seed: int) -> torch.Generator | None:
    """A seeded generator on ``device``, or ``None`` where the backend has none."""
    try:
        return torch.Generator(device=device).manual_seed(seed)
    except RuntimeError:
        return None


class DeviceLoader:
    """Batches from a uint8 data set kept whole on the device: no workers, no copies per step.

    The images are uploaded once as one uint8 tensor (CIFAR-10's 50,000 training images
    take 150 MB). Each epoch draws an order with a seeded generator; each batch is indexed,
    converted to float32 and normalised on the device, then augmented as a whole with a
    :class:`helpers.transforms.BatchAugment` (cutout therefore fills the mean colour).

    Epoch ``e`` (order and augmentation) depends only on ``(seed, e)``; each pass advances
    the epoch by one and :meth:`set_epoch` chooses the next. With ``world_size`` > 1 each
    process keeps its share of every epoch, as :class:`EpochSampler` does: equal shares of
    a shuffled or weighted order, every image once when in order.

    Args:
        images: ``(N, C, H, W)`` uint8 images.
        labels: ``(N,)`` class indices.
        batch_size: images per batch.
        device: where the data lives and the batches are made.
        mean: per-channel mean on [0, 1], for normalising.
        std: per-channel standard deviation on [0, 1].
        shuffle: a new random order every epoch.
        drop_last: drop the last, incomplete batch.
        augment: applied to each normalised batch, e.g. ``BatchAugment()``; ``None``: none.
        seed: seeds the order and the augmentation; the same seed repeats every epoch's
            batches exactly.
        channels_last: return batches in the channels-last memory format.
        sample_weights: draw each epoch's ``N`` images with replacement, with these
            per-image weights (e.g. :func:`sample_weights`) instead of shuffling.
        rank: this process, ``0 <= rank < world_size``.
        world_size: how many processes share each epoch.

    Raises:
        ValueError: for bad shapes, a batch size below 1, mean/std of the wrong length, or
            a bad rank.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        *,
        batch_size: int,
        device: torch.device | str,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Callable[..., torch.Tensor] | None = None,
        seed: int = 0,
        channels_last: bool = False,
        sample_weights: torch.Tensor | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = _check_images_labels(images, labels)
        _check_positive_int("batch_size", batch_size)
        _check_rank(rank, world_size)
        self.device = torch.device(device)
        self.images = images.to(self.device)  # (N, C, H, W) uint8, uploaded once
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.channels_last = augment, channels_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0  # the epoch of the next pass
        self._scale, self._shift = _normaliser(mean, std, images.shape[1], self.device)
        self._weights = _check_weights(sample_weights, len(labels))
        self._augment_generator = _device_generator(self.device, seed)

    @property
    def dataset(self) -> TensorImageDataset:
        """The images and labels (on the device), so ``len(loader.dataset)`` works."""
        return TensorImageDataset(self.images, self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass deliver epoch ``epoch`` (counted from 0)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        even = self.shuffle or self._weights is not None
        count = _share_size(len(self.labels), self.rank, self.world_size, even=even)
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        generator = torch.Generator().manual_seed(_mix_seed(self.seed, epoch, 0))
        order = _epoch_order(
            len(self.labels), shuffle=self.shuffle, weights=self._weights, generator=generator
        )
        even = self.shuffle or self._weights is not None
        order = _shard(order, self.rank, self.world_size, even=even).to(self.device)
        if self._augment_generator is not None:  # this process's own augmentation stream
            self._augment_generator.manual_seed(_mix_seed(self.seed, epoch, 1, self.rank))
        for step in range(len(self)):
            yield self._make_batch(order[step * self.batch_size : (step + 1) * self.batch_size])

    def _make_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather, convert, normalise and augment one batch."""
        images = self.images[index].float().mul_(self._scale).sub_(self._shift)  # (B, C, H, W)
        if self.augment is not None:
            images = self.augment(images, generator=self._augment_generator)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, self.labels[index]


def _normaliser(
    mean: Sequence[float], std: Sequence[float], channels: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale, shift`` such that ``x * scale - shift == (x / 255 - mean) / std``."""
    if len(mean) != channels or len(std) != channels or any(s <= 0 for s in std):
        raise ValueError(
            f"mean and std need {channels} values each (std positive), got {mean!r}, {std!r}."
        )
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std_t), mean_t / std_t


def _check_weights(weights: torch.Tensor | None, count: int) -> torch.Tensor | None:
    """Sampling weights as a float64 CPU tensor with one non-negative value per image."""
    if weights is None:
        return None
    weights = torch.as_tensor(weights, dtype=torch.float64).cpu()
    if weights.shape != (count,) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
        raise ValueError(
            f"sample_weights needs {count} non-negative values with a positive sum, got shape "
            f"{tuple(weights.shape)}."
        )
    return weights


# ----------------------------------------------------------------------------------------------
# make_loaders: from ImageData and a DataConfig to train/val/test loaders
# ----------------------------------------------------------------------------------------------


class Loaders(NamedTuple):
    """The loaders of a run, and the normalisation statistics they use."""

    train: DataLoader | DeviceLoader
    val: DataLoader | DeviceLoader | None  # None when cfg.val_fraction is 0
    test: DataLoader | DeviceLoader
    mean: tuple[float, ...]  # per channel, on [0, 1]; from the training images
    std: tuple[float, ...]


def _split_indices(
    data: ImageData, cfg: DataConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train, validation and test indices after the validation split and the subsets."""
    train, val = stratified_split(data.train_labels, cfg.val_fraction, seed=seed)
    train = train[stratified_subset(data.train_labels[train], cfg.train_images, seed=seed)]
    if len(val):
        val = val[stratified_subset(data.train_labels[val], cfg.eval_images, seed=seed)]
    test = stratified_subset(data.test_labels, cfg.eval_images, seed=seed)
    return train, val, test


class _Shards(NamedTuple):
    """Which share of the data this process loads."""

    rank: int
    world_size: int


def _standard_loaders(
    parts: list[tuple[torch.Tensor, torch.Tensor]],
    cfg: DataConfig,
    device: torch.device,
    seed: int,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    num_classes: int,
    shards: _Shards,
) -> list[DataLoader]:
    """Train, val and test DataLoaders with per-image v2 transforms, repeatable per epoch."""
    from helpers.transforms import build_transform_pair

    train_tf, eval_tf = build_transform_pair(
        preset=cfg.augment, image_size=cfg.image_size, mean=stats[0], std=stats[1]
    )
    (train_images, train_labels), *evals = parts
    if cfg.balance == "sampler":
        weights = sample_weights(train_labels, num_classes)
        sampler: EpochSampler = WeightedEpochSampler(weights, seed=seed, **shards._asdict())
    else:
        sampler = EpochSampler(len(train_labels), seed=seed, **shards._asdict())
    options = {"batch_size": cfg.batch_size, "device": device, "num_workers": cfg.num_workers}
    train = build_dataloader(
        TensorImageDataset(train_images, train_labels, train_tf),
        sampler=sampler,
        seed=seed,
        drop_last=len(sampler) > cfg.batch_size,
        **options,
    )
    evaluation = [
        build_dataloader(
            TensorImageDataset(images, labels, eval_tf),
            sampler=_eval_sampler(len(labels), shards),
            **options,
        )
        for images, labels in evals
    ]
    return [train, *evaluation]


def _eval_sampler(size: int, shards: _Shards) -> EpochSampler | None:
    """In-order shares of an evaluation split; ``None`` (plain order) for one process."""
    if shards.world_size == 1:
        return None
    return EpochSampler(size, shuffle=False, seeds=False, **shards._asdict())


def _fast_loaders(
    parts: list[tuple[torch.Tensor, torch.Tensor]],
    cfg: DataConfig,
    device: torch.device,
    seed: int,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    num_classes: int,
    shards: _Shards,
) -> list[DeviceLoader]:
    """Train, val and test DeviceLoaders; the training one augments whole batches."""
    from helpers.transforms import batch_augment_from_preset

    (train_images, train_labels), *evals = parts
    weights = sample_weights(train_labels, num_classes) if cfg.balance == "sampler" else None
    options = {"batch_size": cfg.batch_size, "device": device, "mean": stats[0], "std": stats[1]}
    options.update(shards._asdict())
    train = DeviceLoader(
        train_images,
        train_labels,
        shuffle=True,
        drop_last=_share_size(len(train_labels), *shards, even=True) > cfg.batch_size,
        augment=batch_augment_from_preset(cfg.augment, cfg.image_size),
        seed=seed,
        sample_weights=weights,
        **options,
    )
    return [train] + [DeviceLoader(images, labels, **options) for images, labels in evals]


def make_loaders(
    data: ImageData,
    cfg: DataConfig,
    *,
    device: torch.device | str,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> Loaders:
    """Build the train, validation and test loaders of a run from decoded data.

    The validation split is a seeded, stratified ``cfg.val_fraction`` of the training
    split; then ``cfg.train_images`` and ``cfg.eval_images`` (each of validation and test)
    pick stratified subsets. The training loader shuffles (or, with ``cfg.balance ==
    "sampler"``, draws class-balanced with replacement), augments with the ``cfg.augment``
    preset and drops an incomplete last batch; the others keep order and every image.
    ``cfg.loader`` chooses the standard ``DataLoader`` path (with ``cfg.num_workers``
    worker processes) or the fast :class:`DeviceLoader` path (no workers; its ``"strong"``
    preset is crop, flip and cutout, see
    :func:`helpers.transforms.batch_augment_from_preset`). Every loader repeats exactly per
    epoch (see :func:`set_loader_epoch`). Under ``torchrun`` each process loads its own
    share: the training split in equal, disjoint parts, the others each image once.

    Args:
        data: from :func:`load_dataset`.
        cfg: the data section of the run config.
        device: where training runs.
        seed: seeds the splits, subsets, order and augmentation.
        mean: per-channel mean; computed from the training images used when ``None``.
        std: per-channel std; computed with the mean when ``None``.
        rank: this process; from :func:`helpers.runtime.get_rank` when ``None``.
        world_size: processes sharing the data; from
            :func:`helpers.runtime.get_world_size` when ``None``.

    Returns:
        :class:`Loaders` with ``train``, ``val`` (``None`` without a validation split),
        ``test``, and the ``mean`` and ``std`` used.

    Raises:
        ValueError: when the data's image size differs from ``cfg.image_size``, for an
            unknown ``cfg.loader`` or ``cfg.balance``, for only one of mean and std, or for
            a bad rank.
    """
    _check_data_config(data, cfg)
    train, val, test = _split_indices(data, cfg, seed)
    return _build_loaders(
        data,
        cfg,
        (train, val, test),
        device=device,
        seed=seed,
        stats=(mean, std),
        shards=(rank, world_size),
    )


def make_loaders_from_indices(
    data: ImageData,
    cfg: DataConfig,
    train_index: torch.Tensor | Sequence[int],
    val_index: torch.Tensor | Sequence[int],
    *,
    device: torch.device | str,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> Loaders:
    """Build a run's loaders with the training and validation images chosen by index.

    Like :func:`make_loaders`, except that the training and validation images are exactly
    ``data.train_images[train_index]`` and ``data.train_images[val_index]``: no
    ``cfg.val_fraction`` split and no ``cfg.train_images``/``cfg.eval_images`` subsets of
    them (the test split is still subset by ``cfg.eval_images``). This is what k-fold
    cross-validation needs: the folds of :func:`stratified_kfold` become the loaders of
    one run each. Normalisation statistics come from the chosen training images.

    Args:
        data: from :func:`load_dataset`.
        cfg: the data section of the run config (batch size, loader path, augmentation).
        train_index: indices into the training split of the images to train on.
        val_index: indices into the training split of the images to validate on; empty
            for no validation loader. Must not share an index with ``train_index``.
        device: where training runs.
        seed: seeds the test subset, order and augmentation.
        mean: per-channel mean; computed from the training images when ``None``.
        std: per-channel std; computed with the mean when ``None``.
        rank: this process; from :func:`helpers.runtime.get_rank` when ``None``.
        world_size: processes sharing the data; from
            :func:`helpers.runtime.get_world_size` when ``None``.

    Returns:
        :class:`Loaders` as :func:`make_loaders` returns them.

    Raises:
        ValueError: for indices that are not 1-D integers within the training split, no
            training index, an index in both parts, or the settings :func:`make_loaders`
            refuses.

    >>> from helpers.data import make_synthetic_data
    >>> data = make_synthetic_data(2, 1, image_size=32)
    >>> loaders = make_loaders_from_indices(data, DataConfig(), range(10), [10, 11],
    ...                                     device="cpu", rank=0, world_size=1)
    >>> len(loaders.train.dataset), len(loaders.val.dataset)
    (10, 2)
    """
    _check_data_config(data, cfg)
    size = len(data.train_labels)
    train = _check_index("train_index", train_index, size, allow_empty=False)
    val = _check_index("val_index", val_index, size, allow_empty=True)
    shared = sorted(set(train.tolist()) & set(val.tolist()))
    if shared:
        raise ValueError(
            f"{len(shared)} indices are in both train_index and val_index (first: "
            f"{shared[:5]}); validation images must not be trained on."
        )
    test = stratified_subset(data.test_labels, cfg.eval_images, seed=seed)
    return _build_loaders(
        data,
        cfg,
        (train, val, test),
        device=device,
        seed=seed,
        stats=(mean, std),
        shards=(rank, world_size),
    )


def _check_index(
    name: str, index: torch.Tensor | Sequence[int], size: int, *, allow_empty: bool
) -> torch.Tensor:
    """Indices as a 1-D int64 CPU tensor within ``[0, size)``; ``ValueError`` otherwise."""
    tensor = torch.as_tensor(index if isinstance(index, torch.Tensor) else list(index)).cpu()
    if tensor.numel() == 0:
        tensor = tensor.reshape(0).long()  # as_tensor([]) is float32
    if tensor.ndim != 1 or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise ValueError(
            f"{name} must be a 1-D sequence of integer indices, got shape "
            f"{tuple(tensor.shape)} and dtype {tensor.dtype}."
        )
    if tensor.numel() == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: there is nothing to train on.")
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= size):
        raise ValueError(
            f"{name} must lie in [0, {size - 1}] (the training split), got values from "
            f"{int(tensor.min())} to {int(tensor.max())}."
        )
    return tensor.long()


def _build_loaders(
    data: ImageData,
    cfg: DataConfig,
    indices: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    device: torch.device | str,
    seed: int,
    stats: tuple[Sequence[float] | None, Sequence[float] | None],
    shards: tuple[int | None, int | None],
) -> Loaders:
    """The loaders over the train, validation and test indices (the body of both makers)."""
    rank, world_size = shards
    processes = _Shards(
        get_rank() if rank is None else rank,
        get_world_size() if world_size is None else world_size,
    )
    _check_rank(*processes)
    mean, std = stats
    if (mean is None) != (std is None):
        raise ValueError("Give both mean and std, or neither (to compute them from the data).")
    device = torch.device(device)
    train, val, test = indices
    if mean is None or std is None:
        mean, std = channel_stats(data.train_images[train])
    used = (tuple(mean), tuple(std))
    parts = [(data.train_images[train], data.train_labels[train])]
    if len(val):
        parts.append((data.train_images[val], data.train_labels[val]))
    parts.append((data.test_images[test], data.test_labels[test]))
    build = _standard_loaders if cfg.loader == "standard" else _fast_loaders
    loaders: list[Any] = build(parts, cfg, device, seed, used, data.num_classes, processes)
    val_loader = loaders[1] if len(val) else None
    return Loaders(loaders[0], val_loader, loaders[-1], *used)


def _check_data_config(data: ImageData, cfg: DataConfig) -> None:
    """Raise ``ValueError`` for settings that do not fit the data or are unknown."""
    if cfg.image_size != data.image_size:
        raise ValueError(
            f"The data was decoded at {data.image_size} px but cfg.image_size is "
            f"{cfg.image_size}; load it with load_dataset(..., image_size={cfg.image_size})."
        )
    if cfg.loader not in ("standard", "fast"):
        raise ValueError(f"Unknown loader {cfg.loader!r}; choose 'standard' or 'fast'.")
    if cfg.balance not in ("none", "sampler"):
        raise ValueError(f"Unknown balance {cfg.balance!r}; choose 'none' or 'sampler'.")
    _check_fraction("val_fraction", cfg.val_fraction, allow_zero=True)


# ----------------------------------------------------------------------------------------------
# Measuring a loader
# ----------------------------------------------------------------------------------------------


def measure_throughput(loader: Iterable[Any], *, max_batches: int | None = None) -> float:
    """Images per second that ``loader`` delivers over one pass, start-up included.

    One batch is fetched first and thrown away, so that one-off costs are not counted:
    persistent worker processes are started, and first-call kernel costs paid. Then a fresh
    pass is timed from the moment it starts (so batches that workers prepare ahead are
    counted, not free) until ``max_batches`` batches have arrived; work queued on an
    asynchronous device (a CUDA GPU) is waited for before the clock stops.

    Args:
        loader: yields ``(images, labels)`` batches, like a ``DataLoader`` or ``DeviceLoader``.
        max_batches: batches to time; ``None`` for one whole epoch.

    Returns:
        Images per second over the timed pass.

    Raises:
        ValueError: for ``max_batches`` below 1, or a loader that yields no batch.
    """
    if max_batches is not None and (isinstance(max_batches, bool) or max_batches < 1):
        raise ValueError(f"max_batches must be a positive integer or None, got {max_batches!r}.")
    warm_up = iter(loader)
    if next(warm_up, None) is None:
        raise ValueError("The loader yielded no batch.")
    del warm_up  # ends this pass; persistent workers stay alive for the timed one
    count, start = 0, time.perf_counter()
    for index, (images, _labels) in enumerate(loader, start=1):
        count += len(images)
        if max_batches is not None and index >= max_batches:
            break
    synchronize(images.device)
    return count / (time.perf_counter() - start)


def compare_loaders(
    data: ImageData,
    configs: Mapping[str, DataConfig],
    *,
    device: torch.device | str,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
    max_batches: int | None = None,
) -> pd.DataFrame:
    """Measure the training loader of each config side by side, on the same data.

    Args:
        data: from :func:`load_dataset`.
        configs: a name for each :class:`~helpers.config.DataConfig` to measure.
        device: where training would run (the fast path keeps its data there).
        mean: per-channel mean for normalising; computed from the data when ``None``.
        std: per-channel std, given together with ``mean``.
        seed: seeds the splits, order and augmentation of every loader alike.
        max_batches: batches timed per loader; ``None`` for one epoch each.

    Returns:
        One row per config, in order: loader path, workers, batch size, images per second,
        and the speed relative to the first row.
    """
    rows = []
    for name, cfg in configs.items():
        loaders = make_loaders(data, cfg, device=device, seed=seed, mean=mean, std=std)
        rate = measure_throughput(loaders.train, max_batches=max_batches)
        rows.append(
            {
                "name": name,
                "loader": cfg.loader,
                "workers": cfg.num_workers,
                "batch size": cfg.batch_size,
                "images/s": rate,
            }
        )
    table = pd.DataFrame(rows).set_index("name")
    table["speed-up"] = table["images/s"] / table["images/s"].iloc[0]
    return table
