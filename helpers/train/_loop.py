"""One pass over the data: :func:`train_one_epoch` and :func:`evaluate_epoch`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from helpers.runtime import synchronize

from ._ema import ModelEma
from ._metrics import AverageMeter, count_correct, reduce_meters

LossFn = Callable[[Tensor, Tensor], Tensor]


def _batches(loader: Iterable[Any], max_steps: int | None) -> Iterator[tuple[Tensor, Tensor]]:
    """``(images, labels)`` from ``loader``, at most ``max_steps`` of them."""
    for step, (images, labels) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            return
        yield images, labels


def _steps(loader: Iterable[Any], max_steps: int | None) -> int | None:
    """How many batches one pass yields, when the loader knows its length."""
    try:
        count = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return max_steps
    return count if max_steps is None else min(count, max_steps)


def _to_device(
    images: Tensor, labels: Tensor, device: torch.device, channels_last: bool
) -> tuple[Tensor, Tensor]:
    """Move a batch to ``device`` (asynchronously from pinned memory), in the memory format
    the model expects."""
    images = images.to(device, non_blocking=True)  # (B, C, H, W)
    if channels_last and images.ndim == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``, or nothing for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _progress(total: int | None, enabled: bool, description: str) -> tqdm:
    """A progress bar for one pass that disappears when done (``leave=False``)."""
    return tqdm(total=total, desc=description, leave=False, disable=not enabled, unit="batch")


def _backward_and_step(
    loss: Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    grad_clip: float | None,
) -> None:
    """Back-propagate, clip the gradient norm, and step (through the scaler for fp16)."""
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)  # skipped when the fp16 gradients overflowed
        scaler.update()
        return
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    device: torch.device,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    autocast_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
    ema: ModelEma | None = None,
    max_steps: int | None = None,
    channels_last: bool = False,
    progress: bool = False,
    description: str = "train",
) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader``: forward, loss, backward, step, per batch.

    Every step clears the gradients (``set_to_none``), runs the forward pass and the loss
    under autocast when ``autocast_dtype`` is given, back-propagates (scaled, for fp16),
    optionally clips the gradient norm, steps the optimiser and then the scheduler (a
    schedule is per batch), and updates the EMA. Losses and correct counts are summed on
    the device and read once at the end, so the GPU never waits for Python. Under
    ``torch.distributed`` the returned metrics are totals over all processes.

    Args:
        model: the network (possibly wrapped in ``DistributedDataParallel``).
        loader: yields ``(images, labels)`` batches.
        optimizer: steps the model's parameters.
        loss_fn: ``loss_fn(logits, labels)``, the mean loss of a batch.
        device: where the model is.
        scheduler: stepped after every optimiser step.
        scaler: a ``GradScaler`` for fp16 autocast; ``None`` otherwise.
        autocast_dtype: ``torch.bfloat16``/``torch.float16`` to autocast to; ``None``: fp32.
        grad_clip: the largest gradient norm allowed; ``None``: no clipping.
        ema: updated after every step.
        max_steps: stop after this many batches.
        channels_last: convert image batches to the channels-last memory format.
        progress: show a tqdm progress bar.
        description: the progress bar's label.

    Returns:
        ``loss`` and ``acc`` (the means over the images seen), ``images`` (how many),
        ``seconds`` and ``lr`` (the last step's learning rate: the largest of the parameter
        groups', which with layer decay is the head's).
    """
    model.train()
    losses, correct = AverageMeter(), AverageMeter()
    lr = peak_lr(optimizer)
    bar = _progress(_steps(loader, max_steps), progress, description)
    start = time.perf_counter()
    for images, labels in _batches(loader, max_steps):
        images, labels = _to_device(images, labels, device, channels_last)
        optimizer.zero_grad(set_to_none=True)  # frees the old gradients' memory right away
        with _autocast(device, autocast_dtype):
            logits = model(images)  # (B, K)
            loss = loss_fn(logits, labels)
        _backward_and_step(loss, model, optimizer, scaler, grad_clip)
        lr = peak_lr(optimizer)  # the rate this step used
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        losses.update(loss.detach(), len(labels))
        correct.update(count_correct(logits.detach(), labels) / len(labels), len(labels))
        _advance(bar, losses)
    bar.close()
    return _summarise(losses, correct, device, start, lr=lr)


def peak_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest learning rate of ``optimizer``'s parameter groups.

    With layer-wise decay (``train.layer_decay``) the first group is the stem, whose rate
    is the smallest; the largest is the head's, the schedule's own value.

    >>> layers = torch.nn.Linear(2, 2)
    >>> sgd = torch.optim.SGD([{"params": [layers.weight], "lr": 0.01},
    ...                        {"params": [layers.bias], "lr": 0.1}])
    >>> peak_lr(sgd)
    0.1
    """
    return max(float(group["lr"]) for group in optimizer.param_groups)


def _advance(bar: tqdm, losses: AverageMeter) -> None:
    """Move the bar on; show the running loss now and then (reading it waits for the GPU)."""
    bar.update()
    if not bar.disable and (bar.n == 1 or bar.n % 20 == 0):
        bar.set_postfix(loss=f"{losses.avg:.4f}", refresh=False)


def _summarise(
    losses: AverageMeter, correct: AverageMeter, device: torch.device, start: float, **extra: float
) -> dict[str, float]:
    """The metrics of a pass, totalled over processes, with the time it took."""
    synchronize(device)
    seconds = time.perf_counter() - start
    reduce_meters([losses, correct], device)
    return {
        "loss": losses.avg,
        "acc": correct.avg,
        "images": losses.count,
        "seconds": seconds,
        **extra,
    }


def evaluate_epoch(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: LossFn,
    device: torch.device,
    *,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    max_steps: int | None = None,
    progress: bool = False,
    description: str = "eval",
) -> dict[str, float]:
    """Measure the mean loss and accuracy of ``model`` on ``loader``, without training it.

    Runs in evaluation mode (dropout off, batch norm on its running statistics) under
    :func:`torch.inference_mode`. A ``DistributedDataParallel`` wrapper is looked through:
    every process evaluates its own share of the data with the same weights, and the
    returned metrics are totals over all processes.

    Args:
        model: the network.
        loader: yields ``(images, labels)`` batches.
        loss_fn: ``loss_fn(logits, labels)``, the mean loss of a batch.
        device: where the model is.
        autocast_dtype: ``torch.bfloat16``/``torch.float16`` to autocast to; ``None``: fp32.
        channels_last: convert image batches to the channels-last memory format.
        max_steps: stop after this many batches.
        progress: show a tqdm progress bar.
        description: the progress bar's label.

    Returns:
        ``loss``, ``acc``, ``images`` and ``seconds``; loss and accuracy are NaN when the
        loader yields no batch.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # no collective calls in evaluation: shares may differ
    model.eval()
    losses, correct = AverageMeter(), AverageMeter()
    bar = _progress(_steps(loader, max_steps), progress, description)
    start = time.perf_counter()
    with torch.inference_mode():
        for images, labels in _batches(loader, max_steps):
            images, labels = _to_device(images, labels, device, channels_last)
            with _autocast(device, autocast_dtype):
                logits = model(images)  # (B, K)
                loss = loss_fn(logits, labels)
            losses.update(loss.float(), len(labels))
            correct.update(count_correct(logits, labels) / len(labels), len(labels))
            _advance(bar, losses)
    bar.close()
    return _summarise(losses, correct, device, start)
