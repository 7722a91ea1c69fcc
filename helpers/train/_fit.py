"""fit: a whole training run, with checkpoints, exact resume, early stopping and DDP."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from helpers.config import RunConfig, TrainConfig, config_to_dict, data_dir, save_config
from helpers.data import class_weights, set_loader_epoch
from helpers.runtime import autocast_dtype, get_device, get_rank, get_world_size, seed_everything

from ._checkpoint import (
    copy_checkpoint,
    gather_rng_states,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from ._ema import ModelEma
from ._loop import evaluate_epoch, train_one_epoch
from ._optim import LRSchedule, build_optimizer

# Settings that may change when a run resumes; any other difference is refused, because the
# resumed run would silently mix two configurations.
RESUMABLE_CHANGES: frozenset[str] = frozenset(
    {
        "profile",
        "data.num_workers",
        "train.epochs",
        "train.compile",
        "train.progress",
        "train.tensorboard",
        "train.checkpoint_dir",
        "train.run_name",
        "train.early_stopping_patience",
    }
)


class _HasLoaders(Protocol):
    """What :func:`fit` needs from :class:`helpers.data.Loaders`."""

    train: Any
    val: Any


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: one dict per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``,
            ``val_acc`` (``None`` without a validation loader), ``lr`` (of the epoch's last
            step), ``epoch_seconds`` and ``images_per_second`` (training throughput);
            accuracies are shares in ``[0, 1]``. Ready for ``helpers.plots.plot_history``.
        checkpoint_dir: the folder of ``last.pt``, ``best.pt`` and ``config.yaml``.
        best_checkpoint: ``best.pt``, the epoch with the best monitored metric.
        best_metric: that metric's best value.
        best_epoch: the epoch it was reached in.
        monitor: the history key watched (``val_acc`` unless configured otherwise).
        stopped_early: whether early stopping ended the run.
        model: the weights validated in the last epoch: the EMA copy when the run kept one,
            otherwise the trained model itself.
    """

    history: list[dict[str, Any]]
    checkpoint_dir: Path
    best_checkpoint: Path | None
    best_metric: float | None
    best_epoch: int | None
    monitor: str
    stopped_early: bool
    model: nn.Module

    @property
    def last_checkpoint(self) -> Path:
        """``last.pt``, written after every epoch; :func:`fit` resumes from it."""
        return self.checkpoint_dir / "last.pt"


class EarlyStopping:
    """Track the best value of a metric and count the epochs without improvement.

    Args:
        mode: ``"max"`` when higher is better (accuracy), ``"min"`` when lower is (loss).
        patience: stop after this many epochs without improvement; ``None``: never stop,
            only track the best value.
        min_delta: the smallest change that counts as an improvement.

    Raises:
        ValueError: for an unknown mode, a patience below 1, or a negative ``min_delta``.

    >>> stopper = EarlyStopping(mode="min", patience=2)
    >>> [stopper.step(loss, epoch) for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.7], 1)]
    [True, True, False, False]
    >>> stopper.should_stop, stopper.best, stopper.best_epoch
    (True, 0.5, 2)
    """

    def __init__(
        self, *, mode: str = "max", patience: int | None = None, min_delta: float = 0.0
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"Unknown mode {mode!r}; choose 'max' or 'min'.")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be at least 1 (or None), got {patience!r}.")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}.")
        self.mode, self.patience, self.min_delta = mode, patience, min_delta
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def step(self, value: float, epoch: int) -> bool:
        """Record epoch ``epoch``'s ``value``; return whether it is a new best."""
        if self.best is None:
            improved = math.isfinite(value)  # the first finite value is the best so far
        else:
            gain = value - self.best if self.mode == "max" else self.best - value
            improved = math.isfinite(value) and gain > self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = float(value), epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` epochs in a row brought no improvement."""
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """The best value, its epoch and the count of epochs without improvement."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])


def resolve_checkpoint_dir(cfg: RunConfig) -> Path:
    """Where a run's checkpoints go: ``cfg.train.checkpoint_dir``, or
    ``data_dir()/checkpoints/<cfg.train.run_name>``.

    Raises:
        ValueError: for a run name that is empty or contains a path separator.
    """
    if cfg.train.checkpoint_dir:
        return Path(cfg.train.checkpoint_dir).expanduser()
    name = cfg.train.run_name
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"run_name must be a plain folder name, got {name!r}.")
    return data_dir() / "checkpoints" / name


# ----------------------------------------------------------------------------------------------
# Setting a run up
# ----------------------------------------------------------------------------------------------


@dataclass
class _Session:
    """Everything a fit keeps from epoch to epoch."""

    cfg: RunConfig
    raw: nn.Module  # the model itself: what checkpoints hold
    device: torch.device
    loaders: _HasLoaders
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    dtype: torch.dtype | None  # autocast dtype; None for fp32
    ema: ModelEma | None
    steps_per_epoch: int
    monitor: str
    stopper: EarlyStopping
    loss_fn: nn.Module  # the training loss: cross-entropy, label smoothing, class weights
    checkpoint_dir: Path
    class_names: list[str] | None
    verbose: bool
    model: nn.Module | None = None  # what trains: compiled and/or in DDP (set by _wrap)
    eval_model: nn.Module | None = None  # what is validated: the EMA copy or the model
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0  # epochs completed
    stopped_early: bool = False
    writer: Any = None  # a TensorBoard SummaryWriter on rank 0, when asked for

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and prints (rank 0)."""
        return get_rank() == 0


def _check_train_config(train: TrainConfig) -> None:
    """``ValueError`` for values the types allow but training cannot use."""
    problems = [
        (train.epochs < 1, f"epochs must be at least 1, got {train.epochs}"),
        (train.lr <= 0, f"lr must be positive, got {train.lr}"),
        (not 0 <= train.label_smoothing < 1, "label_smoothing must lie in [0, 1)"),
        (
            train.class_weighting not in ("none", "balanced"),
            f"unknown class_weighting {train.class_weighting!r}; choose 'none' or 'balanced'",
        ),
        (train.grad_clip is not None and train.grad_clip <= 0, "grad_clip must be > 0 or null"),
        (train.warmup_epochs < 0, "warmup_epochs must be >= 0"),
        (
            train.layer_decay is not None and not 0 < train.layer_decay <= 1,
            "layer_decay must lie in (0, 1] or be null",
        ),
        (
            train.max_steps_per_epoch is not None and train.max_steps_per_epoch < 1,
            "max_steps_per_epoch must be at least 1 or null",
        ),
    ]
    messages = [message for failed, message in problems if failed]
    if messages:
        raise ValueError("Bad training config: " + "; ".join(messages) + ".")


def _steps_per_epoch(loader: Any, max_steps: int | None) -> int:
    """Optimiser steps per epoch (the schedule's unit); ``ValueError`` for an empty loader."""
    try:
        steps = len(loader)
    except TypeError as err:
        raise ValueError("The training loader must have a length (batches per epoch).") from err
    steps = steps if max_steps is None else min(steps, max_steps)
    if steps < 1:
        raise ValueError("The training loader yields no batch: use more images or smaller batches.")
    return steps


def _loader_world_size(loader: Any) -> int | None:
    """How many processes a loader was sharded for, when it says so."""
    for owner in (loader, getattr(loader, "sampler", None)):
        for name in ("world_size", "num_replicas"):  # ours; torch's DistributedSampler
            if isinstance(getattr(owner, name, None), int):
                return getattr(owner, name)
    return None


def _check_sharded(loader: Any, world_size: int) -> None:
    """``ValueError`` when, with several processes, every one would see the same data."""
    found = _loader_world_size(loader)
    if world_size > 1 and found != world_size:
        raise ValueError(
            f"This run has {world_size} processes but the training loader is sharded for "
            f"{found or 1}; build it with helpers.data.make_loaders after "
            "helpers.runtime.init_distributed (or pass rank and world_size)."
        )


def _monitor(train: TrainConfig, has_val: bool) -> tuple[str, str]:
    """The history key to watch and its mode; ``val_*`` becomes ``train_*`` without a
    validation loader."""
    monitor = train.monitor
    if monitor.startswith("val_") and not has_val:
        monitor = "train_" + monitor.removeprefix("val_")
    mode = train.monitor_mode
    if mode == "auto":
        mode = "max" if monitor.endswith("_acc") else "min"
    return monitor, mode


def _resolve_device(device: torch.device | str | None) -> torch.device:
    """The device to train on; a bare ``cuda`` becomes the current GPU (under torchrun, the
    one :func:`helpers.runtime.init_distributed` chose)."""
    device = get_device(None if device is None else str(device))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _optimisation(
    raw: nn.Module, train: TrainConfig, steps: int, device: torch.device
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, torch.amp.GradScaler | None]:
    """The optimiser, the per-step schedule, and a gradient scaler for fp16."""
    optimizer = build_optimizer(
        raw,
        name=train.optimizer,
        lr=train.lr,
        weight_decay=train.weight_decay,
        momentum=train.momentum,
        nesterov=train.nesterov,
        layer_decay=train.layer_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(train, steps))
    dtype = autocast_dtype(device, train.precision)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return optimizer, scheduler, scaler


def _training_labels(loader: Any) -> torch.Tensor:
    """The labels of every training image: ``loader.dataset.labels`` (ours) or ``.targets``
    (torchvision's data sets); ``ValueError`` when the loader exposes neither."""
    dataset = getattr(loader, "dataset", None)
    for name in ("labels", "targets"):
        labels = getattr(dataset, name, None)
        if labels is not None:
            return torch.as_tensor(labels).cpu()
    raise ValueError(
        "train.class_weighting='balanced' needs the training labels, but the training loader "
        "has no dataset.labels or dataset.targets. Build the loaders with "
        "helpers.data.make_loaders, give your dataset a labels attribute, or set "
        "train.class_weighting='none'."
    )


def _training_loss(cfg: RunConfig, loader: Any, device: torch.device) -> nn.Module:
    """Cross-entropy with the configured label smoothing and, for ``class_weighting=
    "balanced"``, inverse-frequency class weights from the training labels."""
    weight = None
    if cfg.train.class_weighting == "balanced":
        weight = class_weights(_training_labels(loader), cfg.model.num_classes).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.train.label_smoothing)


def _schedule(train: TrainConfig, steps: int) -> LRSchedule:
    """The run's learning-rate schedule; the warm-up is at most half the run."""
    total = train.epochs * steps
    warmup = min(round(train.warmup_epochs * steps), total // 2)
    return LRSchedule(train.schedule, total, warmup_steps=warmup, peak_at=train.onecycle_peak)


def _start(
    model: nn.Module,
    loaders: _HasLoaders,
    cfg: RunConfig,
    device: torch.device,
    class_names: Sequence[str] | None,
    verbose: bool,
) -> _Session:
    """Seed, move the model, and build everything a run needs (before any resume)."""
    train = cfg.train
    _check_train_config(train)
    _check_sharded(loaders.train, get_world_size())
    seed_everything(train.seed + get_rank(), deterministic=train.deterministic)
    raw = model.to(device)
    if train.channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    steps = _steps_per_epoch(loaders.train, train.max_steps_per_epoch)
    optimizer, scheduler, scaler = _optimisation(raw, train, steps, device)
    monitor, mode = _monitor(train, loaders.val is not None)
    return _Session(
        cfg=cfg,
        raw=raw,
        device=device,
        loaders=loaders,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        dtype=autocast_dtype(device, train.precision),
        ema=ModelEma(raw, train.ema_decay) if train.ema_decay is not None else None,
        steps_per_epoch=steps,
        monitor=monitor,
        stopper=EarlyStopping(
            mode=mode,
            patience=train.early_stopping_patience,
            min_delta=train.early_stopping_min_delta,
        ),
        loss_fn=_training_loss(cfg, loaders.train, device),
        checkpoint_dir=resolve_checkpoint_dir(cfg),
        class_names=list(class_names) if class_names is not None else None,
        verbose=verbose,
    )


def _wrap(session: _Session) -> None:
    """Compile and wrap the model for training, once any resumed weights are in place."""
    model = session.raw
    if session.cfg.train.compile:
        model = torch.compile(model)
    session.eval_model = session.ema.module if session.ema is not None else model
    if get_world_size() > 1:
        device_ids = [session.device.index] if session.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    session.model = model


# ----------------------------------------------------------------------------------------------
# Checkpoints and resuming
# ----------------------------------------------------------------------------------------------


def _normalization(loaders: _HasLoaders) -> dict[str, list[float]] | None:
    """The loaders' per-channel ``mean`` and ``std`` (as :class:`~helpers.data.Loaders` has)."""
    mean, std = getattr(loaders, "mean", None), getattr(loaders, "std", None)
    if mean is None or std is None:
        return None
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def _checkpoint_state(session: _Session, rng: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything needed to rebuild the model and to continue the run exactly."""
    import helpers

    return {
        "epoch": session.epoch,
        "model": session.raw.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.scheduler.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler is not None else None,
        "ema": session.ema.state_dict() if session.ema is not None else None,
        "history": session.history,
        "monitor": {"name": session.monitor, **session.stopper.state_dict()},
        "stopped_early": session.stopped_early,
        "rng": rng,  # one entry per process
        "config": config_to_dict(session.cfg),
        "class_names": session.class_names,
        "normalization": _normalization(session.loaders),  # what a Predictor needs
        "world_size": get_world_size(),
        "versions": {"torch": str(torch.__version__), "helpers": str(helpers.__version__)},
    }


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"train.lr": 0.05, ...}`` (``model.kwargs`` kept whole)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "kwargs":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_resumable(saved: dict[str, Any], cfg: RunConfig, path: Path) -> None:
    """``ValueError`` when ``path`` was written with settings that may not change.

    A setting the checkpoint lacks (added to the config after it was written) counts as its
    default, the behaviour of the version that wrote it.
    """
    old = {**_flatten(config_to_dict(RunConfig())), **_flatten(saved)}
    new = _flatten(config_to_dict(cfg))
    changed = [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in RESUMABLE_CHANGES and old.get(key) != new.get(key)
    ]
    if changed:
        raise ValueError(
            f"Cannot resume from {path}: it was written with other settings "
            f"({'; '.join(changed[:6])}). Start afresh with resume=False or another "
            "train.run_name, or go back to those settings."
        )


def _resume(session: _Session, path: Path) -> None:
    """Load ``last.pt``: weights, optimiser, schedule, scaler, EMA, history, RNG states."""
    state = load_checkpoint(path)
    _check_resumable(state["config"], session.cfg, path)
    session.raw.load_state_dict(state["model"])
    session.optimizer.load_state_dict(state["optimizer"])
    schedule = session.scheduler.lr_lambdas[0]  # this run's: it knows the epochs asked for now
    session.scheduler.load_state_dict(state["scheduler"])
    session.scheduler.lr_lambdas[0] = schedule
    if session.scaler is not None and state.get("scaler"):
        session.scaler.load_state_dict(state["scaler"])
    if session.ema is not None:
        session.ema.load_state_dict(state["ema"])
    session.stopper.load_state_dict(state["monitor"])
    session.history = list(state["history"])
    session.epoch, session.stopped_early = int(state["epoch"]), bool(state["stopped_early"])
    rng = state["rng"]
    restore_rng_states(rng[get_rank()] if len(rng) == get_world_size() else rng[0])
    _say(session, f"resumed from {path} after epoch {session.epoch}")
    if session.epoch >= session.cfg.train.epochs or session.stopped_early:
        _say(session, "the run is already complete; pass resume=False to train it again")


def _save(session: _Session, improved: bool) -> None:
    """Write ``last.pt`` (and ``best.pt`` on improvement) on rank 0; every rank takes part
    in gathering the generator states."""
    rng = gather_rng_states()
    if not session.is_main:
        return
    last = save_checkpoint(_checkpoint_state(session, rng), session.checkpoint_dir / "last.pt")
    if improved:
        copy_checkpoint(last, session.checkpoint_dir / "best.pt")


# ----------------------------------------------------------------------------------------------
# Epochs, logging and the entry point
# ----------------------------------------------------------------------------------------------

_COLUMNS = ("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds")
_WIDTHS = (5, 10, 9, 8, 7, 9, 7)


def _say(session: _Session, line: str) -> None:
    """Print one line, on rank 0 only, unless the run is quiet."""
    if session.verbose and session.is_main:
        print(line, flush=True)


def _format_row(row: dict[str, Any], improved: bool) -> str:
    """One fixed-width line for an epoch; ``*`` marks a new best."""

    def number(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    cells = (
        str(row["epoch"]),
        number(row["train_loss"], ".4f"),
        number(row["train_acc"], ".2%"),
        number(row["val_loss"], ".4f"),
        number(row["val_acc"], ".2%"),
        number(row["lr"], ".2e"),
        number(row["epoch_seconds"], ".1f"),
    )
    line = "  ".join(cell.rjust(width) for cell, width in zip(cells, _WIDTHS, strict=True))
    return line + (" *" if improved else "")


def _plural(count: int, one: str, many: str | None = None) -> str:
    """``"1 epoch"``, ``"2 epochs"``."""
    return f"{count} {one if count == 1 else many or one + 's'}"


def _print_header(session: _Session) -> None:
    """Say what is about to run, then the column titles."""
    epochs, steps, processes = session.cfg.train.epochs, session.steps_per_epoch, get_world_size()
    precision = str(session.dtype).removeprefix("torch.") if session.dtype else "fp32"
    _say(
        session,
        f"fit: {_plural(epochs, 'epoch')} of {_plural(steps, 'step')} on {session.device} "
        f"({precision}, {_plural(processes, 'process', 'processes')}); best by "
        f"{session.monitor} ({session.stopper.mode}); checkpoints in {session.checkpoint_dir}",
    )
    _say(session, "  ".join(c.rjust(w) for c, w in zip(_COLUMNS, _WIDTHS, strict=True)))


def _run_epoch(session: _Session, epoch: int) -> dict[str, Any]:
    """Train one epoch, validate, and return its history row."""
    train_cfg, start = session.cfg.train, time.perf_counter()
    set_loader_epoch(session.loaders.train, epoch - 1)
    train = train_one_epoch(
        session.model,
        session.loaders.train,
        session.optimizer,
        session.loss_fn,
        session.device,
        scheduler=session.scheduler,
        scaler=session.scaler,
        autocast_dtype=session.dtype,
        grad_clip=train_cfg.grad_clip,
        ema=session.ema,
        max_steps=train_cfg.max_steps_per_epoch,
        channels_last=train_cfg.channels_last,
        progress=train_cfg.progress and session.is_main,
        description=f"epoch {epoch}/{train_cfg.epochs}",
    )
    _check_finite(train["loss"], epoch, session)
    val = _validate(session)
    return {
        "epoch": epoch,
        "train_loss": train["loss"],
        "train_acc": train["acc"],
        "val_loss": val["loss"] if val else None,
        "val_acc": val["acc"] if val else None,
        "lr": train["lr"],
        "epoch_seconds": time.perf_counter() - start,
        "images_per_second": train["images"] / max(train["seconds"], 1e-9),
    }


def _validate(session: _Session) -> dict[str, float] | None:
    """Loss (without label smoothing) and accuracy on the validation loader, if any."""
    if session.loaders.val is None:
        return None
    return evaluate_epoch(
        session.eval_model,
        session.loaders.val,
        nn.CrossEntropyLoss(),
        session.device,
        autocast_dtype=session.dtype,
        channels_last=session.cfg.train.channels_last,
        progress=session.cfg.train.progress and session.is_main,
        description="validate",
    )


def _check_finite(loss: float, epoch: int, session: _Session) -> None:
    """Stop with advice, before saving, when the training loss is no longer a number."""
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"The training loss is {loss} in epoch {epoch}: training diverged. Lower train.lr, "
            "set train.grad_clip, or use bf16/fp32 instead of fp16. The last good checkpoint "
            f"is {session.checkpoint_dir / 'last.pt'}."
        )


def _finish_epoch(session: _Session, row: dict[str, Any]) -> None:
    """Record the epoch: history, best metric, early stopping, checkpoints, log lines."""
    session.history.append(row)
    session.epoch = row["epoch"]
    improved = session.stopper.step(row[session.monitor], row["epoch"])
    session.stopped_early = session.stopper.should_stop and session.epoch < session.cfg.train.epochs
    _save(session, improved)
    _say(session, _format_row(row, improved))
    if session.writer is not None:
        _log_tensorboard(session.writer, row)
    if session.stopped_early:
        _say(
            session,
            f"early stop: no better {session.monitor} for {session.stopper.bad_epochs} epochs",
        )


def _log_tensorboard(writer: Any, row: dict[str, Any]) -> None:
    """Add an epoch's numbers to TensorBoard, grouped into loss/accuracy/lr panels."""
    for key, value in row.items():
        if key != "epoch" and value is not None:
            writer.add_scalar(key.replace("_", "/", 1) if "_" in key else key, value, row["epoch"])
    writer.flush()


def _open_tensorboard(session: _Session) -> None:
    """A SummaryWriter under the checkpoint folder on rank 0, dropping events of epochs
    after the one resumed from."""
    if not (session.cfg.train.tensorboard and session.is_main):
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            "train.tensorboard needs the tensorboard package: pip install tensorboard, or set "
            "train.tensorboard=false."
        ) from err
    log_dir = session.checkpoint_dir / "tensorboard"
    session.writer = SummaryWriter(str(log_dir), purge_step=session.epoch + 1)


def fit(
    model: nn.Module,
    loaders: _HasLoaders,
    cfg: RunConfig,
    *,
    device: torch.device | str | None = None,
    class_names: Sequence[str] | None = None,
    resume: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    verbose: bool = True,
) -> FitResult:
    """Train ``model`` for ``cfg.train.epochs`` epochs, validating and checkpointing each one.

    One call runs a complete, resumable run: SGD or AdamW (no weight decay on norms and
    biases), a learning-rate schedule stepped per batch, label smoothing, class weights in
    the loss (``train.class_weighting``), gradient clipping, mixed precision
    (:func:`helpers.runtime.autocast_dtype`), channels-last, optional ``torch.compile`` and
    an EMA of the weights (validated instead of the weights when on). After every epoch it
    prints one fixed-width line and atomically writes ``last.pt`` (and ``best.pt`` when the
    monitored metric improved) to :func:`resolve_checkpoint_dir`, with what it takes to
    continue exactly: weights, optimiser, schedule, scaler, EMA, history, early-stopping
    state, every process's random generator states and the config. With ``resume=True`` a
    run whose ``last.pt`` exists continues after that epoch and ends with the same weights
    and history as a run that was never interrupted (the loaders must repeat per epoch, as
    :func:`helpers.data.make_loaders` builds them). Under ``torchrun`` (after
    :func:`helpers.runtime.init_distributed`) the model trains in
    ``DistributedDataParallel``, metrics are totalled over processes, and only rank 0 writes
    and prints.

    Args:
        model: the network; trained in place (moved to ``device``).
        loaders: ``train`` and ``val`` loaders (``val`` may be ``None``), as
            :func:`helpers.data.make_loaders` returns them. With
            ``train.class_weighting="balanced"`` the training loader must expose its labels
            as ``loader.dataset.labels`` (both of ``make_loaders``' paths do) or
            ``loader.dataset.targets`` (torchvision's data sets); the loss weights are
            :func:`helpers.data.class_weights` of them.
        cfg: the run config; :attr:`RunConfig.train` holds every training setting.
        device: where to train; :func:`helpers.runtime.get_device` when ``None``.
        class_names: stored in the checkpoints, for later predictions.
        resume: continue from ``last.pt`` when it exists; ``False`` starts afresh (and
            overwrites the folder's checkpoints).
        on_epoch_end: called with each epoch's history row, after its checkpoint is saved.
        verbose: print the header and one line per epoch (rank 0 only).

    Returns:
        A :class:`FitResult`: the history, checkpoint paths and best metric.

    Raises:
        ValueError: for bad training settings, a training loader that is empty or not
            sharded for the processes of the run (or without labels, for class weighting),
            or a ``last.pt`` that is damaged or was written with other settings (see
            :data:`RESUMABLE_CHANGES`).
        FloatingPointError: when the training loss stops being finite (diverged).
    """
    session = _start(model, loaders, cfg, _resolve_device(device), class_names, verbose)
    last = session.checkpoint_dir / "last.pt"
    if resume and last.is_file():
        _resume(session, last)
    _wrap(session)
    if session.is_main:
        save_config(cfg, session.checkpoint_dir / "config.yaml")
    _open_tensorboard(session)
    _print_header(session)
    try:
        while session.epoch < cfg.train.epochs and not session.stopped_early:
            row = _run_epoch(session, session.epoch + 1)
            _finish_epoch(session, row)
            if on_epoch_end is not None:
                on_epoch_end(dict(row))
    finally:
        if session.writer is not None:
            session.writer.close()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every process returns once rank 0's checkpoints are on disk
    return _result(session)


def _result(session: _Session) -> FitResult:
    """The :class:`FitResult` of a finished (or already complete) session."""
    best = session.checkpoint_dir / "best.pt"
    return FitResult(
        history=list(session.history),
        checkpoint_dir=session.checkpoint_dir,
        best_checkpoint=best if best.is_file() else None,
        best_metric=session.stopper.best,
        best_epoch=session.stopper.best_epoch,
        monitor=session.monitor,
        stopped_early=session.stopped_early,
        model=session.ema.module if session.ema is not None else session.raw,
    )
