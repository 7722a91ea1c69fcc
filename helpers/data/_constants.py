"""Constants, warning classes and :class:`ImageData`, shared by every step of the data stage."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# ----------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

# Per-channel (R, G, B) mean and population std of the original 50,000 CIFAR-10 training
# images (the pickled torchvision copy), on pixel values scaled to [0, 1]. They are the
# figures quoted across the literature; our own code computes its statistics from the
# training split it actually uses (see `channel_stats` and `make_loaders`), which for the JPEG
# copy of CIFAR-10 differ in the third decimal.
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

CIFAR10_ENV = "CIFAR10_PATH"  # names a local copy of CIFAR-10 (see `describe_source`)

# File name extensions read as images, compared case-insensitively. Other files are ignored.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
)

_CACHE_FORMAT = 1  # bump when the cache file layout or the decoding changes
_TORCHVISION_FOLDER = "cifar-10-batches-py"  # what torchvision's download unpacks
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_META = "batches.meta"
_TEST_SPLIT_NAMES = ("test", "val", "valid", "validation")  # folder names of a held-out split
_IGNORED_NAMES = frozenset({"__MACOSX", "__pycache__", "Thumbs.db", "desktop.ini"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_MAX_LISTED = 20  # skipped files named in one warning


class CorruptImageWarning(UserWarning):
    """Some image files could not be decoded and were skipped (the message lists them)."""


class SyntheticDataWarning(UserWarning):
    """Synthetic stand-in data is used because the real data set is absent (smoke profile)."""


# ----------------------------------------------------------------------------------------------
# The loaded data set
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImageData:
    """A decoded image-classification data set: uint8 images and int64 labels per split.

    Attributes:
        train_images: ``(N, 3, H, W)`` uint8 training images.
        train_labels: ``(N,)`` int64 class indices into ``class_names``.
        test_images: ``(M, 3, H, W)`` uint8 test images.
        test_labels: ``(M,)`` int64 class indices.
        class_names: the class names, in label order (sorted folder names for ImageFolder).
        source: a human-readable description of where the images came from.
        fingerprint: identifies the source's content at decode time (the cache key).
        skipped: unreadable files left out, by path (``archive::member`` inside archives).
        synthetic: ``True`` for generated stand-in data (smoke profile without real data).
        test_split: ``"given"`` when the source has a test split, else how it was made.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    source: str
    fingerprint: str
    skipped: tuple[str, ...] = ()
    synthetic: bool = False
    test_split: str = "given"

    @property
    def num_classes(self) -> int:
        """How many classes there are."""
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        """The side length of the (square) images, in pixels."""
        return int(self.train_images.shape[-1])

    def __repr__(self) -> str:
        flag = ", SYNTHETIC" if self.synthetic else ""
        return (
            f"ImageData({self.source!r}, train={len(self.train_labels)}, "
            f"test={len(self.test_labels)}, classes={self.num_classes}, "
            f"image_size={self.image_size}, skipped={len(self.skipped)}{flag})"
        )
