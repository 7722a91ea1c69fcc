"""Calibration: do the predicted probabilities mean what they say? Reliability bins, the
expected calibration error, the negative log-likelihood, and temperature scaling."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ._predict import Predictions, _check_positive_int, _check_scores, _check_targets


def _as_tensor(values: Tensor | np.ndarray) -> Tensor:
    """A CPU tensor (a copy is not made when it already is one)."""
    return torch.as_tensor(values).detach().cpu()


def _confidence_and_correct(
    probabilities: Tensor | np.ndarray, targets: Tensor | np.ndarray
) -> tuple[Tensor, Tensor]:
    """The top probability of each image (float64) and whether its arg-max is right."""
    probabilities, targets = _as_tensor(probabilities), _as_tensor(targets)
    _check_scores("probabilities", probabilities, targets)
    _check_targets(targets, probabilities.shape[1])
    confidence, predicted = probabilities.to(torch.float64).max(dim=1)  # (N,), (N,)
    if float(confidence.min()) < 0 or float(confidence.max()) > 1 + 1e-6:
        raise ValueError("probabilities must lie in [0, 1]: pass softmax outputs, not logits.")
    return confidence, predicted == targets


def reliability_bins(
    probabilities: Tensor | np.ndarray, targets: Tensor | np.ndarray, n_bins: int = 15
) -> pd.DataFrame:
    """Group images by confidence into equal-width bins and compare accuracy to confidence.

    An image's confidence is its highest probability; it falls in bin ``b`` when
    ``b / n_bins < confidence <= (b + 1) / n_bins``. For a calibrated model each bin's
    accuracy equals its mean confidence: of the images predicted with 80% confidence,
    80% are right. This table is what a reliability diagram draws.

    Args:
        probabilities: ``(N, K)`` predicted probabilities (softmax outputs).
        targets: ``(N,)`` true class indices.
        n_bins: number of equal-width confidence bins on [0, 1].

    Returns:
        One row per bin: ``lower`` and ``upper`` edges, ``count`` of images, their mean
        ``confidence`` and their ``accuracy`` (both ``NaN`` for an empty bin).

    Raises:
        ValueError: for mismatched shapes, targets out of range, values outside [0, 1], or
            ``n_bins`` below 1.

    >>> bins = reliability_bins(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]),
    ...                         n_bins=2)
    >>> bins[["count", "accuracy"]].to_numpy().tolist()
    [[0.0, nan], [2.0, 0.5]]
    """
    _check_positive_int("n_bins", n_bins)
    confidence, correct = _confidence_and_correct(probabilities, targets)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)  # (n_bins + 1,)
    # right=False: the bin whose upper edge is the first at or above the confidence
    index = torch.bucketize(confidence, edges[1:-1], right=False)  # (N,) in [0, n_bins)
    count = torch.bincount(index, minlength=n_bins).to(torch.float64)
    confidence_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, confidence)
    correct_sum = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct.double())
    empty = count == 0
    return pd.DataFrame(
        {
            "lower": edges[:-1].numpy(),
            "upper": edges[1:].numpy(),
            "count": count.numpy(),
            "confidence": torch.where(empty, torch.nan, confidence_sum / count).numpy(),
            "accuracy": torch.where(empty, torch.nan, correct_sum / count).numpy(),
        }
    )


def expected_calibration_error(
    probabilities: Tensor | np.ndarray, targets: Tensor | np.ndarray, n_bins: int = 15
) -> float:
    """The expected calibration error (ECE) over equal-width confidence bins.

    ``ECE = sum over bins of (images in bin / N) * |accuracy(bin) - confidence(bin)|``
    (Guo et al., 2017): the gap between how sure the model is and how often it is right,
    weighted by how many images have that confidence. 0 is perfectly calibrated.

    Args:
        probabilities: ``(N, K)`` predicted probabilities (softmax outputs).
        targets: ``(N,)`` true class indices.
        n_bins: number of equal-width confidence bins (see :func:`reliability_bins`).

    Returns:
        The ECE, a share in [0, 1].

    Raises:
        ValueError: as :func:`reliability_bins`.

    >>> probabilities = torch.tensor([[0.9, 0.1], [0.3, 0.7]])  # both in bin (0.5, 1]
    >>> round(expected_calibration_error(probabilities, torch.tensor([0, 0]), n_bins=2), 4)
    0.3
    """
    bins = reliability_bins(probabilities, targets, n_bins)
    gaps = (bins["accuracy"] - bins["confidence"]).abs().fillna(0.0)
    return float((bins["count"] * gaps).sum() / bins["count"].sum())


def negative_log_likelihood(logits: Tensor, targets: Tensor) -> float:
    """The mean negative log-likelihood of the true classes (the cross-entropy loss).

    Unlike accuracy, it punishes confident mistakes hard, so it is the measure that
    temperature scaling minimises.

    Args:
        logits: ``(N, K)`` raw scores (or log-probabilities).
        targets: ``(N,)`` true class indices.

    Returns:
        The mean NLL in nats (``log K`` for a uniform guess).

    Raises:
        ValueError: for mismatched shapes or targets out of range.

    >>> round(negative_log_likelihood(torch.zeros(2, 4), torch.tensor([0, 3])), 4)  # log 4
    1.3863
    """
    logits, targets = _as_tensor(logits), _as_tensor(targets)
    _check_scores("logits", logits, targets)
    _check_targets(targets, logits.shape[1])
    return float(F.cross_entropy(logits.to(torch.float64), targets.long()))


def fit_temperature(logits: Tensor, targets: Tensor, *, max_iter: int = 100) -> float:
    """The temperature ``T`` that minimises the NLL of ``softmax(logits / T)``.

    Temperature scaling (Guo et al., 2017) is the simplest post-hoc calibration: one number
    for the whole model, fitted on the validation split (never the test split). ``T > 1``
    softens an overconfident model; ``T < 1`` sharpens an underconfident one. Dividing all
    logits by the same ``T`` keeps their order, so predictions and accuracy do not change.
    It is fitted over ``log T`` (so ``T`` stays positive) with L-BFGS in float64.

    Args:
        logits: ``(N, K)`` validation logits, e.g. ``predictions.logits``.
        targets: ``(N,)`` validation labels.
        max_iter: L-BFGS iterations at most.

    Returns:
        The fitted temperature, a positive float.

    Raises:
        ValueError: for mismatched shapes, targets out of range, non-finite logits, or
            ``max_iter`` below 1.
    """
    _check_positive_int("max_iter", max_iter)
    logits, targets = _as_tensor(logits), _as_tensor(targets)
    _check_scores("logits", logits, targets)
    _check_targets(targets, logits.shape[1])
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits must be finite to fit a temperature.")
    scores = logits.to(torch.float64, copy=True)  # a normal tensor, even from inference mode
    labels = targets.long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = 1 to start
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(scores / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_t.detach().exp())


def apply_temperature(predictions: Predictions, temperature: float) -> Predictions:
    """The predictions with their logits divided by ``temperature`` (see
    :func:`fit_temperature`): new probabilities, the same predicted classes.

    Args:
        predictions: from :func:`predict`.
        temperature: a positive, finite ``T``.

    Returns:
        New :class:`Predictions` with ``logits / T`` and their softmax.

    Raises:
        ValueError: for a temperature that is not positive and finite.

    >>> p = Predictions(torch.tensor([[2.0, 0.0]]), torch.zeros(1, 2), torch.tensor([0]),
    ...                 torch.tensor([0]))
    >>> apply_temperature(p, 2.0).logits.tolist()
    [[1.0, 0.0]]
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a number, got {temperature!r}.")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}.")
    logits = predictions.logits / temperature  # (N, K)
    return dataclasses.replace(
        predictions,
        logits=logits,
        probabilities=logits.softmax(dim=1),
        predictions=logits.argmax(dim=1),
    )
