"""Test-time augmentation (TTA): average the logits of a few flipped and shifted copies."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ._config import TTA_LEVELS


def _mirror_logits(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Mean logits of the images and their left-right mirror images."""
    return 0.5 * (net(images) + net(images.flip(-1)))


def _shifted(images: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The images moved by ``(rows, cols)`` pixels (each -1, 0 or 1), reflect-padded."""
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")  # (B, C, H + 2, W + 2)
    height, width = images.shape[-2:]
    top, left = 1 - rows, 1 - cols
    return padded[:, :, top : top + height, left : left + width]


def tta_logits(net: nn.Module, images: torch.Tensor, level: int) -> torch.Tensor:
    """Logits of one batch with test-time augmentation.

    Level 0 is the plain forward pass; level 1 averages it with the mirror image's (2
    passes); level 2 (6 passes) gives that average weight 1/2 and spreads the other 1/2
    over the same average for the images shifted one pixel up-left and one pixel
    down-right (reflect padding), as airbench94 does.

    Args:
        net: the model, in evaluation mode.
        images: ``(B, C, H, W)`` model-ready images.
        level: 0, 1 or 2.

    Returns:
        ``(B, num_classes)`` float32 logits.

    Raises:
        ValueError: for another level.
    """
    if level not in TTA_LEVELS:
        raise ValueError(f"TTA level must be one of {TTA_LEVELS}, got {level!r}.")
    if level == 0:
        return net(images).float()
    logits = _mirror_logits(net, images).float()
    if level == 1:
        return logits
    shifted = [_mirror_logits(net, _shifted(images, d, d)).float() for d in (-1, 1)]
    return 0.5 * logits + 0.25 * (shifted[0] + shifted[1])


def evaluate_tta(
    net: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    level: int,
    *,
    batch_size: int = 2000,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> float:
    """Accuracy of ``net`` on ``images`` with test-time augmentation of ``level``.

    Runs in evaluation mode under ``torch.inference_mode`` and restores the model's mode.

    Args:
        net: the model.
        images: ``(N, C, H, W)`` normalised float images, on the model's device.
        labels: ``(N,)`` class indices, on the same device.
        level: 0 (none), 1 (mirror) or 2 (mirror and 1-pixel shifts).
        batch_size: images per forward pass.
        autocast_dtype: e.g. ``torch.bfloat16``; ``None`` for full precision.
        channels_last: feed batches in the channels-last memory format.

    Returns:
        The share of images classified correctly.

    Raises:
        ValueError: for a bad level, mismatched lengths or no images.

    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    >>> evaluate_tta(net, torch.zeros(4, 3, 2, 2), torch.zeros(4, dtype=torch.long), 1) in (0, 1)
    True
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images (>0): {len(images)} vs {len(labels)}.")
    was_training = net.training
    net.eval()
    correct = torch.zeros((), dtype=torch.long, device=labels.device)
    device_type = images.device.type
    autocast = (
        torch.autocast(device_type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    try:
        with torch.inference_mode(), autocast:
            for batch, targets in zip(
                images.split(batch_size), labels.split(batch_size), strict=True
            ):
                if channels_last:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                logits = tta_logits(net, batch, level)  # (b, num_classes)
                correct += (logits.argmax(1) == targets).sum()
    finally:
        net.train(was_training)
    return correct.item() / len(labels)
