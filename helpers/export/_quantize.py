"""Dynamic int8 quantisation of linear layers, and what it costs in accuracy and saves in size.

*Dynamic* quantisation stores a layer's weights as 8-bit integers (a quarter of float32's
size) and quantises its activations on the fly, batch by batch, so it needs no calibration
data. PyTorch's eager implementation covers ``nn.Linear`` (and recurrent layers), not
convolutions: it shrinks the classifier head of a CNN and almost all of a Vision
Transformer. It runs on the CPU only.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers compute with int8 weights.

    Uses ``torch.ao.quantization.quantize_dynamic``. Convolutions are unaffected: they keep
    their float32 weights, so a CNN gains little (only its linear head shrinks), while a
    Vision Transformer, made mostly of linear layers, gains the most. PyTorch 2.14
    deprecates ``torch.ao.quantization`` in favour of the separate ``torchao`` package
    (``torchao.quantization.quantize_``); it still works, and we silence that notice.

    Args:
        model: a trained network (not changed).

    Returns:
        The quantised copy, on the CPU, in eval mode.

    >>> from helpers.models import create_model
    >>> quantized = quantize_dynamic_int8(create_model("simple_cnn"))
    >>> quantized.fc2._get_name(), quantized.features.conv1._get_name()
    ('DynamicQuantizedLinear', 'Conv2d')
    """
    model = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def state_dict_bytes(model: nn.Module) -> int:
    """The size of ``model``'s saved ``state_dict``, in bytes (what a checkpoint would take).

    >>> state_dict_bytes(nn.Linear(256, 10)) > 256 * 10 * 4
    True
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # quantised weights warn about their deprecated dtype
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions")
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _predictions(
    model: nn.Module, loader: Iterable[Any], max_batches: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 predictions and labels of ``model`` over ``loader``, on the CPU."""
    predicted, labels = [], []
    with torch.inference_mode():
        for index, (images, targets) in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            predicted.append(model(images.cpu().float()).argmax(dim=1))  # (B,)
            labels.append(targets.cpu())
    if not labels:
        raise ValueError("The loader gave no batches to measure accuracy on.")
    return torch.cat(predicted), torch.cat(labels)


def quantization_accuracy_cost(
    model: nn.Module,
    quantized: nn.Module,
    loader: Iterable[Any],
    *,
    max_batches: int | None = None,
) -> dict[str, float]:
    """How much accuracy quantisation costs, measured on the same images.

    Both models run on the CPU (quantised kernels exist only there), in eval mode.

    Args:
        model: the float32 network.
        quantized: its quantised copy (:func:`quantize_dynamic_int8`).
        loader: ``(images, labels)`` batches, preprocessed as for the model (a test loader).
        max_batches: stop after this many batches (``None``: all).

    Returns:
        ``acc_float`` and ``acc_int8`` (shares in [0, 1]), ``drop`` (their difference, in
        accuracy points of a share), ``agreement`` (the share of images both give the same
        class) and ``images``.

    Raises:
        ValueError: when the loader gives no batches.
    """
    float_model = copy.deepcopy(model).cpu().eval()
    float_pred, labels = _predictions(float_model, loader, max_batches)
    int8_pred, int8_labels = _predictions(quantized.eval(), loader, max_batches)
    if not torch.equal(labels, int8_labels):
        raise ValueError("The loader gave other images the second time: use a fixed order.")
    acc_float = (float_pred == labels).float().mean().item()
    acc_int8 = (int8_pred == labels).float().mean().item()
    return {
        "acc_float": acc_float,
        "acc_int8": acc_int8,
        "drop": acc_float - acc_int8,
        "agreement": (float_pred == int8_pred).float().mean().item(),
        "images": float(len(labels)),
    }
