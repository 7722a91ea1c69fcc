"""ETL, steps 3 and 4: the two on-disk formats, ImageFolder and torchvision's CIFAR-10."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from ._constants import (
    _CIFAR_META,
    _CIFAR_TEST_BATCH,
    _CIFAR_TRAIN_BATCHES,
    _TEST_SPLIT_NAMES,
    IMAGE_EXTENSIONS,
)
from ._decode import _fit, _Scan

# ----------------------------------------------------------------------------------------------
# ETL, step 3: the ImageFolder layout (splits, classes) and its errors
# ----------------------------------------------------------------------------------------------


def _children(base: str, dirs: set[str]) -> list[str]:
    """Names of the folders directly inside ``base`` (``""`` is the root), sorted."""
    depth = base.count("/")
    return sorted(d[len(base) :] for d in dirs if d.startswith(base) and d.count("/") == depth)


@dataclass(frozen=True)
class _Split:
    """One split of an ImageFolder tree: its folder and its image files by class."""

    base: str  # the split's folder, relative, with a trailing "/" ("" for the root)
    classes: dict[str, list[str]]  # class name -> sorted relative paths of its image files


def _classes_under(
    base: str, files: Iterable[str], dirs: set[str], where: Callable[[str], str]
) -> _Split:
    """Group image files by class folder (nested subfolders belong to their class).

    Raises:
        FileNotFoundError: when ``base`` holds no class folders.
    """
    classes: dict[str, list[str]] = {name: [] for name in _children(base, dirs)}
    for relpath in files:
        if relpath.startswith(base) and "/" in relpath[len(base) :]:
            classes[relpath[len(base) :].split("/", 1)[0]].append(relpath)
    if not classes:
        raise FileNotFoundError(
            f"No class folders in {where(base)}: expected <class>/<image> files inside it."
        )
    return _Split(base, {name: sorted(paths) for name, paths in classes.items()})


def _plan_layout(
    files: list[str], dirs: set[str], where: Callable[[str], str]
) -> dict[str, _Split]:
    """Find the splits (``train`` and ``test``, or ``all`` when there are none) and classes.

    One wrapping top-level folder (as in ``cifar10-jpeg/train/...``) is looked through.

    Raises:
        FileNotFoundError: for no images at all, or a train split without a test split (or
            the reverse).
    """
    if not files:
        raise FileNotFoundError(
            f"No images found in {where('')}; expected <class>/<image> or "
            f"train/<class>/<image> and test/<class>/<image>, with extensions "
            f"{', '.join(IMAGE_EXTENSIONS)}."
        )
    dirs = dirs | {f.rsplit("/", i)[0] for f in files for i in range(1, f.count("/") + 1)}
    base, top = "", _children("", dirs)
    wrapped = len(top) == 1 and all("/" in f for f in files)
    if wrapped and top[0].lower() not in ("train", *_TEST_SPLIT_NAMES):
        base = top[0] + "/"
        top = _children(base, dirs)
    by_lower = {name.lower(): name for name in top}
    train = by_lower.get("train")
    test = next((by_lower[n] for n in _TEST_SPLIT_NAMES if n in by_lower), None)
    if train is None and test is None:
        return {"all": _classes_under(base, files, dirs, where)}
    if train is None or test is None:
        have, need = (train, "test/ (or val/)") if test is None else (test, "train/")
        raise FileNotFoundError(
            f"{where(base)} has a {have}/ split folder but no {need} folder next to it; add "
            "it, or put the class folders directly in the root to have a test split made."
        )
    return {
        "train": _classes_under(f"{base}{train}/", files, dirs, where),
        "test": _classes_under(f"{base}{test}/", files, dirs, where),
    }


def _check_classes(
    layout: dict[str, _Split], scan: _Scan, where: Callable[[str], str]
) -> tuple[str, ...]:
    """Class names (sorted); every class of every split must have a readable image.

    Raises:
        FileNotFoundError: for a class folder without a readable image.
        ValueError: when the splits do not have the same classes.
    """
    first, *others = layout
    names = tuple(layout[first].classes)
    for split in others:
        if tuple(layout[split].classes) != names:
            odd = sorted(set(layout[split].classes) ^ set(names))
            raise ValueError(
                f"The {first} and {split} splits of {where('')} have different class "
                f"folders ({', '.join(odd)} in only one); both need the same classes."
            )
    for split in layout.values():
        for name, paths in split.classes.items():
            if not any(p in scan.images for p in paths):
                bad = [p for p in paths if p in scan.corrupt]
                extra = f" ({len(bad)} unreadable, e.g. {where(bad[0])})" if bad else ""
                raise FileNotFoundError(
                    f"Class folder {where(split.base + name)} has no readable images{extra}."
                )
    return names


# ----------------------------------------------------------------------------------------------
# ETL, step 4: the torchvision CIFAR-10 format (pickled numpy arrays)
# ----------------------------------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only: a pickle cannot run other code."""

    _ALLOWED: ClassVar[dict[tuple[str, str], tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
        ("_codecs", "encode"): ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        target = self._ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR pickle")
        if target[0] == "numpy._core.multiarray" and not hasattr(np, "_core"):
            target = ("numpy.core.multiarray", target[1])  # numpy < 2
        return super().find_class(*target)


def _read_pickle(data: bytes, where: str) -> dict[str, Any]:
    """Load one CIFAR pickle (Python 2 format) as a dict with ``str`` keys.

    Raises:
        ValueError: when the bytes are not such a pickle.
    """
    try:
        entry = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as err:  # truncated or foreign pickles fail in many ways
        raise ValueError(f"{where} is not a readable CIFAR-10 batch: {err}") from err
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a readable CIFAR-10 batch (not a dict).")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _read_batches(
    names: Sequence[str], read: Callable[[str], bytes], where: Callable[[str], str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate CIFAR batches into ``(N, 3, 32, 32)`` uint8 images and int64 labels."""
    images, labels = [], []
    for name in names:
        entry = _read_pickle(read(name), where(name))
        data = np.asarray(entry.get("data"))
        targets = entry.get("labels", entry.get("fine_labels"))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{where(name)}: 'data' is not a uint8 (N, 3072) array.")
        if targets is None or len(targets) != len(data):
            raise ValueError(f"{where(name)}: 'labels' missing or not one per image.")
        images.append(torch.from_numpy(data.copy()).view(-1, 3, 32, 32))  # (N, C, H, W)
        labels.append(torch.as_tensor(list(targets), dtype=torch.int64))
    return torch.cat(images), torch.cat(labels)


def _resize_batch(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize ``(N, 3, H, W)`` uint8 images with the same rule as decoded files."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    hwc = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    out = [np.asarray(_fit(Image.fromarray(img), image_size)) for img in hwc]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def _cifar_payload(
    read: Callable[[str], bytes], where: Callable[[str], str], image_size: int
) -> dict[str, Any]:
    """Read the torchvision CIFAR-10 files into a cache payload."""
    meta = _read_pickle(read(_CIFAR_META), where(_CIFAR_META))
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    if not names:
        raise ValueError(f"{where(_CIFAR_META)} has no 'label_names'.")
    splits = {}
    for split, files in (("train", _CIFAR_TRAIN_BATCHES), ("test", (_CIFAR_TEST_BATCH,))):
        images, labels = _read_batches(files, read, where)
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"{where(files[0])}: labels outside 0..{len(names) - 1}.")
        splits[split] = {"images": _resize_batch(images, image_size), "labels": labels}
    return {"class_names": names, "splits": splits, "skipped": []}


def _read_torchvision_folder(folder: Path, image_size: int) -> dict[str, Any]:
    """Read a ``cifar-10-batches-py`` folder.

    Raises:
        FileNotFoundError: naming a missing batch file.
    """

    def read(name: str) -> bytes:
        file = folder / name
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing; a torchvision CIFAR-10 copy needs it.")
        return file.read_bytes()

    return _cifar_payload(read, lambda name: str(folder / name), image_size)
