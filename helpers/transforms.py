"""Preprocessing and augmentation: paired train/eval pipelines and batched tensor augmentation.

This stage sits between the data (uint8 images, ``(N, 3, H, W)``) and the model (normalised
float32 images). It offers two ways to augment, which apply the same random crops and flips:

* :func:`build_transforms` returns a torchvision ``transforms.v2`` pipeline that works on one
  image at a time, for the standard ``DataLoader`` path. ``train=True`` and ``train=False``
  come from one function, so the two pipelines cannot drift apart (as in torchvision's
  ``references/classification/presets.py``). Three presets are offered:

  - ``"none"``: the eval pipeline (resize if needed, scale to [0, 1], normalise);
  - ``"standard"``: a random crop from the image padded by reflection, and a horizontal flip;
  - ``"strong"``: the standard crop and flip, then a small rotation, colour jitter,
    TrivialAugmentWide and random erasing.

* :class:`BatchAugment` augments a whole batch at once on its device with tensor index
  arithmetic and no Python loop per image, for the fast path where the whole uint8 data set
  already lives on the GPU. It offers random crops, flips and cutout.

Example:
    >>> train_tf = build_transforms(True, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    >>> image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    >>> train_tf(image).shape, train_tf(image).dtype
    (torch.Size([3, 32, 32]), torch.float32)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2

__all__ = [
    "PRESETS",
    "BatchAugment",
    "batch_augment_from_preset",
    "batch_cutout",
    "batch_flip",
    "batch_random_crop",
    "build_transform_pair",
    "build_transforms",
]

PRESETS = ("none", "standard", "strong")

# Magnitudes of the "strong" preset at strength 1; `strength` scales each of them linearly.
STRONG_MAGNITUDES = {
    "rotation_degrees": 15.0,  # rotation drawn from [-15, 15] degrees
    "jitter": 0.4,  # brightness, contrast and saturation factors drawn from [0.6, 1.4]
    "hue": 0.05,  # hue shift drawn from [-0.05, 0.05] of a full turn
    "trivial_augment_p": 1.0,  # probability of applying one TrivialAugmentWide operation
    "erasing_p": 0.25,  # probability of erasing one random rectangle
}


# ---------------------------------------------------------------------------------------------
# Per-image pipelines (torchvision.transforms.v2)
# ---------------------------------------------------------------------------------------------


def _check_options(
    preset: str, image_size: int, mean: Sequence[float], std: Sequence[float], strength: float
) -> None:
    """Raise ``ValueError`` for a bad preset, size, strength or normalisation statistics."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise ValueError(f"strength must be a number in [0, 1], got {strength!r}.")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength!r}.")
    if len(mean) == 0 or len(mean) != len(std):
        raise ValueError(f"mean and std need one value per channel, got {mean!r} and {std!r}.")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {std!r}.")


def _resize_steps(image_size: int) -> list[Any]:
    """Resize the short side, then centre-crop: both are no-ops when the size already matches."""
    return [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]


def _to_model_input(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    """uint8 [0, 255] -> float32 [0, 1] -> normalised with the data set's statistics."""
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def _crop_and_flip(image_size: int, strength: float) -> list[Any]:
    """The standard augmentation: a crop of the reflect-padded image, then a horizontal flip."""
    padding = round(image_size // 8 * strength)
    steps: list[Any] = []
    if padding > 0:
        steps.append(v2.RandomCrop(image_size, padding=padding, padding_mode="reflect"))
    steps.append(v2.RandomHorizontalFlip())
    return steps


def _strong_extras(strength: float) -> list[Any]:
    """Rotation, colour jitter and TrivialAugmentWide (on uint8 images), scaled by strength."""
    if strength == 0:
        return []
    m = {key: value * strength for key, value in STRONG_MAGNITUDES.items()}
    return [
        v2.RandomRotation(m["rotation_degrees"], interpolation=v2.InterpolationMode.BILINEAR),
        v2.ColorJitter(
            brightness=m["jitter"], contrast=m["jitter"], saturation=m["jitter"], hue=m["hue"]
        ),
        v2.RandomApply([v2.TrivialAugmentWide()], p=m["trivial_augment_p"]),
    ]


def build_transforms(
    train: bool,
    *,
    preset: str = "standard",
    image_size: int = 32,
    mean: Sequence[float],
    std: Sequence[float],
    strength: float = 1.0,
) -> v2.Compose:
    """Build the train or eval preprocessing pipeline for one image.

    Both pipelines accept a uint8 ``(C, H, W)`` tensor, a PIL image or an ``(H, W, C)`` NumPy
    array, and return a normalised float32 ``(C, image_size, image_size)`` tensor. The eval
    pipeline resizes (only when the size differs), scales to [0, 1] and normalises. The train
    pipeline adds the augmentation of ``preset`` before that (see the module docstring).

    Args:
        train: ``True`` for the augmenting training pipeline, ``False`` for evaluation.
        preset: one of :data:`PRESETS`; ignored when ``train`` is ``False``.
        image_size: the side of the square output, in pixels.
        mean: per-channel mean of the training images, on the [0, 1] scale.
        std: per-channel standard deviation of the training images, on the [0, 1] scale.
        strength: in [0, 1]; scales every magnitude (crop padding, rotation, jitter,
            probability of TrivialAugmentWide and of erasing). ``0`` leaves only the flip.

    Returns:
        A :class:`torchvision.transforms.v2.Compose`.

    Raises:
        ValueError: for an unknown preset, a strength outside [0, 1], a non-positive
            image size, or mean/std of different lengths or with a non-positive std.

    >>> tf = build_transforms(False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    >>> tf(torch.full((3, 32, 32), 255, dtype=torch.uint8)).max().item()
    1.0
    """
    _check_options(preset, image_size, mean, std, strength)
    steps: list[Any] = [v2.ToImage(), *_resize_steps(image_size)]
    if train and preset != "none":
        steps += _crop_and_flip(image_size, strength)
    if train and preset == "strong":
        steps += _strong_extras(strength)
    steps += _to_model_input(mean, std)
    if train and preset == "strong" and strength > 0:
        # Erase after normalising, so the erased area is 0, the mean colour of the data set.
        steps.append(v2.RandomErasing(p=STRONG_MAGNITUDES["erasing_p"] * strength))
    steps.append(v2.ToPureTensor())  # plain tensors, not tv_tensors.Image, leave the pipeline
    return v2.Compose(steps)


def build_transform_pair(
    *,
    preset: str = "standard",
    image_size: int = 32,
    mean: Sequence[float],
    std: Sequence[float],
    strength: float = 1.0,
) -> tuple[v2.Compose, v2.Compose]:
    """Build the training and evaluation pipelines together.

    Args:
        preset: one of :data:`PRESETS`, for the training pipeline.
        image_size: the side of the square output, in pixels.
        mean: per-channel mean of the training images, on the [0, 1] scale.
        std: per-channel standard deviation of the training images, on the [0, 1] scale.
        strength: in [0, 1]; scales the training augmentation (see :func:`build_transforms`).

    Returns:
        ``(train_transform, eval_transform)``.

    Raises:
        ValueError: as :func:`build_transforms`.
    """
    options = {"image_size": image_size, "mean": mean, "std": std}
    return (
        build_transforms(True, preset=preset, strength=strength, **options),
        build_transforms(False, preset=preset, **options),
    )


# ---------------------------------------------------------------------------------------------
# Batched augmentation on tensors (the fast path)
# ---------------------------------------------------------------------------------------------


def _check_batch(images: Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a ``(B, C, H, W)`` tensor."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {shape}.")


def _check_size(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")


def _reflect_indices(offsets: Tensor, size: int, padding: int) -> Tensor:
    """Source index of each output position, for crops at ``offsets`` of a reflect-padded axis."""
    positions = torch.arange(size, device=offsets.device) + offsets[:, None] - padding  # (B, size)
    positions = positions.abs()  # reflect at the start: -1 -> 1, -2 -> 2
    return (size - 1) - ((size - 1) - positions).abs()  # reflect at the end: size -> size - 2


def _random_crop_indices(
    images: Tensor, padding: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Draw a crop offset per image; return the source rows ``(B, H)`` and columns ``(B, W)``."""
    _check_size("padding", padding)
    batch, _, height, width = images.shape
    if padding >= min(height, width):
        raise ValueError(
            f"padding={padding} is too large to reflect a {height}x{width} image; "
            f"use at most {min(height, width) - 1}."
        )
    offsets = torch.randint(
        0, 2 * padding + 1, (2, batch), generator=generator, device=images.device
    )  # (2, B): top and left corner of each crop in the padded image
    return _reflect_indices(offsets[0], height, padding), _reflect_indices(
        offsets[1], width, padding
    )


def _draw_flips(images: Tensor, generator: torch.Generator | None) -> Tensor:
    """A ``(B,)`` bool tensor: which images to flip, each with probability 0.5."""
    return torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5


def _gather_pixels(images: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``out[b, c, i, j] = images[b, c, rows[b, i], cols[b, j]]``, in one ``gather`` call."""
    batch, channels, height, width = images.shape
    index = rows[:, :, None] * width + cols[:, None, :]  # (B, H, W) flat pixel index
    index = index.view(batch, 1, height * width).expand(batch, channels, height * width)
    pixels = images.reshape(batch, channels, height * width)  # (B, C, H*W)
    return pixels.gather(2, index).view(batch, channels, height, width)  # (B, C, H, W)


def batch_random_crop(
    images: Tensor, padding: int, generator: torch.Generator | None = None
) -> Tensor:
    """Crop every image at its own random offset from a reflect-padded copy of itself.

    Equivalent to ``torch.nn.functional.pad(images, [padding] * 4, mode="reflect")`` followed
    by an ``H x W`` crop at a random offset in ``[0, 2 * padding]`` on each axis, drawn per
    image. It is computed as one ``gather`` with reflected indices: no padded copy and no
    loop over images.

    Args:
        images: a ``(B, C, H, W)`` batch of any dtype, on any device.
        padding: pixels of reflection on each side; at most ``min(H, W) - 1``.
        generator: a :class:`torch.Generator` on the batch's device, for reproducible draws.

    Returns:
        A new ``(B, C, H, W)`` tensor of the same dtype and device (``images`` itself when
        ``padding`` is 0).

    Raises:
        ValueError: for a batch that is not 4-D, or a padding that is negative or too large
            to reflect.

    >>> batch = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> batch_random_crop(batch, 1).shape
    torch.Size([1, 1, 4, 4])
    """
    _check_batch(images)
    if padding == 0:
        return images
    rows, cols = _random_crop_indices(images, padding, generator)  # (B, H), (B, W)
    return _gather_pixels(images, rows, cols)


def batch_flip(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Flip each image left-right with probability 0.5.

    Args:
        images: a ``(B, C, H, W)`` batch of any dtype, on any device.
        generator: a :class:`torch.Generator` on the batch's device, for reproducible draws.

    Returns:
        A new ``(B, C, H, W)`` tensor of the same dtype and device.

    Raises:
        ValueError: for a batch that is not 4-D.
    """
    _check_batch(images)
    flip = _draw_flips(images, generator)  # (B,)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)  # (B, C, H, W)


def _square_mask(centres: Tensor, size: int, length: int) -> Tensor:
    """Which of ``length`` positions fall in a window of ``size`` around each centre."""
    start = centres[:, None] - size // 2  # (B, 1)
    positions = torch.arange(length, device=centres.device)[None, :]  # (1, length)
    return (positions >= start) & (positions < start + size)  # (B, length)


def batch_cutout(images: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """Set a ``size x size`` square, centred at a random pixel of each image, to zero.

    The centre is drawn uniformly over the whole image, so the square is clipped where it
    crosses a border (DeVries and Taylor, 2017). Zero is black for uint8 images and the mean
    colour for normalised images.

    Args:
        images: a ``(B, C, H, W)`` batch of any dtype, on any device.
        size: side of the square, in pixels; 0 leaves the images unchanged.
        generator: a :class:`torch.Generator` on the batch's device, for reproducible draws.

    Returns:
        A new ``(B, C, H, W)`` tensor of the same dtype and device (``images`` itself when
        ``size`` is 0).

    Raises:
        ValueError: for a batch that is not 4-D or a negative size.
    """
    _check_batch(images)
    _check_size("size", size)
    if size == 0:
        return images
    batch, _, height, width = images.shape
    rows = torch.randint(0, height, (batch,), generator=generator, device=images.device)  # (B,)
    cols = torch.randint(0, width, (batch,), generator=generator, device=images.device)  # (B,)
    in_rows = _square_mask(rows, size, height)  # (B, H)
    in_cols = _square_mask(cols, size, width)  # (B, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    return images.masked_fill(mask[:, None], 0)  # (B, C, H, W)


@dataclass(frozen=True)
class BatchAugment:
    """Random crop, flip and cutout for a whole batch at once, on the batch's device.

    Applies :func:`batch_random_crop`, then :func:`batch_flip`, then :func:`batch_cutout`;
    a step is skipped when its setting is 0 (or ``False``). The crop and flip match the
    ``"standard"`` preset of :func:`build_transforms`; apply it to uint8 images before they
    are scaled and normalised, or to normalised images (then cutout fills the mean colour).

    Args:
        crop_padding: reflection padding of the random crop, in pixels.
        flip: flip each image left-right with probability 0.5.
        cutout: side of the zeroed square, in pixels (0: no cutout).

    Raises:
        ValueError: for a negative padding or cutout size.

    >>> augment = BatchAugment(crop_padding=4, flip=True, cutout=8)
    >>> augment(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape
    torch.Size([2, 3, 32, 32])
    """

    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0

    def __post_init__(self) -> None:
        _check_size("crop_padding", self.crop_padding)
        _check_size("cutout", self.cutout)
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be True or False, got {self.flip!r}.")

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``images`` (``(B, C, H, W)``), drawing from ``generator`` if given.

        The result equals ``batch_cutout(batch_flip(batch_random_crop(images)))`` with the
        same generator, but the crop and the flip share a single ``gather``.
        """
        _check_batch(images)
        batch, _, height, width = images.shape
        rows = torch.arange(height, device=images.device).expand(batch, height)  # (B, H)
        cols = torch.arange(width, device=images.device).expand(batch, width)  # (B, W)
        if self.crop_padding > 0:
            rows, cols = _random_crop_indices(images, self.crop_padding, generator)
        if self.flip:
            flip = _draw_flips(images, generator)  # (B,)
            cols = torch.where(flip[:, None], cols.flip(-1), cols)  # read columns backwards
        if self.crop_padding > 0 or self.flip:
            images = _gather_pixels(images, rows, cols)  # (B, C, H, W)
        if self.cutout > 0:
            images = batch_cutout(images, self.cutout, generator)
        return images


def batch_augment_from_preset(preset: str, image_size: int) -> BatchAugment:
    """The :class:`BatchAugment` closest to a preset of :func:`build_transforms`.

    ``"none"`` does nothing, ``"standard"`` is the same crop (padding ``image_size // 8``)
    and flip as the per-image pipeline. The fast path has no rotation, colour jitter,
    TrivialAugmentWide or erasing, so ``"strong"`` maps to the standard crop and flip plus
    cutout of an ``image_size // 2`` square (16 pixels on 32x32 images, as DeVries and Taylor
    used on CIFAR-10): a strong regulariser in the same spirit, but not the same pipeline.

    Args:
        preset: one of :data:`PRESETS`.
        image_size: the side of the (square) images, in pixels.

    Returns:
        A :class:`BatchAugment`.

    Raises:
        ValueError: for an unknown preset or a non-positive image size.

    >>> batch_augment_from_preset("standard", 32)
    BatchAugment(crop_padding=4, flip=True, cutout=0)
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    if preset == "none":
        return BatchAugment(crop_padding=0, flip=False, cutout=0)
    padding = image_size // 8
    cutout = image_size // 2 if preset == "strong" else 0
    return BatchAugment(crop_padding=padding, flip=True, cutout=cutout)
