"""helpers.recipes and fit_or_load: named configs, and reusing a finished run's model."""

from __future__ import annotations

import pytest
import torch

from helpers import config, recipes
from helpers import data as hd
from helpers import train as ht


@pytest.mark.parametrize("name", recipes.RECIPES)
@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_every_recipe_is_a_valid_config_in_every_profile(name: str, profile: str) -> None:
    cfg = recipes.recipe_config(name, profile)
    assert cfg.profile == profile and cfg.data.loader == "fast"
    assert cfg.train.run_name == f"{name}_{profile}"
    assert cfg.train.epochs == recipes.recipe(name, profile)["train.epochs"]


def test_recipes_grow_with_the_profile_and_overrides_come_last() -> None:
    smoke, full = (
        recipes.recipe_config("resnet9", "smoke"),
        recipes.recipe_config("resnet9", "full"),
    )
    assert smoke.train.epochs < full.train.epochs and smoke.data.train_images == 512
    assert (smoke.model.name, full.model.name) == ("resnet9_narrow", "resnet9")
    cfg = recipes.recipe_config("vit_tiny", config.PROFILES["quick"], {"train.seed": 3})
    assert cfg.train.seed == 3 and cfg.train.optimizer == "adamw"


def test_unknown_recipes_profiles_and_keys_are_named() -> None:
    with pytest.raises(ValueError, match="simple_cnn, resnet9, vit_tiny"):
        recipes.recipe("lenet", "quick")
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        recipes.recipe("resnet9", "auto")
    with pytest.raises(ValueError, match=r"unknown key .train\.speed."):
        recipes.recipe_config("resnet9", "smoke", {"train.speed": 2})


def _smoke_cfg(tmp_path, **overrides: object) -> config.RunConfig:
    values = {"train.checkpoint_dir": str(tmp_path / "run"), "train.precision": "fp32"}
    return recipes.recipe_config("simple_cnn", "smoke", {**values, **overrides})


@pytest.mark.usefixtures("one_thread")
def test_fit_or_load_trains_once_then_reuses_the_finished_run(tmp_path, capsys) -> None:
    data = hd.make_synthetic_data(10, 8, image_size=32)
    first = ht.fit_or_load(_smoke_cfg(tmp_path), data, device="cpu")
    assert "epoch" in capsys.readouterr().out and first.path.name == "best.pt"
    again = ht.fit_or_load(_smoke_cfg(tmp_path), data, device="cpu")
    assert "reusing the finished run" in capsys.readouterr().out
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    assert again.class_names == list(data.class_names) and not again.model.training


@pytest.mark.usefixtures("one_thread")
def test_fit_or_load_retrains_when_the_settings_changed(tmp_path, capsys) -> None:
    data = hd.make_synthetic_data(10, 8, image_size=32)
    ht.fit_or_load(_smoke_cfg(tmp_path), data, device="cpu")
    capsys.readouterr()
    changed = ht.fit_or_load(_smoke_cfg(tmp_path, **{"train.lr": 0.01}), data, device="cpu")
    out = capsys.readouterr().out
    assert "not reusing" in out and "train.lr" in out and "reusing the finished" not in out
    assert changed.config.train.lr == 0.01
