"""A small trained checkpoint and hostile image files, shared by test_export and test_serve."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import torch
from PIL import Image

from helpers import config, runtime
from helpers import data as hd
from helpers import models as hm
from helpers import train as ht

IMAGE_SIZE = 32


def train_tiny_checkpoint(folder: Path, *, model: str = "simple_cnn") -> Path:
    """Fit ``model`` for one epoch of two steps on synthetic data; return ``best.pt``.

    The run goes through :func:`helpers.train.fit` (as ``python -m helpers train`` does), so
    the checkpoint has the real layout, normalisation statistics included.
    """
    data_cfg = config.DataConfig(image_size=IMAGE_SIZE, batch_size=16, val_fraction=0.2)
    train_cfg = config.TrainConfig(
        epochs=1,
        max_steps_per_epoch=2,
        precision="fp32",
        progress=False,
        checkpoint_dir=str(folder),
    )
    cfg = config.RunConfig(
        profile="smoke",
        data=data_cfg,
        model=config.ModelConfig(name=model),
        train=train_cfg,
    )
    images = hd.make_synthetic_data(4, 2, image_size=IMAGE_SIZE)  # 40 train, 20 test images
    loaders = hd.make_loaders(images, cfg.data, device="cpu", seed=0)
    runtime.seed_everything(0)
    network = hm.create_model_from_config(cfg.model)
    result = ht.fit(
        network, loaders, cfg, device="cpu", class_names=images.class_names, verbose=False
    )
    return result.best_checkpoint or result.last_checkpoint


def synthetic_pictures(count: int = 4, size: int = IMAGE_SIZE) -> list[Image.Image]:
    """``count`` PIL images from the synthetic test split (one class each)."""
    images = hd.make_synthetic_data(1, 1, image_size=size, seed=1).test_images[:count]
    return [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]


def encode(img: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    """``img`` encoded in ``fmt``, as bytes."""
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random RGB pixels: an image that does not compress."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.numpy())


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` 8-bit grey pixels and holds only a few bytes.

    A decoder that trusted it would allocate ``width * height`` bytes: the shape of a
    decompression bomb, without the cost of making a real one.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )
