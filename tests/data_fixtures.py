"""Builders of small on-disk data sets for tests/test_data.py.

* a torchvision CIFAR-10 folder in its real on-disk format (Python 2 pickles of numpy arrays);
* a messy ImageFolder tree: nested classes, upper-case extensions, mixed modes and sizes, a
  truncated JPEG, a text file named ``.jpg``, hidden files, a README and an empty class;
* archives (tar.gz, zip) of a folder, with an optional wrapping top-level folder.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# ----------------------------------------------------------------------------------------------
# torchvision's CIFAR-10 folder, byte for byte in its format
# ----------------------------------------------------------------------------------------------


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us override one type
    """Writes ``str`` and ``bytes`` as Python 2 byte strings (BINSTRING), as the original
    CIFAR-10 pickles were written: read with ``encoding="bytes"`` their keys are ``b'data'``,
    with ``encoding="latin1"`` (what torchvision uses) they are ``'data'``."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_py2_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_string
    dispatch[bytes] = _save_py2_string


def py2_pickle(obj: object) -> bytes:
    """Pickle ``obj`` as Python 2's cPickle (protocol 2) would have."""
    stream = io.BytesIO()
    _Py2Pickler(stream, protocol=2).dump(obj)
    return stream.getvalue()


def write_cifar_folder(root: Path, per_batch: int = 6, test_size: int = 10, seed: int = 0) -> dict:
    """Write ``root/cifar-10-batches-py`` with random images; return what was written.

    Returns:
        ``{"train": (images (N, 3, 32, 32) uint8, labels), "test": (...)}`` as numpy arrays.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    meta = {"num_cases_per_batch": per_batch, "label_names": list(CLASSES), "num_vis": 3072}
    (folder / "batches.meta").write_bytes(py2_pickle(meta))
    written: dict[str, list] = {"train": [], "test": []}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        count = test_size if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=count).tolist()
        batch = {
            "batch_label": f"{name} (fake)",
            "labels": labels,
            "data": data,
            "filenames": [f"img_{i}.png" for i in range(count)],
        }
        (folder / name).write_bytes(py2_pickle(batch))
        written["test" if name == "test_batch" else "train"].append((data, labels))
    return {
        split: (
            np.concatenate([d for d, _ in parts]).reshape(-1, 3, 32, 32),
            np.array([label for _, labels in parts for label in labels]),
        )
        for split, parts in written.items()
    }


# ----------------------------------------------------------------------------------------------
# A messy ImageFolder tree
# ----------------------------------------------------------------------------------------------


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Image.Image:
    """A one-colour RGB image; ``size`` is (width, height)."""
    return Image.new("RGB", size, colour)


def write_clean_class(folder: Path, colour: tuple[int, int, int], count: int = 4) -> None:
    """``count`` solid-colour 32x32 PNGs, slightly different so none are duplicates."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shade = tuple(min(255, c + i) for c in colour)
        solid(shade).save(folder / f"{i:03d}.png")  # type: ignore[arg-type]


def truncated_jpeg() -> bytes:
    """The first half of a valid JPEG: PIL opens it but cannot decode it."""
    stream = io.BytesIO()
    noise = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(stream, format="JPEG", quality=90)
    data = stream.getvalue()
    return data[: len(data) // 2]


def write_messy_folder(
    root: Path, *, corrupt: bool = True, empty_class: bool = True, split: bool = False
) -> Path:
    """A folder with every awkward case the loader must handle.

    ``cat`` holds one image of each mode (RGB .JPG, L .PNG, P with transparency, RGBA, CMYK
    .tif, 16-bit I;16, a 48x32 image), some nested two levels deep; ``dog`` holds clean
    images and, with ``corrupt``, ``truncated.jpg`` and ``not_an_image.jpg`` (a text file);
    ``empty`` is an empty class folder when ``empty_class``. With ``split``, the classes sit
    under ``train/`` and ``test/``.
    """
    top = root / "train" if split else root
    cat, dog = top / "cat", top / "dog"
    (cat / "nested" / "deeper").mkdir(parents=True)
    solid((200, 10, 10)).save(cat / "rgb.JPG", quality=95)
    Image.new("L", (32, 32), 100).save(cat / "gray.PNG")
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 black, index 1 blue
    palette.putpixel((0, 0), 0)
    palette.save(cat / "nested" / "palette.png", transparency=0)  # index 0 transparent
    rgba = Image.new("RGBA", (32, 32), (0, 255, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # one fully transparent pixel
    rgba.save(cat / "nested" / "deeper" / "rgba.png")
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(cat / "cmyk.tif")  # pure red
    Image.fromarray(np.full((32, 32), 32896, dtype=np.uint16)).save(cat / "sixteen.png")
    wide = solid((0, 0, 255), (48, 32))  # blue centre, red 8-pixel bands left and right
    wide.paste((255, 0, 0), (0, 0, 8, 32))
    wide.paste((255, 0, 0), (40, 0, 48, 32))
    wide.save(cat / "wide.png")
    write_clean_class(dog, (10, 120, 10), count=6)
    if corrupt:
        (dog / "truncated.jpg").write_bytes(truncated_jpeg())
        (dog / "not_an_image.jpg").write_text("this is text, not a JPEG\n")
    if empty_class:
        (top / "empty").mkdir()
    (root / "README.txt").write_text("a data set\n")
    (top / ".DS_Store").write_bytes(b"\x00\x01junk")
    (top / ".hidden").mkdir()
    (top / ".hidden" / "broken.jpg").write_text("hidden, never read")
    (dog / "notes.txt").write_text("not an image")
    if split:
        write_clean_class(root / "test" / "cat", (200, 10, 10), count=2)
        write_clean_class(root / "test" / "dog", (10, 120, 10), count=2)
        if empty_class:
            (root / "test" / "empty").mkdir()
    return root


# ----------------------------------------------------------------------------------------------
# Archives
# ----------------------------------------------------------------------------------------------


def make_archive(folder: Path, dest: Path, *, wrapper: str | None = None) -> Path:
    """Pack ``folder``'s contents into ``dest`` (.tar.gz/.tgz or .zip), folders included."""
    prefix = f"{wrapper}/" if wrapper else ""
    paths = sorted(folder.rglob("*"))
    if dest.name.endswith(".zip"):
        with zipfile.ZipFile(dest, "w") as archive:
            for path in paths:
                name = prefix + path.relative_to(folder).as_posix()
                archive.write(path, name + "/" if path.is_dir() else name)
    else:
        with tarfile.open(dest, "w:gz") as archive:
            if wrapper:
                archive.add(folder, arcname=wrapper, recursive=False)
            for path in paths:
                archive.add(
                    path, arcname=prefix + path.relative_to(folder).as_posix(), recursive=False
                )
    return dest
