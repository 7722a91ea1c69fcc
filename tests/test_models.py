"""Tests for helpers.models: every registered model through timm's interface, the SimpleCNN
table to the parameter, the ViT against PyTorch's and timm's own attention and ViT, the
layer summary, and create_model's fallback to timm, offline included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from helpers import models as M
from tests.conftest import TORCH_DEVICE

BATCH = 3


def _input_size(model: nn.Module) -> tuple[int, int, int, int]:
    """A batch shape the model accepts: its own image size for a ViT, 32x32 otherwise."""
    side = model.patch_embed.image_size if hasattr(model, "patch_embed") else 32
    return (BATCH, 3, side, side)


def _images(model: nn.Module, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(_input_size(model), generator=generator).to(TORCH_DEVICE)


def _build(name: str, num_classes: int = 7) -> nn.Module:
    torch.manual_seed(0)
    return M.create_model(name, num_classes=num_classes).to(TORCH_DEVICE)


# ----------------------------------------------------------------------------------------------
# Every registered model
# ----------------------------------------------------------------------------------------------


def test_registry_lists_the_book_models() -> None:
    expected = {"simple_cnn", "resnet9", "resnet9_narrow", "vit_tiny_cifar", "vit_b16"}
    assert expected <= set(M.list_models())
    assert M.list_models() == sorted(M.list_models())
    assert M.list_models("vit_*") == ["vit_b16", "vit_small_cifar", "vit_tiny_cifar"]


@pytest.mark.parametrize("name", M.list_models())
def test_forward_and_backward(name: str) -> None:
    model = _build(name)
    logits = model(_images(model))
    assert logits.shape == (BATCH, 7)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.arange(BATCH, device=TORCH_DEVICE)).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    first = next(iter(grads))  # the first layer: the gradient reached the input end
    assert grads[first].abs().sum() > 0, first


@pytest.mark.parametrize("name", M.list_models())
def test_timm_interface(name: str) -> None:
    model = _build(name).eval()
    images = _images(model)
    with torch.no_grad():
        logits = model(images)
        features = model.forward_features(images)
        assert torch.allclose(model.forward_head(features), logits, atol=1e-5)
        hidden = model.forward_head(features, pre_logits=True)
    assert hidden.shape == (BATCH, model.head_hidden_size)
    assert model.num_classes == 7
    assert model.get_classifier().out_features == 7
    last = model.feature_info[-1]
    assert isinstance(model.get_submodule(last["module"]), nn.Module)


@pytest.mark.parametrize("name", M.list_models())
def test_reset_classifier_changes_the_head(name: str) -> None:
    model = _build(name).eval()
    images = _images(model)
    old_head = model.get_classifier()
    model.reset_classifier(4)
    model.to(TORCH_DEVICE)
    assert model.get_classifier() is not old_head
    assert model.num_classes == 4 and model.get_classifier().out_features == 4
    with torch.no_grad():
        assert model(images).shape == (BATCH, 4)
        model.reset_classifier(0)  # no head: the forward returns the pre-logit features
        expected = model.forward_head(model.forward_features(images), pre_logits=True)
        assert torch.equal(model(images), expected)
    assert model.num_classes == 0


@pytest.mark.parametrize("name", ["simple_cnn", "resnet9_narrow"])
def test_cnn_feature_info_names_the_last_feature_map(name: str) -> None:
    model = _build(name).eval()
    images = _images(model)
    info = model.feature_info[-1]
    captured = []
    handle = model.get_submodule(info["module"]).register_forward_hook(
        lambda module, args, output: captured.append(output)
    )
    with torch.no_grad():
        model(images)
    handle.remove()
    assert captured[0].ndim == 4 and captured[0].shape[1] == info["num_chs"]


# ----------------------------------------------------------------------------------------------
# SimpleCNN: the seed table
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_chans", "side", "params", "total"),
    [
        (1, 28, [320, 18_496, 204_928, 1_290], 225_034),
        (3, 32, [896, 18_496, 295_040, 1_290], 315_722),
    ],
)
def test_simple_cnn_matches_the_table(
    in_chans: int, side: int, params: list[int], total: int
) -> None:
    model = M.create_model("simple_cnn", in_chans=in_chans, image_size=side)
    table = M.summary(model, (1, in_chans, side, side))
    with_params = table[table.params > 0]
    assert with_params.type.tolist() == ["Conv2d", "Conv2d", "Linear", "Linear"]
    assert with_params.params.tolist() == params
    assert table.attrs["total_params"] == total == table.params.sum()
    assert table.type.tolist().count("ReLU") == 3
    assert table.type.tolist().count("MaxPool2d") == 2
    assert table.output_shape.iloc[-1] == "[1, 10]"


@pytest.mark.parametrize("side", [10, 17, 64])
def test_simple_cnn_any_size_from_10(side: int) -> None:
    model = M.SimpleCNN(num_classes=3, in_chans=5, image_size=side)
    assert model(torch.zeros(2, 5, side, side)).shape == (2, 3)


def test_simple_cnn_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="image_size"):
        M.SimpleCNN(image_size=9)
    with pytest.raises(ValueError, match="in_chans"):
        M.SimpleCNN(in_chans=0)
    with pytest.raises(ValueError, match=r"\(3, 32, 32\)"):
        M.SimpleCNN()(torch.zeros(1, 3, 28, 28))


# ----------------------------------------------------------------------------------------------
# ResNet-9
# ----------------------------------------------------------------------------------------------


def test_resnet9_widths_and_options() -> None:
    full, narrow = M.create_model("resnet9"), M.create_model("resnet9_narrow")
    assert [i["num_chs"] for i in full.feature_info] == [64, 128, 256, 512]
    assert [i["num_chs"] for i in narrow.feature_info] == [32, 64, 128, 256]
    ratio = M.count_parameters(full) / M.count_parameters(narrow)
    assert 3.5 < ratio < 4.5  # half the width, a quarter of the weights
    custom = M.ResNet9(widths=(8, 16, 32), residual=(False, True), global_pool="avg")
    assert custom(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert isinstance(custom.global_pool, nn.AdaptiveAvgPool2d)
    assert not hasattr(custom.stages[0], "residual") and hasattr(custom.stages[1], "residual")
    batch_norms = sum(isinstance(m, nn.BatchNorm2d) for m in full.modules())
    convs = sum(isinstance(m, nn.Conv2d) for m in full.modules())
    assert batch_norms == convs == 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(widths=(64,)), "widths"),
        (dict(width_mult=0), "width_mult"),
        (dict(residual=(True,)), "residual"),
        (dict(global_pool="mean"), "global_pool"),
        (dict(drop_rate=1.0), "drop_rate"),
    ],
)
def test_resnet9_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        M.ResNet9(**kwargs)


def test_residual_block_adds_its_input() -> None:
    block = M.ResidualBlock(4).eval()
    images = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        expected = images + block.conv2(block.conv1(images))
        assert torch.allclose(block(images), expected)
        for conv in (block.conv1.conv, block.conv2.conv):
            conv.weight.zero_()  # f(x) = ReLU(BN(0)) = 0, so the block is the identity
        assert torch.equal(block(images), images)


def test_resnet9_dropout_only_in_training() -> None:
    model = M.ResNet9(width_mult=0.25, drop_rate=0.5)
    images = torch.randn(4, 3, 32, 32)
    model.eval()
    assert torch.equal(model(images), model(images))
    model.train()
    torch.manual_seed(0)
    first = model.forward_head(model.forward_features(images), pre_logits=True)
    assert (first == 0).float().mean() > 0.2  # about half the features dropped


def test_cnns_give_the_same_result_in_channels_last() -> None:
    for name in ("simple_cnn", "resnet9_narrow"):
        model = _build(name).eval()
        images = _images(model)
        with torch.no_grad():
            expected = model(images)
            model.to(memory_format=torch.channels_last)
            actual = model(images.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(actual, expected, atol=1e-4), name


# ----------------------------------------------------------------------------------------------
# Vision Transformer
# ----------------------------------------------------------------------------------------------


def test_vit_b16_has_the_papers_parameter_count() -> None:
    with torch.device("meta"):  # no memory: shapes only
        ours = M.create_model("vit_b16", num_classes=1000)
        reference = timm.create_model("vit_base_patch16_224", num_classes=1000)
    total = M.count_parameters(ours)
    assert 86.4e6 <= total <= 86.8e6
    assert total == M.count_parameters(reference) == 86_567_656
    block = ours.blocks[0]
    assert (block.mlp.fc1.out_features, block.attn.num_heads, len(ours.blocks)) == (3072, 12, 12)
    assert ours.patch_embed.num_patches == 196
    table = M.summary(ours, (1, 3, 224, 224), depth=2, device="meta")  # shapes only, on meta
    assert table.params.sum() == total
    block_rows = table[table.type == "EncoderBlock"]
    assert len(block_rows) == 12 and set(block_rows.params) == {7_087_872}
    assert block_rows.output_shape.iloc[0] == "[1, 197, 768]"  # 196 patches + class token


def test_vit_matches_timm_with_the_same_weights() -> None:
    torch.manual_seed(0)
    kwargs = dict(patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=5)
    reference = timm.models.vision_transformer.VisionTransformer(img_size=32, **kwargs).eval()
    ours = M.VisionTransformer(image_size=32, **kwargs).eval()
    ours.load_state_dict(reference.state_dict())  # strict: every name and shape matches
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(images), reference(images), atol=1e-5)
        assert torch.allclose(ours(images, return_attention=True)[0], reference(images), atol=1e-5)


def test_attention_matches_torch_multihead_attention() -> None:
    torch.manual_seed(0)
    ours = M.MultiHeadSelfAttention(32, num_heads=4).eval()
    reference = nn.MultiheadAttention(32, num_heads=4, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(ours.qkv.weight)  # q, k, v stacked in the same order
        reference.in_proj_bias.copy_(ours.qkv.bias)
        reference.out_proj.weight.copy_(ours.proj.weight)
        reference.out_proj.bias.copy_(ours.proj.bias)
        tokens = torch.randn(2, 9, 32)
        expected, expected_weights = reference(
            tokens, tokens, tokens, need_weights=True, average_attn_weights=False
        )
        fast, none = ours(tokens)
        explicit, weights = ours(tokens, return_attention=True)
    assert none is None
    assert torch.allclose(fast, expected, atol=1e-5)
    assert torch.allclose(explicit, expected, atol=1e-5)
    assert torch.allclose(weights, expected_weights, atol=1e-6)


def test_patch_embedding_is_a_linear_map_of_each_patch() -> None:
    torch.manual_seed(0)
    embed = M.PatchEmbedding(image_size=8, patch_size=4, in_chans=3, embed_dim=5)
    images = torch.randn(2, 3, 8, 8)
    patches = images.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, C, 2, 2, 4, 4)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, 4, 3 * 4 * 4)  # (B, N, C*P*P)
    weight = embed.proj.weight.reshape(5, -1)  # (D, C*P*P)
    expected = patches @ weight.T + embed.proj.bias  # (B, N, D), patches in row-major order
    assert torch.allclose(embed(images), expected, atol=1e-5)


def test_attention_maps() -> None:
    torch.manual_seed(0)
    model = M.create_model("vit_tiny_cifar", num_classes=10, drop_rate=0.1).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast = model(images)
        logits, maps = model(images, return_attention=True)
        again = model.get_attention_maps(images)
    assert torch.allclose(fast, logits, atol=1e-5)  # fused SDPA == explicit softmax path
    explicit = M.create_model("vit_tiny_cifar", num_classes=10, fused_attn=False).eval()
    explicit.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(explicit(images), fast, atol=1e-5)
    assert len(maps) == len(model.blocks) == 4
    for weights, same in zip(maps, again, strict=True):
        assert weights.shape == (2, 4, 65, 65)  # (B, heads, 1 + 64 patches, 1 + 64 patches)
        assert (weights >= 0).all()
        assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 65), atol=1e-5)
        assert torch.equal(weights, same)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(patch_size=5), "does not divide"),
        (dict(embed_dim=130), "multiple of num_heads"),
        (dict(depth=0), "depth"),
        (dict(drop_rate=-0.1), "drop_rate"),
    ],
)
def test_vit_rejects_bad_configs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        M.create_model("vit_tiny_cifar", **kwargs)


def test_vit_rejects_other_image_sizes() -> None:
    with pytest.raises(ValueError, match="32x32"):
        M.create_model("vit_tiny_cifar")(torch.zeros(1, 3, 64, 64))


# ----------------------------------------------------------------------------------------------
# summary
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*M.list_models(), "resnet18"])
def test_summary_totals_equal_the_parameter_count(name: str) -> None:
    model = M.create_model(name)
    model.train()
    table = M.summary(model, _input_size(model))
    total = sum(p.numel() for p in model.parameters())
    assert table.params.sum() == table.attrs["total_params"] == total
    assert table.attrs["output_shape"] == f"[{BATCH}, 10]"
    assert model.training  # its mode is restored


def test_summary_depth_collapses_blocks() -> None:
    model = M.create_model("vit_tiny_cifar")
    table = M.summary(model, depth=1)
    assert table.layer.tolist() == [
        "cls_token",
        "pos_embed",
        "patch_embed",
        "pos_drop",
        "blocks",
        "norm",
        "head",
    ]
    blocks = table.set_index("layer").loc["blocks"]
    assert blocks.params == M.count_parameters(model.blocks)
    assert blocks.output_shape == "[1, 65, 128]"  # a ModuleList: its last block's output
    assert table.params.sum() == M.count_parameters(model)
    two = M.summary(model, depth=2)
    assert "blocks.3" in two.layer.tolist() and "patch_embed.proj" in two.layer.tolist()


def test_summary_counts_trainable_parameters() -> None:
    model = M.create_model("resnet9_narrow")
    for param in model.stem.parameters():
        param.requires_grad_(False)
    table = M.summary(model, depth=1).set_index("layer")
    assert table.loc["stem", "trainable"] == 0 and table.loc["stem", "params"] > 0
    frozen = M.count_parameters(model.stem)
    assert table.attrs["trainable_params"] == M.count_parameters(model) - frozen


def test_summary_counts_a_shared_parameter_once() -> None:
    first, second = nn.Linear(4, 4), nn.Linear(4, 4)
    second.weight = first.weight  # tied weights, as in a language model's embeddings
    table = M.summary(nn.Sequential(first, second), (1, 4))
    assert table.params.tolist() == [20, 4]  # the second layer owns only its bias
    assert table.params.sum() == table.attrs["total_params"] == 24


def test_summary_rejects_bad_arguments() -> None:
    model = M.create_model("simple_cnn")
    with pytest.raises(ValueError, match="depth"):
        M.summary(model, depth=0)
    with pytest.raises(ValueError, match="input_size"):
        M.summary(model, (1, 3, 0, 32))
    with pytest.raises(ValueError, match="device"):
        M.summary(model.to("meta"), device="cpu")


# ----------------------------------------------------------------------------------------------
# create_model: our models and timm's
# ----------------------------------------------------------------------------------------------


def test_create_model_falls_back_to_timm_offline() -> None:
    model = M.create_model("resnet18", num_classes=10, pretrained=False)
    assert type(model).__module__.startswith("timm.")
    assert model.num_classes == 10
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    gray = M.create_model("resnet18", num_classes=3, in_chans=1)
    assert gray(torch.zeros(2, 1, 32, 32)).shape == (2, 3)


def test_create_model_passes_options_on() -> None:
    model = M.create_model("simple_cnn", num_classes=2, in_chans=1, image_size=28)
    assert (model.num_classes, model.in_chans, model.image_size) == (2, 1, 28)
    vit = M.create_model("vit_tiny_cifar", depth=2, embed_dim=64)
    assert len(vit.blocks) == 2 and vit.num_features == 64


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("resnt18", "'resnet18'"), ("simple_cn", "'simple_cnn'"), ("vit_tiny_cfar", "vit_tiny_cifar")],
)
def test_unknown_model_names_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match="Unknown model") as error:
        M.create_model(name)
    assert suggestion in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(name="simple_cnn", pretrained=True), ValueError, "no published weights"),
        (dict(name="simple_cnn", widht=3), ValueError, "'widht'.*image_size"),
        (dict(name="resnet9", num_classes=-1), ValueError, "num_classes"),
        (dict(name="simple_cnn", num_classes=2.0), ValueError, "num_classes"),
    ],
)
def test_create_model_rejects_bad_requests(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        M.create_model(**kwargs)


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") != "1", reason="needs the hub offline")
def test_pretrained_offline_says_how_to_use_a_local_file() -> None:
    with pytest.raises(RuntimeError, match="pretrained_cfg_overlay=dict\\(file=") as error:
        M.create_model("resnet18", num_classes=10, pretrained=True)
    assert "timm/resnet18" in str(error.value)  # where to download the file


def test_pretrained_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = timm.create_model("test_vit", num_classes=1000)  # random weights, 1000 classes
    weights = source.state_dict()
    file = tmp_path / "model.safetensors"
    save_file(weights, str(file))
    overlay = dict(file=str(file))
    model = M.create_model("test_vit", 1000, pretrained=True, pretrained_cfg_overlay=overlay)
    loaded = model.state_dict()
    assert loaded.keys() == weights.keys()
    assert all(torch.equal(loaded[key], value) for key, value in weights.items())
    # a new head for 10 classes; everything else from the file
    model = M.create_model("test_vit", 10, pretrained=True, pretrained_cfg_overlay=overlay)
    loaded = model.state_dict()
    assert loaded["head.weight"].shape == (10, weights["head.weight"].shape[1])
    body = [key for key in weights if not key.startswith("head.")]
    assert all(torch.equal(loaded[key], weights[key]) for key in body)


def test_pretrained_missing_file() -> None:
    overlay = dict(file="no/such/model.safetensors")
    with pytest.raises(FileNotFoundError, match=r"no/such/model\.safetensors"):
        M.create_model("resnet18", pretrained=True, pretrained_cfg_overlay=overlay)


# ----------------------------------------------------------------------------------------------
# register_model
# ----------------------------------------------------------------------------------------------


def test_register_model_rejects_duplicates_and_unannotated_functions() -> None:
    def simple_cnn(num_classes: int = 10, **kwargs: object) -> M.SimpleCNN:
        return M.SimpleCNN(num_classes)

    with pytest.raises(ValueError, match="already registered"):
        M.register_model(simple_cnn)

    def untyped_model(num_classes=10, **kwargs):
        return nn.Linear(1, num_classes)

    with pytest.raises(ValueError, match="annotated"):
        M.register_model(untyped_model)
    assert "untyped_model" not in M.list_models()


# ----------------------------------------------------------------------------------------------
# Receptive fields
# ----------------------------------------------------------------------------------------------


def test_receptive_field_of_simple_cnn_layers() -> None:
    model = M.create_model("simple_cnn", 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fields = [
        M.receptive_field(model, name, (1, 3, 32, 32))
        for name in ("features.conv1", "features.pool1", "features.conv2", "features.pool2")
    ]
    assert fields == [3, 4, 8, 10]  # +2 per 3x3 conv, +1 then doubled growth per 2x2 pool
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights restored


def test_receptive_field_grows_with_dilation_and_rejects_bad_layers() -> None:
    dilated = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, dilation=2))
    assert M.receptive_field(dilated, "0", (1, 1, 16, 16)) == 5
    with pytest.raises(ValueError, match="Unknown layer"):
        M.receptive_field(dilated, "nope", (1, 1, 16, 16))
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with pytest.raises(ValueError, match="not a"):
        M.receptive_field(head, "1", (1, 1, 4, 4))
