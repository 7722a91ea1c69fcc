"""Named training recipes: the settings the book trains each of its models with.

A recipe is a small dict of dotted config keys (``"train.lr": 0.2``), sized by the run
profile, that :func:`helpers.config.replace_values` lays over the profile's defaults. The
training chapter introduces them; the evaluation and interpretability chapters rebuild the
same configs to reuse the models trained there (:func:`helpers.train.fit_or_load`), and the
command line takes the same values as ``key=value`` overrides. Keeping them here, and not
copied into each notebook, is what makes "the ResNet-9 of chapter 4" one thing.

Every recipe trains on the fast data path (the whole data set as one tensor on the device,
batched augmentation), in the precision ``auto`` picks (bf16 where the hardware has it) and
in the channels-last layout.

Example:
    >>> cfg = recipe_config("resnet9", "smoke")
    >>> cfg.model.name, cfg.train.epochs
    ('resnet9_narrow', 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from helpers.config import PROFILES, Profile, RunConfig, apply_profile, replace_values

__all__ = ["RECIPES", "recipe", "recipe_config"]


def _common(profile: Profile) -> dict[str, Any]:
    """Settings shared by every recipe."""
    return {
        "data.loader": "fast",  # the whole split on the device; batched augmentation
        "data.batch_size": 256,
        "data.augment": "standard",  # random crop with 4 px padding, horizontal flip
        "data.train_images": profile.pick(smoke=512, quick=None, full=None),  # None: all
        # Validation and test on their whole splits (5,000 and 10,000 images) but in smoke.
        "data.eval_images": profile.pick(smoke=256, quick=None, full=None),
        "train.progress": False,  # one line per epoch is enough in a book
    }


def _simple_cnn(profile: Profile) -> dict[str, Any]:
    """SimpleCNN: SGD with Nesterov momentum and a one-cycle schedule."""
    return {
        "model.name": "simple_cnn",
        "train.epochs": profile.pick(smoke=1, quick=15, full=30),
        "train.lr": 0.05,  # peak of the one-cycle schedule, for batches of 256
        "train.weight_decay": 5e-4,
        "train.schedule": "onecycle",
        "train.run_name": f"simple_cnn_{profile.name}",
    }


def _resnet9(profile: Profile) -> dict[str, Any]:
    """ResNet-9 (narrow on CPUs): larger learning rate, label smoothing, clipped gradients."""
    return {
        "model.name": profile.pick(smoke="resnet9_narrow", quick="resnet9_narrow", full="resnet9"),
        "train.epochs": profile.pick(smoke=1, quick=6, full=24),
        "train.lr": 0.2,
        "train.weight_decay": 5e-4,
        "train.schedule": "onecycle",
        "train.label_smoothing": 0.1,
        # The first steps' gradient norm is ~18: unclipped, the loss can blow up before
        # batch norm's statistics settle; clipped at 1, it falls from the first step.
        "train.grad_clip": 1.0,
        "train.run_name": f"resnet9_{profile.name}",
    }


def _vit_tiny(profile: Profile) -> dict[str, Any]:
    """ViT-Tiny for 32x32 images: AdamW, warm-up then cosine decay, label smoothing."""
    return {
        "model.name": "vit_tiny_cifar",
        "model.kwargs": {"fused_attn": False},  # plain softmax attention: faster in bf16 on CPUs
        "train.epochs": profile.pick(smoke=1, quick=4, full=50),
        "train.optimizer": "adamw",
        "train.lr": 1e-3,
        "train.weight_decay": 0.05,
        "train.schedule": "cosine",
        "train.warmup_epochs": 1.0,
        "train.label_smoothing": 0.1,
        "train.run_name": f"vit_tiny_{profile.name}",
    }


_BUILDERS: dict[str, Callable[[Profile], dict[str, Any]]] = {
    "simple_cnn": _simple_cnn,
    "resnet9": _resnet9,
    "vit_tiny": _vit_tiny,
}

RECIPES: tuple[str, ...] = tuple(_BUILDERS)


def _as_profile(profile: str | Profile) -> Profile:
    """A :class:`Profile` from itself or its name (``auto`` is resolved by the caller)."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(
            f"Unknown profile {profile!r}: choose one of {', '.join(PROFILES)} "
            "(resolve 'auto' first with helpers.config.resolve_profile)."
        )
    return PROFILES[profile]


def recipe(name: str, profile: str | Profile) -> dict[str, Any]:
    """The dotted config values of a named recipe, sized for ``profile``.

    Args:
        name: one of :data:`RECIPES`.
        profile: ``smoke``, ``quick``, ``full`` or a resolved :class:`Profile`.

    Returns:
        A new dict of dotted keys to values, for :func:`helpers.config.replace_values`.

    Raises:
        ValueError: for an unknown recipe or profile, naming the valid ones.

    >>> recipe("simple_cnn", "quick")["train.epochs"]
    15
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown recipe {name!r}: choose one of {', '.join(RECIPES)}.")
    chosen = _as_profile(profile)
    return {**_common(chosen), **_BUILDERS[name](chosen)}


def recipe_config(
    name: str, profile: str | Profile, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """A complete :class:`RunConfig`: the profile's defaults, the recipe, then ``overrides``.

    Args:
        name: one of :data:`RECIPES`.
        profile: ``smoke``, ``quick``, ``full`` or a resolved :class:`Profile`.
        overrides: further dotted values (``{"train.seed": 1}``), applied last.

    Returns:
        The run config.

    Raises:
        ValueError: for an unknown recipe, profile or key, or a value of the wrong type.
    """
    chosen = _as_profile(profile)
    base = apply_profile(RunConfig(), chosen)
    return replace_values(base, {**recipe(name, chosen), **(overrides or {})})
