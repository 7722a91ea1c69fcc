"""An exponential moving average (EMA) of a model's weights, evaluated instead of the weights."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside ``DistributedDataParallel``/``DataParallel`` and ``torch.compile``
    wrappers (whose state dicts prefix every key with ``module.`` or ``_orig_mod.``)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


class ModelEma:
    """A copy of a model whose weights follow the trained ones as a moving average.

    After every optimiser step, ``ema = decay * ema + (1 - decay) * weights``; buffers such as
    batch-norm running statistics are copied. The average smooths out the noise of the last
    steps and often validates better than the weights themselves. Early on the decay is
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so that the average forgets the
    random initial weights quickly.

    Args:
        model: the model being trained (wrappers are looked through); copied here.
        decay: the per-step decay, in ``[0, 1)``; 0.999 averages over about 1,000 steps.

    Raises:
        ValueError: for a decay outside ``[0, 1)``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay!r}.")
        self.module = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @property
    def current_decay(self) -> float:
        """The decay the next update uses (lower during the first steps)."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        weight = 1.0 - self.current_decay
        self.updates += 1
        source = unwrap_model(model).state_dict()
        for name, average in self.module.state_dict().items():
            if average.dtype.is_floating_point:
                average.lerp_(source[name].to(average.dtype), weight)
            else:  # integer buffers (batch-norm's num_batches_tracked) are copied
                average.copy_(source[name])

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count, for a checkpoint."""
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
