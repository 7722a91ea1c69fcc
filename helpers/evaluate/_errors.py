"""Error analysis: the mistakes a model is surest of, and the classes it mixes up most."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ._metrics import confusion_matrix
from ._predict import Predictions, _check_positive_int


def most_confident_errors(predictions: Predictions, k: int = 16) -> pd.DataFrame:
    """The ``k`` misclassified images the model was most confident about.

    These are the first images to look at: a confident mistake is often a wrong label in
    the data set, an ambiguous image, or a shortcut the model learned.

    Args:
        predictions: from :func:`predict`.
        k: how many errors to return at most (fewer when there are fewer errors).

    Returns:
        One row per error, most confident first, with columns ``index`` (the image's
        position in the loader's order: for an unshuffled evaluation loader, its index in
        the split), ``true`` and ``predicted`` class indices, and ``confidence`` (the
        probability of the predicted class).

    Raises:
        ValueError: for ``k`` below 1.

    >>> p = Predictions(torch.zeros(3, 2), torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.8, 0.2]]),
    ...                 torch.tensor([0, 1, 0]), torch.tensor([1, 1, 1]))
    >>> most_confident_errors(p, k=1)["index"].tolist()
    [2]
    """
    _check_positive_int("k", k)
    wrong = torch.nonzero(predictions.predictions != predictions.targets).flatten()  # (E,)
    predicted = predictions.predictions[wrong]
    confidence = predictions.probabilities[wrong, predicted].to(torch.float64)  # (E,)
    order = torch.argsort(confidence, descending=True, stable=True)[:k]
    return pd.DataFrame(
        {
            "index": wrong[order].numpy(),
            "true": predictions.targets[wrong][order].numpy(),
            "predicted": predicted[order].numpy(),
            "confidence": confidence[order].numpy(),
        }
    )


def most_confused_pairs(
    predictions: Predictions, class_names: Sequence[str], k: int = 5
) -> pd.DataFrame:
    """The ``k`` (true, predicted) pairs of different classes that occur most often.

    The off-diagonal cells of the confusion matrix, largest first: which classes the
    model mixes up (on CIFAR-10, usually cat and dog).

    Args:
        predictions: from :func:`predict`.
        class_names: the name of each class, in label order.
        k: how many pairs to return at most (only pairs that occur are returned).

    Returns:
        One row per pair, most frequent first (ties by larger share, then label order),
        with columns ``true`` and ``predicted`` (class names), ``count`` and ``share``
        (of the true class's images).

    Raises:
        ValueError: for ``k`` below 1, or a label without a name.

    >>> p = Predictions(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([1, 1, 1]),
    ...                 torch.tensor([0, 0, 1]))
    >>> most_confused_pairs(p, ["cat", "dog"]).to_dict("records")
    [{'true': 'cat', 'predicted': 'dog', 'count': 2, 'share': 1.0}]
    """
    _check_positive_int("k", k)
    counts = confusion_matrix(predictions, class_names).to_numpy()  # (K, K)
    support = counts.sum(axis=1, keepdims=True)  # (K, 1)
    rows = [
        {
            "true": class_names[t],
            "predicted": class_names[p],
            "count": int(counts[t, p]),
            "share": float(counts[t, p] / support[t, 0]),
        }
        for t, p in zip(*np.nonzero(counts), strict=True)
        if t != p
    ]
    table = pd.DataFrame(rows, columns=["true", "predicted", "count", "share"])
    table = table.sort_values(["count", "share"], ascending=False, kind="stable")
    return table.head(k).reset_index(drop=True)
