"""The training stage (helpers.train): metrics, optimisers, schedules, the loop, fit,
checkpoints and exact resume, and the `train` command line."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import config, runtime
from helpers import data as hd
from helpers import models as hm
from helpers import train as ht
from helpers.__main__ import main
from tests.conftest import REPO_ROOT, TORCH_DEVICE

TIMING_KEYS = ("epoch_seconds", "images_per_second")
HISTORY_KEYS = {
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "epoch_seconds",
    "images_per_second",
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _no_cifar10_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The smoke profile then uses synthetic data, whatever CI points CIFAR10_PATH at."""
    monkeypatch.delenv("CIFAR10_PATH", raising=False)


class TinyNet(nn.Module):
    """Conv, batch norm, dropout and a linear head: every kind of state a run must restore."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(8, num_classes)
        self.seen_dtypes: set[torch.dtype] = set()
        self.seen_channels_last: set[bool] = set()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen_channels_last.add(images.is_contiguous(memory_format=torch.channels_last))
        features = self.conv(images)  # (B, 8, H, W)
        self.seen_dtypes.add(features.dtype)
        features = torch.relu(self.norm(features)).mean(dim=(2, 3))  # (B, 8)
        return self.head(self.drop(features))  # (B, K)


def _model(seed: int = 0) -> TinyNet:
    runtime.seed_everything(seed)
    return TinyNet()


def _cfg(tmp_path: Path, *, loader: str = "standard", **train: object) -> config.RunConfig:
    options = {
        "epochs": 2,
        "lr": 0.05,
        "precision": "fp32",
        "progress": False,
        "checkpoint_dir": str(tmp_path / "run"),
        **train,
    }
    data = config.DataConfig(image_size=8, batch_size=16, loader=loader, val_fraction=0.2)
    return config.RunConfig(profile="smoke", data=data, train=config.TrainConfig(**options))


def _loaders(cfg: config.RunConfig) -> hd.Loaders:
    images = hd.make_synthetic_data(10, 4, image_size=8)  # 80 train, 20 val, 40 test images
    return hd.make_loaders(images, cfg.data, device=TORCH_DEVICE, seed=0)


def _fit(cfg: config.RunConfig, **kwargs) -> ht.FitResult:
    return ht.fit(_model(), _loaders(cfg), cfg, device=TORCH_DEVICE, **kwargs)


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _one_batch(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(size, 3, 8, 8, generator=generator), torch.arange(size) % 10


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def test_accuracy_matches_a_hand_count() -> None:
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    targets = torch.tensor([2, 0, 2, 2])
    top1, top2, top3 = ht.accuracy(logits, targets, topk=(1, 2, 3))
    assert (top1, top2, top3) == (0.5, 0.75, 1.0)  # row 0 is 2nd best, row 3 is last
    with pytest.raises(ValueError, match=r"topk values must lie in \[1, 3\]"):
        ht.accuracy(logits, targets, topk=(4,))
    with pytest.raises(ValueError, match="logits must be"):
        ht.accuracy(logits, targets[:2])


def test_average_meter_weights_by_batch_size() -> None:
    meter = ht.AverageMeter()
    assert math.isnan(meter.avg)
    meter.update(2.0, n=3)
    meter.update(torch.tensor(4.0), n=1)  # tensors are summed without reading them
    assert meter.avg == pytest.approx(2.5) and meter.count == 4
    meter.reset()
    meter.update(1.0)
    assert meter.avg == 1.0
    with pytest.raises(ValueError, match="non-negative"):
        meter.update(1.0, n=-1)


# ----------------------------------------------------------------------------------------------
# Optimisers and schedules
# ----------------------------------------------------------------------------------------------


class _ViTLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.norm = nn.LayerNorm(8)
        self.proj = nn.Linear(8, 8)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}


def test_param_groups_decay_weights_only() -> None:
    groups = {g["name"]: g for g in ht.param_groups(TinyNet(), weight_decay=0.1)}
    assert groups["decay"]["param_names"] == ["conv.weight", "head.weight"]
    assert groups["no_decay"]["param_names"] == [
        "conv.bias",
        "norm.weight",
        "norm.bias",
        "head.bias",
    ]
    assert groups["decay"]["weight_decay"] == 0.1 and groups["no_decay"]["weight_decay"] == 0.0
    vit = {g["name"]: g["param_names"] for g in ht.param_groups(_ViTLike(), weight_decay=0.1)}
    assert vit["decay"] == ["proj.weight"]  # frozen layers are left out altogether
    assert set(vit["no_decay"]) == {"pos_embed", "norm.weight", "norm.bias", "proj.bias"}


def test_build_optimizer_choices_and_settings() -> None:
    sgd = ht.build_optimizer(TinyNet(), name="sgd", lr=0.1, weight_decay=5e-4, momentum=0.8)
    assert isinstance(sgd, torch.optim.SGD)
    assert all(g["nesterov"] and g["momentum"] == 0.8 for g in sgd.param_groups)
    assert [g["weight_decay"] for g in sgd.param_groups] == [5e-4, 0.0]
    adamw = ht.build_optimizer(TinyNet(), name="adamw", lr=1e-3, weight_decay=0.05)
    assert isinstance(adamw, torch.optim.AdamW)
    with pytest.raises(ValueError, match="choose one of sgd, adamw"):
        ht.build_optimizer(TinyNet(), name="adam", lr=0.1)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        ht.build_optimizer(TinyNet(), lr=0.1, momentum=0.0)


def _lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The learning rate each of ``steps`` optimiser steps uses."""
    rates = []
    for _ in range(steps):
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    rates = _lrs(
        ht.build_scheduler(optimizer, kind="cosine", total_steps=100, warmup_steps=10), 100
    )
    assert rates[:10] == pytest.approx([0.04 * (i + 1) for i in range(10)])  # linear to the peak
    assert rates[10] == pytest.approx(0.4) and max(rates) == pytest.approx(0.4)
    after = rates[10:]
    assert all(a > b for a, b in itertools.pairwise(after))  # strictly decreasing
    assert rates[55] == pytest.approx(0.2, abs=0.01)  # half-way down the cosine: half the peak
    assert rates[-1] < 0.001


def test_onecycle_schedule_peaks_where_configured() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    rates = _lrs(ht.build_scheduler(optimizer, kind="onecycle", total_steps=40, peak_at=0.25), 40)
    assert max(range(40), key=rates.__getitem__) == 10 and rates[10] == pytest.approx(1.0)
    assert rates[0] == pytest.approx(0.04)  # starts at 1/25 of the peak
    assert all(a < b for a, b in itertools.pairwise(rates[:11]))
    assert all(a > b for a, b in itertools.pairwise(rates[10:]))
    assert rates[-1] == pytest.approx(1 / 30)  # one step before reaching zero


def test_constant_schedule_and_bad_schedules() -> None:
    assert {ht.LRSchedule("constant", 5)(step) for step in range(5)} == {1.0}
    with pytest.raises(ValueError, match="choose one of constant, onecycle, cosine"):
        ht.LRSchedule("linear", 10)
    with pytest.raises(ValueError, match="warmup_steps < total_steps"):
        ht.LRSchedule("cosine", 10, warmup_steps=10)


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def test_overfits_one_batch() -> None:
    """The classic sanity check: a model must be able to memorise a single batch."""
    runtime.seed_everything(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10))
    model.eval()  # train_one_epoch must switch to training mode itself
    images, labels = _one_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    device = torch.device(TORCH_DEVICE)
    first = ht.evaluate_epoch(model, [(images, labels)], loss_fn, device)
    ht.train_one_epoch(model, [(images, labels)] * 50, optimizer, loss_fn, device)
    assert model.training
    last = ht.evaluate_epoch(model, [(images, labels)], loss_fn, device)
    assert not model.training
    assert last["loss"] < 0.05 * first["loss"] and last["acc"] == 1.0


def test_train_one_epoch_reports_the_largest_group_learning_rate() -> None:
    """With layer decay the first group is the stem's, the smallest rate: the epoch's ``lr``
    is the largest (the head's), the one the schedule sets."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 10))
    groups = [
        {"params": model[1].parameters(), "lr": 0.001},  # stem: lowest
        {"params": model[3].parameters(), "lr": 0.01},  # head
    ]
    optimizer = torch.optim.SGD(groups, lr=0.01)
    images, labels = _one_batch()
    stats = ht.train_one_epoch(
        model, [(images, labels)], optimizer, nn.CrossEntropyLoss(), torch.device("cpu")
    )
    assert stats["lr"] == pytest.approx(0.01)


def test_train_one_epoch_reports_weighted_means_and_respects_max_steps() -> None:
    model, device = _model(), torch.device(TORCH_DEVICE)
    images, labels = _one_batch(12)
    batches = [(images[:8], labels[:8]), (images[8:], labels[8:]), (images, labels)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # no change: losses comparable
    metrics = ht.train_one_epoch(
        model, batches, optimizer, nn.CrossEntropyLoss(), device, max_steps=2
    )
    assert metrics["images"] == 12 and set(metrics) >= {"loss", "acc", "seconds", "lr"}
    model.drop.p = 0.0  # the reference below must see the same network
    ref = ht.evaluate_epoch(model.train(), [(images, labels)], nn.CrossEntropyLoss(), device)
    assert metrics["loss"] == pytest.approx(ref["loss"], rel=0.2)  # same images, train-mode BN


def test_gradient_clipping_bounds_the_update() -> None:
    """With plain SGD at lr 1, the update is minus the gradient: its norm is the clipped one."""

    def update_norm(grad_clip: float | None) -> float:
        model = _model()
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        images, labels = _one_batch()
        ht.train_one_epoch(
            model, [(images * 50, labels)], optimizer, nn.CrossEntropyLoss(),
            torch.device(TORCH_DEVICE), grad_clip=grad_clip,
        )  # fmt: skip
        deltas = [
            (p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)
        ]
        return torch.cat(deltas).norm().item()

    free = update_norm(None)
    assert update_norm(free / 4) == pytest.approx(free / 4, rel=1e-3)  # clipped to the bound
    assert update_norm(free * 2) == pytest.approx(free, rel=1e-4)  # below the bound: unchanged


def test_model_ema_follows_the_weights_with_its_decay() -> None:
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = ht.ModelEma(model, decay=0.5)
    assert ema.current_decay == pytest.approx(0.1)  # (1 + 0) / (10 + 0): forgets the start fast
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.9))
    for _ in range(20):
        ema.update(model)
    assert ema.current_decay == 0.5 and not ema.module.weight.requires_grad
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ht.ModelEma(model, decay=1.0)


# ----------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------


def test_fit_prints_one_line_per_epoch_and_returns_the_history(tmp_path, capsys) -> None:
    cfg = _cfg(tmp_path, epochs=3)
    result = _fit(cfg, class_names=hd.CIFAR10_CLASSES)
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if re.match(r"^\s+\d+\s", line)]
    assert len(rows) == 3 and len({len(row.rstrip(" *")) for row in rows}) == 1  # fixed width
    assert any(line.lstrip().startswith("epoch") for line in lines)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert all(set(row) == HISTORY_KEYS for row in result.history)
    assert all(0 <= row["val_acc"] <= 1 and row["images_per_second"] > 0 for row in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_checkpoint == tmp_path / "run" / "best.pt"
    assert result.last_checkpoint.is_file() and (tmp_path / "run" / "config.yaml").is_file()
    best = max(result.history, key=lambda row: row["val_acc"])
    assert result.best_metric == best["val_acc"] and result.monitor == "val_acc"
    assert ht.load_checkpoint(result.best_checkpoint)["epoch"] == result.best_epoch


def test_checkpoint_holds_what_a_resume_needs_and_loads_weights_only(tmp_path) -> None:
    cfg = _cfg(tmp_path, epochs=1, ema_decay=0.9)
    result = _fit(cfg, class_names=hd.CIFAR10_CLASSES)
    state = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert state["format"] == ht.CHECKPOINT_FORMAT and state["epoch"] == 1
    assert {"model", "optimizer", "scheduler", "scaler", "ema", "history", "rng"} <= set(state)
    assert state["config"] == config.config_to_dict(cfg)
    assert state["class_names"] == list(hd.CIFAR10_CLASSES)
    assert {"python", "numpy", "torch"} <= set(state["rng"][0])
    model = ht.load_weights(TinyNet(), result.last_checkpoint)  # the EMA weights by default
    assert _same_weights(model.state_dict(), result.model.state_dict())
    raw = ht.load_weights(TinyNet(), result.last_checkpoint, use_ema=False)
    assert _same_weights(raw.state_dict(), state["model"])


def test_two_seeded_runs_agree_exactly(tmp_path) -> None:
    first = _fit(_cfg(tmp_path / "a", epochs=2))
    second = _fit(_cfg(tmp_path / "b", epochs=2))
    assert _without_timing(first.history) == _without_timing(second.history)
    assert _same_weights(first.model.state_dict(), second.model.state_dict())
    other = _fit(_cfg(tmp_path / "c", epochs=2, seed=1))
    assert _without_timing(other.history) != _without_timing(first.history)


class _Crash(Exception):
    """Stands for a crash (or a kill) right after an epoch's checkpoint was written."""


@pytest.mark.parametrize("loader", ["standard", "fast"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, loader, capsys) -> None:
    options = {"epochs": 4, "ema_decay": 0.8, "schedule": "onecycle", "label_smoothing": 0.1}
    straight = _fit(_cfg(tmp_path / "straight", loader=loader, **options))

    cfg = _cfg(tmp_path / "crashed", loader=loader, **options)

    def crash_after_epoch_two(row: dict) -> None:
        if row["epoch"] == 2:
            raise _Crash

    with pytest.raises(_Crash):
        _fit(cfg, on_epoch_end=crash_after_epoch_two)
    capsys.readouterr()
    runtime.seed_everything(123)  # whatever state the new process starts in
    resumed = ht.fit(TinyNet(), _loaders(cfg), cfg, device=TORCH_DEVICE)
    assert "resumed from" in capsys.readouterr().out
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    assert _without_timing(resumed.history) == _without_timing(straight.history)
    for name in ("last.pt", "best.pt"):
        a = ht.load_checkpoint(straight.checkpoint_dir / name)
        b = ht.load_checkpoint(resumed.checkpoint_dir / name)
        assert a["epoch"] == b["epoch"]
        assert _same_weights(a["model"], b["model"])
        assert _same_weights(a["ema"]["module"], b["ema"]["module"])


def test_a_finished_run_resumes_to_nothing_and_resume_false_starts_afresh(tmp_path) -> None:
    cfg = _cfg(tmp_path, epochs=1)
    first = _fit(cfg)
    epochs_run = []
    again = _fit(cfg, on_epoch_end=epochs_run.append)
    assert epochs_run == [] and again.history == first.history
    assert _same_weights(again.model.state_dict(), first.model.state_dict())
    _fit(cfg, resume=False, on_epoch_end=epochs_run.append)
    assert [row["epoch"] for row in epochs_run] == [1]


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path) -> None:
    _fit(_cfg(tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"other settings \(train\.lr: 0\.05 -> 0\.1\)"):
        _fit(_cfg(tmp_path, epochs=2, lr=0.1))
    longer = _fit(_cfg(tmp_path, epochs=2))  # more epochs is a change a resume allows
    assert [row["epoch"] for row in longer.history] == [1, 2]


def test_truncated_foreign_and_unsafe_checkpoints_are_clear_errors(tmp_path) -> None:
    good = _fit(_cfg(tmp_path, epochs=1)).last_checkpoint
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"{re.escape(str(truncated))} cannot be read.*truncated"):
        ht.load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": TinyNet().state_dict()}, foreign)
    with pytest.raises(ValueError, match=r"foreign\.pt is not a helpers\.train checkpoint"):
        ht.load_checkpoint(foreign)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": 1, "epoch": 1, "model": {}, "config": _Crash()}, unsafe)
    with pytest.raises(ValueError, match=r"unsafe\.pt holds objects that weights_only"):
        ht.load_checkpoint(unsafe)
    newer = tmp_path / "newer.pt"
    torch.save({"format": 99, "epoch": 1, "model": {}, "config": {}}, newer)
    with pytest.raises(ValueError, match="format 99"):
        ht.load_checkpoint(newer)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        ht.load_checkpoint(tmp_path / "missing.pt")
    good.write_bytes(truncated.read_bytes())  # a damaged last.pt stops a resume, naming it
    with pytest.raises(ValueError, match=re.escape(str(good))):
        _fit(_cfg(tmp_path, epochs=2))


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch) -> None:
    path = ht.save_checkpoint({"epoch": 1, "model": {}, "config": {}}, tmp_path / "last.pt")

    def crash_while_writing(obj, stream, *args, **kwargs):
        stream.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_while_writing)
    with pytest.raises(OSError, match="disk full"):
        ht.save_checkpoint({"epoch": 2, "model": {}, "config": {}}, path)
    monkeypatch.undo()
    assert ht.load_checkpoint(path)["epoch"] == 1  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_ema_weights_differ_and_are_the_ones_validated(tmp_path) -> None:
    cfg = _cfg(tmp_path, epochs=2, ema_decay=0.9)
    loaders = _loaders(cfg)
    model = _model()
    result = ht.fit(model, loaders, cfg, device=TORCH_DEVICE)
    assert result.model is not model
    assert not _same_weights(result.model.state_dict(), model.state_dict())
    loss_fn, device = nn.CrossEntropyLoss(), torch.device(TORCH_DEVICE)
    on_ema = ht.evaluate_epoch(result.model, loaders.val, loss_fn, device, channels_last=True)
    on_raw = ht.evaluate_epoch(model, loaders.val, loss_fn, device, channels_last=True)
    assert result.history[-1]["val_loss"] == pytest.approx(on_ema["loss"], rel=1e-5)
    assert on_raw["loss"] != pytest.approx(on_ema["loss"], rel=1e-3)


def test_early_stopping_stops_when_the_monitor_stalls(tmp_path, capsys) -> None:
    stopper = ht.EarlyStopping(mode="min", patience=2, min_delta=0.1)
    assert [stopper.step(v, e) for e, v in enumerate([1.0, 0.95, 0.8, 0.75], 1)] == [
        True,
        False,
        True,
        False,
    ]
    assert not stopper.should_stop and stopper.step(0.79, 5) is False and stopper.should_stop
    cfg = _cfg(tmp_path, epochs=6, lr=1e-12, schedule="constant", early_stopping_patience=2)
    result = _fit(cfg)  # a learning rate of ~0: validation accuracy never improves
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    assert "early stop" in capsys.readouterr().out
    assert _fit(cfg).history == result.history  # a resume does not train on
    with pytest.raises(ValueError, match="choose 'max' or 'min'"):
        ht.EarlyStopping(mode="up")


def test_bf16_autocast_and_channels_last_on_the_cpu(tmp_path) -> None:
    cfg = _cfg(tmp_path, epochs=1, precision="bf16", channels_last=True)
    model = _model()
    result = ht.fit(model, _loaders(cfg), cfg, device="cpu")
    assert model.seen_dtypes == {torch.bfloat16}  # convolutions ran in bf16
    assert model.seen_channels_last == {True}
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(math.isfinite(result.history[-1][key]) for key in ("train_loss", "val_loss"))
    assert model.conv.weight.dtype == torch.float32  # autocast keeps fp32 master weights
    with pytest.raises(ValueError, match="fp16' is not supported on the CPU"):
        _fit(_cfg(tmp_path / "fp16", epochs=1, precision="fp16"))


def test_diverging_loss_stops_with_advice_before_saving(tmp_path) -> None:
    class Broken(TinyNet):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return super().forward(images) * math.nan

    cfg = _cfg(tmp_path, epochs=1)
    with pytest.raises(FloatingPointError, match=r"training diverged\. Lower train\.lr"):
        ht.fit(Broken(), _loaders(cfg), cfg, device=TORCH_DEVICE)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_bad_training_settings_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"epochs must be at least 1.*label_smoothing"):
        _fit(_cfg(tmp_path, epochs=0, label_smoothing=1.0))
    with pytest.raises(ValueError, match="run_name must be a plain folder name"):
        ht.resolve_checkpoint_dir(
            config.apply_overrides(config.RunConfig(), ["train.run_name=a/b"])
        )
    cfg = config.apply_overrides(config.RunConfig(), ["train.run_name=exp1"])
    assert ht.resolve_checkpoint_dir(cfg) == config.data_dir() / "checkpoints" / "exp1"


def test_tensorboard_logs_go_under_the_checkpoint_folder(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    result = _fit(_cfg(tmp_path, epochs=1, tensorboard=True))
    events = list((result.checkpoint_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


@pytest.mark.slow
def test_compiled_model_trains_and_checkpoints_plain_weights(tmp_path) -> None:
    """torch.compile (about 20 s of compiling on a CPU): the checkpoint holds the plain
    model's keys, so it loads into an uncompiled network."""
    cfg = _cfg(tmp_path, epochs=1, compile=True, loader="fast")
    result = _fit(cfg)
    assert math.isfinite(result.history[-1]["train_loss"])
    weights = ht.load_checkpoint(result.last_checkpoint)["model"]
    assert not any(key.startswith("_orig_mod") for key in weights)
    ht.load_weights(TinyNet(), result.last_checkpoint)


# ----------------------------------------------------------------------------------------------
# The command line: python -m helpers train
# ----------------------------------------------------------------------------------------------

SMOKE_OVERRIDES = ["profile=smoke", "train.progress=false", "train.precision=fp32"]


def test_cli_trains_on_smoke_data_and_writes_checkpoints_and_history(capsys) -> None:
    pytest.importorskip("helpers.models")
    overrides = [*SMOKE_OVERRIDES, "train.run_name=cli", "train.epochs=2"]
    with pytest.warns(hd.SyntheticDataWarning):
        assert main(["train", "--device", "cpu", *overrides]) == 0
    out = capsys.readouterr().out
    folder = config.data_dir() / "checkpoints" / "cli"
    assert {"last.pt", "best.pt", "config.yaml", "history.json"} <= {
        p.name for p in folder.iterdir()
    }
    summary = json.loads((folder / "history.json").read_text())
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
    assert summary["test"]["images"] == config.PROFILES["smoke"].eval_images
    assert summary["config"]["profile"] == "smoke"
    assert re.search(r"^test: loss \d+\.\d+, accuracy \d+\.\d+% on 256 images", out, re.M)
    assert ht.load_checkpoint(folder / "last.pt")["config"]["train"]["max_steps_per_epoch"] == 2


def test_load_trained_rebuilds_the_run_model_from_its_checkpoint(tmp_path) -> None:
    cfg = replace(_cfg(tmp_path, epochs=1), model=config.ModelConfig(name="simple_cnn"))
    cfg = replace(cfg, data=replace(cfg.data, image_size=32))
    images = hd.make_synthetic_data(10, 4, image_size=32)
    loaders = hd.make_loaders(images, cfg.data, device="cpu", seed=0)
    runtime.seed_everything(0)
    model = hm.create_model_from_config(cfg.model)
    result = ht.fit(model, loaders, cfg, device="cpu", class_names=images.class_names)
    trained = ht.load_trained(result.best_checkpoint)
    batch = next(iter(loaders.test))[0]
    assert not trained.model.training and trained.config == cfg and trained.epoch == 1
    assert trained.class_names == list(images.class_names) and len(trained.history) == 1
    with torch.no_grad():
        assert torch.allclose(trained.model(batch), result.model.eval()(batch), atol=1e-5)
    with pytest.raises(FileNotFoundError):
        ht.load_trained(tmp_path / "missing.pt")


def test_cli_rejects_a_bad_override_with_the_choices(capsys) -> None:
    assert main(["train", "train.optimizer=adam"]) == 2
    assert "choose one of ['sgd', 'adamw']" in capsys.readouterr().err


def test_example_config_loads_and_scales_with_the_profile() -> None:
    path = REPO_ROOT / "configs" / "resnet9_cifar10.yaml"
    full = config.load_run_config(path, cuda_available=True)
    assert full.model.name == "resnet9" and full.profile == "full"
    assert full.train.epochs == config.PROFILES["full"].epochs
    smoke = config.load_run_config(path, ["profile=smoke", "train.epochs=3"])
    assert smoke.data.train_images == 512 and smoke.train.max_steps_per_epoch == 2
    assert smoke.train.epochs == 3  # an override beats the profile


def _cli(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "helpers", "train", "--device", "cpu", *overrides]


def _wait_for_epoch(path: Path, proc: subprocess.Popen, timeout: float) -> int:
    """Poll until ``path`` holds a checkpoint; return its epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_file():
            return ht.load_checkpoint(path)["epoch"]
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint at {path} (exit code {proc.poll()})")


@pytest.mark.slow
def test_kill_9_loses_at_most_the_current_epoch(tmp_path) -> None:
    pytest.importorskip("helpers.models")
    env = {**os.environ, "HELPERS_DATA_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    args = _cli(
        *SMOKE_OVERRIDES, "train.epochs=4", "data.train_images=1000",
        "train.max_steps_per_epoch=null", "data.batch_size=50", "train.run_name=killed",
    )  # fmt: skip
    last = tmp_path / "checkpoints" / "killed" / "last.pt"
    proc = subprocess.Popen(args, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    try:
        killed_after = _wait_for_epoch(last, proc, timeout=120)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and killed_after == 1
    rerun = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from {last} after epoch 1" in rerun.stdout
    epochs = [int(m) for m in re.findall(r"^\s+(\d+)\s", rerun.stdout, re.M)]
    assert epochs == [2, 3, 4]  # epoch 1 was not trained again
    summary = json.loads((last.parent / "history.json").read_text())
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3, 4]


# ----------------------------------------------------------------------------------------------
# Class-weighted loss (train.class_weighting)
# ----------------------------------------------------------------------------------------------


def _long_tailed_data() -> hd.ImageData:
    """Synthetic 8x8 images whose classes shrink from 10 images (class 0) to 2 (class 9)."""
    balanced = hd.make_synthetic_data(10, 4, image_size=8)
    return hd.take(balanced, train=hd.long_tailed_subset(balanced.train_labels, 5.0))


def _fit_spying_on_the_loss(
    cfg: config.RunConfig, data: hd.ImageData, monkeypatch: pytest.MonkeyPatch
) -> nn.Module:
    """Run ``fit`` and return the loss function it handed to ``train_one_epoch``."""
    from helpers.train import _fit as fit_module

    seen = []

    def spy(model, loader, optimizer, loss_fn, device, **kwargs):
        seen.append(loss_fn)
        return ht.train_one_epoch(model, loader, optimizer, loss_fn, device, **kwargs)

    monkeypatch.setattr(fit_module, "train_one_epoch", spy)
    loaders = hd.make_loaders(data, cfg.data, device=TORCH_DEVICE, seed=0)
    ht.fit(_model(), loaders, cfg, device=TORCH_DEVICE, resume=False)
    assert len(seen) == cfg.train.epochs and all(fn is seen[0] for fn in seen)
    return seen[0]


@pytest.mark.parametrize("loader", ["standard", "fast"])
def test_balanced_class_weighting_trains_on_a_weighted_cross_entropy(
    tmp_path, loader, monkeypatch
) -> None:
    data = _long_tailed_data()
    cfg = _cfg(tmp_path, loader=loader, epochs=1, class_weighting="balanced")
    loss_fn = _fit_spying_on_the_loss(cfg, data, monkeypatch)
    train_index, _ = hd.stratified_split(data.train_labels, 0.2, seed=0)  # as make_loaders
    counts = torch.bincount(data.train_labels[train_index], minlength=10).double()
    weights = (1 / counts) / (1 / counts).mean()  # inverse frequency, mean 1
    assert weights[9] > 3 * weights[0]  # the rare class counts several times more
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    targets = torch.tensor([0, 9, 3, 3, 5, 9])
    log_probs = logits.log_softmax(dim=1)  # (B, K)
    picked = weights[targets]  # (B,) each image's class weight
    expected = -(picked * log_probs[torch.arange(6), targets]).sum() / picked.sum()
    loss = loss_fn(logits.float().to(TORCH_DEVICE), targets.to(TORCH_DEVICE))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    plain = nn.functional.cross_entropy(logits, targets)
    assert abs(loss.item() - plain.item()) > 1e-3  # and the weights make a difference


def test_without_class_weighting_the_loss_is_plain_cross_entropy_with_smoothing(
    tmp_path, monkeypatch
) -> None:
    cfg = _cfg(tmp_path, epochs=1, label_smoothing=0.1)
    loss_fn = _fit_spying_on_the_loss(cfg, _long_tailed_data(), monkeypatch)
    assert isinstance(loss_fn, nn.CrossEntropyLoss)
    assert loss_fn.weight is None and loss_fn.label_smoothing == 0.1
    balanced = config.replace_values(cfg, {"train.class_weighting": "balanced"})
    weighted = _fit_spying_on_the_loss(balanced, _long_tailed_data(), monkeypatch)
    assert weighted.weight is not None and weighted.label_smoothing == 0.1


def test_class_weighting_needs_the_training_labels(tmp_path) -> None:
    from types import SimpleNamespace

    from torch.utils.data import DataLoader, TensorDataset

    images, labels = _one_batch()
    loaders = SimpleNamespace(train=DataLoader(TensorDataset(images, labels)), val=None)
    cfg = _cfg(tmp_path, epochs=1, class_weighting="balanced")
    with pytest.raises(ValueError, match=r"class_weighting='balanced' needs the training labels"):
        ht.fit(_model(), loaders, cfg, device=TORCH_DEVICE)
    typo = config.replace_values(cfg, {})
    object.__setattr__(typo.train, "class_weighting", "inverse")  # bypassing the type check
    with pytest.raises(ValueError, match="unknown class_weighting 'inverse'; choose 'none'"):
        _fit(typo)


def test_a_checkpoint_without_a_newer_setting_resumes_as_its_default(tmp_path) -> None:
    _fit(_cfg(tmp_path, epochs=1))
    last = tmp_path / "run" / "last.pt"
    state = ht.load_checkpoint(last)
    del state["config"]["train"]["class_weighting"]  # as written before the setting existed
    ht.save_checkpoint(state, last)
    longer = _fit(_cfg(tmp_path, epochs=2))
    assert [row["epoch"] for row in longer.history] == [1, 2]
    with pytest.raises(ValueError, match=r"train\.class_weighting: 'none' -> 'balanced'"):
        _fit(_cfg(tmp_path, epochs=3, class_weighting="balanced"))
