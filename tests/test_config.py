"""Tests for helpers.config: profiles, typed configs, YAML loading and overrides."""

from __future__ import annotations

import dataclasses
import os

import pytest

from helpers import config


def test_profiles_scale_sizes_only() -> None:
    smoke, quick, full = (config.PROFILES[name] for name in ("smoke", "quick", "full"))
    assert smoke.train_images < quick.train_images
    assert full.train_images is None and full.eval_images is None
    assert smoke.max_steps_per_epoch is not None and quick.max_steps_per_epoch is None
    assert smoke.epochs <= quick.epochs <= full.epochs


@pytest.mark.parametrize(
    ("name", "cuda", "expected"),
    [
        ("auto", True, "full"),
        ("auto", False, "quick"),
        ("smoke", True, "smoke"),
        ("QUICK", True, "quick"),
        (" full ", False, "full"),
    ],
)
def test_resolve_profile(name: str, cuda: bool, expected: str) -> None:
    assert config.resolve_profile(name, cuda_available=cuda).name == expected


def test_resolve_profile_auto_asks_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("helpers.runtime.cuda_is_available", lambda: True)
    assert config.resolve_profile("auto").name == "full"
    monkeypatch.setattr("helpers.runtime.cuda_is_available", lambda: False)
    assert config.resolve_profile("auto").name == "quick"


def test_resolve_profile_rejects_unknown_names_listing_choices() -> None:
    with pytest.raises(ValueError, match="smoke, quick, full"):
        config.resolve_profile("fast")


def test_profile_pick() -> None:
    assert config.PROFILES["smoke"].pick(smoke=1, quick=2, full=3) == 1
    assert config.PROFILES["full"].pick(smoke=1, quick=2, full=3) == 3


def test_defaults_round_trip_through_yaml(tmp_path) -> None:
    cfg = config.apply_overrides(config.RunConfig(), ["model.kwargs={width: 64}"])
    path = config.save_config(cfg, tmp_path / "run.yaml")
    assert config.load_config(path) == cfg


def test_load_yaml_file_with_overrides(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "profile: quick\n"
        "data:\n  batch_size: 256\n  loader: fast\n"
        "train:\n  lr: 1\n  optimizer: adamw\n  grad_clip: 1.5\n"
    )
    cfg = config.load_config(
        path, ["train.epochs=3", "train.grad_clip=null", "data.augment=strong"]
    )
    assert cfg.profile == "quick"
    assert cfg.data.batch_size == 256 and cfg.data.loader == "fast"
    assert cfg.data.augment == "strong"
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)  # ints widen to float
    assert cfg.train.optimizer == "adamw"
    assert cfg.train.epochs == 3
    assert cfg.train.grad_clip is None
    assert cfg.model == config.ModelConfig()  # untouched sections keep their defaults


def test_empty_yaml_file_gives_defaults(tmp_path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert config.load_config(path) == config.RunConfig()


def test_configs_are_frozen() -> None:
    cfg = config.RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.profile = "full"  # type: ignore[misc]


def test_free_mapping_accepts_new_keys() -> None:
    cfg = config.apply_overrides(config.RunConfig(), ["model.kwargs.depth=12", "model.name=vit"])
    assert cfg.model.kwargs == {"depth": 12}
    assert cfg.model.name == "vit"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=0.1", r"unknown key 'train.lrr'.*lr"),
        ("train.optimizer=adam", r"choose one of \['sgd', 'adamw'\]"),
        ("train.epochs=2.5", "must be an integer"),
        ("train.epochs=true", "must be an integer"),
        ("train.nesterov=yes please", "true or false"),
        ("train.lr=fast", "must be a number"),
        ("data.batch_size", "key=value"),
        ("=3", "key=value"),
        ("train.lr.x=1", "'train.lr' is not a config section"),
        ("model.name=[1, 2]", "must be a string"),
    ],
)
def test_bad_overrides_name_the_problem(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config.apply_overrides(config.RunConfig(), [override])


def test_unknown_yaml_key_lists_valid_keys(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ValueError, match=r"train\.epoch.*valid keys:.*train\.epochs"):
        config.load_config(path)


def test_section_must_be_a_mapping(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train: 3\n")
    with pytest.raises(ValueError, match="train must be a mapping"):
        config.load_config(path)


def test_missing_config_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        config.load_config("nope.yaml")


def test_data_dir_follows_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "somewhere" / "data"
    monkeypatch.setenv("HELPERS_DATA_DIR", str(target))
    assert config.data_dir() == target
    assert target.is_dir()


def test_data_dir_in_checkout_is_repository_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELPERS_DATA_DIR")
    repo = os.path.dirname(os.path.dirname(config.__file__))
    assert config.data_dir() == config.Path(repo) / "data"


def test_apply_profile_sets_sizes_except_kept_keys() -> None:
    smoke = config.PROFILES["smoke"]
    cfg = config.apply_profile(config.RunConfig(), "smoke", keep=["train.epochs"])
    assert cfg.profile == "smoke"
    assert (cfg.data.train_images, cfg.data.eval_images) == (smoke.train_images, smoke.eval_images)
    assert cfg.train.max_steps_per_epoch == smoke.max_steps_per_epoch
    assert cfg.train.epochs == config.TrainConfig().epochs  # kept
    assert config.apply_profile(cfg, "full").data.train_images is None
    auto = config.apply_profile(config.RunConfig(), cuda_available=False)
    assert auto.profile == "quick" and auto.train.epochs == config.PROFILES["quick"].epochs
    assert set(config.profile_sizes(smoke)) == set(config.PROFILE_KEYS)


def test_load_run_config_layers_defaults_profile_file_and_overrides(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("profile: smoke\ndata:\n  eval_images: 100\ntrain:\n  lr: 0.1\n")
    cfg = config.load_run_config(path, ["train.epochs=5"])
    assert cfg.profile == "smoke"
    assert cfg.data.train_images == config.PROFILES["smoke"].train_images  # from the profile
    assert cfg.data.eval_images == 100  # the file beats the profile
    assert cfg.train.epochs == 5  # an override beats the profile
    assert cfg.train.max_steps_per_epoch == 2 and cfg.train.lr == 0.1
    quick = config.load_run_config(path, ["profile=quick"])
    assert quick.profile == "quick" and quick.data.eval_images == 100
    assert quick.train.epochs == config.PROFILES["quick"].epochs
    none = config.load_run_config(None, ["profile=full", "train.max_steps_per_epoch=3"])
    assert none.train.max_steps_per_epoch == 3 and none.data.train_images is None
    with pytest.raises(ValueError, match="choose one of auto, smoke, quick, full"):
        config.load_run_config(None, ["profile=tiny"])


def test_replace_values_sets_dotted_keys_with_type_checks() -> None:
    cfg = config.replace_values(
        config.RunConfig(), {"train.lr": 1, "data.augment": "none", "model.kwargs.depth": 3}
    )
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.data.augment == "none" and cfg.model.kwargs == {"depth": 3}
    with pytest.raises(ValueError, match=r"unknown key 'train\.lrr'"):
        config.replace_values(config.RunConfig(), {"train.lrr": 0.1})
    with pytest.raises(ValueError, match="choose one of"):
        config.replace_values(config.RunConfig(), {"data.loader": "turbo"})
