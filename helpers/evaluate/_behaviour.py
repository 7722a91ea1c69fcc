"""Behavioural checks: does the prediction survive changes that should not matter?

A cat mirrored left to right, moved by two pixels or lit a little brighter is still a cat.
:func:`invariance_report` measures how often the predicted class stays the same under such
changes; :func:`check_invariance` turns the report into a pass/fail gate, e.g. before a
model is exported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._predict import _autocast, _check_positive_int

Perturbation = Callable[[Tensor], Tensor]  # (B, C, H, W) -> (B, C, H, W)


class InvarianceError(RuntimeError):
    """A model's predictions changed too often under a change that should not matter."""


def _shift(images: Tensor, dx: int, dy: int) -> Tensor:
    """Move the content ``dx`` pixels right and ``dy`` down, repeating the edge pixels into
    the gap (no wrap-around, no black border)."""
    height, width = images.shape[-2:]
    padding = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))  # left, right, top, bottom
    padded = F.pad(images, padding, mode="replicate")  # (B, C, H + |dy|, W + |dx|)
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + height, left : left + width]  # (B, C, H, W)


def _brighten(
    images: Tensor, delta: float, mean: Sequence[float] | None, std: Sequence[float] | None
) -> Tensor:
    """Add ``delta`` to every pixel value on the [0, 1] scale (clamped), undoing and
    redoing the normalisation when ``mean`` and ``std`` are given."""
    if mean is None or std is None:
        return (images + delta).clamp(0, 1)
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    pixels = images * std_t + mean_t  # (B, C, H, W) on [0, 1]
    return ((pixels + delta).clamp(0, 1) - mean_t) / std_t


def _perturbations(
    shift: int, brightness: float, mean: Sequence[float] | None, std: Sequence[float] | None
) -> dict[str, Perturbation]:
    """The named changes to test: flip, four shifts by ``shift`` px, two brightness steps."""
    changes: dict[str, Perturbation] = {"horizontal flip": lambda x: x.flip(-1)}
    if shift:
        for name, dx, dy in (("right", 1, 0), ("left", -1, 0), ("down", 0, 1), ("up", 0, -1)):
            changes[f"shift {name} {shift} px"] = lambda x, dx=dx, dy=dy: _shift(
                x, dx * shift, dy * shift
            )
    if brightness:
        changes[f"brightness +{brightness:g}"] = lambda x: _brighten(x, brightness, mean, std)
        changes[f"brightness -{brightness:g}"] = lambda x: _brighten(x, -brightness, mean, std)
    return changes


def _predicted_classes(
    model: nn.Module,
    images: Tensor,
    device: torch.device,
    change: Perturbation,
    options: dict[str, Any],
) -> Tensor:
    """The arg-max class of every (changed) image, as an ``(N,)`` CPU tensor; ``options``
    holds ``batch_size``, ``autocast_dtype`` and ``channels_last``."""
    classes = []
    with torch.inference_mode():
        for batch in images.split(options["batch_size"]):
            batch = change(batch.to(device, non_blocking=True))  # (B, C, H, W)
            if options["channels_last"]:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with _autocast(device, options["autocast_dtype"]):
                classes.append(model(batch).argmax(dim=1).cpu())
    return torch.cat(classes)


def _check_invariance_inputs(
    images: Tensor,
    shift: int,
    brightness: float,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> None:
    """``ValueError`` for images that are not float ``(N, C, H, W)`` or bad settings."""
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float (N, C, H, W) tensor, got {shape}.")
    if not len(images):
        raise ValueError("images is empty: there is nothing to check.")
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(f"shift must be a non-negative integer (pixels), got {shift!r}.")
    if shift >= min(images.shape[-2:]):
        raise ValueError(f"shift {shift} px must be smaller than the images {images.shape[-2:]}.")
    if not 0 <= brightness < 1:
        raise ValueError(f"brightness must lie in [0, 1), got {brightness!r}.")
    if (mean is None) != (std is None):
        raise ValueError("Pass both mean and std (for normalised images), or neither.")
    if mean is not None and (len(mean) != images.shape[1] or len(std) != images.shape[1]):
        raise ValueError(f"mean and std need {images.shape[1]} values each.")


def invariance_report(
    model: nn.Module,
    images: Tensor,
    device: torch.device | str,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    shift: int = 2,
    brightness: float = 0.1,
    batch_size: int = 256,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> pd.DataFrame:
    """How often the predicted class stays the same when an image changes in a way that
    should not matter: a horizontal flip, a shift by ``shift`` pixels in each direction
    (edge pixels repeated into the gap), and brightness up and down by ``brightness``.

    Args:
        model: the trained network, already on ``device`` (put in evaluation mode).
        images: ``(N, C, H, W)`` float images as the model sees them, e.g. a batch from
            an evaluation loader; normalised with ``mean``/``std`` when those are given,
            otherwise pixel values in [0, 1].
        device: where the model is.
        mean: the per-channel mean used to normalise ``images``.
        std: the per-channel std used to normalise ``images``.
        shift: pixels to shift by; 0 leaves the shifts out.
        brightness: added to and subtracted from every pixel value on the [0, 1] scale
            (then clamped); 0 leaves the brightness changes out.
        batch_size: images per forward pass.
        autocast_dtype: ``torch.bfloat16``/``torch.float16`` to autocast to, as the model
            was trained (see :func:`helpers.runtime.autocast_dtype`); ``None``: fp32.
        channels_last: convert the (changed) batches to the channels-last memory format.

    Returns:
        One row per change, indexed by its name: ``agreement`` (the share of images whose
        predicted class did not change), ``changed`` (how many did) and ``images``.

    Raises:
        ValueError: for images that are not a non-empty float ``(N, C, H, W)`` tensor, a
            negative or too large shift, a brightness outside [0, 1), only one of mean and
            std, or a batch size below 1.
    """
    _check_invariance_inputs(images, shift, brightness, mean, std)
    _check_positive_int("batch_size", batch_size)
    device = torch.device(device)
    model.eval()
    images = images.detach()
    options = {
        "batch_size": batch_size,
        "autocast_dtype": autocast_dtype,
        "channels_last": channels_last,
    }

    def classes(change: Perturbation) -> Tensor:
        return _predicted_classes(model, images, device, change, options)

    original = classes(lambda x: x)  # (N,)
    rows = []
    for name, change in _perturbations(shift, brightness, mean, std).items():
        same = classes(change) == original  # (N,)
        rows.append(
            {
                "change": name,
                "agreement": float(same.double().mean()),
                "changed": int((~same).sum()),
                "images": len(same),
            }
        )
    return pd.DataFrame(rows).set_index("change")


def check_invariance(report: pd.DataFrame, min_agreement: float = 0.9) -> None:
    """A gate: raise when the predictions changed too often under any change of ``report``.

    Args:
        report: from :func:`invariance_report`.
        min_agreement: the least share of unchanged predictions each change must keep.

    Raises:
        InvarianceError: naming every change below ``min_agreement`` and its agreement.
        ValueError: for ``min_agreement`` outside [0, 1] or a report without an
            ``agreement`` column.

    >>> check_invariance(pd.DataFrame({"agreement": [0.99]}, index=["horizontal flip"]))
    """
    if isinstance(min_agreement, bool) or not 0 <= min_agreement <= 1:
        raise ValueError(f"min_agreement must lie in [0, 1], got {min_agreement!r}.")
    if "agreement" not in report.columns or report.empty:
        raise ValueError("report must be a non-empty table from invariance_report.")
    failed = report[report["agreement"] < min_agreement]
    if len(failed):
        listed = ", ".join(f"{name} {value:.1%}" for name, value in failed["agreement"].items())
        raise InvarianceError(
            f"Predictions changed too often: agreement below {min_agreement:.1%} under "
            f"{listed}. Train with the matching augmentation (flips, crops, colour jitter) "
            "or check the preprocessing."
        )
