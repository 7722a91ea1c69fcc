"""ETL, steps 1 and 2: decoding one image, and reading a folder or an archive of images."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ._constants import (
    _ALPHA_MODES,
    _CIFAR_META,
    _CIFAR_TEST_BATCH,
    _CIFAR_TRAIN_BATCHES,
    _IGNORED_NAMES,
    IMAGE_EXTENSIONS,
)

# ----------------------------------------------------------------------------------------------
# ETL, step 1: decoding one image
# ----------------------------------------------------------------------------------------------


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """Scale a 16/32-bit integer or float grey image to 8-bit ``L`` (65535 maps to 255)."""
    values = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and values.max(initial=0) > 255):
        values = values / 257.0  # a 16-bit range
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to RGB; transparent pixels are composited over white."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit_gray(img)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _ALPHA_MODES:
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def _fit(img: Image.Image, image_size: int) -> Image.Image:
    """Resize the shorter side to ``image_size`` and crop the centre square (bilinear)."""
    if img.size == (image_size, image_size):
        return img
    return ImageOps.fit(img, (image_size, image_size), method=Image.Resampling.BILINEAR)


def _decode_image(data: bytes, image_size: int) -> np.ndarray:
    """Decode encoded image bytes into an ``(image_size, image_size, 3)`` uint8 array."""
    with Image.open(io.BytesIO(data)) as img:
        if img.format == "JPEG" and min(img.size) > image_size:
            img.draft(None, (image_size, image_size))  # let libjpeg decode at a smaller scale
        img.load()
        if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation: turn photos upright
            img = ImageOps.exif_transpose(img)
        return np.asarray(_fit(_to_rgb(img), image_size))


# ----------------------------------------------------------------------------------------------
# ETL, step 2: reading a folder or an archive of images
# ----------------------------------------------------------------------------------------------


@dataclass
class _Scan:
    """What a pass over a folder or archive found, keyed by relative POSIX path."""

    images: dict[str, np.ndarray] = field(default_factory=dict)  # decoded (H, W, 3) uint8
    corrupt: dict[str, str] = field(default_factory=dict)  # path -> why it is unreadable
    dirs: set[str] = field(default_factory=set)  # every visible folder
    batches: dict[str, bytes] = field(default_factory=dict)  # CIFAR-10 pickles, by file name


def _is_visible(relpath: str) -> bool:
    """False for hidden files or folders (a part starting with '.') and OS clutter."""
    return not any(p.startswith(".") or p in _IGNORED_NAMES for p in relpath.split("/") if p)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _add_file(scan: _Scan, relpath: str, read: Callable[[], bytes], image_size: int) -> None:
    """Decode one file into ``scan`` (or note it as corrupt); ignore non-image files."""
    if not _is_visible(relpath):
        return
    name = relpath.rsplit("/", 1)[-1]
    if name in (*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH, _CIFAR_META):
        scan.batches[name] = read()
        return
    if not _is_image_name(name):
        return
    try:
        scan.images[relpath] = _decode_image(read(), image_size)
    except UnidentifiedImageError:
        scan.corrupt[relpath] = "not an image format PIL can read"
    except Exception as err:  # PIL raises many types for broken files; each one is reported
        scan.corrupt[relpath] = f"{type(err).__name__}: {err}"


def _member_path(name: str) -> str:
    """An archive member's name as a clean relative POSIX path (no ``./``, no slashes)."""
    return "/".join(part for part in name.replace("\\", "/").split("/") if part not in ("", "."))


def _scan_folder(root: Path, image_size: int) -> _Scan:
    """Decode every visible image file below ``root``."""
    scan = _Scan()
    for folder, subdirs, files in os.walk(root, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if _is_visible(d))
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else rel_folder + "/"
        scan.dirs.update(prefix + d for d in subdirs)
        for name in sorted(files):
            file = Path(folder, name)
            _add_file(scan, prefix + name, file.read_bytes, image_size)
    return scan


def _scan_tar(path: Path, image_size: int) -> _Scan:
    """Decode the images of a tar archive in one streaming pass (nothing is extracted)."""
    scan = _Scan()
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            relpath = _member_path(member.name)
            if not relpath or not _is_visible(relpath):
                continue
            if member.isdir():
                scan.dirs.add(relpath)
            elif member.isfile():
                handle = archive.extractfile(member)
                if handle is not None:
                    _add_file(scan, relpath, handle.read, image_size)
    return scan


def _scan_zip(path: Path, image_size: int) -> _Scan:
    """Decode the images of a zip archive, reading members in place."""
    scan = _Scan()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            relpath = _member_path(info.filename)
            if not relpath or not _is_visible(relpath):
                continue
            if info.is_dir():
                scan.dirs.add(relpath)
            else:
                _add_file(scan, relpath, lambda info=info: archive.read(info), image_size)
    return scan
