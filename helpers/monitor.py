"""Monitoring: does the data a deployed model sees still look like the data it was trained on?

A classifier in service does not fail with an error when its inputs change (a new camera,
darker rooms, compression); it goes on answering, less accurately, and no label arrives to
say so (Sculley et al., 2015, call such silent dependencies on data a form of technical
debt). What can be watched without labels are distributions: of simple statistics of the
inputs, and of the model's own outputs, which Rabanser et al. (2019) found to be among the
most reliable signals of a shift (the predicted classes and the confidence). Each is
compared between a reference sample (validation images, as the model saw them after
training) and a recent window of traffic:

* :func:`image_features`: per image, mean brightness, contrast and edge strength.
* :func:`prediction_features`: per image, the predicted class and its probability.
* :func:`psi`: the population stability index of a continuous feature over quantile bins of
  the reference, and :func:`label_psi` for class labels. By a common rule of thumb, below
  0.1 means no real change, 0.1 to 0.25 a moderate one, above 0.25 a major one.
* :func:`drift_report`: both, and a two-sample test (Kolmogorov-Smirnov for continuous
  features, chi-squared for labels) per feature, as one table.

Example:
    >>> rng = np.random.default_rng(0)
    >>> reference, shifted = rng.normal(0, 1, 5000), rng.normal(0.5, 1, 5000)
    >>> psi(reference, reference[::-1]) < 0.01, psi(reference, shifted) > 0.1
    (True, True)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor

__all__ = [
    "PSI_BANDS",
    "drift_report",
    "image_features",
    "label_psi",
    "prediction_features",
    "psi",
]

# (upper bound, verdict): the usual reading of a population stability index
PSI_BANDS: tuple[tuple[float, str], ...] = ((0.1, "stable"), (0.25, "moderate"), (np.inf, "major"))
_EPS = 1e-4  # share given to an empty bin, so that the logarithm stays finite


def _shares_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI of two vectors of bin counts: ``sum((a - e) * ln(a / e))`` over bin shares."""
    e = np.clip(expected / max(expected.sum(), 1), _EPS, None)
    a = np.clip(actual / max(actual.sum(), 1), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _as_array(values: np.ndarray | Tensor | list[float], name: str) -> np.ndarray:
    """A non-empty 1-D float array; ``ValueError`` otherwise."""
    array = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    array = array.astype(np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty.")
    return array


def psi(
    expected: np.ndarray | Tensor | list[float],
    actual: np.ndarray | Tensor | list[float],
    bins: int = 10,
) -> float:
    """The population stability index of a continuous feature, ``actual`` against ``expected``.

    The bins are the ``bins`` quantiles of ``expected`` (equally full for the reference),
    open at both ends, so that values outside the reference's range still count.

    Args:
        expected: the feature over the reference sample.
        actual: the feature over the sample to check.
        bins: how many quantile bins (fewer when the reference has repeated values).

    Returns:
        The index, 0 for identical distributions; see :data:`PSI_BANDS`.

    Raises:
        ValueError: for an empty sample or fewer than 2 bins.

    >>> round(psi([1, 2, 3, 4] * 50, [1, 2, 3, 4] * 50), 6)
    0.0
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"bins must be an integer of at least 2, got {bins!r}.")
    reference, current = _as_array(expected, "expected"), _as_array(actual, "actual")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    edges = np.concatenate([[-np.inf], edges, [np.inf]])
    counts_ref = np.histogram(reference, edges)[0].astype(np.float64)
    counts_cur = np.histogram(current, edges)[0].astype(np.float64)
    return _shares_psi(counts_ref, counts_cur)


def label_psi(
    expected: np.ndarray | Tensor | list[int],
    actual: np.ndarray | Tensor | list[int],
    num_classes: int,
) -> float:
    """The population stability index of two samples of class labels (``0..num_classes-1``).

    >>> label_psi([0, 1, 1, 2], [0, 1, 1, 2], 3)
    0.0
    """
    reference = _as_array(expected, "expected").astype(np.int64)
    current = _as_array(actual, "actual").astype(np.int64)
    counts_ref = np.bincount(reference, minlength=num_classes).astype(np.float64)
    counts_cur = np.bincount(current, minlength=num_classes).astype(np.float64)
    return _shares_psi(counts_ref, counts_cur)


def image_features(images: Tensor) -> dict[str, np.ndarray]:
    """Per-image statistics that shift when the camera, the light or the compression changes.

    Args:
        images: ``(N, C, H, W)``, uint8 in [0, 255] or float in [0, 1] (not normalised).

    Returns:
        ``brightness`` (mean pixel value), ``contrast`` (standard deviation of the pixel
        values) and ``edges`` (mean absolute difference between horizontally and vertically
        neighbouring pixels: noise raises it, blur lowers it), each ``(N,)`` on the [0, 1]
        scale.

    Raises:
        ValueError: for a tensor that is not ``(N, C, H, W)``.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}.")
    pixels = images.detach().cpu().float()
    if not images.is_floating_point():
        pixels = pixels / 255
    grey = pixels.mean(dim=1)  # (N, H, W)
    dx = (grey[:, :, 1:] - grey[:, :, :-1]).abs().flatten(1).mean(dim=1)  # (N,)
    dy = (grey[:, 1:, :] - grey[:, :-1, :]).abs().flatten(1).mean(dim=1)  # (N,)
    return {
        "brightness": pixels.flatten(1).mean(dim=1).numpy(),
        "contrast": pixels.flatten(1).std(dim=1).numpy(),
        "edges": ((dx + dy) / 2).numpy(),
    }


def prediction_features(probabilities: np.ndarray | Tensor) -> dict[str, np.ndarray]:
    """The predicted class (int) and its probability, the confidence, of each ``(N, K)`` row."""
    probs = torch.as_tensor(probabilities).detach().cpu().double()
    confidence, predicted = probs.max(dim=1)
    return {"predicted class": predicted.numpy(), "confidence": confidence.numpy()}


def _verdict(value: float) -> str:
    """The band of :data:`PSI_BANDS` that ``value`` falls in."""
    return next(name for bound, name in PSI_BANDS if value < bound)


def _label_test(reference: np.ndarray, current: np.ndarray, num_classes: int) -> tuple:
    """Chi-squared test of homogeneity of two label samples: ``(statistic, p value)``."""
    from scipy.stats import chi2_contingency

    table = np.stack([np.bincount(s, minlength=num_classes) for s in (reference, current)])
    table = table[:, table.sum(axis=0) > 0]  # classes neither sample has carry no evidence
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def drift_report(
    reference: Mapping[str, np.ndarray],
    current: Mapping[str, np.ndarray],
    *,
    num_classes: int | None = None,
    bins: int = 10,
) -> pd.DataFrame:
    """Compare each feature of ``current`` with ``reference``: PSI, a test, and a verdict.

    Integer features are class labels (PSI over classes, chi-squared test); float features
    are continuous (PSI over quantile bins, two-sample Kolmogorov-Smirnov test). With
    thousands of images a test finds even harmless differences "significant": read the
    PSI for the size of a shift, the p value for whether it could be chance.

    Args:
        reference: feature name to values over the reference sample (e.g. the outputs of
            :func:`image_features` and :func:`prediction_features` on validation images).
        current: the same features over the sample to check.
        num_classes: the number of classes, for label features (``None``: the largest
            label seen plus one).
        bins: quantile bins for continuous features.

    Returns:
        One row per feature (the index), with ``reference mean``, ``current mean``,
        ``psi``, ``test`` (``"KS"`` or ``"chi2"``), ``statistic``, ``p value`` and
        ``shift`` (``stable``, ``moderate`` or ``major``, from :data:`PSI_BANDS`).

    Raises:
        ValueError: when ``current`` lacks a feature of ``reference``, or for an empty one.
    """
    from scipy.stats import ks_2samp

    missing = sorted(set(reference) - set(current))
    if missing:
        raise ValueError(f"current lacks the features {missing}; it has {sorted(current)}.")
    rows = {}
    for name, ref_values in reference.items():
        ref, cur = np.asarray(ref_values), np.asarray(current[name])
        if ref.size == 0 or cur.size == 0:
            raise ValueError(f"Feature {name!r} has no values.")
        if np.issubdtype(ref.dtype, np.integer):
            classes = num_classes or int(max(ref.max(), cur.max())) + 1
            value, test = label_psi(ref, cur, classes), "chi2"
            statistic, p_value = _label_test(ref.astype(int), cur.astype(int), classes)
        else:
            value, test = psi(ref, cur, bins), "KS"
            result = ks_2samp(ref, cur)
            statistic, p_value = float(result.statistic), float(result.pvalue)
        rows[name] = {
            "reference mean": float(ref.mean()),
            "current mean": float(cur.mean()),
            "psi": value,
            "test": test,
            "statistic": statistic,
            "p value": p_value,
            "shift": _verdict(value),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
