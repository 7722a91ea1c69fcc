"""ETL, steps 5 and 6: payloads, the cache file, synthetic data and :func:`load_dataset`."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpers.config import Profile, data_dir

from ._checks import _check_fraction, _check_positive_int
from ._constants import (
    _CACHE_FORMAT,
    _MAX_LISTED,
    _TORCHVISION_FOLDER,
    CIFAR10_CLASSES,
    CIFAR10_ENV,
    CorruptImageWarning,
    ImageData,
    SyntheticDataWarning,
)
from ._decode import _is_visible, _Scan, _scan_folder, _scan_tar, _scan_zip
from ._formats import _check_classes, _cifar_payload, _plan_layout, _read_torchvision_folder
from ._sources import _KIND_LABELS, _is_smoke, _missing_cifar_message, _resolve_source, _Source
from ._splits import stratified_split

# ----------------------------------------------------------------------------------------------
# ETL, step 5: from a scan to a payload of tensors
# ----------------------------------------------------------------------------------------------


def _stack(
    classes: dict[str, list[str]], names: tuple[str, ...], scan: _Scan
) -> dict[str, torch.Tensor]:
    """Stack the readable images of one split into uint8 ``(N, 3, H, W)`` and labels."""
    arrays, labels = [], []
    for label, name in enumerate(names):
        kept = [scan.images[p] for p in classes[name] if p in scan.images]
        arrays.extend(kept)
        labels.extend([label] * len(kept))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    return {"images": images, "labels": torch.tensor(labels, dtype=torch.int64)}


def _image_folder_payload(scan: _Scan, where: Callable[[str], str]) -> dict[str, Any]:
    """Turn a scan of an ImageFolder tree into a cache payload (unreadable files listed)."""
    layout = _plan_layout(sorted(scan.images) + sorted(scan.corrupt), scan.dirs, where)
    used = {p for split in layout.values() for paths in split.classes.values() for p in paths}
    skipped = [[where(p), scan.corrupt[p]] for p in sorted(scan.corrupt) if p in used]
    names = _check_classes(layout, scan, where)
    splits = {name: _stack(split.classes, names, scan) for name, split in layout.items()}
    return {"class_names": list(names), "splits": splits, "skipped": skipped}


def _reader(found: dict[str, bytes], where: Callable[[str], str]) -> Callable[[str], bytes]:
    """A ``read(name)`` over CIFAR-10 files found in an archive."""

    def read(name: str) -> bytes:
        if name not in found:
            raise FileNotFoundError(f"{where(name)} is missing from the CIFAR-10 archive.")
        return found[name]

    return read


def _where(kind: str, path: Path) -> Callable[[str], str]:
    """How messages name a file of a source: its path, or ``archive::member``."""
    if kind == "folder":
        return lambda rel: str(path / rel) if rel else str(path)
    return lambda rel: f"{path}::{rel.rstrip('/')}" if rel else str(path)


def _scan_source(kind: str, path: Path, image_size: int) -> _Scan:
    """Scan a folder or an archive; a damaged archive is a ``ValueError`` naming it."""
    if kind == "folder":
        return _scan_folder(path, image_size)
    try:
        return (_scan_tar if kind == "tar" else _scan_zip)(path, image_size)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
        raise ValueError(
            f"{path} is not a readable {kind} archive ({type(err).__name__}: {err}); "
            "download or pack it again."
        ) from err


def _build_payload(kind: str, path: Path, image_size: int) -> dict[str, Any]:
    """Decode a source (the expensive part of the ETL) into a cache payload."""
    if kind == "torchvision":
        return _read_torchvision_folder(path, image_size)
    scan, where = _scan_source(kind, path, image_size), _where(kind, path)
    if scan.batches and not scan.images:  # an archive of torchvision's cifar-10-batches-py
        return _cifar_payload(_reader(scan.batches, where), where, image_size)
    return _image_folder_payload(scan, where)


def _skipped_message(skipped: Sequence[Sequence[str]], *, strict: bool) -> str:
    """Name the unreadable files (the first few, and how many more)."""
    lines = [f"  {path} ({why})" for path, why in skipped[:_MAX_LISTED]]
    if len(skipped) > _MAX_LISTED:
        lines.append(f"  ... and {len(skipped) - _MAX_LISTED} more")
    if strict:
        head = f"{len(skipped)} unreadable image file(s), and strict=True:"
        tail = "Fix or remove them, or pass strict=False to skip them with a warning."
    else:
        head = f"Skipped {len(skipped)} unreadable image file(s):"
        tail = "Pass strict=True to stop on them instead."
    return "\n".join([head, *lines, tail])


def _report_skipped(skipped: Sequence[Sequence[str]], *, strict: bool) -> None:
    """Raise (strict) or warn once about the unreadable files of a load."""
    if not skipped:
        return
    if strict:
        raise ValueError(_skipped_message(skipped, strict=True))
    warnings.warn(_skipped_message(skipped, strict=False), CorruptImageWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------
# ETL, step 6: the cache file
# ----------------------------------------------------------------------------------------------


def _listing(path: Path) -> Iterator[str]:
    """``relative path, size, mtime_ns`` of a file or of every visible file below a folder."""
    if path.is_file():
        stat = path.stat()
        yield f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}"
        return
    for folder, subdirs, files in os.walk(path, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if _is_visible(d))
        rel = Path(folder).relative_to(path).as_posix()
        yield f"{rel}/"  # folders count too: an empty class folder is an error
        for name in sorted(f for f in files if _is_visible(f)):
            stat = os.stat(os.path.join(folder, name))
            yield f"{rel}/{name}\t{stat.st_size}\t{stat.st_mtime_ns}"


def _fingerprint(kind: str, path: Path, image_size: int) -> str:
    """A cheap identity of a source's content: a hash of its listing with sizes and times."""
    digest = hashlib.sha256()
    header = {"format": _CACHE_FORMAT, "image_size": image_size, "kind": kind}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for line in _listing(path):
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()[:32]


def _cache_file(path: Path, image_size: int) -> Path:
    """Where the decoded copy of the source at ``path`` is kept."""
    stem = re.sub(r"(\.tar\.gz|\.tgz|\.tar|\.zip)$", "", path.name, flags=re.IGNORECASE)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-") or "data"
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    return data_dir() / "cache" / f"{slug}-{image_size}px-{key}.pt"


def _read_cache(file: Path, fingerprint: str) -> dict[str, Any] | None:
    """The cached payload, or ``None`` when it is missing, stale or unreadable."""
    if not file.is_file():
        return None
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception:  # a damaged or foreign cache file is simply rebuilt
        return None
    if not isinstance(payload, dict) or payload.get("format") != _CACHE_FORMAT:
        return None
    return payload if payload.get("fingerprint") == fingerprint else None


def _write_cache(file: Path, payload: dict[str, Any]) -> None:
    """Save atomically: a temporary file in the same folder, then ``os.replace``."""
    file.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
        os.chmod(temp, 0o644)  # mkstemp makes it private; a cache is as readable as its data
        os.replace(temp, file)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _load_payload(kind: str, path: Path, image_size: int) -> dict[str, Any]:
    """The decoded source from the cache, decoding (and caching) it first when needed."""
    fingerprint = _fingerprint(kind, path, image_size)
    file = _cache_file(path, image_size)
    payload = _read_cache(file, fingerprint)
    if payload is None:
        payload = _build_payload(kind, path, image_size)
        payload.update(format=_CACHE_FORMAT, fingerprint=fingerprint)
        _write_cache(file, payload)
    return payload


# ----------------------------------------------------------------------------------------------
# Synthetic stand-in data (smoke profile only)
# ----------------------------------------------------------------------------------------------


def _synthetic_images(
    labels: torch.Tensor, image_size: int, generator: torch.Generator
) -> torch.Tensor:
    """Class-coloured stripes at a class-specific angle, random phase, plus noise."""
    count, num_classes = len(labels), len(CIFAR10_CLASSES)
    axis = torch.linspace(-1.0, 1.0, image_size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")  # (H, W)
    angle = labels.double() * math.pi / num_classes  # (N,)
    frequency = 2.0 + (labels % 3).double()  # (N,) stripes across the image
    phase = torch.rand(count, generator=generator, dtype=torch.float64) * 2 * math.pi
    along = xx[None] * angle.cos()[:, None, None] + yy[None] * angle.sin()[:, None, None]
    wave = torch.sin(math.pi * frequency[:, None, None] * along + phase[:, None, None])
    hue = labels.double() / num_classes  # (N,) one hue per class, as RGB cosines
    offsets = torch.tensor([0.0, 1.0 / 3.0, 2.0 / 3.0], dtype=torch.float64)
    colour = 0.5 + 0.35 * torch.cos(2 * math.pi * (hue[:, None] - offsets))  # (N, 3)
    images = colour[:, :, None, None] * (0.65 + 0.35 * wave[:, None])  # (N, 3, H, W)
    noise = 0.08 * torch.randn(images.shape, generator=generator, dtype=torch.float64)
    return ((images + noise).clamp(0, 1) * 255).round().to(torch.uint8)


def make_synthetic_data(
    train_per_class: int = 120, test_per_class: int = 40, *, image_size: int = 32, seed: int = 0
) -> ImageData:
    """Generate a small CIFAR-shaped stand-in data set with learnable classes.

    Each of the ten classes has its own colour and stripe angle, so even a small model
    learns something; nothing about real images can be concluded from it. ``load_dataset``
    uses it only in the ``smoke`` profile when no CIFAR-10 copy is present, and says so.

    Args:
        train_per_class: training images per class.
        test_per_class: test images per class.
        image_size: side of the square images, in pixels.
        seed: seeds the random phases and noise.

    Returns:
        An :class:`ImageData` with ``synthetic=True`` and the CIFAR-10 class names.

    Raises:
        ValueError: for a count or size below 1.

    >>> make_synthetic_data(2, 1, image_size=8).train_images.shape
    torch.Size([20, 3, 8, 8])
    """
    for name, value in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        _check_positive_int(name, value)
    _check_positive_int("image_size", image_size)
    generator = torch.Generator().manual_seed(seed)
    splits = []
    for per_class in (train_per_class, test_per_class):
        labels = torch.arange(len(CIFAR10_CLASSES)).repeat_interleave(per_class)
        splits.append((_synthetic_images(labels, image_size, generator), labels))
    return ImageData(
        train_images=splits[0][0],
        train_labels=splits[0][1],
        test_images=splits[1][0],
        test_labels=splits[1][1],
        class_names=CIFAR10_CLASSES,
        source="SYNTHETIC stand-in for CIFAR-10 (coloured stripes), not real images",
        fingerprint=f"synthetic-v{_CACHE_FORMAT}-{image_size}px-seed{seed}",
        synthetic=True,
    )


# ----------------------------------------------------------------------------------------------
# Loading a data set (the entry point of the stage)
# ----------------------------------------------------------------------------------------------


def _download_cifar10(root: Path) -> _Source:
    """Let torchvision download CIFAR-10 into ``root``.

    Raises:
        FileNotFoundError: when the download fails (saying both ways to get the data).
    """
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(root=str(root), train=True, download=True)
    except (OSError, RuntimeError) as err:  # no network, a proxy, a checksum mismatch
        raise FileNotFoundError(_missing_cifar_message(f"the download failed: {err}")) from err
    return _Source("torchvision", root / _TORCHVISION_FOLDER, origin="torchvision download")


def _to_image_data(
    payload: dict[str, Any], source: _Source, test_fraction: float, seed: int
) -> ImageData:
    """Wrap a payload, making a stratified test split when the source has none."""
    splits, test_split = payload["splits"], "given"
    if "all" in splits:
        images, labels = splits["all"]["images"], splits["all"]["labels"]
        train_index, test_index = stratified_split(labels, test_fraction, seed=seed)
        splits = {
            "train": {"images": images[train_index], "labels": labels[train_index]},
            "test": {"images": images[test_index], "labels": labels[test_index]},
        }
        test_split = f"made: {test_fraction:g} of each class, seed {seed}"
    return ImageData(
        train_images=splits["train"]["images"],
        train_labels=splits["train"]["labels"],
        test_images=splits["test"]["images"],
        test_labels=splits["test"]["labels"],
        class_names=tuple(payload["class_names"]),
        source=f"{_KIND_LABELS[source.kind]} {source.path} ({source.origin})",
        fingerprint=payload["fingerprint"],
        skipped=tuple(path for path, _ in payload["skipped"]),
        test_split=test_split,
    )


def load_dataset(
    source: str | os.PathLike[str] = "cifar10",
    *,
    image_size: int = 32,
    profile: str | Profile | None = None,
    strict: bool = False,
    download: bool = True,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ImageData:
    """Load an image-classification data set, decoding it once into a cache.

    ``"cifar10"`` is found as :func:`describe_source` says. A path is an ImageFolder tree,
    as a directory or a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive (read in place, one
    wrapping top-level folder allowed): ``train/<class>/...`` and ``test/<class>/...``
    (``val/`` also counts as the test split), or ``<class>/...`` alone, from which a seeded,
    stratified test split is made. Nested folders belong to their class; hidden files and
    files without an image extension are ignored. Every image, of any mode (grey, palette,
    RGBA, CMYK, 16-bit), becomes RGB (transparency over white, EXIF rotation applied) and is
    resized so that its shorter side is ``image_size``, then centre-cropped to a square
    (bilinear): no distortion, as torchvision's ``Resize`` + ``CenterCrop``.

    The decoded uint8 tensors are saved under ``data_dir()/cache/`` and reused while the
    source's fingerprint (sizes and modification times of its files) is unchanged.

    Args:
        source: ``"cifar10"`` or the path of an ImageFolder directory or archive.
        image_size: side of the square images, in pixels.
        profile: the run profile; only ``smoke`` changes anything here: without a CIFAR-10
            copy it uses synthetic data (with a :class:`SyntheticDataWarning`) and never
            downloads.
        strict: raise a ``ValueError`` naming the unreadable images instead of skipping
            them with one :class:`CorruptImageWarning` that lists them.
        download: let torchvision download CIFAR-10 when no copy is found.
        test_fraction: share of each class held out as the test split, for sources that
            have none.
        seed: seeds that test split.

    Returns:
        An :class:`ImageData`.

    Raises:
        FileNotFoundError: for a missing source, CIFAR-10 that cannot be had (the message
            says both ways to provide it), no images, a missing split or a class folder
            without readable images, each naming the path.
        ValueError: for bad arguments, classes that differ between splits, or unreadable
            images when ``strict`` is set (naming them).
    """
    _check_positive_int("image_size", image_size)
    _check_fraction("test_fraction", test_fraction, allow_zero=False)
    resolved = _resolve_source(source, download=download, smoke=_is_smoke(profile))
    if resolved.kind == "download":
        resolved = _download_cifar10(data_dir())
    if resolved.path is None:  # the synthetic stand-in, and only that, has no path
        warnings.warn(_synthetic_message(), SyntheticDataWarning, stacklevel=2)
        return make_synthetic_data(image_size=image_size, seed=seed)
    payload = _load_payload(resolved.kind, resolved.path, image_size)
    _report_skipped(payload["skipped"], strict=strict)
    return _to_image_data(payload, resolved, test_fraction, seed)


def _synthetic_message() -> str:
    return (
        "No CIFAR-10 copy was found and the smoke profile never downloads, so SYNTHETIC "
        "CIFAR-shaped data (coloured stripes, 10 classes) is used instead: the numbers that "
        "follow only show that the code runs. For real data, set "
        f"{CIFAR10_ENV} to a local copy or use another profile to let torchvision download it."
    )
