"""Receptive fields, measured by back-propagating from one unit to the input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [name for name in modules if name]
        raise ValueError(f"Unknown layer {layer!r}; the layers are: {', '.join(names)}.")
    return modules[layer]


def receptive_field(
    model: nn.Module, layer: str, input_size: Sequence[int] = (1, 3, 32, 32)
) -> int:
    """The side, in input pixels, of the patch that one unit of ``layer`` depends on.

    Measured rather than derived: the output of ``layer`` at the centre of its feature map
    is back-propagated to the input, and the extent of the input pixels with a non-zero
    gradient is the receptive field. The weights are replaced by positive constants for the
    measurement (then restored), so that no gradient cancels by chance, batch-norm layers run
    in eval mode, and max pooling is measured as average pooling of the same window (a max
    passes gradient to one input only, yet depends on all of them).

    Args:
        model: a convolutional network.
        layer: the qualified name of a module whose output is a ``(B, C, H, W)`` map.
        input_size: the input shape ``(1, C, H, W)``.

    Returns:
        The larger of the patch's height and width, in pixels.

    Raises:
        ValueError: for an unknown layer, or one whose output is not a 4-D feature map.

    >>> net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3))
    >>> receptive_field(net, "2", (1, 1, 16, 16))
    8
    """
    target = _module(model, layer)
    captured: list[torch.Tensor] = []
    # Pools first: hooks run in registration order, so the capture sees the averaged output.
    handles = [
        pool.register_forward_hook(_as_average_pool)
        for pool in model.modules()
        if isinstance(pool, nn.MaxPool2d)
    ]
    handles.append(target.register_forward_hook(lambda _m, _i, out: captured.append(out)))
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(0.01)  # positive weights: gradients cannot cancel
        image = torch.ones(*input_size, requires_grad=True)
        model(image)
        return _extent(captured[0], image, layer)
    finally:
        for handle in handles:
            handle.remove()
        model.load_state_dict(saved)
        model.train(was_training)


def _as_average_pool(
    pool: nn.MaxPool2d, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor
) -> torch.Tensor:
    """A forward hook that replaces a max pool's output by the average over the same windows."""
    return nn.functional.avg_pool2d(
        inputs[0], pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode
    )


def _extent(output: torch.Tensor, image: torch.Tensor, layer: str) -> int:
    """Back-propagate from the centre unit of ``output`` and measure the touched pixels."""
    if output.ndim != 4:
        raise ValueError(f"Layer {layer!r} outputs {tuple(output.shape)}, not a (B, C, H, W) map.")
    _, _, height, width = output.shape
    output[0, :, height // 2, width // 2].sum().backward()
    touched = image.grad[0].abs().sum(0) > 0  # (H, W) input pixels that reach the unit
    rows = torch.nonzero(touched.any(1)).flatten()
    cols = torch.nonzero(touched.any(0)).flatten()
    return int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
