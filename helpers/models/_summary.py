"""A layer-by-layer table of a model: output shapes and parameter counts."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    import pandas as pd

_COLUMNS = ["layer", "type", "output_shape", "params", "trainable"]


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """The number of parameters of ``model`` (each shared tensor counted once).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.

    Returns:
        The total number of scalar parameters.

    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def summary(
    model: nn.Module,
    input_size: Sequence[int] = (1, 3, 32, 32),
    *,
    depth: int | None = None,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Run one batch of zeros through ``model`` and tabulate its layers.

    Each row is a layer, in the order the model registers them: its qualified name, type,
    output shape (recorded by a forward hook) and parameters, all and trainable, counting
    everything inside it. Parameters held directly by a container (a ViT's class token and
    position embedding) get rows of their own, so the ``params`` column always adds up to
    the model's total. Buffers (batch-norm statistics) are not parameters and are not counted.

    Args:
        model: the model; it runs in eval mode and without gradients, then its mode is
            restored.
        input_size: the shape of the input batch, ``(B, C, H, W)`` for images.
        depth: ``None`` lists every leaf layer; ``1`` lists the model's top-level children,
            ``2`` their children, and so on (a row counts all the layers inside it).
        device: where the input is made; the model's parameters must already be there.

    Returns:
        A DataFrame with columns ``layer``, ``type``, ``output_shape``, ``params`` and
        ``trainable``; ``df.attrs`` holds ``total_params``, ``trainable_params``,
        ``input_size`` and ``output_shape``.

    Raises:
        ValueError: for a depth below 1, a bad input size, or a model on another device.

    >>> from helpers.models import SimpleCNN
    >>> table = summary(SimpleCNN(in_chans=1, image_size=28), (1, 1, 28, 28))
    >>> table.loc[table.params > 0, "params"].tolist(), table.attrs["total_params"]
    ([320, 18496, 204928, 1290], 225034)
    """
    import pandas as pd

    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be None or an integer >= 1, got {depth!r}.")
    device = torch.device(device)
    inputs = _make_input(model, input_size, device)
    shapes, order = _record_output_shapes(model, inputs)
    rows = _table_rows(model, depth, shapes, order)
    table = pd.DataFrame(rows, columns=_COLUMNS)
    table.attrs.update(
        total_params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True),
        input_size=tuple(input_size),
        output_shape=shapes.get("", "-"),
    )
    return table


def _make_input(model: nn.Module, input_size: Sequence[int], device: torch.device) -> torch.Tensor:
    """A batch of zeros of ``input_size`` on ``device``, after checking the model is there."""
    sizes = list(input_size)
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"input_size must be positive integers like (1, 3, 32, 32), got {sizes}.")
    where = {p.device for p in model.parameters()} - {device}
    if where:
        raise ValueError(
            f"The model is on {', '.join(map(str, where))} but device={str(device)!r}; "
            "pass the model's device."
        )
    return torch.zeros(sizes, device=device)


def _describe_shape(output: Any) -> str:
    """``[1, 64, 13, 13]`` for a tensor; shapes joined by commas for a tuple or list."""
    if isinstance(output, torch.Tensor):
        return str(list(output.shape))
    if isinstance(output, (tuple, list)):
        parts = [_describe_shape(item) for item in output if item is not None]
        return ", ".join(part for part in parts if part != "-") or "-"
    return "-"


def _record_output_shapes(
    model: nn.Module, inputs: torch.Tensor
) -> tuple[dict[str, str], dict[str, int]]:
    """The output shape of every module that runs, and the order in which each last ran."""
    shapes: dict[str, str] = {}
    order: dict[str, int] = {}
    calls = itertools.count()

    def make_hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            shapes[name] = _describe_shape(output)
            order[name] = next(calls)

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in model.named_modules()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes, order


def _table_rows(
    model: nn.Module, depth: int | None, shapes: dict[str, str], order: dict[str, int]
) -> list[dict[str, Any]]:
    """One row per shown module (and per parameter held directly by a hidden container)."""
    modules = dict(model.named_modules())
    shown = {
        name
        for name, module in modules.items()
        if (depth is not None and _depth(name) == depth)
        or (len(module._modules) == 0 and (depth is None or _depth(name) < depth))
    }
    rows = []
    seen: set[int] = set()  # a parameter shared by two layers is counted in the first only

    def count(params: list[nn.Parameter]) -> tuple[int, int]:
        new = [p for p in params if id(p) not in seen]
        seen.update(id(p) for p in new)
        return sum(p.numel() for p in new), sum(p.numel() for p in new if p.requires_grad)

    for name, module in modules.items():
        if name not in shown and not any(_is_within(name, s) for s in shown):
            for param_name, param in module.named_parameters(recurse=False):
                full = f"{name}.{param_name}" if name else param_name
                rows.append(_row(full, "Parameter", "-", *count([param])))
        if name in shown:
            shape = shapes.get(name) or _last_descendant_shape(name, shapes, order)
            kind = type(module).__name__
            rows.append(_row(name or "(model)", kind, shape, *count(list(module.parameters()))))
    return rows


def _row(layer: str, kind: str, shape: str, params: int, trainable: int) -> dict[str, Any]:
    """One table row."""
    return dict(layer=layer, type=kind, output_shape=shape, params=params, trainable=trainable)


def _depth(name: str) -> int:
    """How deep a qualified module name is: 0 for the model, 1 for ``"blocks"``, ..."""
    return 0 if not name else name.count(".") + 1


def _is_within(name: str, ancestor: str) -> bool:
    """Whether module ``name`` is ``ancestor`` or inside it."""
    return ancestor == "" or name == ancestor or name.startswith(ancestor + ".")


def _last_descendant_shape(name: str, shapes: dict[str, str], order: dict[str, int]) -> str:
    """For a container that is never called itself (a ModuleList), the output shape of the
    layer inside it that ran last; ``"-"`` when none ran."""
    inside = [n for n in order if n != name and _is_within(n, name)]
    return shapes[max(inside, key=order.__getitem__)] if inside else "-"
