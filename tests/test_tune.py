"""helpers.tune: trials share data, seed and budget; searches cover their space; errors name
what is wrong."""

from __future__ import annotations

import pytest
from torch import nn

from helpers import config, tune
from helpers import data as hd
from tests.conftest import TORCH_DEVICE

METRICS = ["best val_acc", "best epoch", "last val_acc", "last train_acc", "epochs", "seconds"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data() -> hd.ImageData:
    return hd.make_synthetic_data(8, 4, image_size=8)  # 80 training, 40 test images


def _base(**train: object) -> config.RunConfig:
    return config.RunConfig(
        profile="smoke",
        data=config.DataConfig(image_size=8, batch_size=16, loader="fast", val_fraction=0.25),
        model=config.ModelConfig(name="resnet9", kwargs={"width_mult": 0.0625}),  # 4-8-16-32
        train=config.TrainConfig(**{"epochs": 2, "lr": 0.05, "precision": "fp32", **train}),
    )


def _without_timing(history: list[dict]) -> list[dict]:
    timing = ("epoch_seconds", "images_per_second")
    return [{k: v for k, v in row.items() if k not in timing} for row in history]


# ----------------------------------------------------------------------------------------------
# run_trials
# ----------------------------------------------------------------------------------------------


def test_trials_share_data_seed_and_budget_and_differ_only_by_their_change(data, capsys) -> None:
    trials = {"base": {}, "same again": {"train.seed": 0}, "one epoch": {"train.epochs": 1}}
    base = _base(schedule="constant")  # so the first epoch does not depend on the epochs
    table = tune.run_trials(base, trials, data, device=TORCH_DEVICE)
    assert list(table.index) == list(trials)
    assert set(METRICS) <= set(table.columns) and "train.epochs" in table.columns
    histories = table.attrs["histories"]
    assert _without_timing(histories["base"]) == _without_timing(histories["same again"])
    assert table.loc["base", "epochs"] == 2 and table.loc["one epoch", "epochs"] == 1
    first = _without_timing(histories["one epoch"])[0]
    assert first == _without_timing(histories["base"])[0]  # same start; only the budget differs
    best = max(histories["base"], key=lambda row: row["val_acc"])
    assert table.loc["base", "best val_acc"] == best["val_acc"]
    assert table.loc["base", "best epoch"] == best["epoch"]
    assert table.loc["base", "last val_acc"] == histories["base"][-1]["val_acc"]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("best val_acc" in line for line in lines)


def test_trials_write_nothing_under_the_data_folder(data, _private_data_dir) -> None:
    tune.run_trials(_base(epochs=1), {"base": {}}, data, device=TORCH_DEVICE, verbose=False)
    assert not (_private_data_dir / "checkpoints").exists()


def test_a_custom_model_builder_and_score_add_columns(data) -> None:
    built = []

    def build_model(cfg: config.RunConfig) -> nn.Module:
        built.append(cfg.train.lr)
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, cfg.model.num_classes))

    def score(model: nn.Module, loaders: hd.Loaders) -> dict[str, float]:
        assert isinstance(model, nn.Sequential)  # the trained model itself
        return {"test images": float(len(loaders.test.dataset)), "lr seen": built[-1]}

    trials = {"slow": {"train.lr": 0.01}, "fast": {"train.lr": 0.1}}
    table = tune.run_trials(
        _base(epochs=1), trials, data, device=TORCH_DEVICE, build_model=build_model,
        score=score, verbose=False,
    )  # fmt: skip
    assert built == [0.01, 0.1]
    assert table["lr seen"].tolist() == [0.01, 0.1]
    assert table["test images"].tolist() == [40.0, 40.0]


def test_bad_trials_are_named(data) -> None:
    with pytest.raises(ValueError, match="at least one trial"):
        tune.run_trials(_base(), {}, data, device=TORCH_DEVICE)
    with pytest.raises(ValueError, match="must map dotted keys"):
        tune.run_trials(_base(), {"x": 0.1}, data, device=TORCH_DEVICE)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"unknown key 'train\.learning_rate'"):
        tune.run_trials(_base(), {"x": {"train.learning_rate": 0.1}}, data, device=TORCH_DEVICE)
    no_val = config.replace_values(_base(), {"data.val_fraction": 0.0})
    with pytest.raises(ValueError, match="validation split"):
        tune.run_trials(no_val, {"x": {}}, data, device=TORCH_DEVICE)


# ----------------------------------------------------------------------------------------------
# grid_search and random_search
# ----------------------------------------------------------------------------------------------


def test_grid_search_tries_every_combination_best_first(data) -> None:
    space = {"train.lr": [0.01, 0.1], "model.kwargs.width_mult": [0.0625, 0.125]}
    table = tune.grid_search(_base(epochs=1), space, data, device=TORCH_DEVICE, verbose=False)
    assert sorted(table.index) == sorted(
        f"lr={lr}, width_mult={w}" for lr in (0.01, 0.1) for w in (0.0625, 0.125)
    )
    scores = table["best val_acc"].tolist()
    assert scores == sorted(scores, reverse=True)
    assert set(zip(table["train.lr"], table["model.kwargs.width_mult"], strict=True)) == {
        (0.01, 0.0625), (0.01, 0.125), (0.1, 0.0625), (0.1, 0.125)
    }  # fmt: skip


def test_random_search_draws_distinct_combinations_repeatably(data, monkeypatch) -> None:
    calls = []

    def fake_run_trials(base, trials, data, **kwargs):
        calls.append(dict(trials))
        import pandas as pd

        rows = [{"trial": name, **values, "best val_acc": values["train.lr"]}
                for name, values in trials.items()]  # fmt: skip
        return pd.DataFrame(rows).set_index("trial")

    monkeypatch.setattr(tune, "run_trials", fake_run_trials)
    space = {"train.lr": [0.01, 0.02, 0.05, 0.1], "data.augment": ["none", "standard"]}
    table = tune.random_search(_base(), space, data, trials=5, device=TORCH_DEVICE, seed=3)
    assert len(calls[0]) == 5 and len({tuple(v.items()) for v in calls[0].values()}) == 5
    assert table["best val_acc"].is_monotonic_decreasing
    tune.random_search(_base(), space, data, trials=5, device=TORCH_DEVICE, seed=3)
    assert calls[1] == calls[0]  # the same seed draws the same trials
    tune.random_search(_base(), space, data, trials=50, device=TORCH_DEVICE)
    assert len(calls[2]) == 8  # never more than the space holds


def test_bad_search_spaces_are_named(data) -> None:
    with pytest.raises(ValueError, match="empty"):
        tune.grid_search(_base(), {}, data, device=TORCH_DEVICE)
    with pytest.raises(ValueError, match=r"'train\.lr' needs a non-empty list"):
        tune.grid_search(_base(), {"train.lr": []}, data, device=TORCH_DEVICE)
    with pytest.raises(ValueError, match=r"'data\.augment' needs a non-empty list"):
        tune.grid_search(_base(), {"data.augment": "strong"}, data, device=TORCH_DEVICE)
    for trials in (0, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            tune.random_search(
                _base(), {"train.lr": [0.1]}, data, trials=trials, device=TORCH_DEVICE
            )
