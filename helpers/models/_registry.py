"""The model registry and :func:`create_model`: our models by name, timm's for the rest."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from helpers.config import ModelConfig

EntryPoint = TypeVar("EntryPoint", bound=Callable[..., nn.Module])

# Names a user may give that timm resolves itself (a model on the Hugging Face hub, a folder).
_TIMM_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


@dataclass(frozen=True)
class _Entry:
    """One registered model: its entry-point function and the class that function builds."""

    name: str
    fn: Callable[..., nn.Module]
    model_class: type[nn.Module]


_REGISTRY: dict[str, _Entry] = {}


def register_model(fn: EntryPoint) -> EntryPoint:
    """Register a model entry point under its function name, for :func:`create_model`.

    An entry point is a thin function that fixes a configuration and builds the model; its
    return annotation names the model class, whose constructor arguments are the keyword
    arguments :func:`create_model` accepts for it.

    Args:
        fn: ``def name(num_classes: int = 10, **kwargs) -> ModelClass``.

    Returns:
        ``fn`` itself, unchanged.

    Raises:
        ValueError: when the name is taken, or the return annotation is not a module class.

    >>> @register_model
    ... def tiny_mlp(num_classes: int = 10, **kwargs) -> nn.Sequential:
    ...     return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
    >>> "tiny_mlp" in list_models()
    True
    >>> _ = _REGISTRY.pop("tiny_mlp")  # keep the doctest from changing the registry
    """
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"A model named {name!r} is already registered.")
    model_class = typing.get_type_hints(fn).get("return")
    if not (isinstance(model_class, type) and issubclass(model_class, nn.Module)):
        raise ValueError(
            f"Entry point {name!r} must be annotated '-> SomeModule' (an nn.Module class), "
            f"got {model_class!r}."
        )
    _REGISTRY[name] = _Entry(name=name, fn=fn, model_class=model_class)
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """The names of this package's own models, sorted.

    Args:
        pattern: an optional shell-style filter such as ``"vit_*"``.

    Returns:
        Registered names (timm's own models are listed by :func:`timm.list_models`).

    >>> list_models("resnet9*")
    ['resnet9', 'resnet9_narrow']
    """
    names = sorted(_REGISTRY)
    return fnmatch.filter(names, pattern) if pattern else names


def create_model(
    name: str,
    num_classes: int = 10,
    *,
    pretrained: bool = False,
    in_chans: int = 3,
    **kwargs: Any,
) -> nn.Module:
    """Build a model by name: one of ours (:func:`list_models`), or any timm model.

    Args:
        name: a name from :func:`list_models`, a timm model name (``"resnet18"``,
            ``"vit_base_patch16_224.augreg_in21k"``) or a timm hub name (``"hf-hub:..."``).
        num_classes: outputs of the classifier; ``0`` builds the model without one (its
            forward then returns pooled features, as in timm).
        pretrained: load published weights (timm models only). Offline, pass the weights as a
            local file: ``pretrained_cfg_overlay=dict(file="model.safetensors")``.
        in_chans: channels of the input images.
        **kwargs: passed on to the model's constructor (for example ``image_size``,
            ``drop_rate``, ``widths``), or to :func:`timm.create_model`.

    Returns:
        The model, in training mode, on the CPU, in fp32.

    Raises:
        ValueError: for an unknown name (naming close matches), a keyword the model does not
            take, a bad ``num_classes``, or ``pretrained=True`` for one of our models.
        FileNotFoundError: when a local weights file is given but does not exist.
        RuntimeError: when pretrained weights cannot be downloaded (offline), saying how to
            use a local file instead.

    >>> create_model("simple_cnn", num_classes=10).num_classes
    10
    >>> create_model("resnet18", num_classes=10).fc.out_features  # from timm
    10
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}.")
    if name in _REGISTRY:
        return _create_own_model(
            _REGISTRY[name], num_classes, pretrained=pretrained, in_chans=in_chans, **kwargs
        )
    import timm

    if name.startswith(_TIMM_PREFIXES) or timm.is_model(name):
        return _create_timm_model(
            name, num_classes, pretrained=pretrained, in_chans=in_chans, **kwargs
        )
    raise ValueError(_unknown_model_message(name, timm.list_models()))


def _create_own_model(
    entry: _Entry, num_classes: int, *, pretrained: bool, in_chans: int, **kwargs: Any
) -> nn.Module:
    """Build one of our registered models after checking its arguments."""
    if pretrained:
        raise ValueError(
            f"{entry.name!r} is one of this book's models and has no published weights: "
            "train it (helpers.train) or load a checkpoint of your own, or pick a timm model "
            "with pretrained weights (for example 'resnet18' or 'vit_base_patch16_224')."
        )
    accepted = inspect.signature(entry.model_class).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        valid = sorted(set(accepted) - {"num_classes", "in_chans"})
        raise ValueError(
            f"{entry.name!r} does not take {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(valid)}."
        )
    return entry.fn(num_classes=num_classes, in_chans=in_chans, **kwargs)


def _create_timm_model(
    name: str, num_classes: int, *, pretrained: bool, in_chans: int, **kwargs: Any
) -> nn.Module:
    """Build a timm model; turn a failed download into an error that says what to do."""
    import timm

    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    weights_file = overlay.get("file") if isinstance(overlay, dict) else None
    if pretrained and weights_file is not None and not Path(weights_file).is_file():
        raise FileNotFoundError(f"The weights file {str(weights_file)!r} does not exist.")
    try:
        return timm.create_model(
            name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs
        )
    except OSError as err:  # the hub's errors (offline, no connection) are OSErrors
        if not pretrained or weights_file is not None:
            raise
        raise RuntimeError(_offline_message(name)) from err


def hub_source(name: str) -> tuple[str, str]:
    """Where timm fetches ``name``'s weights (its Hugging Face hub id), and a note for
    error messages saying ``HF_HUB_OFFLINE=1`` is set (empty when it is not)."""
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(name, allow_unregistered=True)
    hub_id = getattr(config, "hf_hub_id", None) or f"timm/{name}"
    offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
    return hub_id, offline


def _offline_message(name: str) -> str:
    """How to get pretrained weights for ``name`` without internet."""
    hub_id, offline = hub_source(name)
    return (
        f"Could not download the pretrained weights of {name!r}: the Hugging Face hub cannot be "
        f"reached{offline}. Either run once with internet access (timm caches the weights), or "
        "point at a local copy of the weights file:\n"
        f"    create_model({name!r}, num_classes=..., pretrained=True,\n"
        '                 pretrained_cfg_overlay=dict(file="path/to/model.safetensors"))\n'
        "(in a run config: model.kwargs = {pretrained_cfg_overlay: {file: path/to/"
        "model.safetensors}}). On a machine with internet, the file is 'model.safetensors' "
        f"of https://huggingface.co/{hub_id}; a .pth or .bin state_dict works too."
    )


def _unknown_model_message(name: str, timm_names: list[str]) -> str:
    """An error message for an unknown name, with the closest names we and timm know."""
    suggestions = difflib.get_close_matches(name, [*list_models(), *timm_names], n=6, cutoff=0.6)
    hint = f" Did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""
    return (
        f"Unknown model {name!r}.{hint} This package's models are {', '.join(list_models())}; "
        "timm.list_models('*pattern*') lists timm's."
    )


def create_model_from_config(cfg: ModelConfig) -> nn.Module:
    """Build the model a run config's ``model`` section names (see :func:`create_model`).

    >>> create_model_from_config(ModelConfig(name="simple_cnn", num_classes=3)).num_classes
    3
    """
    return create_model(cfg.name, cfg.num_classes, pretrained=cfg.pretrained, **cfg.kwargs)
