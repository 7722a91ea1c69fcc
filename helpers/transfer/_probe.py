"""Linear probes: features computed once by a frozen model, then a linear classifier on them."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helpers.runtime import autocast_dtype

from ._preprocess import timm_model

FeatureSplits = dict[str, tuple[Tensor, Tensor]]  # split -> ((N, D) features, (N,) labels)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; nothing for ``None`` (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _pooled(model: nn.Module, images: Tensor) -> Tensor:
    """timm's pre-logits features ``(B, D)`` of a ``(B, C, H, W)`` batch."""
    return model.forward_head(model.forward_features(images), pre_logits=True)


def extract_features(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device | str,
    precision: str = "fp32",
) -> tuple[Tensor, Tensor]:
    """The pooled features (the classifier's input) of every image a loader yields.

    Features are ``forward_head(forward_features(images), pre_logits=True)``, timm's
    representation just before the classifier, computed in evaluation mode without
    gradients. Use a loader without augmentation (``DataConfig(augment="none")``): the
    features are computed once, so one random draw would be frozen into them.

    Args:
        model: a timm model or :class:`WithPreprocessing`, already on ``device``.
        loader: yields ``(images, labels)`` batches.
        device: where the model runs.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"`` (autocast, see
            :func:`helpers.runtime.autocast_dtype`); features are returned in fp32.

    Returns:
        ``(features, labels)``: ``(N, D)`` float32 and ``(N,)`` int64, on the CPU.

    Raises:
        ValueError: for a model without timm's interface or a loader with no batch.
    """
    timm_model(model)  # checks the interface
    device = torch.device(device)
    dtype = autocast_dtype(device, precision)
    was_training = model.training
    model.eval()
    chunks, targets = [], []
    try:
        with torch.no_grad():
            for images, labels in loader:
                with _autocast(device, dtype):
                    pooled = _pooled(model, images.to(device, non_blocking=True))  # (B, D)
                chunks.append(pooled.float().cpu())
                targets.append(torch.as_tensor(labels).cpu())
    finally:
        model.train(was_training)
    if not chunks:
        raise ValueError("The loader yielded no batch.")
    return torch.cat(chunks), torch.cat(targets).long()


def _named_loaders(loaders: Any) -> dict[str, Iterable[Any]]:
    """``{"train": ..., "val": ..., "test": ...}`` from ``Loaders`` or a mapping (None dropped)."""
    if isinstance(loaders, Mapping):
        named = dict(loaders)
    elif hasattr(loaders, "_asdict"):
        named = {k: v for k, v in loaders._asdict().items() if k in ("train", "val", "test")}
    else:
        raise ValueError("loaders must be a helpers.data.Loaders or a mapping of split names.")
    return {name: loader for name, loader in named.items() if loader is not None}


def _fingerprint(model: nn.Module, loaders: Mapping[str, Iterable[Any]]) -> str:
    """Identifies the model's weights and the splits' sizes, to tell a stale cache file."""
    digest = hashlib.sha256(type(timm_model(model)).__name__.encode())
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            digest.update(f"{name}:{float(tensor.double().sum()):.10e}".encode())
    for name, loader in loaders.items():
        size = len(loader.dataset) if hasattr(loader, "dataset") else None
        digest.update(f"{name}:{size}".encode())
    return digest.hexdigest()


def cache_features(
    model: nn.Module,
    loaders: Any,
    *,
    device: torch.device | str,
    precision: str = "fp32",
    path: str | os.PathLike[str] | None = None,
) -> FeatureSplits:
    """Extract the features of every split once, optionally keeping them in a file.

    Args:
        model: a timm model or :class:`WithPreprocessing`, already on ``device``.
        loaders: a :class:`helpers.data.Loaders` (``train``, ``val``, ``test``; built with
            ``augment="none"``) or a mapping from split names to loaders.
        device: where the model runs.
        precision: autocast precision for the extraction (see :func:`extract_features`).
        path: a ``.pt`` file: reused when it was written for the same weights and split
            sizes, written (atomically) otherwise. ``None`` keeps features in memory only.

    Returns:
        ``{split: (features (N, D), labels (N,))}`` on the CPU.

    Raises:
        ValueError: as :func:`extract_features`, or for ``loaders`` of another kind.
    """
    from helpers.train import save_checkpoint

    named = _named_loaders(loaders)
    key = _fingerprint(model, named) if path is not None else ""
    if path is not None and Path(path).is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(saved, dict) and saved.get("key") == key:
            return {name: tuple(pair) for name, pair in saved["features"].items()}
    features = {
        name: extract_features(model, loader, device=device, precision=precision)
        for name, loader in named.items()
    }
    if path is not None:
        save_checkpoint({"key": key, "features": features}, path)
    return features


def fit_linear_head(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    l2: float = 1e-4,
    max_iter: int = 200,
) -> nn.Linear:
    """Fit a multinomial logistic regression on fixed features, full batch, with L-BFGS.

    The problem is convex, so a deterministic full-batch quasi-Newton method finds its
    optimum in a few dozen steps without a learning rate to tune (as CLIP's linear probes
    do). Features are standardised for conditioning, and the standardisation is folded
    into the returned layer, which therefore takes the raw features.

    Args:
        features: ``(N, D)`` training features.
        labels: ``(N,)`` class indices.
        num_classes: outputs of the layer.
        l2: the penalty ``l2 / 2 * ||W||^2`` on the (standardised) weights.
        max_iter: L-BFGS iterations.

    Returns:
        An ``nn.Linear(D, num_classes)`` on the CPU, in fp32.

    Raises:
        ValueError: for mismatched shapes, labels outside ``[0, num_classes)``, or a
            negative ``l2``.
    """
    if features.ndim != 2 or labels.shape != (len(features),):
        raise ValueError(
            f"Need (N, D) features and (N,) labels, got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}."
        )
    if len(labels) == 0 or int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}) and not be empty.")
    if l2 < 0 or max_iter < 1:
        raise ValueError(f"Need l2 >= 0 and max_iter >= 1, got {l2!r} and {max_iter!r}.")
    features, labels = features.float().cpu(), labels.long().cpu()
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)  # (D,), (D,)
    inputs = (features - mean) / std  # (N, D)
    head = nn.Linear(features.shape[1], num_classes)
    nn.init.zeros_(head.weight)  # the optimum is unique: start from the same point every time
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(
        head.parameters(), lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(inputs), labels) + 0.5 * l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return _fold_standardisation(head, mean, std)


def _fold_standardisation(head: nn.Linear, mean: Tensor, std: Tensor) -> nn.Linear:
    """``W (x - m) / s + b`` as one layer: weight ``W / s``, bias ``b - (W / s) m``."""
    folded = nn.Linear(head.in_features, head.out_features)
    with torch.no_grad():
        folded.weight.copy_(head.weight / std)  # (K, D)
        folded.bias.copy_(head.bias - folded.weight @ mean)  # (K,)
    return folded


def _accuracy(head: nn.Linear, features: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy of ``head`` on fixed features."""
    with torch.no_grad():
        return float((head(features.float()).argmax(1) == labels).float().mean())


@dataclass
class ProbeResult:
    """A fitted linear probe: the layer, its penalty, and accuracies per split."""

    head: nn.Linear  # takes raw pooled features (B, D), returns logits (B, K)
    l2: float  # the penalty chosen (the best on "val" when several were tried)
    accuracy: dict[str, float]  # per split of the features given
    val_accuracy_by_l2: dict[float, float] = field(default_factory=dict)  # when several tried


def linear_probe(
    features: Mapping[str, tuple[Tensor, Tensor]],
    num_classes: int,
    *,
    l2: float | Sequence[float] = 1e-4,
    max_iter: int = 200,
) -> ProbeResult:
    """Train a linear classifier on cached features and measure it on every split.

    A linear probe asks how much of the task a frozen representation already solves
    (Kornblith et al., 2019): it is the cheapest transfer baseline, and a fine-tuned model
    should beat it.

    Args:
        features: from :func:`cache_features`; needs ``"train"``, and ``"val"`` when several
            penalties are given.
        num_classes: the number of classes.
        l2: one penalty, or several to choose from by validation accuracy.
        max_iter: L-BFGS iterations per fit.

    Returns:
        A :class:`ProbeResult` (install its head with :func:`install_head`).

    Raises:
        ValueError: without a ``"train"`` split, with several penalties but no ``"val"``,
            or as :func:`fit_linear_head`.
    """
    if "train" not in features:
        raise ValueError(f"features need a 'train' split, got {sorted(features)}.")
    penalties = [float(l2)] if isinstance(l2, (int, float)) else [float(v) for v in l2]
    if not penalties or (len(penalties) > 1 and "val" not in features):
        raise ValueError("Give one l2, or several together with a 'val' split to choose by.")
    heads = {
        p: fit_linear_head(*features["train"], num_classes, l2=p, max_iter=max_iter)
        for p in penalties
    }
    by_l2 = {}
    if len(penalties) > 1:
        by_l2 = {p: _accuracy(head, *features["val"]) for p, head in heads.items()}
    best = max(by_l2, key=by_l2.__getitem__) if by_l2 else penalties[0]
    accuracy = {name: _accuracy(heads[best], *pair) for name, pair in features.items()}
    return ProbeResult(heads[best], best, accuracy, by_l2)


def install_head(model: nn.Module, head: nn.Linear) -> nn.Module:
    """Make ``head`` the model's classifier, so the model predicts with the probe.

    Args:
        model: a timm model or :class:`WithPreprocessing` whose classifier is linear.
        head: from :func:`linear_probe` or :func:`fit_linear_head`.

    Returns:
        ``model``, changed in place: ``model(images)`` equals ``head(features)``.

    Raises:
        ValueError: when the model's classifier is not linear or takes another width.
    """
    backbone = timm_model(model)
    device = next(backbone.parameters()).device
    backbone.reset_classifier(head.out_features)
    classifier = backbone.get_classifier().to(device)  # timm builds the new layer on the CPU
    if not isinstance(classifier, nn.Linear) or classifier.in_features != head.in_features:
        raise ValueError(
            f"The model's classifier is {classifier!r}; install_head needs an nn.Linear with "
            f"{head.in_features} inputs."
        )
    with torch.no_grad():
        classifier.weight.copy_(head.weight)
        classifier.bias.copy_(head.bias)
    return model
