"""The fast recipe's settings (:class:`FastConfig`), sized by run profile, and its result."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from helpers.config import Profile, apply_overrides, resolve_profile

PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32")
FLIPS: tuple[str, ...] = ("alternate", "random", "none")
OPTIMIZERS: tuple[str, ...] = ("sgd", "muon")
TTA_LEVELS: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class FastConfig:
    """Every setting of the fast recipe, with its unit; each lever can be switched alone.

    The defaults are airbench94's published hyperparameters (Jordan, 2024), in this
    package's own units; :func:`fast_config` sizes them by run profile. Learning rate and
    weight decay are given per 1024 training examples: the loss is summed over the batch,
    and :func:`helpers.fast.build_optimizers` turns them into PyTorch's per-step values.

    Raises:
        ValueError: for any value outside its range, naming the valid ones.

    >>> FastConfig(epochs=8).epochs
    8.0
    """

    # --- schedule and optimiser -------------------------------------------------------------
    epochs: float = 9.9  # passes over the training images; a fraction ends the last one early
    batch_size: int = 1024  # training images per step (an incomplete last batch is dropped)
    lr: float = 11.5  # learning rate per 1024 examples (loss summed over the batch)
    momentum: float = 0.85  # Nesterov momentum of SGD
    weight_decay: float = 0.0153  # per 1024 examples, decoupled from the learning rate
    bias_lr_scale: float = 64.0  # batch-norm biases learn this many times faster
    warmup_fraction: float = 0.23  # share of the steps over which lr rises to its peak
    lr_start: float = 0.2  # lr at the first step, as a fraction of the peak
    lr_end: float = 0.07  # lr at the last step, as a fraction of the peak (linear decay)
    label_smoothing: float = 0.2  # share of the target spread evenly over the classes
    optimizer: Literal["sgd", "muon"] = "sgd"  # "muon": orthogonalised updates for 3x3 filters
    muon_lr: float = 0.24  # Muon's step size for the 3x3 filters (other parameters: SGD)
    muon_momentum: float = 0.6  # Muon's (Nesterov) momentum
    # --- network ----------------------------------------------------------------------------
    widths: tuple[int, int, int] = (64, 256, 256)  # channels of the three conv groups
    bn_momentum: float = 0.4  # PyTorch's convention: weight of each new batch's statistics
    head_scale: float = 1 / 9  # multiplies the logits
    whiten_kernel: int = 2  # side of the whitening patches, in pixels
    whiten_init: bool = True  # whitening filters from the training patches' eigenvectors
    whiten_frozen: bool = True  # never train the whitening filters (its bias may train)
    whiten_bias_epochs: float = 3.0  # epochs during which the whitening bias trains
    whiten_images: int = 5000  # training images whose patches set the whitening
    whiten_eps: float = 5e-4  # added to each eigenvalue before its inverse square root
    # --- augmentation ------------------------------------------------------------------------
    flip: Literal["alternate", "random", "none"] = "alternate"  # per-image flip, see FastLoader
    translate: int = 2  # random shift of up to this many pixels (reflect padding)
    # --- lookahead (an EMA of the weights that the weights are pulled back to) --------------
    lookahead: bool = True  # every few steps, weights <- EMA of the weights
    lookahead_every: int = 5  # steps between lookahead updates
    lookahead_decay: float = 0.95**5  # EMA decay at the last step; grows as (step / total)^3
    # --- evaluation -------------------------------------------------------------------------
    tta_level: int = 2  # 0: none, 1: + mirror, 2: + mirror and 1-pixel shifts (6 passes)
    eval_batch_size: int = 2000  # test images per forward pass
    epoch_eval: bool = False  # test accuracy after every epoch (untimed; off for timing)
    # --- hardware ---------------------------------------------------------------------------
    # autocast (runtime.autocast_dtype): auto = bf16 on CUDA and AMX CPUs; fp16 on CUDA only
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    channels_last: bool = True  # model and batches in the channels-last memory layout
    compile: bool = False  # torch.compile the network (pays off on GPUs, after a warm-up)
    # --- data sizes (smoke runs only) -------------------------------------------------------
    train_images: int | None = None  # a stratified subset; None: every training image
    test_images: int | None = None  # a stratified subset; None: every test image

    def __post_init__(self) -> None:
        object.__setattr__(self, "epochs", float(self.epochs))
        object.__setattr__(self, "widths", tuple(self.widths))
        _check_config(self)

    def replace(self, **changes: Any) -> FastConfig:
        """A copy with some fields changed (checked again).

        >>> FastConfig().replace(lookahead=False).lookahead
        False
        """
        return dataclasses.replace(self, **changes)


def _require(ok: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``ok``."""
    if not ok:
        raise ValueError(message)


def _is_int(value: Any, minimum: int) -> bool:
    """Whether ``value`` is an integer (not a bool) of at least ``minimum``."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def _check_config(cfg: FastConfig) -> None:
    """Raise ``ValueError`` for the first setting out of its range."""
    _require(cfg.epochs > 0, f"epochs must be positive, got {cfg.epochs!r}.")
    for name in ("batch_size", "whiten_kernel", "whiten_images", "lookahead_every"):
        _require(_is_int(getattr(cfg, name), 1), f"{name} must be an integer >= 1.")
    _require(_is_int(cfg.eval_batch_size, 1), "eval_batch_size must be an integer >= 1.")
    _require(
        _is_int(cfg.translate, 0), f"translate must be an integer >= 0, got {cfg.translate!r}."
    )
    for name in ("lr", "muon_lr", "whiten_eps", "bias_lr_scale", "head_scale"):
        _require(getattr(cfg, name) > 0, f"{name} must be positive, got {getattr(cfg, name)!r}.")
    for name in ("weight_decay", "whiten_bias_epochs", "lr_start", "lr_end"):
        _require(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)!r}.")
    for name in ("momentum", "muon_momentum", "label_smoothing", "lookahead_decay"):
        value = getattr(cfg, name)
        _require(0 <= value < 1, f"{name} must lie in [0, 1), got {value!r}.")
    _require(0 < cfg.bn_momentum <= 1, f"bn_momentum must lie in (0, 1], got {cfg.bn_momentum!r}.")
    _require(0 <= cfg.warmup_fraction <= 1, "warmup_fraction must lie in [0, 1].")
    _require(
        len(cfg.widths) == 3 and all(_is_int(w, 1) for w in cfg.widths),
        f"widths must be three positive integers, got {cfg.widths!r}.",
    )
    _check_choices(cfg)
    for name in ("train_images", "test_images"):
        value = getattr(cfg, name)
        _require(value is None or _is_int(value, 1), f"{name} must be None or an integer >= 1.")


def _check_choices(cfg: FastConfig) -> None:
    """Raise ``ValueError`` for a named option that is not one of its choices."""
    for name, choices in (
        ("precision", PRECISIONS),
        ("flip", FLIPS),
        ("optimizer", OPTIMIZERS),
        ("tta_level", TTA_LEVELS),
    ):
        value = getattr(cfg, name)
        _require(
            value in choices and not isinstance(value, bool),
            f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, choices))}.",
        )


# ----------------------------------------------------------------------------------------------
# Profiles: sizes only
# ----------------------------------------------------------------------------------------------


QUICK_EPOCHS = 13.0  # the quick (CPU) profile's schedule: see the docstring of helpers.fast


def profile_values(profile: Profile) -> dict[str, Any]:
    """The sizes a run profile gives the fast recipe.

    ``full`` is airbench94's schedule (9.9 epochs) for a GPU; ``quick`` the number of epochs
    that fits 10 minutes of training and evaluation on 2 CPU cores with AMX (see the
    module docstring of :mod:`helpers.fast`); ``smoke`` one epoch on 1,024 images.

    >>> profile_values(resolve_profile("smoke"))["epochs"]
    1.0
    """
    return {
        "epochs": profile.pick(smoke=1.0, quick=QUICK_EPOCHS, full=9.9),
        "batch_size": profile.pick(smoke=256, quick=1024, full=1024),
        "train_images": profile.pick(smoke=1024, quick=None, full=None),
        "test_images": profile.pick(smoke=512, quick=None, full=None),
    }


def fast_config(
    profile: str | Profile = "auto",
    overrides: Iterable[str] = (),
    *,
    cuda_available: bool | None = None,
) -> FastConfig:
    """The fast recipe sized for a run profile, then ``key=value`` overrides.

    Args:
        profile: ``auto`` (``full`` with CUDA, else ``quick``), ``smoke``, ``quick``,
            ``full``, or a resolved :class:`~helpers.config.Profile`.
        overrides: ``key=value`` strings such as ``"epochs=4"`` or ``"lookahead=false"``,
            parsed as YAML scalars and checked against the field types.
        cuda_available: whether CUDA is present (asked when ``None``), for ``auto``.

    Returns:
        The :class:`FastConfig`.

    Raises:
        ValueError: for an unknown profile or key, or a value of the wrong type or range.

    >>> fast_config("quick", ["lookahead=false"]).lookahead
    False
    """
    chosen = (
        profile
        if isinstance(profile, Profile)
        else resolve_profile(profile, cuda_available=cuda_available)
    )
    return apply_overrides(FastConfig(**profile_values(chosen)), list(overrides))


# ----------------------------------------------------------------------------------------------
# The result of one run
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FastResult:
    """What :func:`helpers.fast.train_fast` returns for one seed.

    Attributes:
        seed: the run's seed.
        test_acc: test accuracy without test-time augmentation.
        test_acc_tta: test accuracy with ``config.tta_level`` (equal to ``test_acc`` at 0).
        train_seconds: training time, whitening init included, data already on the device.
        eval_seconds: time of the test evaluation at ``config.tta_level``.
        eval_seconds_no_tta: time of the evaluation without TTA (equal at level 0).
        steps: optimiser steps taken.
        train_images: training images per epoch (before dropping an incomplete batch).
        test_images: images tested.
        history: one dict per epoch (``epoch``, ``train_loss``, ``train_acc``,
            ``test_acc``, ``lr``, ``seconds``, ``images_per_second``).
        config: the settings used.
        model: the trained network (lookahead weights applied).
    """

    seed: int
    test_acc: float
    test_acc_tta: float
    train_seconds: float
    eval_seconds: float
    eval_seconds_no_tta: float
    steps: int
    train_images: int
    test_images: int
    history: list[dict[str, float]] = field(repr=False)
    config: FastConfig = field(repr=False)
    model: nn.Module = field(repr=False)

    @property
    def total_seconds(self) -> float:
        """Training plus evaluation seconds."""
        return self.train_seconds + self.eval_seconds


def summarize_results(results: Sequence[FastResult]) -> dict[str, float]:
    """Mean and sample standard deviation over seeds of accuracy and seconds.

    Args:
        results: one :class:`FastResult` per seed.

    Returns:
        ``runs`` and, for each of ``test_acc``, ``test_acc_tta``, ``train_seconds``,
        ``eval_seconds`` and ``total_seconds``, ``<name>_mean`` and ``<name>_std`` (0 for a
        single run).

    Raises:
        ValueError: for no results.
    """
    if not results:
        raise ValueError("summarize_results needs at least one result.")
    summary: dict[str, float] = {"runs": float(len(results))}
    for name in ("test_acc", "test_acc_tta", "train_seconds", "eval_seconds", "total_seconds"):
        values = [float(getattr(result, name)) for result in results]
        summary[f"{name}_mean"] = statistics.fmean(values)
        summary[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


def total_steps(epochs: float, steps_per_epoch: int) -> int:
    """Optimiser steps of a run: ``ceil(epochs * steps_per_epoch)``, at least 1.

    >>> total_steps(9.9, 48)
    476
    """
    return max(1, math.ceil(epochs * steps_per_epoch - 1e-9))


def format_results(results: Sequence[FastResult], *, decimals: int = 1) -> str:
    """A fixed-width table: one row per seed, then the mean and the standard deviation.

    Args:
        results: one :class:`FastResult` per seed.
        decimals: digits after the point for seconds.

    Returns:
        The table, as text for printing.

    Raises:
        ValueError: for no results.
    """
    summary = summarize_results(results)
    names = ("test acc", "TTA acc", "train s", "eval s", "total s")
    lines = [f"{'seed':>6}  " + "  ".join(f"{name:>9}" for name in names)]
    for r in results:
        lines.append(
            f"{r.seed:>6d}  {r.test_acc:>9.2%}  {r.test_acc_tta:>9.2%}  "
            f"{r.train_seconds:>9.{decimals}f}  {r.eval_seconds:>9.{decimals}f}  "
            f"{r.total_seconds:>9.{decimals}f}"
        )
    columns = (
        ("test_acc", ".2%"),
        ("test_acc_tta", ".2%"),
        ("train_seconds", f".{decimals}f"),
        ("eval_seconds", f".{decimals}f"),
        ("total_seconds", f".{decimals}f"),
    )
    for stat in ("mean", "std"):
        cells = [f"{format(summary[f'{name}_{stat}'], spec):>9}" for name, spec in columns]
        lines.append(f"{stat:>6}  " + "  ".join(cells))
    return "\n".join(lines)
