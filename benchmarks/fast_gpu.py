"""Fast recipe on a GPU: CIFAR-10 on the device, a compiled warm-up, then seeds timed with
CUDA events.

One prepared command for a machine with a CUDA GPU: it loads CIFAR-10 from the local copy
``CIFAR10_PATH`` names (never downloads), moves it to the GPU, builds FastNet in the
``full`` profile (airbench94's 9.9 epochs) compiled with ``torch.compile``, warms it up
(compiles the training and evaluation graphs and lets cuDNN choose its kernels, untimed),
then trains and tests ``--seeds`` seeds (default 5). Each run's training and its
evaluation (TTA level of the config) are timed with ``torch.cuda.Event`` pairs recorded on
the stream around them, with the data already on the device, which is how GPU work is
timed without stalling the stream in between. It prints one row per seed and the mean and
standard deviation; the claim to check is "94% in under 2 seconds".

On a CPU (``--device cpu``, or ``--tiny``) the same code runs with wall-clock timing in
place of CUDA events; ``--tiny`` uses a tiny network on synthetic data and takes seconds.

Usage::

    CIFAR10_PATH=/path/to/cifar10 python -m benchmarks.fast_gpu --seeds 5
    python -m benchmarks.fast_gpu --no-compile epochs=8   # FastConfig overrides last
    python -m benchmarks.fast_gpu --tiny                  # CPU, synthetic data, seconds
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import torch

import helpers as hp
from benchmarks import fast as fast_benchmark

# --tiny: the CPU benchmark's tiny network and sizes, in fp32 (the CPU test's precision).
TINY_VALUES: dict[str, Any] = {**fast_benchmark.TINY_VALUES, "precision": "fp32"}


class DeviceTimer:
    """Marks on the device's timeline: CUDA events on a GPU, wall-clock times elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def mark(self) -> Any:
        """Record a mark on the current stream (a CUDA event), or read the clock."""
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        hp.runtime.synchronize(self.device)
        return time.perf_counter()

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds between two marks (waits for the GPU to reach ``end``)."""
        if self.device.type == "cuda":
            end.synchronize()
            return start.elapsed_time(end) / 1000.0
        return end - start


def build_config(overrides: Sequence[str], *, compile_model: bool, tiny: bool) -> Any:
    """The ``full`` profile's recipe, compiled or not, then overrides (``tiny``: shrunk)."""
    cfg = hp.fast.fast_config("full", overrides).replace(compile=compile_model, epoch_eval=False)
    return cfg.replace(**TINY_VALUES) if tiny else cfg


def timed_run(
    model: torch.nn.Module,
    data: hp.fast.FastData,
    cfg: hp.fast.FastConfig,
    seed: int,
    timer: DeviceTimer,
) -> hp.fast.FastResult:
    """Train and test one seed; CUDA events around training and around evaluation."""
    start = timer.mark()
    history = hp.fast.fit_fast(model, data, cfg, seed=seed)
    trained = timer.mark()
    accuracy_tta = hp.fast.evaluate_fast(model, data, cfg, level=cfg.tta_level)
    evaluated = timer.mark()
    accuracy = hp.fast.evaluate_fast(model, data, cfg, level=0)
    plain = timer.mark()
    steps_per_epoch = len(data.train_labels) // cfg.batch_size
    return hp.fast.FastResult(
        seed=seed,
        test_acc=accuracy,
        test_acc_tta=accuracy_tta,
        train_seconds=timer.seconds(start, trained),
        eval_seconds=timer.seconds(trained, evaluated),
        eval_seconds_no_tta=timer.seconds(evaluated, plain),
        steps=hp.fast.total_steps(cfg.epochs, steps_per_epoch),
        train_images=len(data.train_labels),
        test_images=len(data.test_labels),
        history=history,
        config=cfg,
        model=model,
    )


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line options; every help string says its default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="timed seeds (default: 5)")
    parser.add_argument("--device", default=None, help="device (default: cuda, or cpu with --tiny)")
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="run eagerly instead of torch.compile (default: compile)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a tiny network on synthetic data, on the CPU, no compile (default: off)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="FastConfig overrides (default: none)"
    )
    return parser


def _describe(device: torch.device) -> str:
    """The device and software, in one line."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return f"{name}, torch {torch.__version__}"


def main(argv: Sequence[str] | None = None) -> None:
    """Load, warm up, run the seeds and print the table."""
    args = get_args_parser().parse_args(argv)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}.")
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    hp.runtime.get_device(str(device))  # a clear error where that device is missing
    cfg = build_config(args.overrides, compile_model=args.compile and not args.tiny, tiny=args.tiny)
    if args.tiny:
        raw = hp.data.make_synthetic_data(train_per_class=20, test_per_class=10)
    else:
        raw = hp.data.load_dataset("cifar10", download=False)
    data = hp.fast.prepare_fast_data(raw, cfg, device=device)
    print(f"{raw!r} on {_describe(device)}; {cfg.epochs:g} epochs, compile {cfg.compile}")
    model = hp.fast.build_fast_model(cfg, device, num_classes=data.num_classes)
    start = time.perf_counter()
    hp.fast.warm_up(model, data, cfg)
    print(f"warm-up (untimed): {time.perf_counter() - start:.1f} s", flush=True)
    timer = DeviceTimer(device)
    results = []
    for seed in range(args.seeds):
        results.append(timed_run(model, data, cfg, seed, timer))
        print(f"seed {seed}: {results[-1].test_acc_tta:.2%} in {results[-1].total_seconds:.2f} s")
    clock = "CUDA events" if device.type == "cuda" else "wall clock"
    print(f"Seconds measured with {clock}, data already on the device:")
    print(hp.fast.format_results(results, decimals=2))


if __name__ == "__main__":
    main()
