"""Fast-recipe benchmark: the quick profile on this CPU over several seeds, and an ablation.

Two parts, each trained with :func:`helpers.fast.train_fast` on every one of CIFAR-10's
50,000 training images (no validation split) and tested on its 10,000 test images:

1. **Main result.** ``--seeds`` runs (default 3, seeds 0, 1, ...) of the recipe in the
   ``quick`` profile (:data:`helpers.fast.QUICK_EPOCHS` epochs) on the CPU: test accuracy
   without and with test-time augmentation, and the seconds of training and of evaluation
   per run (data already in memory, whitening init counted as training), as mean and
   standard deviation over the seeds. The target: 93% mean test accuracy in 10 minutes per
   run on 2 CPU cores.
2. **Ablation.** The same recipe at a reduced budget (:data:`ABLATION_EPOCHS` epochs, so
   that every lever can be tried several times), the baseline with every lever on, then
   each lever switched off (or to its alternative) alone, each for ``--seeds`` seeds: mean,
   standard deviation and range of the TTA accuracy, the change from the baseline, and the
   seconds of training plus evaluation. The TTA row needs no training of its own: it is the
   baseline runs' accuracy without TTA. A compiled row compiles once, untimed, first.
3. **Longer.** The recipe with more epochs than 10 minutes allow (``--longer``, one run
   each, seed 0): how accuracy grows with the budget beyond the quick profile, and so
   about how long 93% takes on this machine.

A full run prints both tables and writes ``book/benchmarks/fast.md``, which the book's
benchmarks page includes; ``--part`` runs one part and ``--tiny`` a few steps of a tiny
network on synthetic data (for the tests), and neither writes the page.

Usage::

    CIFAR10_PATH=../shared/data/cifar10-jpeg.tar.gz python -m benchmarks.fast
    python -m benchmarks.fast --part ablation --seeds 2 --levers lookahead,label_smoothing
    python -m benchmarks.fast --ablation-seeds 2 --longer 20   # what the page shows
    python -m benchmarks.fast --tiny  # seconds, synthetic data, writes nothing
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

import helpers as hp
from benchmarks._report import markdown_table, write_report
from benchmarks.training import run_part

ABLATION_EPOCHS = 2.0  # the ablation's reduced budget: epochs per run

# --tiny: a tiny network on synthetic data, a few steps per run.
TINY_VALUES: dict[str, Any] = {
    "epochs": 1.0,
    "widths": (8, 8, 8),
    "batch_size": 50,
    "whiten_images": 200,
    "eval_batch_size": 100,
}


@dataclass(frozen=True)
class Lever:
    """One row of the ablation: a name and what changes from the baseline."""

    name: str  # the lever, as the table shows it
    changes: dict[str, Any] = field(default_factory=dict)  # FastConfig fields
    trains: bool = True  # False: read from the baseline runs (TTA)
    note: str = ""


LEVERS: tuple[Lever, ...] = (
    Lever("baseline", note="every lever on"),
    Lever("whitening_init", {"whiten_init": False}, note="random frozen first layer"),
    Lever("whitening_frozen", {"whiten_frozen": False}, note="whitening filters trained"),
    Lever("lookahead", {"lookahead": False}, note="no lookahead average"),
    Lever("label_smoothing", {"label_smoothing": 0.0}, note="plain cross-entropy"),
    Lever("tta", {"tta_level": 0}, trains=False, note="no test-time augmentation"),
    Lever("alternating_flip", {"flip": "random"}, note="random flips instead"),
    Lever("translate", {"translate": 0}, note="no random 2-pixel shifts"),
    Lever(
        "warmup", {"warmup_fraction": 0.0, "lr_start": 1.0}, note="no warm-up: decay from the peak"
    ),
    Lever("bf16", {"precision": "fp32"}, note="fp32 instead of bf16 autocast"),
    Lever("channels_last", {"channels_last": False}, note="NCHW layout"),
    Lever("batch_size", {"batch_size": 512}, note="512 instead of 1,024"),
    Lever("optimizer", {"optimizer": "muon"}, note="Muon for the 3x3 filters instead of SGD"),
    # last: a compiled model leaves the process slower for the eager runs after it
    Lever("compile", {"compile": True}, note="torch.compile on (off in the recipe on CPUs)"),
)


# ----------------------------------------------------------------------------------------------
# Running and summarising
# ----------------------------------------------------------------------------------------------


def load_data(tiny: bool) -> hp.data.ImageData:
    """CIFAR-10 (the local copy ``CIFAR10_PATH`` names; never downloads), or synthetic data."""
    if tiny:
        return hp.data.make_synthetic_data(train_per_class=20, test_per_class=10)
    return hp.data.load_dataset("cifar10", download=False)


def quick_config(tiny: bool, **changes: Any) -> hp.fast.FastConfig:
    """The quick profile's recipe (``tiny``: shrunk), with ``changes``."""
    cfg = hp.fast.fast_config("quick")
    return cfg.replace(**{**(TINY_VALUES if tiny else {}), **changes})


def run_seeds(
    data: hp.fast.FastData, cfg: hp.fast.FastConfig, seeds: Sequence[int], device: torch.device
) -> tuple[list[hp.fast.FastResult], float]:
    """Train ``cfg`` once per seed on one model (compiled once, untimed, when asked).

    Returns:
        The results and the seconds of the untimed warm-up (0 without compile).
    """
    model = hp.fast.build_fast_model(cfg, device, num_classes=data.num_classes)
    warm_up = 0.0
    if cfg.compile:
        start = time.perf_counter()
        hp.fast.warm_up(model, data, cfg)
        warm_up = time.perf_counter() - start
    results = []
    for seed in seeds:
        result = hp.fast.train_fast(data, cfg, device=device, seed=seed, model=model)
        print(
            f"  seed {seed}: {result.test_acc:.2%} ({result.test_acc_tta:.2%} with TTA), "
            f"{result.train_seconds:.1f} s training + {result.eval_seconds:.1f} s evaluation",
            flush=True,
        )
        results.append(result)
    return results, warm_up


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread


# ----------------------------------------------------------------------------------------------
# Part 1: the main result
# ----------------------------------------------------------------------------------------------


def measure_main(
    data: hp.fast.FastData, seeds: Sequence[int], device: torch.device, *, tiny: bool
) -> tuple[hp.fast.FastConfig, list[hp.fast.FastResult]]:
    """The quick profile for every seed."""
    cfg = quick_config(tiny)
    print(f"--- main: {cfg.epochs:g} epochs, seeds {list(seeds)}", flush=True)
    results, _ = run_seeds(data, cfg, seeds, device)
    return cfg, results


def main_markdown(
    cfg: hp.fast.FastConfig, results: Sequence[hp.fast.FastResult], source: str
) -> str:
    """The main result as Markdown: a sentence, one row per seed and the mean."""
    summary = hp.fast.summarize_results(results)
    rows = [
        (
            r.seed,
            f"{r.test_acc:.2%}",
            f"**{r.test_acc_tta:.2%}**",
            f"{r.train_seconds:.0f}",
            f"{r.eval_seconds:.0f}",
            f"{r.total_seconds:.0f}",
            f"{r.steps * cfg.batch_size / r.train_seconds:,.0f}",
        )
        for r in results
    ]
    rows.append(_summary_row(summary))
    header = ["seed", "test acc.", "test acc. (TTA)", "train s", "eval s", "total s", "images/s"]
    acc, acc_std = summary["test_acc_tta_mean"], summary["test_acc_tta_std"]
    minutes = summary["total_seconds_mean"] / 60
    dtype = hp.runtime.autocast_dtype(torch.device("cpu"), cfg.precision)
    resolved = str(dtype).replace("torch.", "") if dtype else "fp32"
    return (
        f"`python -m helpers fast --profile quick --seeds {len(results)}` on `{source}`: "
        f"FastNet trained for {cfg.epochs:g} epochs on all {results[0].train_images:,} "
        f"training images (batch {cfg.batch_size}, precision `{cfg.precision}`: {resolved}, "
        f"channels-last {'on' if cfg.channels_last else 'off'}), tested on "
        f"{results[0].test_images:,} test images with TTA level {cfg.tta_level}: "
        f"**{acc:.2%} ± {acc_std:.2%}** test accuracy (mean ± standard deviation over "
        f"{len(results)} seeds) in **{minutes:.1f} min** of training and evaluation per run. "
        "Seconds are wall time with the data already in memory; training includes the "
        "whitening initialisation; images/s counts training images per training second.\n\n"
        + markdown_table(header, rows)
    )


def _summary_row(summary: Mapping[str, float]) -> tuple[str, ...]:
    """The ``mean ± std`` row of the main table."""

    def cell(name: str, spec: str) -> str:
        mean, std = summary[f"{name}_mean"], summary[f"{name}_std"]
        return f"{format(mean, spec)} ± {format(std, spec)}"

    return (
        "mean ± std",
        cell("test_acc", ".2%"),
        f"**{cell('test_acc_tta', '.2%')}**",
        cell("train_seconds", ".0f"),
        cell("eval_seconds", ".0f"),
        cell("total_seconds", ".0f"),
        "",
    )


# ----------------------------------------------------------------------------------------------
# Part 2: the ablation
# ----------------------------------------------------------------------------------------------


def _row(
    lever: Lever, accuracies: Sequence[float], seconds: Sequence[float], warm_up: float = 0.0
) -> dict[str, Any]:
    """One ablation row from per-seed accuracies and seconds."""
    mean, std = _mean_std(accuracies)
    return {
        "lever": lever.name,
        "off": lever.note,
        "acc_mean": mean,
        "acc_std": std,
        "acc_min": min(accuracies),
        "acc_max": max(accuracies),
        "seconds": statistics.fmean(seconds),
        "warm_up": warm_up,
        "runs": len(accuracies),
    }


def _lever_changes(lever: Lever, tiny: bool) -> dict[str, Any]:
    """A lever's changes; in ``--tiny`` a smaller batch is half the tiny one."""
    changes = dict(lever.changes)
    if tiny and "batch_size" in changes:
        changes["batch_size"] = TINY_VALUES["batch_size"] // 2
    return changes


def measure_ablation(
    data: hp.fast.FastData,
    seeds: Sequence[int],
    device: torch.device,
    *,
    levers: Sequence[Lever],
    tiny: bool,
) -> list[dict[str, Any]]:
    """The baseline and each lever switched off, at :data:`ABLATION_EPOCHS` epochs."""
    budget = {} if tiny else {"epochs": ABLATION_EPOCHS}
    baseline: list[hp.fast.FastResult] | None = None
    rows = []
    for lever in levers:
        if lever.changes.get("compile") and tiny:
            print(f"--- {lever.name}: skipped in --tiny (compiling takes minutes)", flush=True)
            continue
        print(f"--- ablation: {lever.name} ({lever.note})", flush=True)
        if not lever.trains:
            baseline = baseline or run_seeds(data, quick_config(tiny, **budget), seeds, device)[0]
            accuracies = [r.test_acc for r in baseline]
            seconds = [r.train_seconds + r.eval_seconds_no_tta for r in baseline]
            rows.append(_row(lever, accuracies, seconds))
            continue
        cfg = quick_config(tiny, **budget, **_lever_changes(lever, tiny))
        results, warm_up = run_seeds(data, cfg, seeds, device)
        if lever.name == "baseline":
            baseline = results
        accuracies = [r.test_acc_tta for r in results]
        rows.append(_row(lever, accuracies, [r.total_seconds for r in results], warm_up))
    return rows


def ablation_markdown(rows: Sequence[Mapping[str, Any]], seeds: Sequence[int], tiny: bool) -> str:
    """The ablation table as Markdown, each row against the baseline."""
    base = next((row["acc_mean"] for row in rows if row["lever"] == "baseline"), None)
    table = []
    for row in rows:
        change = "" if base is None or row["lever"] == "baseline" else row["acc_mean"] - base
        table.append(
            (
                f"`{row['lever']}`",
                row["off"],
                f"**{row['acc_mean']:.2%}** ± {row['acc_std']:.2%}",
                f"{row['acc_min']:.2%} – {row['acc_max']:.2%}",
                f"{change * 100:+.2f} pt" if change != "" else "",
                f"{row['seconds']:.0f}"
                + (f" (+{row['warm_up']:.0f} compiling)" if row["warm_up"] else ""),
            )
        )
    header = ["lever", "switched off", "test acc. ± std", "range", "vs baseline", "seconds"]
    epochs = TINY_VALUES["epochs"] if tiny else ABLATION_EPOCHS
    return (
        f"The recipe at a reduced budget of **{epochs:g} epochs** (the quick profile's other "
        f"settings), {len(seeds)} seeds per row: every lever on (baseline), then one lever "
        "switched off or to its alternative. Accuracy is with TTA except in the `tta` row, "
        "which is the baseline runs without it; seconds are training plus evaluation per "
        "run (a compiled row compiles once first, untimed, shown in brackets). A short "
        "budget shows the levers that speed up early learning (initialisation, schedule, "
        "layout, precision); those that regularise or average (lookahead, label smoothing, "
        "shifts) pay off once a longer run starts to overfit, and may show nothing or a cost "
        "here. Differences within about two standard deviations are noise.\n\n"
        + markdown_table(header, table)
    )


# ----------------------------------------------------------------------------------------------
# Part 3: longer budgets
# ----------------------------------------------------------------------------------------------


def parse_budgets(text: str, tiny: bool) -> list[float]:
    """The epoch budgets of ``--longer`` (``"20,26"``); in ``--tiny`` each is one epoch.

    Raises:
        ValueError: for a budget that is not a positive number.
    """
    try:
        budgets = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        budgets = []
    if not budgets or min(budgets) <= 0:
        raise ValueError(f"--longer must list positive epoch counts, such as 20,26; got {text!r}.")
    return [TINY_VALUES["epochs"] for _ in budgets] if tiny else budgets


def measure_longer(
    data: hp.fast.FastData, budgets: Sequence[float], device: torch.device, *, tiny: bool
) -> list[hp.fast.FastResult]:
    """One run (seed 0) of the quick recipe for each epoch budget."""
    results = []
    for epochs in budgets:
        print(f"--- longer: {epochs:g} epochs", flush=True)
        cfg = quick_config(tiny, epochs=epochs)
        results.extend(run_seeds(data, cfg, [0], device)[0])
    return results


def longer_markdown(results: Sequence[hp.fast.FastResult]) -> str:
    """The longer runs as Markdown, one row per budget."""
    rows = [
        (
            f"{r.config.epochs:g}",
            f"{r.test_acc:.2%}",
            f"**{r.test_acc_tta:.2%}**",
            f"{r.history[-1]['train_acc']:.1%}",
            f"{r.total_seconds / 60:.1f}",
        )
        for r in results
    ]
    header = ["epochs", "test acc.", "test acc. (TTA)", "last epoch's train acc.", "minutes"]
    return (
        "The quick recipe with more epochs than fit in 10 minutes, one run each (seed 0), "
        "everything else unchanged: how far more time takes it on this machine. Minutes are "
        "training plus evaluation.\n\n" + markdown_table(header, rows)
    )


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line options; every help string says its default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        choices=("main", "ablation", "longer", "all"),
        default="all",
        help="which part to run (default: all; only a full run writes the page)",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="seeds of the main result (default: 3)"
    )
    parser.add_argument(
        "--ablation-seeds",
        type=int,
        default=None,
        help="seeds per ablation row (default: --seeds)",
    )
    parser.add_argument(
        "--longer",
        default="20",
        help="comma-separated epoch budgets of the longer part, one run each (default: 20)",
    )
    parser.add_argument(
        "--levers",
        default="all",
        help="comma-separated ablation levers to run (default: all; 'baseline' is always run "
        f"first): {', '.join(lever.name for lever in LEVERS[1:])}",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a tiny network for a few steps on synthetic data; writes no page (default: off)",
    )
    return parser


def select_levers(names: str) -> tuple[Lever, ...]:
    """The baseline and the named levers (``all`` for every one), in table order."""
    if names == "all":
        return LEVERS
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    known = {lever.name for lever in LEVERS}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"Unknown lever(s) {unknown}; choose from {', '.join(sorted(known))}.")
    return tuple(lever for lever in LEVERS if lever.name == "baseline" or lever.name in wanted)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the chosen parts, print their tables, and write the page after a full run."""
    args = get_args_parser().parse_args(argv)
    ablation_seeds = args.seeds if args.ablation_seeds is None else args.ablation_seeds
    if min(args.seeds, ablation_seeds) < 1:
        raise ValueError("--seeds and --ablation-seeds must be at least 1.")
    levers = select_levers(args.levers)
    budgets = parse_budgets(args.longer, args.tiny)
    device = torch.device("cpu")  # the reference machine of the quick profile
    hp.runtime.set_threads()
    raw = load_data(args.tiny)
    data = hp.fast.prepare_fast_data(raw, quick_config(args.tiny), device=device)
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    # The ablation runs last because its compiled row leaves this process slower for eager
    # code that follows it (measured: 1.1-1.3x longer training steps, 1.7x longer evaluation);
    # the page shows the parts in reading order.
    sections: dict[str, str] = {}
    if args.part in ("main", "all"):
        sections["main"] = run_part(
            "Main result: the quick profile", _main_part(data, seeds, raw, args)
        )
    if args.part in ("longer", "all"):
        title = "Longer: accuracy against training time"
        sections["longer"] = run_part(title, _longer_part(data, budgets, args))
    if args.part in ("ablation", "all"):
        title = f"Ablation at {ABLATION_EPOCHS:g} epochs"
        ablation = list(range(ablation_seeds))
        sections["ablation"] = run_part(title, _ablation_part(data, ablation, levers, args))
    minutes = (time.perf_counter() - start) / 60
    print(f"benchmark wall time: {minutes:.1f} min", flush=True)
    if args.tiny or args.part != "all" or args.levers != "all":
        return
    order = ("main", "ablation", "longer")
    body = "\n\n".join(sections[part] for part in order)
    body += f"\n\nThe whole run took {minutes:.0f} min."
    path = write_report("fast", "The fast recipe: CIFAR-10 on a CPU in minutes", body)
    print(f"written to {path}")


def _main_part(
    data: hp.fast.FastData, seeds: list[int], raw: hp.data.ImageData, args: argparse.Namespace
) -> Callable[[], str]:
    """Part 1 as a closure for :func:`run_part`."""

    def part() -> str:
        cfg, results = measure_main(data, seeds, torch.device("cpu"), tiny=args.tiny)
        print(hp.fast.format_results(results), flush=True)
        return main_markdown(cfg, results, raw.source)

    return part


def _longer_part(
    data: hp.fast.FastData, budgets: Sequence[float], args: argparse.Namespace
) -> Callable[[], str]:
    """Part 3 as a closure for :func:`run_part`."""

    def part() -> str:
        results = measure_longer(data, budgets, torch.device("cpu"), tiny=args.tiny)
        return longer_markdown(results)

    return part


def _ablation_part(
    data: hp.fast.FastData, seeds: list[int], levers: Sequence[Lever], args: argparse.Namespace
) -> Callable[[], str]:
    """Part 2 as a closure for :func:`run_part`."""

    def part() -> str:
        rows = measure_ablation(data, seeds, torch.device("cpu"), levers=levers, tiny=args.tiny)
        for row in rows:
            print(
                f"{row['lever']:<18} {row['acc_mean']:.2%} ± {row['acc_std']:.2%} "
                f"[{row['acc_min']:.2%}, {row['acc_max']:.2%}]  {row['seconds']:.1f} s",
                flush=True,
            )
        return ablation_markdown(rows, seeds, args.tiny)

    return part


if __name__ == "__main__":
    main()
