"""Image files: writing a data set out as an ImageFolder, and what each file format costs."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ._checks import _as_labels

# File formats compared by compare_image_formats, with the options each is saved with.
_FORMAT_OPTIONS = {
    "PNG": {},
    "TIFF": {},  # uncompressed, as most scanners and microscopes write it
    "JPEG": {"quality": 75},  # the quality of the book's JPEG copy of CIFAR-10
    "WEBP": {"quality": 75},
}
_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp"}


def _check_image_batch(images: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a ``(N, 3, H, W)`` uint8 tensor."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be a (N, 3, H, W) uint8 tensor, got {tuple(images.shape)} {images.dtype}."
        )


def _to_pil(image: torch.Tensor) -> Image.Image:
    """A ``(3, H, W)`` uint8 tensor as an RGB PIL image."""
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())  # (H, W, 3)


def write_image_folder(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    class_names: Sequence[str],
    root: str | Path,
    *,
    classes: Sequence[str] | None = None,
    per_class: int | None = None,
    file_format: str = "mixed",
) -> Path:
    """Write images as files in the ImageFolder layout, ``root/<class>/<index>.<ext>``.

    Useful to try the "your own images" route with data you have, or to hand a subset of a
    data set to another tool. :func:`load_dataset` reads the folder back.

    Args:
        images: ``(N, 3, H, W)`` uint8 images.
        labels: ``(N,)`` class indices into ``class_names``.
        class_names: the name of each class index.
        root: the folder to write; created if missing.
        classes: write only images of these classes (by name); ``None`` writes all.
        per_class: write at most this many images of each class (the first ones).
        file_format: ``"png"``, ``"jpeg"`` (quality 95), or ``"mixed"`` (alternately PNG and
            JPEG, as real folders often are).

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: for bad shapes, an unknown format, a class name not in ``class_names``,
            or when no image is left to write.
    """
    _check_image_batch(images)
    labels = _as_labels(labels)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    if file_format not in ("png", "jpeg", "mixed"):
        raise ValueError(f"Unknown file_format {file_format!r}; choose 'png', 'jpeg' or 'mixed'.")
    wanted = list(class_names) if classes is None else list(classes)
    unknown = sorted(set(wanted) - set(class_names))
    if unknown:
        raise ValueError(f"Unknown class(es) {unknown}; the classes are {list(class_names)}.")
    chosen = _indices_per_class(labels, [list(class_names).index(c) for c in wanted], per_class)
    if not chosen:
        raise ValueError(f"No image of the classes {wanted} to write.")
    root = Path(root)
    for count, index in enumerate(chosen):
        folder = root / class_names[int(labels[index])]
        folder.mkdir(parents=True, exist_ok=True)
        if file_format == "png" or (file_format == "mixed" and count % 2 == 0):
            _to_pil(images[index]).save(folder / f"{index:06d}.png")
        else:
            _to_pil(images[index]).save(folder / f"{index:06d}.jpg", quality=95)
    return root


def _indices_per_class(
    labels: torch.Tensor, class_indices: Sequence[int], per_class: int | None
) -> list[int]:
    """The first ``per_class`` image indices of each wanted class, in class order."""
    if per_class is not None and (isinstance(per_class, bool) or per_class < 1):
        raise ValueError(f"per_class must be a positive integer or None, got {per_class!r}.")
    chosen: list[int] = []
    for label in class_indices:
        members = torch.nonzero(labels == label).flatten().tolist()
        chosen += members[:per_class] if per_class is not None else members
    return chosen


def _encode(image: Image.Image, file_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **_FORMAT_OPTIONS[file_format])
    return buffer.getvalue()


def _format_row(pictures: list[Image.Image], originals: np.ndarray, file_format: str) -> dict:
    """Size, decode time and pixel error of ``pictures`` saved in ``file_format``."""
    encoded = [_encode(picture, file_format) for picture in pictures]
    start = time.perf_counter()
    decoded = [np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in encoded]
    seconds = time.perf_counter() - start
    errors = np.abs(np.stack(decoded).astype(np.int16) - originals.astype(np.int16))
    raw = originals[0].size
    size = float(np.mean([len(blob) for blob in encoded]))
    return {
        "format": file_format,
        "lossless": bool(errors.max() == 0),
        "bytes per image": size,
        "vs. raw pixels": size / raw,
        "decode µs per image": 1e6 * seconds / len(encoded),
        "mean pixel error": float(errors.mean()),
        "max pixel error": int(errors.max()),
    }


def compare_image_formats(
    images: torch.Tensor, formats: Sequence[str] = ("PNG", "TIFF", "JPEG", "WEBP")
) -> pd.DataFrame:
    """Save images in several file formats and compare size, decoding speed and pixel error.

    Args:
        images: ``(N, 3, H, W)`` uint8 images.
        formats: any of ``PNG``, ``TIFF`` (uncompressed), ``JPEG`` and ``WEBP`` (quality 75).

    Returns:
        One row per format: whether it is lossless, mean bytes per image and their ratio to
        the raw pixels, decoding time per image, and the mean and largest absolute pixel
        error (in levels of 0..255) after a round trip.

    Raises:
        ValueError: for bad shapes, no images, or an unknown format.
    """
    _check_image_batch(images)
    if len(images) == 0:
        raise ValueError("compare_image_formats needs at least one image.")
    unknown = sorted(set(formats) - set(_FORMAT_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown format(s) {unknown}; choose from {list(_FORMAT_OPTIONS)}.")
    originals = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3)
    pictures = [Image.fromarray(array) for array in originals]
    return pd.DataFrame([_format_row(pictures, originals, f) for f in formats]).set_index("format")
