"""The benchmark scripts run end to end in their tiny configurations and leave the book alone."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections import Counter

import pandas as pd
import pytest

from benchmarks import fast as fast_benchmark
from benchmarks import serving, training, transfer, transfer_gpu
from helpers.config import RunConfig, load_run_config, replace_values
from helpers.data import make_loaders, make_synthetic_data
from helpers.transfer import count_parameters
from tests.conftest import REPO_ROOT

TRAINING_PAGE = REPO_ROOT / "book" / "benchmarks" / "training.md"


def _run_tiny(module: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    """``python -m <module> --tiny <args>`` with a private data folder and no CIFAR-10 copy."""
    env = {
        **os.environ,
        "HELPERS_DATA_DIR": str(tmp_path),
        "CIFAR10_PATH": str(tmp_path / "no-cifar10-here.tar.gz"),
        "HF_HUB_OFFLINE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", module, "--tiny", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _page_state() -> tuple[float, bytes] | None:
    """The training page's modification time and content, or ``None`` when it is absent."""
    if not TRAINING_PAGE.is_file():
        return None
    return TRAINING_PAGE.stat().st_mtime, TRAINING_PAGE.read_bytes()


@pytest.mark.slow
def test_training_benchmark_tiny_prints_both_tables(tmp_path) -> None:
    """``--tiny`` needs no CIFAR-10 copy, prints every row, and does not rewrite the page
    (about 30 s on 2 CPU cores: every model's first bf16 steps)."""
    before = _page_state()
    proc = _run_tiny("benchmarks.training", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for case in training.CASES:
        assert case.label in out
    for column in ("fp32", "bf16", "bf16 NCHW", "bf16/fp32", "channels_last gain"):
        assert column in out
    for model in training.QUICK_RECIPES:
        assert f"--- {model}" in out  # trained
        assert any(line.startswith(model + " ") for line in out.splitlines())  # a result row
    assert "test acc" in out
    assert "written to" not in out
    assert _page_state() == before


def test_quick_recipes_are_valid_configs(tmp_path) -> None:
    """Every recipe's dotted keys exist and have the right types; tiny mode shrinks it."""
    for recipe in training.QUICK_RECIPES.values():
        cfg = training.recipe_config(recipe, checkpoint_dir=str(tmp_path))
        assert cfg.model.name == recipe["model.name"]
        assert cfg.data.loader == "fast" and cfg.train.precision == "bf16"
        tiny = training.recipe_config(recipe, checkpoint_dir=str(tmp_path), tiny=True)
        assert tiny.train.max_steps_per_epoch == training.TINY_SIZES["train.max_steps_per_epoch"]
        command = shlex.split(training.recipe_command(recipe).replace("\\\n", ""))
        assert command[:4] == ["python", "-m", "helpers", "train"]
        assert command[4:] == training.recipe_overrides(recipe)  # quoted for the shell


@pytest.mark.parametrize("name", list(training.QUICK_RECIPES))
def test_recipe_command_rebuilds_the_recipe(name: str) -> None:
    """The printed overrides, read as ``python -m helpers train`` reads them (profile sizes
    included), give exactly the config the benchmark trained with."""
    recipe = training.QUICK_RECIPES[name]
    from_command = load_run_config(overrides=training.recipe_overrides(recipe), cuda_available=True)
    assert from_command == replace_values(RunConfig(), {**training.QUICK_BASE, **recipe})


def test_precision_table_ratios_are_medians_of_round_ratios() -> None:
    """Ratios come from rounds: a slow round for both variants does not move them."""
    fp32 = training._Cell(training.CASES[0], training.FP32, lambda: None, 10)
    bf16 = training._Cell(training.CASES[0], training.BF16, lambda: None, 10)
    nchw = training._Cell(training.CASES[0], training.BF16_NCHW, lambda: None, 10)
    fp32.images_per_second = [100.0, 10.0, 100.0]  # the second round ran under heavy load
    bf16.images_per_second = [200.0, 20.0, 200.0]
    nchw.images_per_second = [100.0, 10.0, 100.0]
    table = training._precision_frame([fp32, bf16, nchw])
    row = table.loc["simple_cnn"]
    assert row["fp32"] == 100.0 and row["bf16"] == 200.0
    assert row["bf16/fp32"] == pytest.approx(2.0)
    assert row["channels_last gain"] == pytest.approx(2.0)


# ----------------------------------------------------------------------------------------------
# Transfer benchmarks
# ----------------------------------------------------------------------------------------------


def _pages() -> dict[str, bytes]:
    """The transfer benchmarks' pages (``transfer*.md``, ``.json``) and their content."""
    folder = REPO_ROOT / "book" / "benchmarks"
    return {path.name: path.read_bytes() for path in folder.glob("transfer*")}


@pytest.mark.slow
def test_transfer_benchmark_tiny_runs_every_strategy(tmp_path) -> None:
    """``--tiny`` runs the probe and every fitted strategy for one seed on synthetic data,
    prints the summary table, and writes no page (about a minute on 2 CPU cores)."""
    before = _pages()
    proc = _run_tiny("benchmarks.transfer", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "--- seed 0" in out and "--- seed 1" not in out
    for strategy in transfer.STRATEGIES:
        assert out.count(strategy) >= 2  # the seed's rows and the summary
    assert "test acc std" in out and "benchmark wall time" in out
    assert "written to" not in out
    assert _pages() == before


@pytest.mark.slow
def test_transfer_gpu_benchmark_tiny_runs_on_cpu(tmp_path) -> None:
    """The GPU script's ``--tiny`` fine-tunes a randomly initialised ViT for two steps on
    the CPU, reports accuracy and seconds, and writes nothing."""
    before = _pages()
    proc = _run_tiny("benchmarks.transfer_gpu", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert 0.0 <= results["test_acc"] <= 1.0 and results["epochs"] == 1
    assert results["train_seconds"] > 0 and results["total_seconds"] >= results["train_seconds"]
    assert "test accuracy" in proc.stdout and "written to" not in proc.stdout
    assert _pages() == before


def test_transfer_strategies_are_valid_configs(tmp_path) -> None:
    """Every fitted strategy's overrides exist and have the right types, and its model
    trains what it says (two stages, every layer but the batch norms, everything)."""
    setup = transfer.TINY
    cfg = transfer.base_config(setup, seed=0, checkpoint_dir=str(tmp_path))
    assert cfg.train.precision == "fp32" and cfg.data.train_images == setup.train_images
    data = make_synthetic_data(4, 2)
    loaders = make_loaders(data, cfg.data, device="cpu", seed=0)
    runs = transfer.strategy_runs(setup, cfg, loaders, weights="none")
    assert list(runs) == list(transfer.STRATEGIES[1:])
    trainable = {}
    for name, (make, overrides) in runs.items():
        run_cfg = replace_values(cfg, overrides)
        assert run_cfg.train.checkpoint_dir == str(tmp_path)
        trainable[name] = count_parameters(make())
    assert run_cfg.train.optimizer == "sgd"  # ResNet-9 keeps its recipe
    partial, full, scratch, _ = trainable.values()
    assert partial[0] < full[0] < full[1] == scratch[0] == scratch[1]  # frozen batch norms


def test_transfer_summary_has_mean_and_spread_per_strategy() -> None:
    """The summary keeps the strategies' order and averages over seeds."""
    runs = pd.DataFrame(
        [
            {
                "strategy": s,
                "seed": seed,
                "test acc": acc,
                "epochs": 1,
                "minutes": 1.0,
                "trainable": 10,
            }
            for s in reversed(transfer.STRATEGIES)
            for seed, acc in ((0, 0.5), (1, 0.7))
        ]
    )
    table = transfer.summarise(runs)
    assert list(table.index) == list(transfer.STRATEGIES)
    assert table["test acc"].tolist() == pytest.approx([0.6] * len(transfer.STRATEGIES))
    assert table["test acc std"].iloc[0] == pytest.approx(0.1414, abs=1e-3)


def test_transfer_gpu_setup_and_config(tmp_path) -> None:
    """The full run is ViT-B/16 on all of CIFAR-10 at the model's size in bf16 where
    possible; the options reach the config; ``--tiny`` is small and offline."""
    args = transfer_gpu.get_args_parser().parse_args(["--epochs", "7", "--weights", "w.pt"])
    setup = transfer_gpu.setup_from_args(args)
    assert setup.model.startswith("vit_base_patch16_224") and setup.image_size is None
    assert (setup.epochs, setup.weights) == (7, "w.pt")
    cfg = transfer_gpu.run_config(setup, str(tmp_path))
    assert cfg.data.train_images is None and cfg.data.eval_images is None
    assert cfg.train.layer_decay == setup.layer_decay and cfg.train.precision == "auto"
    tiny = transfer_gpu.setup_from_args(transfer_gpu.get_args_parser().parse_args(["--tiny"]))
    assert tiny.weights == "none" and tiny.max_steps_per_epoch == 2


# ----------------------------------------------------------------------------------------------
# benchmarks/fast.py and benchmarks/fast_gpu.py
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fast_benchmark_tiny_runs_every_part_and_writes_nothing(tmp_path) -> None:
    """``--tiny`` trains a tiny FastNet on synthetic data for the main part, every lever
    of the ablation (compile skipped) and each longer budget, and leaves the page alone
    (about 20 s)."""
    before = _pages()
    proc = _run_tiny("benchmarks.fast", tmp_path, "--seeds", "1", "--longer", "20,26")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "--- main:" in out and "TTA acc" in out and "  mean " in out
    assert out.count("--- longer: 1 epochs") == 2  # tiny: every budget shrinks to one epoch
    for lever in fast_benchmark.LEVERS:
        assert f"--- {'ablation: ' if lever.name != 'compile' else ''}{lever.name}" in out
    assert "written to" not in out
    assert _pages() == before


@pytest.mark.slow
def test_fast_gpu_benchmark_tiny_runs_on_the_cpu(tmp_path) -> None:
    """The GPU command runs end to end on the CPU in its tiny configuration (wall clock in
    place of CUDA events)."""
    before = _pages()
    proc = _run_tiny("benchmarks.fast_gpu", tmp_path, "--seeds", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "warm-up (untimed)" in out and "wall clock" in out
    assert "seed 1:" in out and "  mean " in out and "   std " in out
    assert _pages() == before


def test_fast_benchmark_levers_are_valid_configs() -> None:
    """Every lever's changes make a valid FastConfig; unknown levers are refused."""
    for lever in fast_benchmark.LEVERS:
        cfg = fast_benchmark.quick_config(False, **lever.changes)
        assert all(getattr(cfg, key) == value for key, value in lever.changes.items())
    chosen = fast_benchmark.select_levers("lookahead, tta")
    assert [lever.name for lever in chosen] == ["baseline", "lookahead", "tta"]
    with pytest.raises(ValueError, match="Unknown lever"):
        fast_benchmark.select_levers("lookahed")


def test_fast_benchmark_longer_budgets_are_checked() -> None:
    """``--longer`` takes positive epoch counts and refuses anything else."""
    assert fast_benchmark.parse_budgets("20, 26.5", tiny=False) == [20.0, 26.5]
    for bad in ("", "twenty", "20,-1", "0"):
        with pytest.raises(ValueError, match="--longer"):
            fast_benchmark.parse_budgets(bad, tiny=False)


def test_fast_ablation_markdown_compares_with_the_baseline() -> None:
    rows = [
        fast_benchmark._row(fast_benchmark.LEVERS[0], [0.90, 0.92], [10.0, 12.0]),
        fast_benchmark._row(fast_benchmark.LEVERS[3], [0.88, 0.88], [10.0, 10.0], 5.0),
    ]
    text = fast_benchmark.ablation_markdown(rows, [0, 1], tiny=False)
    assert "**91.00%** ± 1.41%" in text and "-3.00 pt" in text and "(+5 compiling)" in text
    assert f"{fast_benchmark.ABLATION_EPOCHS:g} epochs" in text


# ----------------------------------------------------------------------------------------------
# Serving benchmark
# ----------------------------------------------------------------------------------------------

SERVING_PAGE = REPO_ROOT / "book" / "benchmarks" / "serving.md"


@pytest.mark.slow
def test_serving_benchmark_tiny_prints_both_tables_and_the_targets(tmp_path) -> None:
    """``--tiny`` exports random weights (no checkpoint in an empty data folder), times every
    runtime, loads a real server subprocess (alone and with two workers), and writes nothing
    (about 30 s on 2 busy CPU cores)."""
    before = SERVING_PAGE.read_bytes() if SERVING_PAGE.is_file() else None
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.serving", "--tiny"],
        cwd=REPO_ROOT,
        env={**os.environ, "HELPERS_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "randomly initialised weights" in proc.stdout
    for runtime in ("eager PyTorch", "TorchScript", "ONNX Runtime", "Predictor, 32x32 PNG"):
        assert any(line.startswith(f"| {runtime} |") for line in lines)
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and " | " in line]
    service = [row for row in rows if row[0] in ("| 1 process", "| 2 workers")]
    assert [(row[0], int(row[1])) for row in service] == [
        *(("| 1 process", clients) for clients in serving.CONCURRENCY),
        ("| 2 workers", max(serving.CONCURRENCY)),
    ]
    for row in service:
        assert row[7:10] == ["0", "0", "0"]  # no 5xx, no other error, no wrong label
    assert proc.stdout.count("(target: ") == 1 + 3 * len(serving.SETUPS)
    assert "What bounds the service" in proc.stdout and "written to" not in proc.stdout
    assert (SERVING_PAGE.read_bytes() if SERVING_PAGE.is_file() else None) == before


def test_serving_rows_count_unanswered_requests_as_server_errors() -> None:
    result = serving.LoadResult(
        server="1 process",
        clients=4,
        seconds=2.0,
        latencies=[0.01, 0.02, 0.03],
        statuses=Counter({"200": 2, "415": 1, "503": 1, "no answer": 2}),
        wrong=0,
        server_cpu=0.012,
        client_cpu=0.003,
    )
    cells = serving.service_cells(result)
    assert result.requests == 6 and result.server_errors == 3
    assert cells[2:4] == ["6", "3"] and cells[7] == "3" and cells[8] == "415: 1, no answer: 2"
    assert cells[-2:] == ["2.00 / 0.50", "0.01"]
