"""Optimisers of the fast recipe: Nesterov SGD with per-1024-example settings, an optional
Muon-style orthogonalised update for the 3x3 filters, the learning-rate schedule, and the
lookahead average of the weights."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from helpers.models._fastnet import ConvGroup, ScaleFreeBatchNorm

from ._config import FastConfig

# ----------------------------------------------------------------------------------------------
# Learning rates
# ----------------------------------------------------------------------------------------------


def _momentum_scale(momentum: float) -> float:
    """``1 + 1 / (1 - momentum)``: about how far Nesterov momentum multiplies a step, so that
    dividing by it keeps the step size when the momentum changes."""
    return 1.0 + 1.0 / (1.0 - momentum)


def sgd_settings(cfg: FastConfig) -> tuple[float, float]:
    """PyTorch SGD's learning rate and per-step weight decay factor, from ``cfg``'s
    per-1024-example values (the loss is summed over the batch).

    Returns:
        ``(lr, decay)``: ``lr`` multiplies the summed gradient; ``decay`` is the share of
        each weight removed per step at the peak learning rate (independent of ``lr``).

    >>> lr, decay = sgd_settings(FastConfig())
    >>> round(lr * 1024, 3), round(decay, 6)
    (1.5, 0.001996)
    """
    scale = 1024 * _momentum_scale(cfg.momentum)
    return cfg.lr / scale, cfg.weight_decay * cfg.batch_size / scale


def lr_factor(step: int, total: int, cfg: FastConfig) -> float:
    """The schedule: from ``lr_start`` up to 1 over ``warmup_fraction`` of the steps, then
    linearly down to ``lr_end`` at the last step.

    >>> [round(lr_factor(s, 100, FastConfig()), 3) for s in (0, 23, 100)]
    [0.2, 1.0, 0.07]
    """
    peak = cfg.warmup_fraction * total
    if step < peak:
        return cfg.lr_start + (1.0 - cfg.lr_start) * step / peak
    if total <= peak:
        return 1.0
    return 1.0 + (cfg.lr_end - 1.0) * (step - peak) / (total - peak)


def set_lr_factor(optimizers: Iterable[torch.optim.Optimizer], factor: float) -> None:
    """Set every group's ``lr`` to its ``base_lr`` times ``factor``."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor


# ----------------------------------------------------------------------------------------------
# Muon: momentum, then the nearest semi-orthogonal matrix as the update
# ----------------------------------------------------------------------------------------------


def orthogonalize(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with ``matrix``'s singular vectors.

    Replaces every singular value by about 1 with a few Newton-Schulz iterations of the
    quintic ``a X + b (X X^T) X + c (X X^T)^2 X`` (coefficients tuned to push small
    singular values up quickly, as in Muon; the result's singular values land roughly in
    [0.7, 1.2], which is what an update needs, not an exact orthogonal matrix).

    Args:
        matrix: ``(rows, cols)``.
        steps: iterations.

    Returns:
        A float32 matrix of the same shape.

    >>> q = orthogonalize(torch.randn(8, 32))
    >>> bool(((torch.linalg.svdvals(q) - 1).abs() < 0.35).all())
    True
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix.float()
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T  # iterate on the wide side: (rows <= cols)
    x = x / (x.norm() + 1e-7)  # singular values <= 1
    for _ in range(steps):
        gram = x @ x.T  # (rows, rows)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


class Muon(torch.optim.Optimizer):
    """Momentum SGD whose update is orthogonalised per filter bank (a Muon-style update).

    For each 4-D convolution weight ``(out, in, k, k)``: Nesterov momentum on the gradient,
    the result reshaped to ``(out, in * k * k)`` and orthogonalised
    (:func:`orthogonalize`), then a step of ``lr``. Before the step, each weight is
    rescaled to norm ``sqrt(out)``: batch norm follows every such convolution, so its scale
    does not change the function, and fixing it fixes the effective step size.

    Args:
        params: the convolution weights.
        lr: step size.
        momentum: momentum in [0, 1).
        nesterov: use the Nesterov form.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        momentum: float = 0.6,
        nesterov: bool = True,
    ) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}.")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        """Take one step for every parameter with a gradient."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)

    def _update(self, param: torch.Tensor, group: dict) -> None:
        """Momentum, normalisation and the orthogonalised step for one weight."""
        grad = param.grad.float()
        buffer = self.state[param].setdefault("momentum_buffer", torch.zeros_like(grad))
        buffer.mul_(group["momentum"]).add_(grad)
        direction = grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
        param.mul_(len(param) ** 0.5 / (param.norm() + 1e-12))
        update = orthogonalize(direction.reshape(len(param), -1)).view_as(param)
        param.add_(update.to(param.dtype), alpha=-group["lr"])


# ----------------------------------------------------------------------------------------------
# Parameter groups and optimisers
# ----------------------------------------------------------------------------------------------


def _split_parameters(net: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters by role: norm biases, 3x3 filters of the groups, the rest."""
    norm_biases = {id(m.bias) for m in net.modules() if isinstance(m, ScaleFreeBatchNorm)}
    filters = {
        id(conv.weight)
        for group in net.modules()
        if isinstance(group, ConvGroup)
        for conv in (group.conv1, group.conv2)
    }
    roles: dict[str, list[nn.Parameter]] = {"norm_biases": [], "filters": [], "other": []}
    for param in net.parameters():
        if id(param) in norm_biases:
            roles["norm_biases"].append(param)
        elif id(param) in filters:
            roles["filters"].append(param)
        else:
            roles["other"].append(param)
    return roles


def _sgd_group(params: list[nn.Parameter], lr: float, decay: float) -> dict:
    """A parameter group whose weight decay per step is ``decay`` whatever its ``lr``."""
    return {"params": params, "lr": lr, "base_lr": lr, "weight_decay": decay / lr}


def build_optimizers(net: nn.Module, cfg: FastConfig) -> list[torch.optim.Optimizer]:
    """Nesterov SGD for every trainable parameter, or Muon for the 3x3 filters and SGD for
    the rest (``cfg.optimizer``).

    Batch-norm biases get ``cfg.bias_lr_scale`` times the learning rate, with the same
    per-step weight decay; every group stores its peak ``lr`` as ``base_lr`` for
    :func:`set_lr_factor`.

    Args:
        net: a :class:`~helpers.models.FastNet` (not compiled: its own parameters).
        cfg: the recipe's settings.

    Returns:
        One optimiser (SGD) or two (SGD, Muon); step all of them.
    """
    lr, decay = sgd_settings(cfg)
    roles = _split_parameters(net)
    use_muon = cfg.optimizer == "muon"
    other = roles["other"] + ([] if use_muon else roles["filters"])
    groups = [_sgd_group(other, lr, decay)]
    if roles["norm_biases"]:
        groups.append(_sgd_group(roles["norm_biases"], lr * cfg.bias_lr_scale, decay))
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    ]
    if use_muon and roles["filters"]:
        muon = Muon(roles["filters"], lr=cfg.muon_lr, momentum=cfg.muon_momentum)
        for group in muon.param_groups:
            group["base_lr"] = group["lr"]
        optimizers.append(muon)
    return optimizers


# ----------------------------------------------------------------------------------------------
# Lookahead: the weights are pulled back to their moving average every few steps
# ----------------------------------------------------------------------------------------------


def lookahead_decay(step: int, total: int, cfg: FastConfig) -> float:
    """The average's decay at ``step``: ``cfg.lookahead_decay * (step / total) ** 3``, so
    near 0 (no pull) early in training and largest at the end.

    >>> lookahead_decay(0, 100, FastConfig()), round(lookahead_decay(100, 100, FastConfig()), 4)
    (0.0, 0.7738)
    """
    return cfg.lookahead_decay * (step / total) ** 3


class Lookahead:
    """A moving average of a model's state that the model is reset to at each update.

    :meth:`update` moves the average towards the current weights,
    ``average = decay * average + (1 - decay) * weights``, then copies the average into
    the model (every floating-point entry of its state dict, batch-norm statistics
    included): the fast weights explore, the slow average keeps them from straying.
    :meth:`finish` copies the average in a last time.

    Args:
        model: the network (its state is copied as the first average).

    >>> net = nn.Linear(2, 1)
    >>> lookahead = Lookahead(net)
    >>> with torch.no_grad():
    ...     _ = net.weight.add_(1.0)
    >>> before = lookahead.average["weight"].clone()
    >>> lookahead.update(net, decay=0.75)
    >>> torch.allclose(net.weight, before + 0.25)
    True
    """

    def __init__(self, model: nn.Module) -> None:
        self.average = {
            name: tensor.detach().clone()
            for name, tensor in model.state_dict().items()
            if tensor.dtype.is_floating_point
        }

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        """Average towards the weights with ``decay``, then copy the average into them."""
        if not 0 <= decay <= 1:
            raise ValueError(f"decay must lie in [0, 1], got {decay!r}.")
        state = model.state_dict()
        for name, average in self.average.items():
            average.lerp_(state[name], 1.0 - decay)
            state[name].copy_(average)

    def finish(self, model: nn.Module) -> None:
        """Copy the average into the model (an update with decay 1)."""
        self.update(model, decay=1.0)
