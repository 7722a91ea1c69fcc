"""Tests for helpers.explain: Grad-CAM finds the region a hand-built net's class depends on,
works on our CNNs and timm's and leaves no trace on the model; attention maps of our ViT and
timm's agree and roll out into row-stochastic matrices; the class-token map lands on the
patch it should; overlays blend as specified; bad input raises ValueError."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import timm
import torch
from torch import nn

from helpers import explain as E
from helpers import plots
from helpers.models import VisionTransformer, create_model
from tests.conftest import TORCH_DEVICE

MEAN = (0.5, 0.4, 0.3)
STD = (0.2, 0.25, 0.3)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator).to(TORCH_DEVICE)


def _timm_vit(**kwargs) -> nn.Module:
    """A small timm ViT for 32x32 images: 4x4 patches of 8 pixels, 2 blocks, random weights."""
    torch.manual_seed(0)
    options = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=5)
    return timm.models.vision_transformer.VisionTransformer(**{**options, **kwargs})


def _hooks(model: nn.Module) -> int:
    """How many forward and backward hooks the model's modules hold."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


# ----------------------------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------------------------


class QuadrantNet(nn.Module):
    """Class 0 is the mean 'bright' feature in the top-right quadrant, class 1 the mean 'dark'
    feature in the bottom-left one; nothing else reaches the logits."""

    def __init__(self) -> None:
        super().__init__()
        # Two detectors on 2x2 blocks (so the map is half the image size): bright and dark.
        self.features = nn.Conv2d(1, 2, kernel_size=2, stride=2, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(
                torch.tensor([0.25, -0.25]).view(2, 1, 1, 1).expand(2, 1, 2, 2)
            )
        self.act = nn.ReLU()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.act(self.features(images))  # (B, 2, H / 2, W / 2)
        half_h, half_w = maps.shape[-2] // 2, maps.shape[-1] // 2
        top_right = maps[:, 0, :half_h, half_w:].mean(dim=(1, 2))  # (B,)
        bottom_left = maps[:, 1, half_h:, :half_w].mean(dim=(1, 2))  # (B,)
        return torch.stack([top_right, bottom_left], dim=1)  # (B, 2)


def _two_squares() -> torch.Tensor:
    """A 16x16 image: a bright square in the top-right quadrant, a dark one bottom-left."""
    image = torch.zeros(1, 1, 16, 16)
    image[..., 2:6, 10:14] = 2.0  # brighter than the dark square is dark: class 0 wins
    image[..., 10:14, 2:6] = -1.0
    return image.to(TORCH_DEVICE)


QUADRANTS = {0: (slice(0, 8), slice(8, 16)), 1: (slice(8, 16), slice(0, 8))}


@pytest.mark.parametrize("class_idx", [0, 1])
def test_grad_cam_highlights_the_region_the_class_depends_on(class_idx: int) -> None:
    heat = E.grad_cam(QuadrantNet().to(TORCH_DEVICE), _two_squares(), "act", class_idx)[0]
    rows, cols = QUADRANTS[class_idx]
    assert heat.shape == (16, 16)
    assert heat[rows, cols].sum() > 0.95 * heat.sum()  # nearly all the mass in the quadrant
    peak_row, peak_col = divmod(int(heat.argmax()), 16)
    assert rows.start <= peak_row < rows.stop and cols.start <= peak_col < cols.stop


def test_grad_cam_explains_the_prediction_or_a_class_per_image() -> None:
    model = QuadrantNet().to(TORCH_DEVICE)
    images = _two_squares().expand(2, -1, -1, -1)
    predicted = E.grad_cam(model, images, model.act)  # both images predict class 0
    per_image = E.grad_cam(model, images, model.act, class_idx=torch.tensor([0, 1]))
    assert torch.equal(predicted[0], per_image[0])
    assert torch.allclose(predicted[1], per_image[0])
    top_right, bottom_left = QUADRANTS[0], QUADRANTS[1]
    assert per_image[1][bottom_left].sum() > 0.95 * per_image[1].sum()
    assert per_image[1][top_right].sum() < 0.05 * per_image[1].sum()


@pytest.mark.parametrize(
    ("build", "side", "layer"),
    [
        (lambda: create_model("simple_cnn", num_classes=5), 32, "features.act2"),
        (lambda: create_model("resnet9_narrow", num_classes=5), 32, "stages.2"),
        (lambda: timm.create_model("resnet18", pretrained=False, num_classes=5), 64, "layer4"),
    ],
    ids=["simple_cnn", "resnet9_narrow", "timm_resnet18"],
)
def test_grad_cam_shape_range_and_default_layer(build, side: int, layer: str) -> None:
    torch.manual_seed(0)
    model = build().to(TORCH_DEVICE)
    assert E.default_cam_layer(model) == layer
    heat = E.grad_cam(model, _images((3, 3, side, side)))
    assert heat.shape == (3, side, side)
    assert heat.min() >= 0 and heat.max() <= 1
    assert torch.isfinite(heat).all()
    peaks = heat.flatten(1).amax(dim=1)  # (3,) 1 per image, 0 where there is no evidence at
    assert ((peaks == 1) | (peaks == 0)).all()  # all (an untrained ResNet-9's logits are < 0)


def test_grad_cam_leaves_the_model_as_it_was() -> None:
    torch.manual_seed(0)
    model = create_model("resnet9_narrow", num_classes=5).to(TORCH_DEVICE).train()
    model.stem.requires_grad_(False)  # a partly frozen model, as in transfer learning
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    E.grad_cam(model, _images((2, 3, 32, 32)))
    assert model.training and all(m.training for m in model.modules())
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())  # autograd.grad, not backward
    assert all(torch.equal(v, stats[k]) for k, v in model.state_dict().items())  # eval BN
    assert _hooks(model) == 0


def test_grad_cam_removes_its_hook_when_it_fails() -> None:
    model = create_model("simple_cnn", num_classes=5).to(TORCH_DEVICE)
    with pytest.raises(ValueError, match="class_idx"):
        E.grad_cam(model, _images((2, 3, 32, 32)), class_idx=5)
    assert _hooks(model) == 0


def test_grad_cam_works_frozen_and_under_no_grad_or_inference_mode() -> None:
    model = create_model("simple_cnn", num_classes=5).to(TORCH_DEVICE).requires_grad_(False)
    images = _images((2, 3, 32, 32))
    expected = E.grad_cam(model, images)
    with torch.no_grad():
        assert torch.allclose(E.grad_cam(model, images), expected)
    with torch.inference_mode():
        frozen_images = images.clone()  # an inference tensor
        assert torch.allclose(E.grad_cam(model, frozen_images), expected)


def test_default_cam_layer_explains_how_to_choose_one() -> None:
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="target_layer='0'"):
        E.default_cam_layer(plain)
    with pytest.raises(ValueError, match="cls_attention_map"):
        E.default_cam_layer(create_model("vit_tiny_cifar"))
    heat = E.grad_cam(plain.to(TORCH_DEVICE), _images((2, 3, 8, 8)), target_layer="1")
    assert heat.shape == (2, 8, 8)


# ----------------------------------------------------------------------------------------------
# Attention maps and rollout
# ----------------------------------------------------------------------------------------------


def test_timm_attention_maps_match_our_vit_with_the_same_weights() -> None:
    reference = _timm_vit().to(TORCH_DEVICE)
    ours = VisionTransformer(5, image_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4)
    ours.load_state_dict(reference.state_dict())
    images = _images((2, 3, 32, 32))
    theirs, mine = (
        E.attention_maps(reference, images),
        E.attention_maps(ours.to(TORCH_DEVICE), images),
    )
    assert len(theirs) == len(mine) == 2
    for a, b in zip(theirs, mine, strict=True):
        assert a.shape == (2, 4, 17, 17)
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "build",
    [lambda: create_model("vit_tiny_cifar", num_classes=5), lambda: _timm_vit(reg_tokens=2)],
    ids=["ours", "timm_with_registers"],
)
def test_attention_rollout_rows_sum_to_one_and_the_model_is_restored(build) -> None:
    model = build().to(TORCH_DEVICE).train()
    fused = [
        getattr(block.attn, "fused_attn", getattr(block.attn, "fused", None))
        for block in model.blocks
    ]
    maps = E.attention_maps(model, _images((2, 3, 32, 32)))
    assert len(maps) == len(model.blocks)
    rollout = E.attention_rollout(maps)
    tokens = maps[0].shape[-1]
    assert rollout.shape == (2, tokens, tokens)
    assert torch.allclose(rollout.sum(dim=-1), torch.ones(2, tokens, device=rollout.device))
    sharp = E.attention_rollout(maps, head_fusion="max", discard_ratio=0.9)
    assert torch.allclose(sharp.sum(dim=-1), torch.ones(2, tokens, device=sharp.device))
    assert model.training and all(m.training for m in model.modules())
    assert fused == [
        getattr(b.attn, "fused_attn", getattr(b.attn, "fused", None)) for b in model.blocks
    ]
    assert _hooks(model) == 0


def test_attention_rollout_by_hand() -> None:
    first = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])  # (B=1, heads=1, T=2, T=2)
    second = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    mix_first = torch.tensor([[0.75, 0.25], [0.0, 1.0]])  # (A + I) / 2
    mix_second = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    expected = mix_second @ mix_first
    assert torch.allclose(E.attention_rollout([first, second])[0], expected)
    identity = torch.eye(3).expand(1, 2, 3, 3)  # tokens that only attend to themselves
    assert torch.allclose(E.attention_rollout([identity] * 3)[0], torch.eye(3))
    two_heads = torch.cat([first, second], dim=1)  # (1, 2, 2, 2)
    fused_max = torch.tensor([[0.8, 0.2], [1 / 3, 2 / 3]])  # max over heads, + I, renormalised
    assert torch.allclose(E.attention_rollout([two_heads], "max")[0], fused_max)


def _one_hot_maps(tokens: int, target: int, depth: int = 2) -> list[torch.Tensor]:
    """Maps whose every row puts all its weight on token ``target``."""
    weights = torch.zeros(1, 2, tokens, tokens, device=TORCH_DEVICE)
    weights[..., target] = 1.0
    return [weights] * depth


@pytest.mark.parametrize("method", ["rollout", "last"])
@pytest.mark.parametrize(
    ("build", "prefix", "grid"),
    [
        (lambda: create_model("vit_tiny_cifar"), 1, 8),  # 4-pixel patches
        (lambda: _timm_vit(reg_tokens=2), 3, 4),  # class + 2 register tokens, 8-pixel patches
    ],
    ids=["ours", "timm_with_registers"],
)
def test_cls_attention_map_lands_on_the_attended_patch(monkeypatch, build, prefix, grid, method):
    model = build().to(TORCH_DEVICE)
    row, col = 0, grid - 1  # the top-right patch
    maps = _one_hot_maps(prefix + grid * grid, prefix + row * grid + col)
    monkeypatch.setattr(E, "attention_maps", lambda _model, _images: maps)
    heat = E.cls_attention_map(model, _images((1, 3, 32, 32)), method=method)[0]
    peak_row, peak_col = divmod(int(heat.argmax()), 32)
    patch = 32 // grid
    assert peak_row < patch and peak_col >= 32 - patch


@pytest.mark.parametrize(
    "build",
    [
        lambda: create_model("vit_tiny_cifar"),
        lambda: _timm_vit(),
        lambda: _timm_vit(class_token=False, global_pool="avg", reg_tokens=1),
    ],
    ids=["ours", "timm", "timm_avg_pool"],
)
def test_cls_attention_map_shape_and_range(build) -> None:
    model = build().to(TORCH_DEVICE)
    for method in E.CLS_METHODS:
        heat = E.cls_attention_map(model, _images((2, 3, 32, 32)), method=method)
        assert heat.shape == (2, 32, 32)
        assert heat.min() >= 0 and heat.max() <= 1 and torch.isfinite(heat).all()


# ----------------------------------------------------------------------------------------------
# explain, overlay, show_explanations
# ----------------------------------------------------------------------------------------------


def test_explain_picks_the_method_for_the_model() -> None:
    torch.manual_seed(0)
    cnn, vit = create_model("simple_cnn"), _timm_vit()
    images = _images((2, 3, 32, 32))
    assert torch.equal(E.explain(cnn, images, class_idx=3), E.grad_cam(cnn, images, class_idx=3))
    assert torch.equal(
        E.explain(vit, images, method="last"), E.cls_attention_map(vit, images, "last")
    )
    with pytest.raises(ValueError, match="class_idx"):
        E.explain(vit, images, class_idx=0)
    methods = [E.explanation_method(m) for m in (cnn, vit, create_model("vit_tiny_cifar"))]
    assert methods == ["grad_cam", "rollout", "rollout"]


def test_overlay_blends_the_unnormalised_image_and_the_colour_map() -> None:
    pixels = torch.rand(3, 8, 8)
    normalised = (pixels - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    heat = torch.linspace(0, 1, 64).view(8, 8)
    image_only = E.overlay(normalised, heat, MEAN, STD, alpha=0.0)
    assert image_only.shape == (8, 8, 3) and image_only.dtype == np.float32
    assert np.allclose(image_only, pixels.permute(1, 2, 0).numpy(), atol=1e-6)
    colours = plt.get_cmap("viridis")(heat.numpy())[..., :3]
    assert np.allclose(E.overlay(normalised, heat, MEAN, STD, alpha=1.0, cmap="viridis"), colours)
    half = E.overlay(normalised, heat.numpy(), MEAN, STD, alpha=0.5, cmap="viridis")
    assert np.allclose(half, (image_only + colours) / 2, atol=1e-6)
    gray = E.overlay(torch.full((1, 8, 8), 255, dtype=torch.uint8), heat, alpha=0.0)
    assert gray.shape == (8, 8, 3) and np.allclose(gray, 1.0)


def test_show_explanations_pairs_each_image_with_its_overlay() -> None:
    images = _images((3, 3, 8, 8))
    heat = torch.rand(3, 8, 8)
    fig = plots.show_explanations(images, heat, MEAN, STD, titles=["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 8  # two rows of two pairs; the last pair's cells left blank
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", ""]
    shown = np.asarray(fig.axes[1].images[0].get_array())
    assert np.allclose(shown, E.overlay(images[0], heat[0], MEAN, STD))
    with pytest.raises(ValueError, match="heatmaps"):
        plots.show_explanations(images, heat[:2], MEAN, STD)


def test_compare_explanations_puts_each_set_of_maps_in_a_column() -> None:
    images, first, second = _images((2, 3, 8, 8)), torch.rand(2, 8, 8), torch.rand(2, 8, 8)
    maps = {"rollout": first, "last": second}
    fig = plots.compare_explanations(images, maps, MEAN, STD, titles=["cat", "dog"])
    assert len(fig.axes) == 6  # two rows: the image, then one overlay per set
    assert [ax.get_title() for ax in fig.axes] == ["cat", "rollout", "last", "dog", "", ""]
    shown = np.asarray(fig.axes[5].images[0].get_array())
    assert np.allclose(shown, E.overlay(images[1], second[1], MEAN, STD))
    with pytest.raises(ValueError, match="one heat map per image"):
        plots.compare_explanations(images, {"a": first, "b": second[:1]}, MEAN, STD)
    with pytest.raises(ValueError, match="one heat map per image"):
        plots.compare_explanations(images, {}, MEAN, STD)
    with pytest.raises(ValueError, match="titles"):
        plots.compare_explanations(images, maps, MEAN, STD, titles=["cat"])


def test_show_explained_predictions_rows_overlays_and_top_classes() -> None:
    images, heat = _images((2, 3, 8, 8)), torch.rand(2, 8, 8)
    probabilities = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    names = ["cat", "dog", "frog"]
    fig = plots.show_explained_predictions(
        images, heat, probabilities, names, [2, 0], mean=MEAN, std=STD, topk=2
    )
    assert len(fig.axes) == 6  # one row of image, overlay and bars per image
    assert [fig.axes[i].get_title() for i in (0, 3)] == ["true: frog", "true: cat"]
    shown = np.asarray(fig.axes[4].images[0].get_array())
    assert np.allclose(shown, E.overlay(images[1], heat[1], MEAN, STD))
    bars = fig.axes[2]
    assert [t.get_text() for t in bars.get_yticklabels()] == ["dog", "frog"]  # most probable first
    assert [p.get_width() for p in bars.patches] == pytest.approx([0.6, 0.3])
    colours = [p.get_facecolor() for p in bars.patches]
    assert colours[0] != colours[1]  # the true class (frog) stands out
    unlabelled = plots.show_explained_predictions(images, heat, probabilities, names)
    assert unlabelled.axes[0].get_title() == ""
    with pytest.raises(ValueError, match="probabilities"):
        plots.show_explained_predictions(images, heat, probabilities[:, :2], names)
    with pytest.raises(ValueError, match="topk"):
        plots.show_explained_predictions(images, heat, probabilities, names, topk=4)
    with pytest.raises(ValueError, match="labels"):
        plots.show_explained_predictions(images, heat, probabilities, names, [0, 5])


@pytest.mark.parametrize("method", E.CORRELATIONS)
def test_heatmap_correlation_matches_scipy(method: str) -> None:
    stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(0)
    first = torch.rand(4, 6, 6, generator=generator).round(decimals=1)  # with ties
    second = (first + 0.3 * torch.rand(4, 6, 6, generator=generator)).round(decimals=1)
    second[3] = torch.rand(6, 6, generator=generator)  # unrelated to its first map
    reference = stats.spearmanr if method == "spearman" else stats.pearsonr
    pairs = zip(first, second, strict=True)
    expected = [reference(a.flatten(), b.flatten()).statistic for a, b in pairs]
    found = E.heatmap_correlation(first, second, method)
    assert found.shape == (4,) and found.dtype == torch.float32
    assert found.tolist() == pytest.approx(expected, abs=1e-5)
    assert found[:3].min() > 0.5 > found[3].abs()


def test_heatmap_correlation_of_rescaled_and_flat_maps() -> None:
    ramp = torch.linspace(0, 1, 16).view(1, 4, 4)
    assert E.heatmap_correlation(ramp, ramp**3).item() == pytest.approx(1.0)  # same order
    assert E.heatmap_correlation(ramp, ramp**3, "pearson").item() < 1.0
    assert E.heatmap_correlation(ramp, 1 - ramp).item() == pytest.approx(-1.0)
    maps = torch.cat([ramp, ramp])
    flat = torch.cat([ramp, torch.zeros(1, 4, 4)])  # a map the ReLU set to zero everywhere
    assert torch.isnan(E.heatmap_correlation(maps, flat)).tolist() == [False, True]


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def test_bad_input_raises_value_error() -> None:
    cnn, vit = create_model("simple_cnn"), create_model("vit_tiny_cifar")
    images = _images((2, 3, 32, 32))
    cases = [
        (lambda: E.grad_cam(cnn, images[0]), "B, C, H, W"),
        (lambda: E.attention_maps(vit, images[0]), "B, C, H, W"),
        (lambda: E.grad_cam(cnn, images, target_layer="features.conv9"), "no layer"),
        (lambda: E.grad_cam(cnn, images, target_layer=nn.ReLU()), "not part of the model"),
        (lambda: E.grad_cam(cnn, images, class_idx=[0]), "one per image"),
        (lambda: E.grad_cam(cnn, images, class_idx=1.0), "integers"),
        (lambda: E.grad_cam(vit, images, target_layer="blocks.0"), r"\(B, C, h, w\)"),
        (lambda: E.attention_maps(cnn, images), "grad_cam"),
        (lambda: E.cls_attention_map(vit, images, method="first"), "rollout"),
        (lambda: E.cls_attention_map(vit, images, head_fusion="median"), "mean"),
        (lambda: E.attention_rollout([]), "at least one"),
        (lambda: E.attention_rollout([torch.ones(1, 1, 2, 2)], discard_ratio=1.0), r"\[0, 1\)"),
        (lambda: E.attention_rollout([torch.ones(1, 1, 2, 3)]), "T, T"),
        (lambda: E.overlay(images[0], torch.rand(4, 4), MEAN, STD), "heatmap"),
        (lambda: E.overlay(images[0], torch.rand(32, 32), MEAN, None), "mean and std"),
        (lambda: E.overlay(images[0], torch.rand(32, 32), MEAN, STD, cmap="nope"), "colour map"),
        (lambda: E.overlay(images[0], torch.rand(32, 32), MEAN, STD, alpha=2), "alpha"),
        (lambda: E.heatmap_correlation(images[:, 0], images[:1, 0]), "alike"),
        (lambda: E.heatmap_correlation(images, images), r"\(N, H, W\)"),
        (lambda: E.heatmap_correlation(images[:, 0], images[:, 0], "kendall"), "spearman"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
