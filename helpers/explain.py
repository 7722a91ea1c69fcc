"""Interpretability: which parts of an image a classifier's decision rests on.

Two methods, one per family of models, both returning one heat map per image, ``(B, H, W)``
in [0, 1] at the size of the input, so that :func:`overlay` (and
:func:`helpers.plots.show_explanations`) can lay it over the picture.

**Grad-CAM** (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-Based Localization", ICCV), for CNNs. Take the feature maps ``A_k`` (``(C, h, w)``)
of a late convolutional layer and the gradient of the class score ``y_c`` with respect to
them. Averaging the gradient over the positions gives one weight per channel,
``alpha_k = mean_ij dy_c / dA_k[i, j]``: how much the class score rises when channel ``k``
fires more. The map is ``ReLU(sum_k alpha_k A_k)``: the places where channels that speak for
the class are active (the ReLU keeps only evidence *for* it). It is as coarse as the layer
(6x6 for SimpleCNN, 4x4 for ResNet-9 at 32x32), then upsampled bilinearly.

**Attention rollout** (Abnar & Zuidema, 2020, "Quantifying Attention Flow in
Transformers", ACL), for Vision Transformers. One block's attention ``A`` (``(T, T)``, rows
sum to 1, heads averaged) says how much each token draws on every token, but the residual
connection also carries each token's own state forward, so the mixing of a block is
``(A + I) / 2``. Multiplying these matrices through the blocks, first block on the right,
gives how much each final token draws on each input token. The class token's row, over the
patch tokens and reshaped to the patch grid, is the map. ``method="last"`` shows the last
block's class-token attention alone, for comparison.

To compare two sets of maps of the same images (two models, or a trained model and an
untrained one, the "sanity check" of Adebayo et al., 2018), :func:`heatmap_correlation`
gives one rank correlation per image.

:func:`explain` picks the method from the model (:func:`explanation_method` says which):
rollout for our :class:`~helpers.models.VisionTransformer` and timm's ``VisionTransformer``,
Grad-CAM for anything else (our SimpleCNN and ResNet-9, timm's CNNs).

Example:
    >>> from helpers.models import create_model
    >>> model = create_model("simple_cnn", num_classes=10)
    >>> grad_cam(model, torch.randn(2, 3, 32, 32)).shape  # hooks features.act2
    torch.Size([2, 32, 32])
    >>> vit = create_model("vit_tiny_cifar", num_classes=10)
    >>> cls_attention_map(vit, torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 32, 32])
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helpers.models import VisionTransformer

__all__ = [
    "attention_maps",
    "attention_rollout",
    "cls_attention_map",
    "default_cam_layer",
    "explain",
    "explanation_method",
    "grad_cam",
    "heatmap_correlation",
    "overlay",
]

HEAD_FUSIONS = ("mean", "max", "min")  # ways to merge a block's heads into one map
CLS_METHODS = ("rollout", "last")  # attention rolled out through every block, or the last one
CORRELATIONS = ("spearman", "pearson")  # ways to compare two heat maps of one image


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


def _check_images(images: Any) -> None:
    """Raise ``ValueError`` unless ``images`` is a ``(B, C, H, W)`` tensor."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"images must be a (B, C, H, W) tensor, got {shape}; for one image pass "
            "image.unsqueeze(0)."
        )


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with the model in eval mode, then restore every module's own mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()  # batch norm uses its running statistics, dropout is off
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _normalise_maps(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Upsample ``(B, 1, h, w)`` maps bilinearly to ``size``; rescale each to [0, 1]."""
    maps = F.interpolate(maps.float(), size=tuple(size), mode="bilinear", align_corners=False)
    maps = maps[:, 0]  # (B, H, W)
    low = maps.amin(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    span = maps.amax(dim=(1, 2), keepdim=True) - low  # (B, 1, 1)
    return (maps - low) / span.clamp_min(1e-12)  # a flat map becomes all zeros


def _is_timm_vit(model: nn.Module) -> bool:
    """Whether ``model`` is timm's ``VisionTransformer`` (or a subclass, such as DeiT's)."""
    timm_vit = sys.modules.get("timm.models.vision_transformer")  # loaded if the model is one
    return timm_vit is not None and isinstance(model, timm_vit.VisionTransformer)


def _is_vit(model: nn.Module) -> bool:
    """Whether ``model`` is a Vision Transformer that :func:`attention_maps` can read."""
    return isinstance(model, VisionTransformer) or _is_timm_vit(model)


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------


def default_cam_layer(model: nn.Module) -> str:
    """The name of the layer Grad-CAM hooks by default: the model's last feature stage.

    timm's CNNs and ours describe their feature maps in ``feature_info``; the last entry names
    the deepest convolutional block: ``features.act2`` for SimpleCNN, ``stages.2`` for
    ResNet-9, ``layer4`` for timm's ResNets.

    Args:
        model: a CNN.

    Returns:
        A module name for ``model.get_submodule``.

    Raises:
        ValueError: for a Vision Transformer (its blocks give tokens, not feature maps) or a
            model without ``feature_info``; the message says how to pass ``target_layer``.

    >>> from helpers.models import create_model
    >>> default_cam_layer(create_model("resnet9", num_classes=10))
    'stages.2'
    """
    if _is_vit(model):
        raise ValueError(
            f"{type(model).__name__} is a Vision Transformer: its blocks give tokens, not "
            "feature maps. Use cls_attention_map(model, images) or explain(model, images)."
        )
    info = getattr(model, "feature_info", None)
    if isinstance(info, list) and info and isinstance(info[-1], dict) and "module" in info[-1]:
        return info[-1]["module"]
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    raise ValueError(
        f"Cannot choose a Grad-CAM layer for {type(model).__name__}: it has no timm-style "
        "feature_info. Pass target_layer, the name (or the module) of its last convolutional "
        f"block, e.g. grad_cam(model, images, target_layer={(convs or ['layer4'])[-1]!r})."
    )


def _resolve_layer(model: nn.Module, target_layer: str | nn.Module | None) -> nn.Module:
    """The module to hook: ``target_layer`` itself, the submodule it names, or the default."""
    if target_layer is None:
        target_layer = default_cam_layer(model)
    if isinstance(target_layer, nn.Module):
        if not any(module is target_layer for module in model.modules()):
            raise ValueError("target_layer is a module that is not part of the model.")
        return target_layer
    if not isinstance(target_layer, str):
        raise ValueError(f"target_layer must be a name or a module, got {target_layer!r}.")
    try:
        return model.get_submodule(target_layer)
    except AttributeError:
        names = [name for name, _ in model.named_modules() if name][-5:]
        raise ValueError(
            f"{type(model).__name__} has no layer {target_layer!r}; its last layers are "
            f"{names} (see model.named_modules())."
        ) from None


def _class_indices(logits: Tensor, class_idx: int | Sequence[int] | Tensor | None) -> Tensor:
    """The class to explain for each image, ``(B,)``: the prediction, or ``class_idx``."""
    if logits.ndim != 2:
        raise ValueError(f"Grad-CAM needs (B, num_classes) logits, got {tuple(logits.shape)}.")
    if class_idx is None:
        return logits.argmax(dim=1)  # (B,) predicted classes
    indices = torch.as_tensor(class_idx, device=logits.device)
    if indices.is_floating_point() or indices.dtype == torch.bool:
        raise ValueError(f"class_idx must be integers, got {class_idx!r}.")
    indices = indices.long().expand(len(logits)) if indices.ndim == 0 else indices.long()
    if indices.shape != (len(logits),):
        raise ValueError(f"class_idx needs one class or one per image ({len(logits)}).")
    if indices.min() < 0 or indices.max() >= logits.shape[1]:
        raise ValueError(f"class_idx must lie in [0, {logits.shape[1] - 1}], got {class_idx}.")
    return indices


def _feature_map(captured: list[Any], layer: nn.Module) -> Tensor:
    """The single ``(B, C, h, w)`` output the hooked layer gave in one forward pass."""
    if len(captured) != 1:
        raise ValueError(
            f"The target layer {type(layer).__name__} ran {len(captured)} times in one forward "
            "pass; Grad-CAM needs a layer that runs exactly once (not a shared module)."
        )
    output = captured[0]
    if not isinstance(output, Tensor) or output.ndim != 4:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(
            f"Grad-CAM needs a layer that outputs (B, C, h, w) feature maps; "
            f"{type(layer).__name__} gives {shape}. Pick a convolutional block."
        )
    return output


def grad_cam(
    model: nn.Module,
    images: Tensor,
    target_layer: str | nn.Module | None = None,
    class_idx: int | Sequence[int] | Tensor | None = None,
) -> Tensor:
    """Grad-CAM heat maps (Selvaraju et al., 2017): where the evidence for a class lies.

    The model runs in eval mode (its modes are restored afterwards). The gradient is taken
    with :func:`torch.autograd.grad`, so no parameter's ``.grad`` or ``requires_grad``
    changes, and it works with frozen parameters, under ``torch.no_grad()`` and even inside
    ``torch.inference_mode()``. The hook is removed even when the call fails.

    Args:
        model: a CNN returning ``(B, num_classes)`` logits.
        images: ``(B, C, H, W)``, preprocessed as for the model, on its device.
        target_layer: the layer to explain, by name (``"layer4"``) or as a module; ``None``
            takes :func:`default_cam_layer`.
        class_idx: the class to explain: one for all images, one per image, or ``None`` for
            each image's predicted class.

    Returns:
        ``(B, H, W)`` heat maps in [0, 1] (each image's maximum is 1, unless its map is flat:
        then all zeros), on the images' device.

    Raises:
        ValueError: for images that are not 4-D, a layer that is not found, does not give a
            ``(B, C, h, w)`` output or runs more than once, or bad class indices.

    >>> from helpers.models import create_model
    >>> maps = grad_cam(create_model("resnet9", num_classes=10), torch.randn(2, 3, 32, 32))
    >>> maps.shape, bool(maps.min() >= 0), bool(maps.max() <= 1)
    (torch.Size([2, 32, 32]), True, True)
    """
    _check_images(images)
    layer = _resolve_layer(model, target_layer)
    captured: list[Any] = []
    handle = layer.register_forward_hook(lambda _module, _args, output: captured.append(output))
    try:
        with _eval_mode(model), torch.inference_mode(False), torch.enable_grad():
            # An input that requires grad puts the layer in the graph even when every
            # parameter is frozen; the clone is an ordinary tensor even in inference mode.
            inputs = images.detach().clone().requires_grad_(True)
            logits = model(inputs)  # (B, num_classes)
            activations = _feature_map(captured, layer)  # (B, C, h, w)
            classes = _class_indices(logits, class_idx)  # (B,)
            # Summing is safe in eval mode: each image's score depends on its own maps only.
            score = logits.gather(1, classes[:, None]).sum()
            (grads,) = torch.autograd.grad(score, activations)  # (B, C, h, w)
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1): alpha_k, one per channel
    cam = F.relu((weights * activations.detach()).sum(dim=1, keepdim=True))  # (B, 1, h, w)
    return _normalise_maps(cam, images.shape[-2:])


# ---------------------------------------------------------------------------------------------
# Attention maps and rollout
# ---------------------------------------------------------------------------------------------


def _timm_attention_maps(model: nn.Module, images: Tensor) -> list[Tensor]:
    """Every block's attention weights of a timm ViT, read through its unfused path."""
    from timm.layers import Attention  # timm is loaded: the model is one of its ViTs

    layers = [getattr(block, "attn", None) for block in model.blocks]
    if not all(isinstance(layer, Attention) for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers})
        raise ValueError(f"Only timm's standard Attention layers can be read, got {kinds}.")
    maps: list[Tensor] = []
    fused = [layer.fused_attn for layer in layers]
    # Unfused, timm computes softmax(q k^T * scale) and passes it through attn_drop (an
    # identity in eval mode), so a hook there sees the weights, masks and qk-norm included.
    handles = [
        layer.attn_drop.register_forward_hook(lambda _m, args, _out: maps.append(args[0]))
        for layer in layers
    ]
    try:
        for layer in layers:
            layer.fused_attn = False
        model(images)
    finally:
        for handle in handles:
            handle.remove()
        for layer, flag in zip(layers, fused, strict=True):
            layer.fused_attn = flag
    return maps


def attention_maps(model: nn.Module, images: Tensor) -> list[Tensor]:
    """Every block's attention weights, first block first, in eval mode and without gradients.

    Works for our :class:`~helpers.models.VisionTransformer` (its ``get_attention_maps``) and
    for timm's ``VisionTransformer`` (whose fused attention is switched off for the call and
    restored afterwards, with the model's train/eval mode).

    Args:
        model: a Vision Transformer.
        images: ``(B, C, H, W)`` of the size the model takes.

    Returns:
        One ``(B, heads, T, T)`` tensor per block, ``T`` = prefix tokens (class token, and
        any register tokens) + patches; each row sums to 1.

    Raises:
        ValueError: for images that are not 4-D or a model that is not a supported ViT.

    >>> from helpers.models import create_model
    >>> maps = attention_maps(create_model("vit_tiny_cifar"), torch.zeros(1, 3, 32, 32))
    >>> len(maps), maps[0].shape  # 4 blocks of 4 heads; 1 + 8 * 8 tokens
    (4, torch.Size([1, 4, 65, 65]))
    """
    _check_images(images)
    if not _is_vit(model):
        raise ValueError(
            f"attention_maps needs a VisionTransformer (ours or timm's), got "
            f"{type(model).__name__}; for a CNN use grad_cam(model, images)."
        )
    with _eval_mode(model), torch.no_grad():
        if isinstance(model, VisionTransformer):
            return model.get_attention_maps(images)
        return _timm_attention_maps(model, images)


def _fuse_heads(weights: Tensor, head_fusion: str) -> Tensor:
    """Merge the heads of ``(B, heads, T, T)`` weights into ``(B, T, T)``."""
    if head_fusion == "mean":
        return weights.mean(dim=1)
    if head_fusion == "max":
        return weights.amax(dim=1)
    return weights.amin(dim=1)


def _check_rollout_args(maps: Sequence[Tensor], head_fusion: str, discard_ratio: float) -> None:
    """Raise ``ValueError`` for empty or ill-shaped maps, or unknown options."""
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}.")
    if isinstance(discard_ratio, bool) or not 0 <= discard_ratio < 1:
        raise ValueError(f"discard_ratio must lie in [0, 1), got {discard_ratio!r}.")
    if not maps:
        raise ValueError("attention_rollout needs at least one block's attention maps.")
    shape = maps[0].shape
    if len(shape) != 4 or shape[-1] != shape[-2] or any(m.shape != shape for m in maps):
        shapes = sorted({tuple(m.shape) for m in maps})
        raise ValueError(f"Every map must be (B, heads, T, T), all alike; got {shapes}.")


def attention_rollout(
    maps: Sequence[Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on each
    input token, through every block.

    Each block's heads are fused, the weakest ``discard_ratio`` of each row's weights are
    dropped (a common way to sharpen the map), the identity is added for the residual
    connection and the rows are renormalised to sum to 1; the blocks' matrices are then
    multiplied, the first block on the right.

    Args:
        maps: one ``(B, heads, T, T)`` tensor per block, first block first, as from
            :func:`attention_maps`.
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over the heads.
        discard_ratio: fraction in [0, 1) of each row's smallest weights set to 0.

    Returns:
        ``(B, T, T)``; each row sums to 1.

    Raises:
        ValueError: for no maps, maps of different or non-square shapes, or bad options.

    >>> uniform = torch.full((1, 2, 3, 3), 1 / 3)
    >>> attention_rollout([uniform, uniform]).sum(dim=-1)
    tensor([[1.0000, 1.0000, 1.0000]])
    """
    _check_rollout_args(maps, head_fusion, discard_ratio)
    tokens = maps[0].shape[-1]
    eye = torch.eye(tokens, device=maps[0].device)  # (T, T)
    rollout = eye.expand(maps[0].shape[0], -1, -1)  # (B, T, T): before any block
    for weights in maps:
        fused = _fuse_heads(weights.float(), head_fusion)  # (B, T, T)
        dropped = int(discard_ratio * tokens)
        if dropped:
            weakest = fused.topk(dropped, dim=-1, largest=False).indices  # (B, T, dropped)
            fused = fused.scatter(-1, weakest, 0.0)
        mixing = fused + eye  # the residual path carries each token's own state
        mixing = mixing / mixing.sum(dim=-1, keepdim=True)  # (B, T, T), rows sum to 1
        rollout = mixing @ rollout  # (B, T, T): this block acts on what came before
    return rollout


def _prefix_tokens(model: nn.Module) -> tuple[int, bool]:
    """The number of tokens before the patches, and whether the head reads the class token."""
    if isinstance(model, VisionTransformer):
        return 1, True
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    has_cls = getattr(model, "cls_token", None) is not None
    return prefix, has_cls and getattr(model, "global_pool", "token") == "token"


def _patch_grid(model: nn.Module, images: Tensor, num_patches: int) -> tuple[int, int]:
    """Patches per column and per row for these images: ``(H / P, W / P)``."""
    patch = model.patch_embed.patch_size
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    height, width = images.shape[-2:]
    grid = (-(-height // patch_h), -(-width // patch_w))  # ceil: timm may pad the last patch
    if grid[0] * grid[1] != num_patches:
        raise ValueError(f"{num_patches} patch tokens do not fit a {grid} grid.")
    return grid


def cls_attention_map(
    model: nn.Module,
    images: Tensor,
    method: str = "rollout",
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> Tensor:
    """Heat maps of the patches a ViT's class token draws on, at the size of the images.

    Args:
        model: our :class:`~helpers.models.VisionTransformer` or timm's.
        images: ``(B, C, H, W)`` of the size the model takes.
        method: ``"rollout"`` (:func:`attention_rollout` through every block) or ``"last"``
            (the last block's attention alone).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over the heads.
        discard_ratio: for rollout, the fraction of each row's weakest weights dropped.

    Returns:
        ``(B, H, W)`` maps in [0, 1]: the class token's row over the patch tokens (prefix
        tokens such as register tokens left out), upsampled bilinearly. A model whose head
        averages the tokens instead gets the mean row of the patch tokens.

    Raises:
        ValueError: for an unknown method or option, images that are not 4-D, or a model
            that is not a supported ViT.

    >>> from helpers.models import create_model
    >>> vit = create_model("vit_tiny_cifar")
    >>> cls_attention_map(vit, torch.zeros(2, 3, 32, 32), method="last").shape
    torch.Size([2, 32, 32])
    """
    if method not in CLS_METHODS:
        raise ValueError(f"method must be one of {CLS_METHODS}, got {method!r}.")
    maps = attention_maps(model, images)  # [(B, heads, T, T)] * depth
    if method == "rollout":
        relevance = attention_rollout(maps, head_fusion, discard_ratio)  # (B, T, T)
    else:
        _check_rollout_args(maps[-1:], head_fusion, discard_ratio)
        relevance = _fuse_heads(maps[-1].float(), head_fusion)  # (B, T, T)
    prefix, reads_cls = _prefix_tokens(model)
    rows = relevance[:, 0] if reads_cls else relevance[:, prefix:].mean(dim=1)  # (B, T)
    patches = rows[:, prefix:]  # (B, N): the weight on each patch token
    grid = _patch_grid(model, images, patches.shape[1])
    return _normalise_maps(patches.reshape(-1, 1, *grid), images.shape[-2:])  # (B, H, W)


# ---------------------------------------------------------------------------------------------
# One entry point, and overlays
# ---------------------------------------------------------------------------------------------


def explanation_method(model: nn.Module) -> str:
    """The method :func:`explain` uses for ``model``: ``"rollout"`` or ``"grad_cam"``.

    Attention rollout does not depend on the class, so only ``"grad_cam"`` can explain a
    class other than the predicted one.

    Args:
        model: any of the book's models, or timm's.

    Returns:
        ``"rollout"`` for our and timm's ``VisionTransformer``, ``"grad_cam"`` otherwise.

    >>> from helpers.models import create_model
    >>> [explanation_method(create_model(name)) for name in ("vit_tiny_cifar", "resnet9")]
    ['rollout', 'grad_cam']
    """
    return "rollout" if _is_vit(model) else "grad_cam"


def explain(
    model: nn.Module,
    images: Tensor,
    *,
    class_idx: int | Sequence[int] | Tensor | None = None,
    **options: Any,
) -> Tensor:
    """Heat maps for any of the book's models: attention rollout for ViTs, Grad-CAM otherwise.

    Args:
        model: our or timm's ``VisionTransformer``, or a CNN.
        images: ``(B, C, H, W)``, preprocessed as for the model.
        class_idx: for Grad-CAM, the class to explain (``None``: the predicted one).
            Rollout does not depend on the class, so it must stay ``None`` for a ViT.
        **options: passed on: ``target_layer`` to :func:`grad_cam`; ``method``,
            ``head_fusion`` and ``discard_ratio`` to :func:`cls_attention_map`.

    Returns:
        ``(B, H, W)`` heat maps in [0, 1].

    Raises:
        ValueError: for a ``class_idx`` given with a ViT, and as the chosen method does.
        TypeError: for an option the chosen method does not take.

    >>> from helpers.models import create_model
    >>> explain(create_model("simple_cnn"), torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 32, 32])
    """
    if explanation_method(model) == "rollout":
        if class_idx is not None:
            raise ValueError(
                "Attention rollout does not depend on the class; leave class_idx as None "
                "for a Vision Transformer."
            )
        return cls_attention_map(model, images, **options)
    return grad_cam(model, images, class_idx=class_idx, **options)


def _average_ranks(values: Tensor) -> Tensor:
    """Ranks within each row of ``(N, P)`` values, from 1; tied values share their mean rank."""
    ranks = []
    for row in values:
        _, inverse, counts = torch.unique(row, return_inverse=True, return_counts=True)
        last = counts.cumsum(0).float()  # (U,) rank of the last member of each value
        ranks.append((last - (counts - 1) / 2)[inverse])  # (P,) the mean rank of each tie
    return torch.stack(ranks)


def heatmap_correlation(first: Tensor, second: Tensor, method: str = "spearman") -> Tensor:
    """How alike two sets of heat maps are, image by image: a correlation in [-1, 1].

    Spearman's rank correlation (the default, as in Adebayo et al., 2018, "Sanity Checks for
    Saliency Maps", NeurIPS) compares the order of the pixels' values, not the values: two
    maps that rank the pixels alike score 1 however differently they are scaled. Pearson's
    compares the values themselves.

    Args:
        first: ``(N, H, W)`` heat maps, e.g. from :func:`explain`.
        second: ``(N, H, W)`` maps of the same images, from another model, class or method.
        method: ``"spearman"`` or ``"pearson"``.

    Returns:
        ``(N,)`` float32 correlations, on the CPU; NaN for an image where either map is flat
        (all one value, such as a Grad-CAM map that the ReLU set to zero everywhere).

    Raises:
        ValueError: for maps that are not ``(N, H, W)`` alike, or an unknown method.

    >>> ramp = torch.arange(4.0).view(1, 2, 2)
    >>> heatmap_correlation(ramp, ramp**2), heatmap_correlation(ramp, -ramp, "pearson")
    (tensor([1.]), tensor([-1.]))
    """
    if method not in CORRELATIONS:
        raise ValueError(f"method must be one of {CORRELATIONS}, got {method!r}.")
    shapes = [
        tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__ for m in (first, second)
    ]
    if shapes[0] != shapes[1] or len(shapes[0]) != 3:
        raise ValueError(
            f"Both sets of maps must be (N, H, W) alike, got {shapes[0]} and {shapes[1]}."
        )
    values = [m.detach().float().cpu().flatten(1) for m in (first, second)]  # 2 x (N, H * W)
    if method == "spearman":
        values = [_average_ranks(v) for v in values]
    centred = [v - v.mean(dim=1, keepdim=True) for v in values]  # 2 x (N, H * W)
    norms = centred[0].norm(dim=1) * centred[1].norm(dim=1)  # (N,); 0 for a flat map
    correlation = (centred[0] * centred[1]).sum(dim=1) / norms
    return torch.where(norms > 0, correlation, torch.nan).clamp(-1, 1)


def _image_pixels(
    image: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> np.ndarray:
    """One ``(C, H, W)`` image as ``(H, W, 3)`` RGB floats in [0, 1], un-normalised."""
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a (C, H, W) tensor with 1 or 3 channels, got {shape}.")
    pixels = image.detach().float().cpu()
    if image.dtype == torch.uint8:
        pixels = pixels / 255
    elif (mean is None) != (std is None) or (mean is not None and len(mean) != len(image)):
        raise ValueError(f"Pass mean and std with {len(image)} values each, or neither.")
    elif mean is not None and std is not None:
        pixels = pixels * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    return pixels.clamp(0, 1).expand(3, -1, -1).permute(1, 2, 0).numpy()  # (H, W, 3)


def overlay(
    image: Tensor,
    heatmap: Tensor | np.ndarray,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> np.ndarray:
    """Blend a colour-mapped heat map over an image, for ``imshow``.

    Args:
        image: ``(C, H, W)`` with 1 or 3 channels: normalised floats (pass the ``mean`` and
            ``std`` used to normalise it), floats in [0, 1] or uint8.
        heatmap: ``(H, W)`` values in [0, 1], as from :func:`explain`.
        mean: per-channel mean of the normalisation, to undo it.
        std: per-channel standard deviation of the normalisation.
        alpha: weight of the heat map, in [0, 1] (0 shows the image alone).
        cmap: a matplotlib colour map name.

    Returns:
        ``(H, W, 3)`` float32 RGB in [0, 1].

    Raises:
        ValueError: for an image that is not ``(C, H, W)``, a heat map of another size,
            mismatched ``mean``/``std``, ``alpha`` outside [0, 1] or an unknown colour map.

    >>> overlay(torch.zeros(3, 4, 4), torch.ones(4, 4), alpha=1.0)[0, 0]  # jet's top: red
    array([0.5, 0. , 0. ], dtype=float32)
    """
    pixels = _image_pixels(image, mean, std)  # (H, W, 3)
    heat = torch.as_tensor(heatmap).detach().float().cpu()
    if tuple(heat.shape) != pixels.shape[:2]:
        raise ValueError(f"heatmap must be {pixels.shape[:2]} like the image, got {heat.shape}.")
    if isinstance(alpha, bool) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}.")
    try:
        colour_map = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(
            f"Unknown colour map {cmap!r}; try 'jet', 'inferno' or 'viridis'."
        ) from None
    colours = colour_map(heat.clamp(0, 1).numpy())[..., :3]  # (H, W, 3), the alpha channel dropped
    return ((1 - alpha) * pixels + alpha * colours).astype(np.float32)
