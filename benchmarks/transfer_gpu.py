"""GPU transfer benchmark: fine-tune ViT-B/16 on all of CIFAR-10 at 224x224 in bf16.

The ``full`` profile's headline transfer result as one command: timm's
``vit_base_patch16_224.augreg2_in21k_ft_in1k`` (ImageNet-21k pretraining, fine-tuned on
ImageNet-1k; 86 million weights) gets a new 10-class head and is fine-tuned on the 45,000
CIFAR-10 training images (5,000 held out for validation), then its best epoch is tested on
the 10,000 test images. The loaders keep the 32x32 images on the GPU, augmented there (crop
and flip), and :class:`helpers.transfer.WithPreprocessing` upscales each batch to 224x224
inside the model. Training is full fine-tuning with :func:`helpers.train.fit`: AdamW,
layer-wise learning-rate decay, a warm-up epoch then cosine decay, label smoothing, stochastic
depth, bf16 autocast. The goal is a test accuracy of at least 98.5%.

A full run prints the accuracy and the seconds, and writes ``transfer_gpu.md`` (and
``transfer_gpu.json``) to ``--out`` (default ``book/benchmarks``). The pretrained weights come
from the Hugging Face hub, or, on a machine without internet, from a local file:
``--weights path/to/model.safetensors`` (the ``model.safetensors`` of
https://huggingface.co/timm/vit_base_patch16_224.augreg2_in21k_ft_in1k). ``--tiny`` runs two
steps of the same code on the CPU, with a ViT-Tiny of random weights, synthetic data and
32x32 inputs (for the tests), and writes nothing.

Usage::

    CIFAR10_PATH=../shared/data/cifar10-jpeg.tar.gz python -m benchmarks.transfer_gpu
    python -m benchmarks.transfer_gpu --weights model.safetensors --out "$OUT"
    python -m benchmarks.transfer_gpu --tiny  # seconds on a CPU, writes nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import helpers as hp
from benchmarks._report import RESULTS_DIR, markdown_table, write_report

GOAL = 0.985  # test accuracy the full run should reach


@dataclass(frozen=True)
class GpuSetup:
    """One fine-tuning run: the model, its weights, the data sizes and the recipe."""

    model: str = "vit_base_patch16_224.augreg2_in21k_ft_in1k"
    weights: str = "hub"  # "hub", "none", or a .safetensors/.pth path
    image_size: int | None = None  # None: the model's own (224)
    train_images: int | None = None  # None: all 45,000
    eval_images: int | None = None  # None: all 5,000 validation and 10,000 test images
    batch_size: int = 128
    epochs: int = 5
    lr: float = 5e-4  # the head's; each block below it gets layer_decay times the one above
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    drop_path_rate: float = 0.1  # stochastic depth
    precision: str = "auto"  # bf16 where the hardware has it
    max_steps_per_epoch: int | None = None
    compile: bool = False


TINY = GpuSetup(
    model="vit_tiny_patch16_224.augreg_in21k_ft_in1k",  # the same code, 5.7M weights not 86M
    weights="none",
    image_size=32,  # 2x2 patches: the same code, a fraction of the work
    train_images=64,
    eval_images=16,
    batch_size=8,
    epochs=1,
    max_steps_per_epoch=2,
)


def run_config(setup: GpuSetup, checkpoint_dir: str) -> hp.config.RunConfig:
    """The :class:`helpers.config.RunConfig` of the run."""
    values = {
        "data.loader": "fast",  # the uint8 images on the GPU, augmented in batches there
        "data.augment": "standard",  # crop (4 px padding) and flip, at 32x32
        "data.batch_size": setup.batch_size,
        "data.train_images": setup.train_images,
        "data.eval_images": setup.eval_images,
        "model.name": setup.model,
        "train.epochs": setup.epochs,
        "train.optimizer": "adamw",
        "train.lr": setup.lr,
        "train.layer_decay": setup.layer_decay,
        "train.weight_decay": setup.weight_decay,
        "train.schedule": "cosine",
        "train.warmup_epochs": setup.warmup_epochs,
        "train.label_smoothing": setup.label_smoothing,
        "train.precision": setup.precision,
        "train.max_steps_per_epoch": setup.max_steps_per_epoch,
        "train.compile": setup.compile,
        "train.progress": False,
        "train.checkpoint_dir": checkpoint_dir,
    }
    return hp.config.replace_values(hp.config.RunConfig(profile="full"), values)


def build_model(setup: GpuSetup, loaders: hp.data.Loaders) -> hp.transfer.WithPreprocessing:
    """The pretrained ViT with a new head, upscaling the loaders' images inside itself.

    Raises:
        hp.transfer.WeightsUnavailableError: offline, without a weights file.
    """
    kwargs: dict[str, Any] = {"drop_path_rate": setup.drop_path_rate}
    if setup.image_size is not None:
        kwargs["img_size"] = setup.image_size  # position embeddings resampled to fit
    model = hp.transfer.create_pretrained(setup.model, 10, weights=setup.weights, **kwargs)
    return hp.transfer.WithPreprocessing(
        model, input_mean=loaders.mean, input_std=loaders.std, image_size=setup.image_size
    )


def load_data(tiny: bool) -> hp.data.ImageData:
    """CIFAR-10 (the local copy ``CIFAR10_PATH`` names, or a download), or synthetic data."""
    if tiny:
        return hp.data.make_synthetic_data(train_per_class=10, test_per_class=4)
    return hp.data.load_dataset("cifar10")


def fine_tune(setup: GpuSetup, data: hp.data.ImageData, device: torch.device) -> dict[str, Any]:
    """Fine-tune and test; the results as a flat dict (accuracy, seconds, throughput)."""
    with tempfile.TemporaryDirectory() as checkpoints:
        cfg = run_config(setup, checkpoints)
        loaders = hp.data.make_loaders(data, cfg.data, device=device, seed=cfg.train.seed)
        hp.runtime.seed_everything(cfg.train.seed)
        model = build_model(setup, loaders)
        start = time.perf_counter()
        result = hp.train.fit(model, loaders, cfg, device=device, resume=False)
        train_seconds = time.perf_counter() - start
        test = hp.train.evaluate_best(result, loaders.test, cfg, device)
    history = result.history
    return {
        "test_acc": test["acc"],
        "test_images": int(test["images"]),
        "best_val_acc": result.best_metric,
        "best_epoch": result.best_epoch,
        "epochs": len(history),
        "train_images": len(loaders.train.dataset),
        "image_size": model.image_size,
        "train_seconds": train_seconds,
        "train_images_per_second": max(row["images_per_second"] for row in history),
        "trainable_parameters": hp.transfer.count_parameters(model)[0],
    }


def gpu_name(device: torch.device) -> str:
    """The accelerator's name, or the device type."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def results_markdown(results: dict[str, Any], setup: GpuSetup, device: torch.device) -> str:
    """The run's results and recipe, as Markdown."""
    met = "met" if results["test_acc"] >= GOAL else "**not met**"
    rows = [
        (
            f"`{setup.model}`",
            f"**{results['test_acc']:.2%}** (goal {GOAL:.1%}: {met})",
            f"{results['best_val_acc']:.2%} (epoch {results['best_epoch']})",
            f"{results['train_seconds']:.0f}",
            f"{results['total_seconds']:.0f}",
            f"{results['train_images_per_second']:,.0f}",
        )
    ]
    header = [
        "model",
        "test accuracy",
        "best val accuracy",
        "fit seconds",
        "total seconds",
        "train images/s",
    ]
    recipe = ", ".join(f"{f.name}={getattr(setup, f.name)!r}" for f in dataclasses.fields(setup))
    return (
        f"Full fine-tuning on {gpu_name(device)} of `{setup.model}` on "
        f"{results['train_images']:,} CIFAR-10 training images upscaled to "
        f"{results['image_size']}x{results['image_size']} inside the model, tested with the "
        f"best epoch's weights on {results['test_images']:,} test images. Fit seconds are "
        "the wall time of `fit` (validation every epoch included); total seconds add data "
        "loading, model building and the test.\n\n"
        + markdown_table(header, rows)
        + f"\n\nRecipe: `{recipe}`."
    )


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line options; every help string says its default."""
    defaults = GpuSetup()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights", default=defaults.weights, help="hub, none, or a weights file (default: hub)"
    )
    parser.add_argument(
        "--epochs", type=int, default=defaults.epochs, help=f"default: {defaults.epochs}"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="default: 128")
    parser.add_argument("--lr", type=float, default=defaults.lr, help=f"default: {defaults.lr}")
    parser.add_argument("--compile", action="store_true", help="torch.compile (default: off)")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="folder for the page (default: book/benchmarks)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="two CPU steps, random weights; writes nothing"
    )
    return parser


def setup_from_args(args: argparse.Namespace) -> GpuSetup:
    """The run's setup: :data:`TINY` for ``--tiny``, otherwise the defaults and the options."""
    if args.tiny:
        return TINY
    return dataclasses.replace(
        GpuSetup(),
        weights=args.weights,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        compile=args.compile,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fine-tune, print the results, and write them unless ``--tiny``."""
    args = get_args_parser().parse_args(argv)
    setup = setup_from_args(args)
    device = torch.device("cpu") if args.tiny else hp.runtime.get_device()
    if device.type == "cpu" and not args.tiny:
        print("warning: no GPU found; the full run would take days on a CPU", flush=True)
    start = time.perf_counter()
    results = fine_tune(setup, load_data(args.tiny), device)
    results["total_seconds"] = time.perf_counter() - start
    met = "met" if results["test_acc"] >= GOAL else "not met"
    print(
        f"test accuracy {results['test_acc']:.2%} (goal {GOAL:.1%}: {met}); "
        f"fit {results['train_seconds']:.0f} s, total {results['total_seconds']:.0f} s",
        flush=True,
    )
    print(json.dumps(results), flush=True)
    if not args.tiny:
        body = results_markdown(results, setup, device)
        path = write_report("transfer_gpu", "Transfer learning on a GPU", body, args.out)
        path.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(f"written to {path}")
    return results


if __name__ == "__main__":
    main()
