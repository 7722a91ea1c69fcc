"""The fast recipe's data path: every image on the device once, batches augmented whole.

The training images stay uint8 on the device (150 MB for CIFAR-10). Each batch is indexed,
shifted by up to ``translate`` pixels with :func:`helpers.transforms.batch_random_crop`
(reflect padding), flipped, then converted to float and normalised; the test images are
normalised once. No workers, no copies from the host per step.

The flip alternates (airbench): every image gets a random flip in epoch 0, and from then
on the opposite of its previous epoch's, so that over any two epochs each image is seen
once each way, which random flips only give on average.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from helpers.data import ImageData, channel_stats, stratified_subset
from helpers.transforms import batch_random_crop

from ._config import FastConfig


@dataclass(frozen=True, eq=False)
class FastData:
    """A data set on the device, ready for :func:`helpers.fast.fit_fast`.

    Attributes:
        train_images: ``(N, C, H, W)`` uint8 training images on the device.
        train_labels: ``(N,)`` int64 labels on the device.
        test_inputs: ``(M, C, H, W)`` normalised float32 test images on the device.
        test_labels: ``(M,)`` int64 labels on the device.
        mean: ``(1, C, 1, 1)`` per-channel mean on the [0, 255] scale.
        std: ``(1, C, 1, 1)`` per-channel standard deviation on the [0, 255] scale.
        num_classes: how many classes there are.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_inputs: torch.Tensor
    test_labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    num_classes: int

    @property
    def device(self) -> torch.device:
        """Where the data lives."""
        return self.train_images.device

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` -> normalised float32 ``(B, C, H, W)``."""
        return (images.float() - self.mean) / self.std

    def whitening_inputs(self, count: int) -> torch.Tensor:
        """``count`` training images spread evenly over the set, normalised, unaugmented.

        Evenly spread rather than the first ``count``: an image folder is stored class by
        class, so the first 5,000 CIFAR-10 images are all airplanes.

        >>> import torch
        >>> labels = torch.arange(10).repeat_interleave(5)  # class by class
        >>> images = torch.zeros(50, 3, 4, 4, dtype=torch.uint8)
        >>> data = FastData(images, labels, images.float(), labels,
        ...                 torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1), 10)
        >>> data.whitening_index(10).tolist()
        [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
        """
        return self.normalize(self.train_images[self.whitening_index(count)])

    def whitening_index(self, count: int) -> torch.Tensor:
        """Indices of ``min(count, N)`` training images at equal steps through the set."""
        total = len(self.train_labels)
        count = min(count, total)
        return torch.arange(count, device=self.device) * total // count


def prepare_fast_data(data: ImageData, cfg: FastConfig, *, device: torch.device | str) -> FastData:
    """Move a data set to ``device`` for the fast recipe (what is timed starts after this).

    ``cfg.train_images`` and ``cfg.test_images`` pick stratified subsets (smoke runs);
    the normalisation statistics come from the training images used.

    Args:
        data: from :func:`helpers.data.load_dataset` or
            :func:`helpers.data.make_synthetic_data`.
        cfg: the recipe's settings.
        device: where training runs.

    Returns:
        A :class:`FastData`.

    Raises:
        ValueError: when there are fewer training images than one batch.
    """
    device = torch.device(device)
    train = stratified_subset(data.train_labels, cfg.train_images)
    test = stratified_subset(data.test_labels, cfg.test_images)
    if len(train) < cfg.batch_size:
        raise ValueError(
            f"batch_size={cfg.batch_size} is larger than the {len(train)} training images; "
            "lower batch_size."
        )
    images = data.train_images[train]
    mean, std = channel_stats(images)
    shape = (1, -1, 1, 1)
    mean_t = torch.tensor(mean, device=device).view(shape) * 255.0
    std_t = torch.tensor(std, device=device).view(shape) * 255.0
    test_images = data.test_images[test].to(device)
    return FastData(
        train_images=images.to(device),
        train_labels=data.train_labels[train].to(device),
        test_inputs=((test_images.float() - mean_t) / std_t).contiguous(),
        test_labels=data.test_labels[test].to(device),
        mean=mean_t,
        std=std_t,
        num_classes=data.num_classes,
    )


def _device_generator(device: torch.device, seed: int) -> torch.Generator | None:
    """A seeded generator on ``device``; ``None`` where the backend has none (the global
    generator, seeded by :func:`helpers.runtime.seed_everything`, is used instead)."""
    try:
        return torch.Generator(device=device).manual_seed(seed)
    except RuntimeError:
        return None


class FastLoader:
    """Augmented training batches from a :class:`FastData`, a new order every epoch.

    Args:
        data: the data on the device.
        batch_size: images per batch; the last, incomplete batch of an epoch is dropped.
        flip: ``"alternate"`` (random in epoch 0, then the opposite each epoch),
            ``"random"`` (each image with probability 0.5, every epoch) or ``"none"``.
        translate: shift each image by up to this many pixels on each axis (reflect
            padding); 0 for none.
        channels_last: return batches in the channels-last memory format.
        seed: seeds the order, flips and shifts.

    Raises:
        ValueError: for an unknown flip mode.
    """

    def __init__(
        self,
        data: FastData,
        *,
        batch_size: int,
        flip: str = "alternate",
        translate: int = 2,
        channels_last: bool = False,
        seed: int = 0,
    ) -> None:
        if flip not in ("alternate", "random", "none"):
            raise ValueError(f"flip must be 'alternate', 'random' or 'none', got {flip!r}.")
        self.data, self.batch_size, self.flip = data, batch_size, flip
        self.translate, self.channels_last = translate, channels_last
        self.generator = _device_generator(data.device, seed)
        count = len(data.train_labels)
        self.first_flips = self._coin(count)  # (N,) the flips of epoch 0 ("alternate")

    def __len__(self) -> int:
        """Full batches per epoch."""
        return len(self.data.train_labels) // self.batch_size

    def _coin(self, count: int) -> torch.Tensor:
        """``count`` fair coin flips, as a bool tensor on the device."""
        draws = torch.rand(count, generator=self.generator, device=self.data.device)
        return draws < 0.5

    def epoch(self, epoch: int, steps: int | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches of one epoch, in a new random order.

        Args:
            epoch: the epoch, counted from 0 (its parity decides the alternating flip).
            steps: stop after this many batches (a fractional last epoch); ``None``: all.

        Yields:
            ``(images, labels)``: ``(B, C, H, W)`` normalised float32 and ``(B,)`` int64.
        """
        count = len(self.data.train_labels)
        order = torch.randperm(count, generator=self.generator, device=self.data.device)
        steps = len(self) if steps is None else min(steps, len(self))
        for step in range(steps):
            index = order[step * self.batch_size : (step + 1) * self.batch_size]  # (B,)
            yield self.batch(index, epoch), self.data.train_labels[index]

    def batch(self, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """The training images at ``index`` as epoch ``epoch`` sees them: gathered, shifted,
        flipped and normalised, ``(B, C, H, W)`` float32 (new random shifts each call).

        Args:
            index: ``(B,)`` positions in the training set, on the data's device.
            epoch: the epoch, counted from 0 (its parity decides the alternating flip).
        """
        images = self.data.train_images[index]  # (B, C, H, W) uint8
        if self.translate > 0:
            images = batch_random_crop(images, self.translate, self.generator)
        flips = self._flips(index, epoch)
        if flips is not None:
            images = torch.where(flips[:, None, None, None], images.flip(-1), images)
        images = self.data.normalize(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _flips(self, index: torch.Tensor, epoch: int) -> torch.Tensor | None:
        """Which images of the batch to flip: ``(B,)`` bool, or ``None`` for none."""
        if self.flip == "none":
            return None
        if self.flip == "random":
            return self._coin(len(index))
        return self.first_flips[index] ^ bool(epoch % 2)  # the opposite of last epoch
