"""Tests for helpers.transforms: the v2 pipelines against hand computations, and the batched
augmentation against torch.nn.functional.pad plus slicing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors

from helpers import transforms as T

MEAN = (0.49, 0.48, 0.45)
STD = (0.25, 0.24, 0.26)
TORCH_DEVICE = os.environ.get("TORCH_DEVICE", "cpu")  # as in conftest.py


def _random_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def _coded_image(size: int = 32) -> torch.Tensor:
    """An image whose pixels name their own row and column, so a crop reveals its offset."""
    rows = torch.arange(size).view(size, 1).expand(size, size) * 7
    cols = torch.arange(size).view(1, size).expand(size, size) * 7
    return torch.stack([rows, cols, (rows + cols) % 256]).to(torch.uint8)  # (3, H, W)


def _crop_matches(image: torch.Tensor, output: torch.Tensor, padding: int) -> torch.Tensor:
    """(2p+1, 2p+1) bool: which offsets of the reflect-padded ``image`` give ``output``."""
    height, width = image.shape[-2:]
    padded = F.pad(image[None].float(), [padding] * 4, mode="reflect")[0]  # (C, H+2p, W+2p)
    crops = padded.unfold(1, height, 1).unfold(2, width, 1)  # (C, 2p+1, 2p+1, H, W)
    equal = crops == output.float()[:, None, None]  # (C, 2p+1, 2p+1, H, W)
    return equal.permute(1, 2, 0, 3, 4).flatten(2).all(-1)  # (2p+1, 2p+1)


def _find_offset(image, output, padding) -> tuple[int, int, bool]:
    """The (top, left, flipped) of the crop that ``output`` is; fails if it is none."""
    for flipped in (False, True):
        candidate = output.flip(-1) if flipped else output
        hits = _crop_matches(image, candidate, padding).nonzero()
        if len(hits):
            return int(hits[0, 0]), int(hits[0, 1]), flipped
    raise AssertionError("output is not a (flipped) crop of the reflect-padded image")


# --- per-image pipelines ---------------------------------------------------------------------


def test_eval_pipeline_equals_hand_computation():
    image = _random_images(1)[0]
    eval_tf = T.build_transforms(False, mean=MEAN, std=STD)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    expected = (image.float() / 255 - mean) / std
    torch.testing.assert_close(eval_tf(image), expected)
    torch.testing.assert_close(eval_tf(image), eval_tf(image))  # deterministic


def test_train_preset_none_is_the_eval_pipeline():
    images = _random_images(4)
    train_tf, eval_tf = T.build_transform_pair(preset="none", mean=MEAN, std=STD)
    for image in images:
        torch.testing.assert_close(train_tf(image), eval_tf(image))


@pytest.mark.parametrize("preset", T.PRESETS)
@pytest.mark.parametrize("train", [True, False])
def test_pipeline_output_shape_dtype_range(preset, train):
    torch.manual_seed(0)
    tf = T.build_transforms(train, preset=preset, mean=MEAN, std=STD)
    low = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    high = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    for image in _random_images(6):
        output = tf(image)
        assert type(output) is torch.Tensor  # plain tensor, not a tv_tensors.Image
        assert output.shape == (3, 32, 32) and output.dtype == torch.float32
        assert (output >= low.view(3, 1, 1) - 1e-5).all()
        assert (output <= high.view(3, 1, 1) + 1e-5).all()


def test_pipeline_accepts_pil_and_resizes():
    array = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for train in (True, False):
        tf = T.build_transforms(train, preset="strong", image_size=24, mean=MEAN, std=STD)
        assert tf(Image.fromarray(array)).shape == (3, 24, 24)
        assert tf(torch.from_numpy(array).permute(2, 0, 1)).shape == (3, 24, 24)
    assert not isinstance(tf(Image.fromarray(array)), tv_tensors.Image)


@pytest.mark.parametrize("preset", ["standard", "strong"])
def test_train_pipeline_is_reproducible_with_a_seed(preset):
    image = _random_images(1)[0]
    tf = T.build_transforms(True, preset=preset, mean=MEAN, std=STD)
    torch.manual_seed(123)
    first = [tf(image) for _ in range(4)]
    torch.manual_seed(123)
    second = [tf(image) for _ in range(4)]
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b)
    assert not all(torch.equal(first[0], other) for other in first[1:])  # it is random


def test_strength_zero_leaves_only_the_flip():
    image = _random_images(1)[0]
    eval_tf = T.build_transforms(False, mean=MEAN, std=STD)
    tf = T.build_transforms(True, preset="strong", strength=0.0, mean=MEAN, std=STD)
    torch.manual_seed(0)
    for _ in range(10):
        output = tf(image)
        assert torch.equal(output, eval_tf(image)) or torch.equal(output, eval_tf(image.flip(-1)))


def test_strength_scales_the_crop_padding():
    image = _coded_image()
    tf = T.build_transforms(True, preset="standard", strength=0.5, mean=(0.0,) * 3, std=(1.0,) * 3)
    torch.manual_seed(0)
    # 32 // 8 * 0.5 = 2 pixels of padding: every crop lies on the canvas padded by 2.
    tops, lefts = set(), set()
    for _ in range(60):
        output = (tf(image) * 255).round().to(torch.uint8)
        top, left, _ = _find_offset(image, output, padding=2)
        tops.add(top)
        lefts.add(left)
    assert tops == lefts == set(range(5))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"preset": "heavy"}, "none, standard, strong"),
        ({"strength": 1.5}, r"\[0, 1\]"),
        ({"strength": -0.1}, r"\[0, 1\]"),
        ({"strength": "high"}, "strength"),
        ({"image_size": 0}, "image_size"),
        ({"mean": (0.5, 0.5)}, "one value per channel"),
        ({"std": (0.2, 0.0, 0.2)}, "positive"),
    ],
)
def test_bad_options_raise_value_error(options, message):
    kwargs = {"mean": MEAN, "std": STD, **options}
    with pytest.raises(ValueError, match=message):
        T.build_transforms(True, **kwargs)


# --- batched augmentation --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_batch_random_crop_is_a_crop_of_the_reflect_padded_image(dtype):
    images = _random_images(64, size=16).to(dtype).to(TORCH_DEVICE)
    generator = torch.Generator(TORCH_DEVICE).manual_seed(0)
    outputs = T.batch_random_crop(images, 3, generator)
    assert outputs.shape == images.shape and outputs.dtype == dtype
    padded = F.pad(images.float(), [3] * 4, mode="reflect")  # (B, C, 22, 22)
    tops, lefts = [], []
    for image, output, canvas in zip(images.cpu(), outputs.cpu(), padded.cpu(), strict=True):
        hits = _crop_matches(image, output, 3).nonzero()
        assert len(hits) == 1, "each output must be exactly one crop of the padded image"
        top, left = hits[0].tolist()
        assert torch.equal(canvas[:, top : top + 16, left : left + 16], output.float())
        tops.append(top)
        lefts.append(left)
    assert set(tops) == set(range(7)) and set(lefts) == set(range(7))


def test_batch_random_crop_padding_zero_is_identity():
    images = _random_images(8)
    assert torch.equal(T.batch_random_crop(images, 0), images)


def test_batch_random_crop_rejects_bad_input():
    with pytest.raises(ValueError, match="too large"):
        T.batch_random_crop(_random_images(2, size=4), 4)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        T.batch_random_crop(_random_images(1)[0], 2)
    with pytest.raises(ValueError, match="non-negative"):
        T.batch_random_crop(_random_images(1), -1)


def test_batch_flip_flips_about_half():
    images = _random_images(1000, size=8).to(TORCH_DEVICE)
    outputs = T.batch_flip(images, torch.Generator(TORCH_DEVICE).manual_seed(0))
    same = (outputs == images).flatten(1).all(1)  # (B,)
    flipped = (outputs == images.flip(-1)).flatten(1).all(1)  # (B,)
    assert (same | flipped).all()
    assert 0.45 < flipped.float().mean().item() < 0.55


@pytest.mark.parametrize("size", [5, 8])
def test_batch_cutout_zeroes_one_clipped_square(size):
    images = torch.full((400, 3, 16, 16), 200, dtype=torch.uint8, device=TORCH_DEVICE)
    outputs = T.batch_cutout(images, size, torch.Generator(TORCH_DEVICE).manual_seed(0)).cpu()
    zero = outputs == 0  # (B, C, H, W)
    assert (zero == zero[:, :1]).all(), "all channels are cut together"
    assert ((outputs == 0) | (outputs == 200)).all()
    full_squares = 0
    for mask in zero[:, 0]:
        rows = mask.any(1).nonzero().flatten()
        cols = mask.any(0).nonzero().flatten()
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert mask[top:bottom, left:right].all() and mask.sum() == (bottom - top) * (right - left)
        for start, stop in ((top, bottom), (left, right)):
            # A side is shorter than `size` only where the square crosses a border.
            assert stop - start == size or (stop - start < size and (start == 0 or stop == 16))
        full_squares += int(mask.sum() == size * size)
    assert full_squares > 100


def test_batch_cutout_size_zero_is_identity():
    images = _random_images(4)
    assert torch.equal(T.batch_cutout(images, 0), images)


def test_batch_augment_same_seed_same_result():
    images = _random_images(32).to(TORCH_DEVICE)
    augment = T.BatchAugment(crop_padding=4, flip=True, cutout=8)

    def draw(seed: int) -> torch.Tensor:
        return augment(images, torch.Generator(TORCH_DEVICE).manual_seed(seed))

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))


@pytest.mark.parametrize(("padding", "flip", "cutout"), [(4, True, 6), (0, True, 0), (2, False, 3)])
def test_batch_augment_equals_the_composed_functions(padding, flip, cutout):
    images = _random_images(32).to(TORCH_DEVICE)
    fused = T.BatchAugment(padding, flip, cutout)(
        images, torch.Generator(TORCH_DEVICE).manual_seed(5)
    )
    generator = torch.Generator(TORCH_DEVICE).manual_seed(5)
    expected = T.batch_random_crop(images, padding, generator)
    expected = T.batch_flip(expected, generator) if flip else expected
    expected = T.batch_cutout(expected, cutout, generator)
    assert torch.equal(fused, expected)


def test_batch_augment_keeps_dtype_for_normalised_input():
    images = torch.randn(8, 3, 32, 32, device=TORCH_DEVICE)
    outputs = T.BatchAugment(4, True, 6)(images)
    assert outputs.shape == images.shape and outputs.dtype == torch.float32
    assert outputs.device == images.device


def test_batch_augment_rejects_bad_settings():
    with pytest.raises(ValueError, match="crop_padding"):
        T.BatchAugment(crop_padding=-1)
    with pytest.raises(ValueError, match="cutout"):
        T.BatchAugment(cutout=2.5)
    with pytest.raises(ValueError, match="flip"):
        T.BatchAugment(flip=1)


def test_batch_augment_from_preset():
    images = _random_images(4)
    assert torch.equal(T.batch_augment_from_preset("none", 32)(images), images)
    assert T.batch_augment_from_preset("standard", 32) == T.BatchAugment(4, True, 0)
    assert T.batch_augment_from_preset("strong", 64) == T.BatchAugment(8, True, 32)
    with pytest.raises(ValueError, match="none, standard, strong"):
        T.batch_augment_from_preset("auto", 32)


def test_standard_preset_and_batch_augment_draw_the_same_crops():
    image = _coded_image()
    draws = 300
    tf = T.build_transforms(True, preset="standard", mean=(0.0,) * 3, std=(1.0,) * 3)
    torch.manual_seed(0)
    per_image = [(tf(image) * 255).round().to(torch.uint8) for _ in range(draws)]
    batch = image.expand(draws, 3, 32, 32).contiguous()  # (B, C, H, W)
    batched = T.BatchAugment(4, True, 0)(batch, torch.Generator().manual_seed(0))
    for outputs in (per_image, batched):
        found = [_find_offset(image, output, padding=4) for output in outputs]
        tops, lefts, flips = zip(*found, strict=True)
        assert set(tops) == set(lefts) == set(range(9))  # offsets cover [0, 2 * padding]
        assert 0.4 < np.mean(flips) < 0.6
        assert 3.5 < np.mean(tops) < 4.5  # centred on no shift
