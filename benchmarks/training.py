"""Training benchmark: precision and memory layout on the CPU, then quick-profile results.

Two parts, each run side by side in one process:

1. **Precision and memory layout.** Training throughput (images/s of forward, loss, backward
   and optimiser step on one fixed random batch of 32x32x3 images, after warm-up steps) of
   ``simple_cnn``, ``resnet9_narrow``, ``resnet9`` and ``vit_tiny_cifar`` (with PyTorch's
   fused attention and with plain softmax attention) in fp32 and under bf16 autocast
   (:func:`helpers.runtime.autocast_dtype`); the CNNs in the channels-last layout, and also
   in the default NCHW layout under bf16. Every cell of the table is timed once per round,
   round after round, and the median over the rounds is reported, so that load from other
   programs on a shared machine hits every alternative alike; ratios are the numbers to
   read, absolute speeds depend on that load. The ratio of the fastest rounds is given too:
   other programs only ever slow a step down.
2. **Quick-profile results on CIFAR-10.** ``simple_cnn``, ``resnet9_narrow`` and
   ``vit_tiny_cifar`` trained with :func:`helpers.train.fit` on the real images with the
   book's recipes (:mod:`helpers.recipes`, as chapter 4 trains them: fast loader, bf16,
   channels-last; one-cycle SGD with Nesterov momentum for the CNNs, AdamW with a
   warmed-up cosine schedule for the ViT), each sized to train in a few minutes on 2 CPU
   cores; the best epoch's weights (by validation
   accuracy) are tested on the 10,000 test images.

A full run prints both tables and writes ``book/benchmarks/training.md``, which the book's
benchmarks page includes; ``--part`` runs one part and ``--tiny`` a few steps on synthetic
data (for the tests), and neither writes the page. Each part also reports the share of
the CPU it got, which tells how busy the machine was.

Usage::

    CIFAR10_PATH=../shared/data/cifar10-jpeg.tar.gz python -m benchmarks.training
    python -m benchmarks.training --part precision --repeats 7
    python -m benchmarks.training --tiny  # under a minute, synthetic data, writes nothing
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shlex
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

import helpers as hp
from benchmarks._report import markdown_table, write_report
from helpers import recipes

# ----------------------------------------------------------------------------------------------
# Part 1: precision and memory layout
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way to run a training step: the autocast precision and the memory layout."""

    name: str  # column label
    precision: str  # "fp32" or "bf16", as helpers.runtime.autocast_dtype takes it
    channels_last: bool


@dataclass(frozen=True)
class Case:
    """One row of the precision table: a model and the variants it is timed in."""

    label: str
    model: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    is_cnn: bool = True  # CNNs run channels-last and are also timed in NCHW


FP32 = Variant("fp32", "fp32", channels_last=True)
BF16 = Variant("bf16", "bf16", channels_last=True)
BF16_NCHW = Variant("bf16 NCHW", "bf16", channels_last=False)

VIT_FUSED = Case("vit_tiny_cifar (fused SDPA)", "vit_tiny_cifar", is_cnn=False)
VIT_PLAIN = Case(
    "vit_tiny_cifar (fused_attn=False)", "vit_tiny_cifar", {"fused_attn": False}, is_cnn=False
)
CASES: tuple[Case, ...] = (
    Case("simple_cnn", "simple_cnn"),
    Case("resnet9_narrow", "resnet9_narrow"),
    Case("resnet9", "resnet9"),
    VIT_FUSED,
    VIT_PLAIN,
)


@dataclass(frozen=True)
class ThroughputSetup:
    """How the training steps are timed."""

    batch_size: int = 256  # images per step
    warmup_steps: int = 2  # untimed steps per cell first (allocations, oneDNN kernel choice)
    block_seconds: float = 1.0  # each timed block runs enough steps to last about this long
    repeats: int = 5  # rounds over every cell; medians over the rounds are reported


def variants_of(case: Case) -> tuple[Variant, ...]:
    """fp32 and bf16 (channels-last for CNNs), plus bf16 in NCHW for the CNNs."""
    if case.is_cnn:
        return (FP32, BF16, BF16_NCHW)
    return (Variant("fp32", "fp32", False), Variant("bf16", "bf16", False))


def make_train_step(
    case: Case, variant: Variant, *, batch_size: int, device: torch.device, seed: int = 0
) -> tuple[Callable[[], None], int]:
    """A closure running one training step of ``case`` on a fixed random batch.

    The optimiser is the one the quick recipes use (SGD with Nesterov momentum for CNNs,
    AdamW for the ViT), so the step costs what a real one does, data loading aside.

    Returns:
        The closure and the model's parameter count.
    """
    hp.runtime.seed_everything(seed)
    model = hp.models.create_model(case.model, num_classes=10, **case.kwargs).to(device)
    images = torch.randn(batch_size, 3, 32, 32, device=device)  # (B, C, H, W), like normalised
    labels = torch.randint(0, 10, (batch_size,), device=device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = hp.train.build_optimizer(
        model, name="sgd" if case.is_cnn else "adamw", lr=1e-3, weight_decay=5e-4
    )
    dtype = hp.runtime.autocast_dtype(device, variant.precision)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()

    model.train()
    return step, hp.models.count_parameters(model)


def time_steps(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds per step over ``steps`` consecutive calls of ``step``."""
    hp.runtime.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    hp.runtime.synchronize(device)
    return (time.perf_counter() - start) / steps


@dataclass
class _Cell:
    """One (case, variant) of the table while it is being measured."""

    case: Case
    variant: Variant
    step: Callable[[], None]
    params: int
    steps_per_block: int = 1
    images_per_second: list[float] = field(default_factory=list)


def _prepare_cells(
    cases: Sequence[Case], setup: ThroughputSetup, device: torch.device
) -> list[_Cell]:
    """Build every cell, warm it up, and size its timed block from the last warm-up step."""
    cells = []
    for case in cases:
        for variant in variants_of(case):
            step, params = make_train_step(
                case, variant, batch_size=setup.batch_size, device=device
            )
            for _ in range(max(0, setup.warmup_steps - 1)):
                step()
            seconds = time_steps(step, 1, device)
            steps = max(1, math.ceil(setup.block_seconds / max(seconds, 1e-6)))
            cells.append(_Cell(case, variant, step, params, steps))
    return cells


def measure_precision(
    cases: Sequence[Case], setup: ThroughputSetup, device: torch.device, *, verbose: bool = True
) -> pd.DataFrame:
    """Median training images/s of every case in every variant, timed in interleaved rounds.

    Each round times one block of every cell in turn (fp32, bf16, ... of the first model,
    then the next model), so a burst of load from other programs falls on every
    alternative alike instead of on whichever ran at that moment.

    Returns:
        One row per case: ``params``, images/s per variant name, and the ratios
        ``bf16/fp32`` (median of the rounds' ratios), ``bf16/fp32 best`` (fastest round over
        fastest round) and, for CNNs, ``channels_last gain`` (bf16 channels-last over NCHW).
    """
    cells = _prepare_cells(cases, setup, device)
    for round_index in range(1, setup.repeats + 1):
        start = time.perf_counter()
        for cell in cells:
            seconds = time_steps(cell.step, cell.steps_per_block, device)
            cell.images_per_second.append(setup.batch_size / seconds)
        if verbose:
            print(
                f"precision round {round_index}/{setup.repeats}: "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
    return _precision_frame(cells)


def _median_ratio(numerator: _Cell, denominator: _Cell) -> float:
    """The median over rounds of one cell's speed over another's, timed moments apart."""
    pairs = zip(numerator.images_per_second, denominator.images_per_second, strict=True)
    return statistics.median(a / b for a, b in pairs)


def _best_ratio(numerator: _Cell, denominator: _Cell) -> float:
    """One cell's fastest round over another's: other programs only ever slow a step down,
    so the fastest round of each is the nearest to an idle machine."""
    return max(numerator.images_per_second) / max(denominator.images_per_second)


def _precision_frame(cells: Sequence[_Cell]) -> pd.DataFrame:
    """One row per case: the median images/s of each variant and the ratios."""
    rows: dict[str, dict[str, float]] = {}
    by_case: dict[str, dict[str, _Cell]] = {}
    for cell in cells:
        row = rows.setdefault(cell.case.label, {"params": cell.params})
        row[cell.variant.name] = statistics.median(cell.images_per_second)
        by_case.setdefault(cell.case.label, {})[cell.variant.name] = cell
    for label, variants in by_case.items():
        bf16, fp32 = variants[BF16.name], variants[FP32.name]
        rows[label]["bf16/fp32"] = _median_ratio(bf16, fp32)
        rows[label]["bf16/fp32 best"] = _best_ratio(bf16, fp32)
        if BF16_NCHW.name in variants:
            rows[label]["channels_last gain"] = _median_ratio(bf16, variants[BF16_NCHW.name])
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    if VIT_PLAIN.label in by_case and VIT_FUSED.label in by_case:
        plain, fused = by_case[VIT_PLAIN.label][BF16.name], by_case[VIT_FUSED.label][BF16.name]
        table.attrs["plain/fused attention (bf16)"] = _median_ratio(plain, fused)
        table.attrs["plain/fused attention (bf16), best"] = _best_ratio(plain, fused)
    return table


def _number(value: float, spec: str, suffix: str = "") -> str:
    """``value`` formatted, or ``-`` when it is missing (NaN)."""
    return "-" if pd.isna(value) else format(value, spec) + suffix


def precision_markdown(table: pd.DataFrame, setup: ThroughputSetup) -> str:
    """The precision table and how it was measured, as Markdown."""
    missing = float("nan")
    rows = [
        (
            f"`{label}`",
            f"{int(r['params']):,}",
            _number(r["fp32"], ",.0f"),
            _number(r["bf16"], ",.0f"),
            f"**{_number(r['bf16/fp32'], '.2f', 'x')}**",
            _number(r["bf16/fp32 best"], ".2f", "x"),
            _number(r.get(BF16_NCHW.name, missing), ",.0f"),
            _number(r.get("channels_last gain", missing), ".2f", "x"),
        )
        for label, r in table.iterrows()
    ]
    header = [
        "model",
        "parameters",
        "fp32 images/s",
        "bf16 images/s",
        "bf16 / fp32",
        "bf16 / fp32, fastest rounds",
        "bf16 NCHW images/s",
        "channels-last gain (bf16)",
    ]
    return (
        "Training throughput: forward, loss, backward and optimiser step (SGD with Nesterov "
        f"momentum for the CNNs, AdamW for the ViT) on one fixed random batch of "
        f"{setup.batch_size} images of 32x32x3, after {setup.warmup_steps} warm-up steps. "
        "The CNNs run in the channels-last layout (the `fit` default) in both precisions; the "
        "`bf16 NCHW` column is bf16 in PyTorch's default layout. Each of "
        f"{setup.repeats} rounds timed a block of about {setup.block_seconds:g} s (at least "
        "one step) of every cell in turn. Speeds are the medians over the rounds; ratios are "
        "the medians of the ratios within a round (two cells timed seconds apart), which the "
        "load of other programs disturbs much less. Other programs can only slow a step "
        "down, so the fastest round of each cell is the nearest to an idle machine: the "
        "`fastest rounds` column compares those.\n\n"
        + markdown_table(header, rows)
        + _attention_sentence(table)
    )


def _attention_sentence(table: pd.DataFrame) -> str:
    """A sentence comparing plain and fused attention in the ViT, when both were timed."""
    ratio = table.attrs.get("plain/fused attention (bf16)")
    if ratio is None:
        return ""
    best = table.attrs["plain/fused attention (bf16), best"]
    return (
        "\n\nUnder bf16, the ViT with plain softmax attention (`fused_attn=False`) trains "
        f"**{ratio:.2f}x** as fast as with PyTorch's fused `scaled_dot_product_attention` "
        f"({best:.2f}x between their fastest rounds)."
    )


# ----------------------------------------------------------------------------------------------
# Part 2: quick-profile results on CIFAR-10
# ----------------------------------------------------------------------------------------------

# What every quick recipe shares: the fast loader (whole uint8 set in memory, batches
# augmented at once), bf16 autocast and channels-last, every validation and test image.
QUICK_BASE: dict[str, Any] = {
    "profile": "quick",
    "data.loader": "fast",
    "data.augment": "standard",  # random crop (reflect padding 4) and horizontal flip
    "data.val_fraction": 0.1,  # 5,000 validation images, the other 45,000 for training
    "data.eval_images": None,  # every validation and test image
    "train.precision": "bf16",
    "train.channels_last": True,
    "train.max_steps_per_epoch": None,
    "train.progress": False,
    "train.seed": 0,
}

# Per model: the book's own recipes (helpers.recipes, the ones chapter 4 trains), in the quick
# profile, under a run name of their own so the benchmark never reuses a chapter's checkpoint.
QUICK_RECIPES: dict[str, dict[str, Any]] = {
    name: {**recipes.recipe(name, "quick"), "train.run_name": f"quick_{name}"}
    for name in recipes.RECIPES
}

# --tiny: the same recipes, shrunk to two small batches of synthetic data.
TINY_SIZES: dict[str, Any] = {
    "data.train_images": 128,
    "data.eval_images": 64,
    "data.batch_size": 32,
    "train.epochs": 1,
    "train.max_steps_per_epoch": 2,
}


def recipe_config(
    recipe: Mapping[str, Any], *, checkpoint_dir: str, tiny: bool = False
) -> hp.config.RunConfig:
    """The run config of a quick recipe (``tiny``: shrunk to a few steps)."""
    values = {**QUICK_BASE, **recipe, **(TINY_SIZES if tiny else {})}
    values["train.checkpoint_dir"] = checkpoint_dir
    return hp.config.replace_values(hp.config.RunConfig(), values)


def _yaml_scalar(value: Any) -> str:
    """``value`` as the YAML text an override parses back to it (``None`` is ``null``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in value.items()) + "}"
    return str(value)


def recipe_overrides(recipe: Mapping[str, Any]) -> list[str]:
    """A recipe (with :data:`QUICK_BASE`) as ``key=value`` overrides for ``python -m helpers``."""
    return [f"{key}={_yaml_scalar(value)}" for key, value in {**QUICK_BASE, **recipe}.items()]


def recipe_command(recipe: Mapping[str, Any]) -> str:
    """The shell command that trains a recipe: the shared settings, then the model's own."""
    overrides = [shlex.quote(item) for item in recipe_overrides(recipe)]
    shared, own = overrides[: len(QUICK_BASE)], overrides[len(QUICK_BASE) :]
    return " \\\n    ".join(["python -m helpers train", " ".join(shared), " ".join(own)])


def load_quick_data(tiny: bool) -> hp.data.ImageData:
    """CIFAR-10 (the local copy ``CIFAR10_PATH`` names; never downloads), or synthetic data."""
    if tiny:
        return hp.data.make_synthetic_data(train_per_class=20, test_per_class=8)
    return hp.data.load_dataset("cifar10", download=False)


def test_accuracy(
    result: hp.train.FitResult, loader: Any, cfg: hp.config.RunConfig, device: torch.device
) -> dict[str, float]:
    """Loss and accuracy on ``loader`` with the weights of the best epoch (``best.pt``)."""
    model = result.model
    if result.best_checkpoint is not None:
        hp.train.load_weights(model, result.best_checkpoint)
    return hp.train.evaluate_epoch(
        model,
        loader,
        nn.CrossEntropyLoss(),
        device,
        autocast_dtype=hp.runtime.autocast_dtype(device, cfg.train.precision),
        channels_last=cfg.train.channels_last,
    )


def train_recipe(
    data: hp.data.ImageData,
    recipe: Mapping[str, Any],
    *,
    device: torch.device,
    tiny: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    """Train one recipe from scratch with :func:`helpers.train.fit` and test its best epoch.

    Returns:
        ``test acc``, ``best val acc``, ``best epoch``, ``epochs``, ``train images`` (per
        epoch), ``images seen``, ``minutes`` (wall time of ``fit``, validation included),
        ``images/s`` (training steps only) and ``params``.
    """
    with tempfile.TemporaryDirectory() as checkpoints:
        cfg = recipe_config(recipe, checkpoint_dir=checkpoints, tiny=tiny)
        loaders = hp.data.make_loaders(data, cfg.data, device=device, seed=cfg.train.seed)
        hp.runtime.seed_everything(cfg.train.seed)
        model = hp.models.create_model_from_config(cfg.model)
        start = time.perf_counter()
        result = hp.train.fit(model, loaders, cfg, device=device, resume=False, verbose=verbose)
        seconds = time.perf_counter() - start
        test = test_accuracy(result, loaders.test, cfg, device)
    history = result.history
    steps = len(loaders.train)  # full batches: the training loader drops an incomplete one
    if cfg.train.max_steps_per_epoch is not None:
        steps = min(steps, cfg.train.max_steps_per_epoch)
    images_per_epoch = steps * cfg.data.batch_size
    return {
        "test acc": test["acc"],
        "test images": int(test["images"]),
        "best val acc": result.best_metric,
        "best epoch": result.best_epoch,
        "epochs": len(history),
        "train images": images_per_epoch,
        "images seen": images_per_epoch * len(history),
        "minutes": seconds / 60,
        "images/s": statistics.median(row["images_per_second"] for row in history),
        "params": hp.models.count_parameters(model),
    }


def measure_quick(
    data: hp.data.ImageData, device: torch.device, *, tiny: bool = False, verbose: bool = True
) -> pd.DataFrame:
    """Train every recipe of :data:`QUICK_RECIPES` in turn; one row per model."""
    rows = {}
    for name, recipe in QUICK_RECIPES.items():
        if verbose:
            print(f"--- {name}", flush=True)
        rows[name] = train_recipe(data, recipe, device=device, tiny=tiny, verbose=verbose)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


def quick_markdown(table: pd.DataFrame, data: hp.data.ImageData) -> str:
    """The quick-profile results, the recipes as commands, and how to read them, as Markdown."""
    rows = [
        (
            f"`{name}`",
            f"**{r['test acc']:.1%}**",
            f"{r['best val acc']:.1%} (epoch {int(r['best epoch'])})",
            f"{r['minutes']:.1f}",
            f"{int(r['epochs'])}",
            f"{int(r['train images']):,}",
            f"{int(r['images seen']):,}",
            f"{r['images/s']:,.0f}",
            f"{int(r['params']):,}",
        )
        for name, r in table.iterrows()
    ]
    header = [
        "model",
        "test accuracy",
        "best val accuracy",
        "training minutes",
        "epochs",
        "training images per epoch",
        "images seen",
        "train images/s",
        "parameters",
    ]
    commands = "\n".join(recipe_command(recipe) for recipe in QUICK_RECIPES.values())
    test_images = int(table["test images"].iloc[0])
    return (
        f"Each model trained from scratch with `helpers.train.fit` on `{data.source}`, then "
        "the weights of its best epoch (by validation accuracy on 5,000 held-out training "
        f"images) tested on the {test_images:,} test images. Training minutes are the wall "
        "time of `fit`, validation after every epoch included; images/s is the training "
        "throughput of the median epoch.\n\n"
        + markdown_table(header, rows)
        + "\n\nThe recipes, as commands that train them again (`data.train_images` is a "
        "stratified subset of the 45,000 training images, `null` all of them; checkpoints go "
        "to `data/checkpoints/<train.run_name>/`):\n\n```bash\n" + commands + "\n```"
    )


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line options; every help string says its default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=("precision", "quick", "all"),
        default="all",
        help="which part to run (default: all; only a full run writes the page)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="rounds of the precision part (default: 5)"
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a few small steps on synthetic data; writes no page (default: off)",
    )
    return parser


def run_precision(args: argparse.Namespace, device: torch.device) -> str:
    """Part 1: measure, print, and return the page section."""
    setup = ThroughputSetup(repeats=args.repeats)
    if args.tiny:
        setup = ThroughputSetup(batch_size=8, warmup_steps=1, block_seconds=0.0, repeats=2)
    table = measure_precision(CASES, setup, device)
    print(table.round(2).to_string(), flush=True)
    return precision_markdown(table, setup)


def run_quick(args: argparse.Namespace, device: torch.device) -> str:
    """Part 2: train, print, and return the page section."""
    data = load_quick_data(args.tiny)
    table = measure_quick(data, device, tiny=args.tiny)
    print(table.round(3).to_string(), flush=True)
    return quick_markdown(table, data)


def _cpu_seconds() -> float:
    """CPU time used so far by this process, all its threads, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_part(title: str, part: Callable[[], str]) -> str:
    """Run one part and return its page section, ending with how much of the CPU it got.

    The share of the CPU time that the torch threads could have used (wall time x threads)
    says how loaded the machine was: well below 100%, other programs took the rest.
    """
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), _cpu_seconds()
    body = part()
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    share = cpu / (wall * torch.get_num_threads())
    line = (
        f"This part took {wall / 60:.1f} min; the benchmark got {share:.0%} of the CPU time "
        f"its {torch.get_num_threads()} threads could have used (load average "
        f"{load:.1f} when it started)."
    )
    print(line, flush=True)
    return f"### {title}\n\n{body}\n\n{line}"


def main(argv: Sequence[str] | None = None) -> None:
    """Run the chosen parts, print their tables, and write the page after a full run."""
    args = get_args_parser().parse_args(argv)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}.")
    device = torch.device("cpu")  # the reference machine of the quick profile
    hp.runtime.set_threads()
    start = time.perf_counter()
    sections = []
    if args.part in ("precision", "all"):
        title = "Precision and memory layout"
        sections.append(run_part(title, lambda: run_precision(args, device)))
    if args.part in ("quick", "all"):
        title = "Quick-profile results on CIFAR-10"
        sections.append(run_part(title, lambda: run_quick(args, device)))
    minutes = (time.perf_counter() - start) / 60
    print(f"benchmark wall time: {minutes:.1f} min", flush=True)
    if args.tiny or args.part != "all":
        return
    body = f"{NOTE}\n\n" + "\n\n".join(sections) + f"\n\nThe whole run took {minutes:.0f} min."
    path = write_report("training", "Training: precision, memory layout and quick results", body)
    print(f"written to {path}")


NOTE = (
    "Measured on a machine shared with other work: absolute speeds and training minutes move "
    "with that load (each part says how much of the CPU it got), which is why the precision "
    "part interleaves its measurements and reports medians and ratios."
)


if __name__ == "__main__":
    main()
