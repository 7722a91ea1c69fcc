"""Training and timing: :func:`fit_fast` trains a FastNet, :func:`train_fast` times a whole run."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from helpers.data import ImageData
from helpers.models import FastNet
from helpers.runtime import autocast_dtype, seed_everything, synchronize

from ._config import FastConfig, FastResult, total_steps
from ._data import FastData, FastLoader, prepare_fast_data
from ._evaluate import evaluate_tta
from ._optim import (
    Lookahead,
    build_optimizers,
    lookahead_decay,
    lr_factor,
    set_lr_factor,
)
from ._whiten import init_whitening


def build_fast_model(
    cfg: FastConfig, device: torch.device | str, *, num_classes: int = 10
) -> nn.Module:
    """A :class:`~helpers.models.FastNet` for ``cfg`` on ``device``, compiled if asked.

    Args:
        cfg: the recipe's settings (widths, whitening, batch norm, layout, compile).
        device: where it runs.
        num_classes: outputs of the head.

    Returns:
        The FastNet, or its ``torch.compile`` wrapper (the FastNet is ``._orig_mod``).
        Pass it to :func:`fit_fast` or :func:`train_fast` as often as you like: each run
        re-initialises it, so a compiled model is compiled once.
    """
    net = FastNet(
        num_classes=num_classes,
        widths=cfg.widths,
        whiten_kernel=cfg.whiten_kernel,
        whiten_frozen=cfg.whiten_frozen,
        bn_momentum=cfg.bn_momentum,
        head_scale=cfg.head_scale,
    ).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return torch.compile(net) if cfg.compile else net


def _unwrap(model: nn.Module) -> FastNet:
    """The FastNet inside a compiled model (or the model itself)."""
    net = getattr(model, "_orig_mod", model)
    if not isinstance(net, FastNet):
        raise ValueError(f"expected a FastNet (see build_fast_model), got {type(net).__name__}.")
    return net


class _Stopwatch:
    """Adds up the seconds spent inside ``with stopwatch:`` blocks, waiting for the device
    at both ends so that queued GPU work is counted where it belongs."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, 0.0

    def __enter__(self) -> _Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.seconds += time.perf_counter() - self._start


@dataclass
class _RunState:
    """What one training run carries from step to step."""

    model: nn.Module  # what is called (compiled or not)
    net: FastNet  # its parameters
    loader: FastLoader
    optimizers: list[torch.optim.Optimizer]
    lookahead: Lookahead | None
    total_steps: int
    bias_steps: int  # the whitening bias trains during the first bias_steps steps
    dtype: torch.dtype | None  # autocast
    step: int = 0


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype``, or nothing for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _start_run(model: nn.Module, data: FastData, cfg: FastConfig, seed: int) -> _RunState:
    """Re-initialise the model (whitening from the data), build optimisers and loader."""
    net = _unwrap(model)
    seed_everything(seed)
    net.reset_parameters()
    if cfg.whiten_init:
        init_whitening(net, data.whitening_inputs(cfg.whiten_images), eps=cfg.whiten_eps)
    loader = FastLoader(
        data,
        batch_size=cfg.batch_size,
        flip=cfg.flip,
        translate=cfg.translate,
        channels_last=cfg.channels_last,
        seed=seed,
    )
    if len(loader) == 0:
        raise ValueError(
            f"batch_size={cfg.batch_size} is larger than the {len(data.train_labels)} "
            "training images; lower batch_size."
        )
    steps = total_steps(cfg.epochs, len(loader))
    return _RunState(
        model=model,
        net=net,
        loader=loader,
        optimizers=build_optimizers(net, cfg),
        lookahead=Lookahead(net) if cfg.lookahead else None,
        total_steps=steps,
        bias_steps=round(cfg.whiten_bias_epochs * len(loader)),
        dtype=autocast_dtype(data.device, cfg.precision),
    )


def _train_step(
    state: _RunState, images: torch.Tensor, labels: torch.Tensor, cfg: FastConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step; returns the summed loss and the number correct (on device)."""
    state.net.whiten.bias.requires_grad_(state.step < state.bias_steps)
    set_lr_factor(state.optimizers, lr_factor(state.step, state.total_steps, cfg))
    with _autocast(images.device, state.dtype):
        logits = state.model(images)  # (B, num_classes)
        loss = F.cross_entropy(
            logits.float(), labels, label_smoothing=cfg.label_smoothing, reduction="sum"
        )
    for optimizer in state.optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in state.optimizers:
        optimizer.step()
    state.step += 1
    if state.lookahead is not None and state.step % cfg.lookahead_every == 0:
        decay = lookahead_decay(state.step, state.total_steps, cfg)
        state.lookahead.update(state.net, decay)
    return loss.detach(), (logits.argmax(1) == labels).sum()


def _train_epoch(state: _RunState, epoch: int, cfg: FastConfig) -> dict[str, float]:
    """The steps of one epoch (fewer in a fractional last one); loss and accuracy."""
    state.model.train()
    steps = min(len(state.loader), state.total_steps - state.step)
    loss_sum = torch.zeros((), device=state.loader.data.device)
    correct = torch.zeros((), dtype=torch.long, device=state.loader.data.device)
    images_seen = 0
    for images, labels in state.loader.epoch(epoch, steps):
        loss, hits = _train_step(state, images, labels, cfg)
        loss_sum += loss
        correct += hits
        images_seen += len(labels)
    if state.lookahead is not None and state.step == state.total_steps:
        state.lookahead.finish(state.net)  # the run ends on the averaged weights
    return {
        "train_loss": loss_sum.item() / images_seen,
        "train_acc": correct.item() / images_seen,
        "images": float(images_seen),
    }


def _epoch_line(row: dict[str, float], header: bool) -> str:
    """One fixed-width progress line (with the column names first when ``header``)."""
    columns = ("epoch", "train_loss", "train_acc", "test_acc", "lr", "seconds")
    cells = []
    for name in columns:
        value = row[name]
        if name == "epoch":
            cells.append(f"{int(value):>5d}")
        elif math.isnan(value):
            cells.append(f"{'-':>10}")
        else:
            cells.append(f"{value:>10.4f}")
    line = "  ".join(cells)
    if header:
        return (
            "  ".join(f"{name:>{5 if name == 'epoch' else 10}}" for name in columns) + "\n" + line
        )
    return line


def fit_fast(
    model: nn.Module,
    data: FastData,
    cfg: FastConfig,
    *,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Train ``model`` from scratch with the fast recipe; the clock runs only while training.

    Re-initialises the model under ``seed``, sets the whitening filters from
    ``cfg.whiten_images`` training images spread over the set (``cfg.whiten_init``), then takes
    ``ceil(cfg.epochs * len(loader))`` steps of summed label-smoothed cross-entropy with
    the optimisers of :func:`build_optimizers`, the warm-up-then-linear schedule and
    lookahead. With ``cfg.epoch_eval`` each epoch ends with an untimed test evaluation.

    Args:
        model: from :func:`build_fast_model` (compiled or not).
        data: from :func:`prepare_fast_data`, on the model's device.
        cfg: the recipe's settings.
        seed: seeds initialisation, order and augmentation.
        progress: print one line per epoch.

    Returns:
        One dict per epoch: ``epoch`` (from 1), ``train_loss`` (per image), ``train_acc``,
        ``test_acc`` (NaN unless ``cfg.epoch_eval``), ``lr`` (the last step's schedule
        factor), ``seconds`` (training time so far, waiting for the device included) and
        ``images_per_second``.
    """
    stopwatch = _Stopwatch(data.device)
    with stopwatch:
        state = _start_run(model, data, cfg, seed)
    history: list[dict[str, float]] = []
    epoch = 0
    while state.step < state.total_steps:
        before = stopwatch.seconds
        with stopwatch:
            stats = _train_epoch(state, epoch, cfg)
        row = _epoch_row(state, epoch, stats, stopwatch.seconds, before, cfg)
        if cfg.epoch_eval:
            row["test_acc"] = evaluate_fast(model, data, cfg, level=0)
        history.append(row)
        if progress:
            print(_epoch_line(row, header=epoch == 0), flush=True)
        epoch += 1
    return history


def _epoch_row(
    state: _RunState,
    epoch: int,
    stats: dict[str, float],
    seconds: float,
    before: float,
    cfg: FastConfig,
) -> dict[str, float]:
    """The history entry of one epoch."""
    return {
        "epoch": float(epoch + 1),
        "train_loss": stats["train_loss"],
        "train_acc": stats["train_acc"],
        "test_acc": float("nan"),
        "lr": lr_factor(state.step - 1, state.total_steps, cfg),
        "seconds": seconds,
        "images_per_second": stats["images"] / max(seconds - before, 1e-9),
    }


def evaluate_fast(model: nn.Module, data: FastData, cfg: FastConfig, *, level: int) -> float:
    """Test accuracy of ``model`` on ``data``'s test images with TTA ``level``, in the
    precision, layout and batch size of ``cfg`` (see :func:`evaluate_tta`).

    Args:
        model: a trained model, on ``data``'s device.
        data: from :func:`prepare_fast_data`.
        cfg: the recipe's settings.
        level: 0, 1 or 2.

    Returns:
        The share of test images classified correctly.
    """
    return evaluate_tta(
        model,
        data.test_inputs,
        data.test_labels,
        level,
        batch_size=cfg.eval_batch_size,
        autocast_dtype=autocast_dtype(data.device, cfg.precision),
        channels_last=cfg.channels_last,
    )


def train_fast(
    data: ImageData | FastData,
    cfg: FastConfig,
    *,
    device: torch.device | str,
    seed: int = 0,
    progress: bool = False,
    model: nn.Module | None = None,
) -> FastResult:
    """One run of the fast recipe: train on every training image, test on every test image.

    The data is moved to the device first (untimed). Training (whitening init included),
    the evaluation at ``cfg.tta_level`` and the one without TTA are each timed between two
    :func:`helpers.runtime.synchronize` calls.

    Args:
        data: an :class:`~helpers.data.ImageData`, or a :class:`FastData` already on
            ``device`` (to reuse it across seeds).
        cfg: the recipe's settings.
        device: where to train.
        seed: seeds initialisation, order and augmentation.
        progress: print one line per epoch.
        model: a model from :func:`build_fast_model` to re-initialise and train (a
            compiled one is then compiled only once); ``None`` builds a new one.

    Returns:
        A :class:`FastResult`.

    Raises:
        ValueError: for a model that is not a FastNet, or too few training images.

    >>> from helpers.data import make_synthetic_data
    >>> cfg = FastConfig(epochs=1, batch_size=50, widths=(8, 8, 8), tta_level=1)
    >>> result = train_fast(make_synthetic_data(10, 5), cfg, device="cpu")
    >>> result.steps, 0 <= result.test_acc_tta <= 1
    (2, True)
    """
    device = torch.device(device)
    if isinstance(data, ImageData):
        data = prepare_fast_data(data, cfg, device=device)
    if model is None:
        model = build_fast_model(cfg, device, num_classes=data.num_classes)
    history = fit_fast(model, data, cfg, seed=seed, progress=progress)
    with _Stopwatch(device) as with_tta:
        accuracy_tta = evaluate_fast(model, data, cfg, level=cfg.tta_level)
    with _Stopwatch(device) as without_tta:
        plain = accuracy_tta if cfg.tta_level == 0 else evaluate_fast(model, data, cfg, level=0)
    steps = total_steps(cfg.epochs, len(data.train_labels) // cfg.batch_size)
    return FastResult(
        seed=seed,
        test_acc=plain,
        test_acc_tta=accuracy_tta,
        train_seconds=history[-1]["seconds"],
        eval_seconds=with_tta.seconds,
        eval_seconds_no_tta=without_tta.seconds if cfg.tta_level else with_tta.seconds,
        steps=steps,
        train_images=len(data.train_labels),
        test_images=len(data.test_labels),
        history=history,
        config=cfg,
        model=model,
    )


def warm_up(model: nn.Module, data: FastData, cfg: FastConfig, *, steps: int = 3) -> None:
    """Run a few training steps and one evaluation batch, untimed, so that a compiled
    model is compiled (and cuDNN has chosen its kernels) before a timed run.

    Both graphs of training are compiled, with the whitening bias trained and frozen,
    and the evaluation graph at ``cfg.eval_batch_size``.

    Args:
        model: from :func:`build_fast_model`.
        data: on the model's device.
        cfg: the settings of the timed runs.
        steps: training steps to take (at least 2).
    """
    per_epoch = len(data.train_labels) // cfg.batch_size
    short = cfg.replace(
        epochs=max(2, steps) / per_epoch,
        whiten_bias_epochs=1 / per_epoch,
        epoch_eval=False,
    )
    fit_fast(model, data, short, seed=0)
    count = min(cfg.eval_batch_size, len(data.test_labels))
    first = dataclasses.replace(
        data, test_inputs=data.test_inputs[:count], test_labels=data.test_labels[:count]
    )
    evaluate_fast(model, first, cfg, level=cfg.tta_level)
