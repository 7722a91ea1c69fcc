"""Tests for helpers.fast: FastNet's shapes, whitening checked numerically, the frozen
whitening layer and its bias schedule, lookahead against hand-computed averages, TTA on a
flip-invariant model, the alternating flip, the optimisers, a tiny end-to-end run, config
checks and the command line."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import fast, models
from helpers.__main__ import main as cli_main
from helpers.data import make_synthetic_data
from tests.conftest import TORCH_DEVICE

TINY = dict(widths=(8, 8, 8), batch_size=50, whiten_images=200, precision="fp32")


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_data(train_per_class=20, test_per_class=10)


def _correlated_images(count: int = 64, side: int = 12, seed: int = 0) -> torch.Tensor:
    """Random images whose channels and neighbouring pixels are correlated."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, 3, side + 1, side + 1, generator=generator)
    smooth = 0.5 * (noise[..., 1:, 1:] + noise[..., :-1, :-1])  # neighbours correlate
    mixing = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.3, 0.5, 0.8]])
    return torch.einsum("dc,nchw->ndhw", mixing, smooth)  # channels correlate


# ----------------------------------------------------------------------------------------------
# FastNet
# ----------------------------------------------------------------------------------------------


def test_fastnet_shapes_on_32x32_images() -> None:
    net = models.create_model("fastnet", num_classes=10).to(TORCH_DEVICE)
    images = torch.randn(5, 3, 32, 32, device=TORCH_DEVICE)
    assert net.whiten(images).shape == (5, 24, 31, 31)
    assert net.forward_features(images).shape == (5, 256, 3, 3)
    assert net(images).shape == (5, 10)
    assert models.count_parameters(net) == 1_971_352
    assert "whiten.weight" not in dict(net.named_parameters())  # frozen: a buffer
    assert "whiten.weight" in dict(net.named_buffers())


def test_fastnet_unfrozen_whitening_is_a_parameter_and_bn_has_no_scale() -> None:
    net = fast.FastNet(whiten_frozen=False, widths=(8, 16, 32))
    assert "whiten.weight" in dict(net.named_parameters())
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.weight is None and m.bias is not None for m in norms)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_fastnet_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="three positive integers"):
        fast.FastNet(widths=(8, 16))


# ----------------------------------------------------------------------------------------------
# Whitening
# ----------------------------------------------------------------------------------------------


def test_whitening_makes_patch_covariance_identity() -> None:
    images = _correlated_images()
    net = fast.FastNet(widths=(8, 8, 8))
    before = fast.patch_covariance(images, 2)
    assert before.sub(torch.eye(12, dtype=before.dtype)).abs().max() > 0.3  # correlated
    fast.init_whitening(net, images, eps=1e-6)
    outputs = F.conv2d(images, net.whiten.weight)  # (N, 24, H - 1, W - 1), no bias
    half = outputs[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()  # (P, 12)
    covariance = half.T @ half / len(half)
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=1e-3)
    assert torch.equal(net.whiten.weight[12:], -net.whiten.weight[:12])  # the negatives
    assert torch.all(net.whiten.bias == 0)


def test_whitening_orders_filters_by_variance() -> None:
    images = _correlated_images()
    net = fast.FastNet(widths=(8, 8, 8))
    fast.init_whitening(net, images)
    # The first filter follows the largest eigenvalue, so it has the smallest norm.
    norms = net.whiten.weight[:12].flatten(1).norm(dim=1)
    assert torch.all(norms[1:] >= norms[:-1] - 1e-6)


def test_init_whitening_rejects_other_models() -> None:
    with pytest.raises(ValueError, match="FastNet or a PatchWhitening"):
        fast.init_whitening(nn.Conv2d(3, 24, 2), torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="images must be"):
        fast.init_whitening(fast.FastNet(), torch.zeros(2, 1, 8, 8))


def _record_whitening(net: fast.FastNet) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Record the whitening weight and bias at every training forward pass."""
    records: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, _inputs: tuple) -> None:
        if module.training:
            records.append((module.weight.detach().clone(), module.bias.detach().clone()))

    net.whiten.register_forward_pre_hook(hook)
    return records


def test_whitening_stays_frozen_and_its_bias_trains_only_at_first(synthetic) -> None:
    cfg = fast.FastConfig(epochs=3, whiten_bias_epochs=1, lookahead=False, **TINY)
    data = fast.prepare_fast_data(synthetic, cfg, device=TORCH_DEVICE)
    model = fast.build_fast_model(cfg, TORCH_DEVICE)
    records = _record_whitening(model)
    fast.fit_fast(model, data, cfg, seed=0)
    per_epoch = len(data.train_labels) // cfg.batch_size  # 4 steps
    assert len(records) == 3 * per_epoch
    expected = fast.FastNet(widths=(8, 8, 8)).to(TORCH_DEVICE)
    fast.init_whitening(expected, data.whitening_inputs(cfg.whiten_images))
    for weight, _ in records:  # the filters never change
        assert torch.equal(weight, expected.whiten.weight)
    assert torch.equal(model.whiten.weight, expected.whiten.weight)
    biases = [bias for _, bias in records] + [model.whiten.bias.detach()]
    for step in range(per_epoch):  # steps 0..3 update the bias
        assert not torch.equal(biases[step], biases[step + 1]), step
    for later in biases[per_epoch + 1 :]:  # then it stays as it was after step 3
        assert torch.equal(later, biases[per_epoch])


def test_unfrozen_whitening_trains(synthetic) -> None:
    cfg = fast.FastConfig(epochs=1, whiten_frozen=False, lookahead=False, **TINY)
    data = fast.prepare_fast_data(synthetic, cfg, device=TORCH_DEVICE)
    model = fast.build_fast_model(cfg, TORCH_DEVICE)
    records = _record_whitening(model)
    fast.fit_fast(model, data, cfg, seed=0)
    assert not torch.equal(records[0][0], model.whiten.weight.detach())


# ----------------------------------------------------------------------------------------------
# Lookahead
# ----------------------------------------------------------------------------------------------


def test_lookahead_averages_then_resets_the_weights() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    lookahead = fast.Lookahead(net)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    assert "1.num_batches_tracked" not in lookahead.average  # integers are not averaged
    with torch.no_grad():
        net[0].weight.add_(2.0)
        net[1].running_mean.add_(4.0)
    lookahead.update(net, decay=0.75)
    assert torch.allclose(net[0].weight, start["0.weight"] + 0.5)  # 0.75 * w + 0.25 * (w + 2)
    assert torch.allclose(net[1].running_mean, start["1.running_mean"] + 1.0)
    assert torch.equal(lookahead.average["0.weight"], net[0].weight)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    lookahead.update(net, decay=0.0)  # decay 0: the average becomes the weights
    assert torch.allclose(net[0].weight, start["0.weight"] + 1.5)
    with torch.no_grad():
        net[0].weight.add_(10.0)
    lookahead.finish(net)  # decay 1: back to the average
    assert torch.allclose(net[0].weight, start["0.weight"] + 1.5)
    with pytest.raises(ValueError, match="decay"):
        lookahead.update(net, decay=1.5)


def test_lookahead_decay_grows_as_a_cube() -> None:
    cfg = fast.FastConfig()
    assert fast.lookahead_decay(0, 100, cfg) == 0.0
    assert fast.lookahead_decay(50, 100, cfg) == pytest.approx(0.95**5 / 8)
    assert fast.lookahead_decay(100, 100, cfg) == pytest.approx(0.95**5)


# ----------------------------------------------------------------------------------------------
# Test-time augmentation
# ----------------------------------------------------------------------------------------------


def _flip_invariant_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))


def test_tta_on_a_flip_invariant_model_equals_no_tta() -> None:
    net = _flip_invariant_model()
    images = torch.randn(6, 3, 8, 8)
    labels = torch.randint(0, 4, (6,))
    plain = fast.tta_logits(net, images, 0)
    assert torch.allclose(fast.tta_logits(net, images, 1), plain, atol=1e-6)
    assert fast.evaluate_tta(net, images, labels, 1) == fast.evaluate_tta(net, images, labels, 0)
    constant = torch.ones(2, 3, 8, 8)  # shifting a constant image changes nothing either
    assert torch.allclose(fast.tta_logits(net, constant, 2), net(constant), atol=1e-6)


def test_tta_level_1_averages_the_mirror_image() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    images = torch.randn(3, 3, 4, 4)
    expected = 0.5 * (net(images) + net(images.flip(-1)))
    assert torch.allclose(fast.tta_logits(net, images, 1), expected, atol=1e-6)
    with pytest.raises(ValueError, match="TTA level"):
        fast.tta_logits(net, images, 3)


def test_evaluate_tta_restores_the_mode_and_counts_correctly() -> None:
    net = _flip_invariant_model().train()
    images = torch.randn(10, 3, 8, 8)
    labels = net(images).argmax(1).detach()
    assert fast.evaluate_tta(net, images, labels, 2, batch_size=3) >= 0.5
    assert fast.evaluate_tta(net, images, labels, 0, batch_size=3) == 1.0
    assert net.training
    with pytest.raises(ValueError, match="labels"):
        fast.evaluate_tta(net, images, labels[:3], 0)


# ----------------------------------------------------------------------------------------------
# Data: the alternating flip
# ----------------------------------------------------------------------------------------------


def _flipped(batch: torch.Tensor, data: fast.FastData, labels_index: torch.Tensor) -> torch.Tensor:
    """Which images of a batch (no translation) are the mirror images of their source."""
    originals = data.normalize(data.train_images[labels_index])
    same = (batch == originals).flatten(1).all(1)
    mirrored = (batch == originals.flip(-1)).flatten(1).all(1)
    assert torch.all(same ^ mirrored)  # each image is exactly one of the two
    return mirrored


def test_alternating_flip_mirrors_each_image_every_other_epoch(synthetic) -> None:
    cfg = fast.FastConfig(**{**TINY, "batch_size": 200})
    data = fast.prepare_fast_data(synthetic, cfg, device=TORCH_DEVICE)
    loader = fast.FastLoader(data, batch_size=200, flip="alternate", translate=0, seed=1)
    states = []
    for epoch in range(3):
        (batch, _labels), *_ = list(loader.epoch(epoch))
        order = _source_indices(batch, data)
        flips = torch.zeros(200, dtype=torch.bool, device=batch.device)
        flips[order] = _flipped(batch, data, order)
        states.append(flips)
    assert torch.all(states[0] ^ states[1]) and torch.equal(states[0], states[2])
    assert 0.3 < states[0].float().mean() < 0.7


def test_loader_batch_shows_given_images_as_an_epoch_sees_them(synthetic) -> None:
    """``batch(index, epoch)`` gives those images, mirrored the other way in the next epoch."""
    cfg = fast.FastConfig(**TINY)
    data = fast.prepare_fast_data(synthetic, cfg, device=TORCH_DEVICE)
    loader = fast.FastLoader(data, batch_size=50, flip="alternate", translate=0, seed=3)
    index = torch.tensor([0, 7, 42, 199], device=data.device)
    first, second = (_flipped(loader.batch(index, epoch), data, index) for epoch in (0, 1))
    assert torch.all(first ^ second)


def test_whitening_images_cover_every_class_of_a_class_ordered_set(synthetic) -> None:
    """An image folder is stored class by class: the whitening images must not all be the
    first class's (they were once the first 5,000 CIFAR-10 images, all airplanes)."""
    cfg = fast.FastConfig(**TINY)
    data = fast.prepare_fast_data(synthetic, cfg, device=TORCH_DEVICE)
    assert torch.all(data.train_labels[:-1] <= data.train_labels[1:])  # stored by class
    index = data.whitening_index(50)
    assert len(index.unique()) == 50
    assert torch.bincount(data.train_labels[index], minlength=10).tolist() == [5] * 10
    assert len(data.whitening_index(10_000)) == len(data.train_labels)  # at most all
    expected = data.normalize(data.train_images[index])
    assert torch.equal(data.whitening_inputs(50), expected)


def _source_indices(batch: torch.Tensor, data: fast.FastData) -> torch.Tensor:
    """The training image each (possibly mirrored) batch image came from, matched by its
    pixel sum (which a mirror image keeps)."""
    keys = data.normalize(data.train_images).double().sum((1, 2, 3))  # (N,)
    assert len(keys.unique()) == len(keys)  # the sums tell the images apart
    distance = (batch.double().sum((1, 2, 3))[:, None] - keys[None, :]).abs()  # (B, N)
    return distance.argmin(1)


def test_loader_batches_are_normalised_and_shifted(synthetic) -> None:
    cfg = fast.FastConfig(**TINY)
    data = fast.prepare_fast_data(synthetic, cfg, device=TORCH_DEVICE)
    loader = fast.FastLoader(data, batch_size=50, translate=2, channels_last=True, seed=0)
    batches = list(loader.epoch(0))
    assert len(batches) == len(loader) == 4
    images, labels = batches[0]
    assert images.shape == (50, 3, 32, 32) and images.dtype == torch.float32
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert labels.shape == (50,)
    assert abs(float(images.mean())) < 0.5
    with pytest.raises(ValueError, match="flip"):
        fast.FastLoader(data, batch_size=50, flip="sometimes")


# ----------------------------------------------------------------------------------------------
# Optimisers and schedule
# ----------------------------------------------------------------------------------------------


def test_schedule_warms_up_then_decays_linearly() -> None:
    cfg = fast.FastConfig(warmup_fraction=0.25, lr_start=0.2, lr_end=0.0)
    factors = [fast.lr_factor(step, 100, cfg) for step in (0, 25, 50, 100)]
    assert factors == pytest.approx([0.2, 1.0, 2 / 3, 0.0])


def test_sgd_groups_decay_weights_equally_per_step() -> None:
    cfg = fast.FastConfig(widths=(8, 8, 8))
    net = fast.FastNet(widths=(8, 8, 8))
    (sgd,) = fast.build_optimizers(net, cfg)
    lr, decay = fast.sgd_settings(cfg)
    base, biases = sgd.param_groups
    assert base["lr"] == pytest.approx(lr) and biases["lr"] == pytest.approx(64 * lr)
    for group in (base, biases):
        assert group["lr"] * group["weight_decay"] == pytest.approx(decay)
    assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.85
    trainable = {id(p) for p in net.parameters()}
    grouped = {id(p) for group in sgd.param_groups for p in group["params"]}
    assert grouped == trainable


def test_muon_takes_the_3x3_filters() -> None:
    cfg = fast.FastConfig(widths=(8, 8, 8), optimizer="muon")
    net = fast.FastNet(widths=(8, 8, 8))
    sgd, muon = fast.build_optimizers(net, cfg)
    filters = {id(p) for p in muon.param_groups[0]["params"]}
    assert len(filters) == 6 and all(p.ndim == 4 for p in muon.param_groups[0]["params"])
    assert not filters & {id(p) for group in sgd.param_groups for p in group["params"]}
    singular = torch.linalg.svdvals(fast.orthogonalize(torch.randn(16, 72)))
    assert torch.all((singular > 0.6) & (singular < 1.3))


def test_muon_step_changes_filters_by_lr_sized_updates() -> None:
    conv = nn.Conv2d(4, 8, 3, bias=False)
    muon = fast.Muon([conv.weight], lr=0.1, momentum=0.0)
    conv(torch.randn(2, 4, 5, 5)).square().sum().backward()
    before = conv.weight.detach().clone()
    muon.step()
    normalised = before * (8**0.5 / before.norm())
    change = (conv.weight.detach() - normalised).reshape(8, -1)
    assert torch.allclose(torch.linalg.svdvals(change / 0.1), torch.ones(8), atol=0.35)


# ----------------------------------------------------------------------------------------------
# A whole run, the config and the command line
# ----------------------------------------------------------------------------------------------


def test_train_fast_on_tiny_data_returns_sane_fields(synthetic) -> None:
    cfg = fast.FastConfig(epochs=2, epoch_eval=True, tta_level=2, **TINY)
    result = fast.train_fast(synthetic, cfg, device=TORCH_DEVICE, seed=3)
    assert result.seed == 3 and result.steps == 8
    assert result.train_images == 200 and result.test_images == 100
    assert 0 <= result.test_acc <= 1 and 0 <= result.test_acc_tta <= 1
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]  # it learns
    assert result.train_seconds > 0 and result.eval_seconds > 0
    assert result.total_seconds == pytest.approx(result.train_seconds + result.eval_seconds)
    assert [row["epoch"] for row in result.history] == [1.0, 2.0]
    assert result.history[1]["seconds"] > result.history[0]["seconds"]
    assert all(0 <= row["test_acc"] <= 1 for row in result.history)
    assert all(math.isfinite(row["train_loss"]) for row in result.history)
    assert isinstance(result.model, models.FastNet)
    summary = fast.summarize_results([result])
    assert summary["runs"] == 1 and summary["test_acc_std"] == 0
    assert "mean" in fast.format_results([result])


def test_train_fast_repeats_with_the_seed(synthetic) -> None:
    cfg = fast.FastConfig(epochs=1, tta_level=0, **TINY)
    data = fast.prepare_fast_data(synthetic, cfg, device=TORCH_DEVICE)
    model = fast.build_fast_model(cfg, TORCH_DEVICE)
    first = fast.train_fast(data, cfg, device=TORCH_DEVICE, seed=5, model=model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    second = fast.train_fast(data, cfg, device=TORCH_DEVICE, seed=5, model=model)
    assert first.history[0]["train_loss"] == pytest.approx(second.history[0]["train_loss"])
    for name, value in model.state_dict().items():
        assert torch.allclose(value.float(), weights[name].float(), atol=1e-5), name


def test_fractional_epochs_end_the_last_epoch_early(synthetic) -> None:
    cfg = fast.FastConfig(epochs=1.5, tta_level=0, **TINY)
    result = fast.train_fast(synthetic, cfg, device=TORCH_DEVICE)
    assert result.steps == 6 and len(result.history) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"momentum": 1.0}, "momentum"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"widths": (8, 8)}, "widths"),
        ({"precision": "int8"}, "precision"),
        ({"flip": "sometimes"}, "flip"),
        ({"tta_level": 3}, "tta_level"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"translate": -1}, "translate"),
        ({"train_images": 0}, "train_images"),
        ({"bn_momentum": 0.0}, "bn_momentum"),
    ],
)
def test_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fast.FastConfig(**changes)


def test_fast_config_profiles_and_overrides() -> None:
    assert fast.fast_config("quick").epochs == fast.QUICK_EPOCHS
    assert fast.fast_config("full").epochs == 9.9
    smoke = fast.fast_config("smoke", ["lookahead=false", "widths=[8, 16, 32]"])
    assert smoke.train_images == 1024 and not smoke.lookahead and smoke.widths == (8, 16, 32)
    with pytest.raises(ValueError, match="unknown key"):
        fast.fast_config("quick", ["lookahed=false"])
    with pytest.raises(ValueError, match="true or false"):
        fast.fast_config("quick", ["lookahead=3"])
    with pytest.raises(ValueError, match="batch_size"):
        fast.train_fast(make_synthetic_data(2, 1), fast.FastConfig(), device="cpu")


def test_command_line_runs_seeds_and_prints_a_table(monkeypatch, capsys) -> None:
    monkeypatch.delenv("CIFAR10_PATH", raising=False)  # smoke without CIFAR-10: synthetic
    argv = ["fast", "--seeds", "2", "--profile", "smoke", "--device", "cpu"]
    argv += ["widths=[8,8,8]", "batch_size=256", "tta_level=1", "precision=fp32"]
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("--- seed") == 2 and "train_loss" in out
    assert "TTA acc" in out and "  mean " in out and "   std " in out


def test_command_line_rejects_bad_overrides(capsys) -> None:
    assert cli_main(["fast", "--profile", "smoke", "epochs=-1"]) == 2
    assert "epochs must be positive" in capsys.readouterr().err
