"""Which layers train: stages, freezing with frozen batch norm, layer-wise learning rates."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from ._preprocess import timm_model

_HEAD = "head"


def _batch_norm_types() -> tuple[tuple[type[nn.Module], ...], tuple[type[nn.Module], ...]]:
    """The trainable and the frozen batch-norm classes (timm's BatchNormAct2d is a BatchNorm2d)."""
    from timm.layers import FrozenBatchNormAct2d

    return (nn.BatchNorm2d, nn.SyncBatchNorm), (FrozenBatchNorm2d, FrozenBatchNormAct2d)


class _Names:
    """Stands in for a module in timm's ``group_parameters``: it only needs the names."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def named_parameters(self) -> Iterator[tuple[str, None]]:
        return ((name, None) for name in self.names)


def _weight_names(backbone: nn.Module) -> list[str]:
    """Every parameter name, counting frozen batch norms' scale and shift (then buffers)."""
    _, frozen_types = _batch_norm_types()
    names = [name for name, _ in backbone.named_parameters()]
    for module_name, module in backbone.named_modules():
        if isinstance(module, frozen_types):
            names += [f"{module_name}.weight", f"{module_name}.bias"]
    return names


def _layer_ids(backbone: nn.Module, *, coarse: bool) -> dict[str, int]:
    """Parameter name -> layer id from input (0) to output, by timm's ``group_matcher``.

    ``coarse=True`` gives the stem, one id per stage (ResNet's ``layer1``..``layer4``,
    EfficientNet's ``blocks.0``..``blocks.6``, every ViT block) and the head; ``False``
    gives one id per block. The ids do not depend on what is frozen.
    """
    from timm.models import group_parameters

    if not callable(getattr(backbone, "group_matcher", None)):
        raise ValueError(
            f"{type(backbone).__name__} has no group_matcher(), so its stages are unknown; "
            "use a timm model (ResNet, ViT/DeiT, EfficientNet, ...)."
        )
    names = _weight_names(backbone)
    return group_parameters(_Names(names), backbone.group_matcher(coarse=coarse), reverse=True)


def _head_id(backbone: nn.Module, ids: dict[str, int]) -> int | None:
    """The id of the group holding the classifier's parameters (``None`` without one)."""
    classifier = backbone.get_classifier()
    for module_name, module in backbone.named_modules():
        if module is classifier:
            names = [f"{module_name}.{name}" for name, _ in module.named_parameters()]
            return ids[names[0]] if names else None
    return None


def model_stages(model: nn.Module) -> dict[str, list[str]]:
    """The model's parameter names by stage, from the input to the output.

    Args:
        model: a timm model, possibly wrapped in :class:`WithPreprocessing`.

    Returns:
        ``{"stem": [...], "stage1": [...], ..., "head": [...]}`` in order; the head is
        what timm leaves outside every stage (the classifier, and any norm after pooling).
        Names are those of the timm model, without a wrapper's prefix.

    Raises:
        ValueError: for a model without timm's ``group_matcher``.

    >>> import timm
    >>> list(model_stages(timm.create_model("resnet18")))
    ['stem', 'stage1', 'stage2', 'stage3', 'stage4', 'head']
    """
    backbone = timm_model(model)
    ids = _layer_ids(backbone, coarse=True)
    head = _head_id(backbone, ids)
    stages: dict[int, list[str]] = {}
    for name in _weight_names(backbone):
        stages.setdefault(ids[name], []).append(name)
    body = sorted(stage for stage in stages if stage != head)
    named = {("stem" if i == 0 else f"stage{i}"): stages[stage] for i, stage in enumerate(body)}
    if head is not None:
        named[_HEAD] = stages[head]
    return named


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at ``root``'s submodule ``name`` (``"layer1.0.bn1"``)."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _freeze_bn(module: nn.Module) -> nn.Module:
    """A frozen copy: fixed statistics, scale and shift; the same in train and eval mode."""
    from timm.layers import freeze_batch_norm_2d

    frozen = freeze_batch_norm_2d(module)
    frozen.momentum = module.momentum  # remembered for thawing
    return frozen


def _thaw_bn(module: nn.Module) -> nn.Module:
    """A trainable batch norm again, with the frozen one's values, momentum and device."""
    from timm.layers import unfreeze_batch_norm_2d

    thawed = unfreeze_batch_norm_2d(module)
    thawed.momentum = getattr(module, "momentum", thawed.momentum)
    return thawed.to(module.running_mean.device)  # its step counter is made on the CPU


def _set_trainable(
    backbone: nn.Module, ids: dict[str, int], trainable: set[int], train_bn: bool
) -> None:
    """Train the parameters of the groups in ``trainable``; freeze the rest, batch norms
    included (their statistics too, by swapping in frozen batch norms)."""
    bn_types, frozen_types = _batch_norm_types()
    for name, module in list(backbone.named_modules()):
        if not isinstance(module, bn_types + frozen_types):
            continue
        train = train_bn and ids.get(f"{name}.weight") in trainable
        if train and isinstance(module, frozen_types):
            _replace(backbone, name, _thaw_bn(module))
        elif not train and isinstance(module, bn_types):
            _replace(backbone, name, _freeze_bn(module))
    for name, param in backbone.named_parameters():
        param.requires_grad_(ids[name] in trainable)


def freeze(model: nn.Module, *, train_head_only: bool = True) -> nn.Module:
    """Freeze the pretrained layers: the classic feature-extraction setting.

    Every parameter outside the head gets ``requires_grad=False``, and every batch norm
    becomes a frozen batch norm (timm's ``freeze_batch_norm_2d``): its running statistics,
    scale and shift are fixed buffers, used in training mode as in evaluation, so
    ``model.train()`` (which :func:`helpers.train.fit` calls every epoch) cannot start
    updating them. :func:`helpers.train.build_optimizer` leaves frozen parameters out.

    Args:
        model: a timm model, possibly wrapped in :class:`WithPreprocessing`; changed in
            place.
        train_head_only: keep the head trainable; ``False`` freezes everything (a fixed
            feature extractor).

    Returns:
        ``model``.

    Raises:
        ValueError: for a model without timm's interface and ``group_matcher``.
    """
    backbone = timm_model(model)
    ids = _layer_ids(backbone, coarse=True)
    head = _head_id(backbone, ids)
    trainable = {head} if train_head_only and head is not None else set()
    _set_trainable(backbone, ids, trainable, train_bn=True)
    return model


def unfreeze(model: nn.Module, stages: int | None = None, *, train_bn: bool = True) -> nn.Module:
    """Train the head and the last ``stages`` stages; freeze the rest (partial fine-tuning).

    Stages are those of :func:`model_stages` (the stem counts as the first). Later stages
    hold the most task-specific features, so they are unfrozen first (Yosinski et al.,
    2014). Call it again with a larger ``stages`` for gradual unfreezing; build a new
    optimiser afterwards (:func:`helpers.train.fit` does), since thawed batch norms are
    new parameters.

    Args:
        model: a timm model, possibly wrapped in :class:`WithPreprocessing`; changed in
            place.
        stages: how many stages before the head to train; ``None`` trains them all (full
            fine-tuning), ``0`` only the head.
        train_bn: let the batch norms of the trained stages learn and update their
            statistics; ``False`` keeps every batch norm frozen (safer with small batches).

    Returns:
        ``model``.

    Raises:
        ValueError: for ``stages`` outside ``[0, number of stages]`` or a model without
            timm's interface and ``group_matcher``.
    """
    backbone = timm_model(model)
    ids = _layer_ids(backbone, coarse=True)
    head = _head_id(backbone, ids)
    body = sorted(set(ids.values()) - {head})
    if stages is None:
        stages = len(body)
    if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= len(body):
        raise ValueError(f"stages must be an integer in [0, {len(body)}] or None, got {stages!r}.")
    trainable = set(body[len(body) - stages :]) | ({head} if head is not None else set())
    _set_trainable(backbone, ids, trainable, train_bn=train_bn)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """How many weights train, and how many there are (frozen batch norms included).

    Args:
        model: any module.

    Returns:
        ``(trainable, total)``.
    """
    _, frozen_types = _batch_norm_types()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, frozen_types):
            total += module.weight.numel() + module.bias.numel()
    return trainable, total


def _prefix(model: nn.Module, backbone: nn.Module) -> str:
    """How ``model.named_parameters()`` prefixes ``backbone``'s names (``"model."``)."""
    for name, module in model.named_modules():
        if module is backbone:
            return f"{name}." if name else ""
    return ""


def layer_decay_param_groups(
    model: nn.Module, *, lr: float, layer_decay: float, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Optimiser groups whose learning rate shrinks by ``layer_decay`` per layer towards
    the input (layer-wise learning-rate decay, as BEiT and timm fine-tune ViTs).

    Layers are timm's fine-grained groups (``group_matcher(coarse=False)``: one per block),
    numbered 0 (stem) to ``L`` (head); layer ``i`` trains at ``lr * layer_decay ** (L - i)``.
    Early layers hold general features that need little change; the head is new. Within a
    layer, weight decay goes to weights only, as :func:`helpers.train.param_groups` does.
    Frozen parameters are left out.

    Args:
        model: a timm model, possibly wrapped (names then carry the wrapper's prefix).
        lr: the head's learning rate.
        layer_decay: the factor per layer, in ``(0, 1]``; 1 gives every layer ``lr``.
        weight_decay: for weights; norms, biases and ``no_weight_decay()`` names get 0.

    Returns:
        Groups with ``name`` (``"layer3_decay"``), ``params``, ``param_names``, ``lr``,
        ``lr_scale`` and ``weight_decay``, from the input to the head; an optimiser built
        on them keeps each group's ``lr`` (a schedule then scales every group alike).

    Raises:
        ValueError: for values out of range, a model without timm's ``group_matcher``, or
            one with no trainable parameters.
    """
    if not lr > 0 or not 0 < layer_decay <= 1 or weight_decay < 0:
        raise ValueError(
            f"Need lr > 0, 0 < layer_decay <= 1 and weight_decay >= 0, got lr={lr!r}, "
            f"layer_decay={layer_decay!r}, weight_decay={weight_decay!r}."
        )
    backbone = timm_model(model)
    ids = _layer_ids(backbone, coarse=False)
    top, prefix = max(ids.values()), _prefix(model, backbone)
    skip = set(backbone.no_weight_decay()) if hasattr(backbone, "no_weight_decay") else set()
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in backbone.named_parameters():
        if not param.requires_grad:
            continue
        layer, decay = ids[name], not (param.ndim <= 1 or name in skip)
        scale = layer_decay ** (top - layer)
        group = groups.setdefault(
            (layer, decay),
            {
                "name": f"layer{layer}_{'decay' if decay else 'no_decay'}",
                "params": [],
                "param_names": [],
                "lr": lr * scale,
                "lr_scale": scale,
                "weight_decay": weight_decay if decay else 0.0,
            },
        )
        group["params"].append(param)
        group["param_names"].append(prefix + name)
    if not groups:
        raise ValueError("The model has no trainable parameters (all have requires_grad=False).")
    return [groups[key] for key in sorted(groups)]
