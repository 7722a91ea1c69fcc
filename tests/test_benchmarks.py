"""The benchmark scripts run end to end in their tiny configurations and leave the book alone."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from benchmarks import training
from helpers.config import RunConfig, load_run_config, replace_values
from tests.conftest import REPO_ROOT

TRAINING_PAGE = REPO_ROOT / "book" / "benchmarks" / "training.md"


def _page_state() -> tuple[float, bytes] | None:
    """The training page's modification time and content, or ``None`` when it is absent."""
    if not TRAINING_PAGE.is_file():
        return None
    return TRAINING_PAGE.stat().st_mtime, TRAINING_PAGE.read_bytes()


@pytest.mark.slow
def test_training_benchmark_tiny_prints_both_tables(tmp_path) -> None:
    """``--tiny`` needs no CIFAR-10 copy, prints every row, and does not rewrite the page
    (about 30 s on 2 CPU cores: every model's first bf16 steps)."""
    env = {
        **os.environ,
        "HELPERS_DATA_DIR": str(tmp_path),
        "CIFAR10_PATH": str(tmp_path / "no-cifar10-here.tar.gz"),
    }
    before = _page_state()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.training", "--tiny"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
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
