"""Metrics from predictions: per-class recall and accuracy, the classification report, the
confusion matrix, and one-vs-rest ROC and precision-recall curves (all from scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn import metrics as skm

from ._predict import Predictions

NORMALIZE_CHOICES: tuple[str | None, ...] = (None, "true", "pred", "all")


def _check_names(predictions: Predictions, class_names: Sequence[str]) -> int:
    """The number of classes; ``ValueError`` when a label or predicted class has no name,
    or two classes share a name."""
    known = len(class_names)
    for name, values in (("labels", predictions.targets), ("predictions", predictions.predictions)):
        if len(values) and (int(values.min()) < 0 or int(values.max()) >= known):
            raise ValueError(
                f"{name} must lie in [0, {known - 1}] to name them with the {known} class "
                f"names, got values from {int(values.min())} to {int(values.max())}."
            )
    if len(set(class_names)) != known:
        raise ValueError(f"class_names must be distinct, got {list(class_names)}.")
    return known


def _check_scored(predictions: Predictions, class_names: Sequence[str]) -> int:
    """As :func:`_check_names`, and the probabilities must have one column per name."""
    known = _check_names(predictions, class_names)
    if predictions.num_classes != known:
        raise ValueError(
            f"The predictions score {predictions.num_classes} classes but {known} class "
            "names were given."
        )
    return known


def per_class_recall(predictions: Predictions, class_names: Sequence[str]) -> pd.Series:
    """The recall of each class: the share of its images that were predicted as it.

    Recall of class ``c`` = (images of ``c`` predicted as ``c``) / (images of ``c``). Its
    mean over classes is the *balanced accuracy*; on a split with equally many images per
    class it equals the plain accuracy.

    Args:
        predictions: from :func:`predict`.
        class_names: the name of each class, in label order.

    Returns:
        A float Series indexed by class name, in label order; ``NaN`` for a class without
        images in ``predictions``.

    Raises:
        ValueError: when a label or predicted class has no name.

    >>> p = Predictions(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0, 1, 1]),
    ...                 torch.tensor([0, 0, 1]))
    >>> per_class_recall(p, ["cat", "dog"]).tolist()
    [0.5, 1.0]
    """
    known = _check_names(predictions, class_names)
    recall = skm.recall_score(
        predictions.targets.numpy(),
        predictions.predictions.numpy(),
        labels=list(range(known)),
        average=None,
        zero_division=np.nan,
    )
    return pd.Series(recall, index=list(class_names), name="recall", dtype=float)


def per_class_accuracy(predictions: Predictions, class_names: Sequence[str]) -> pd.Series:
    """The accuracy on each class's images: the diagonal of the confusion matrix over its
    row sums.

    This is the same number as the class's recall (:func:`per_class_recall`), under the
    name error analysis usually gives it: "how often is a cat image classified as a cat".

    Args:
        predictions: from :func:`predict`.
        class_names: the name of each class, in label order.

    Returns:
        A float Series named ``accuracy`` indexed by class name; ``NaN`` for a class
        without images.

    Raises:
        ValueError: when a label or predicted class has no name.

    >>> p = Predictions(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0, 1, 1]),
    ...                 torch.tensor([0, 0, 1]))
    >>> per_class_accuracy(p, ["cat", "dog"]).tolist()
    [0.5, 1.0]
    """
    counts = confusion_matrix(predictions, class_names).to_numpy(dtype=float)  # (K, K)
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(support > 0, np.diag(counts) / support, np.nan)
    return pd.Series(share, index=list(class_names), name="accuracy", dtype=float)


def classification_report(
    predictions: Predictions, class_names: Sequence[str], *, zero_division: float = 0.0
) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, and their averages, as a table.

    Built from :func:`sklearn.metrics.classification_report`. Precision of class ``c`` is
    the share of images predicted as ``c`` that are ``c``; recall the share of ``c``'s
    images predicted as ``c``; F1 their harmonic mean; support the number of ``c``'s
    images. Three rows follow the classes: ``accuracy`` (the micro average: for one label
    per image, micro precision, recall and F1 all equal the accuracy), ``macro avg`` (the
    plain mean over classes) and ``weighted avg`` (weighted by support).

    Args:
        predictions: from :func:`predict`.
        class_names: the name of each class, in label order.
        zero_division: the value of a precision, recall or F1 that divides by zero (a
            class never predicted, or without images).

    Returns:
        A DataFrame indexed by class name, then ``accuracy``, ``macro avg`` and
        ``weighted avg``, with columns ``precision``, ``recall``, ``f1`` (floats) and
        ``support`` (int).

    Raises:
        ValueError: when a label or predicted class has no name, or names repeat.
    """
    known = _check_names(predictions, class_names)
    report = skm.classification_report(
        predictions.targets.numpy(),
        predictions.predictions.numpy(),
        labels=list(range(known)),
        target_names=list(class_names),
        output_dict=True,
        zero_division=zero_division,
    )
    accuracy = float(report.pop("accuracy"))
    table = pd.DataFrame(report).T.rename(columns={"f1-score": "f1"})
    table.loc["accuracy"] = [accuracy, accuracy, accuracy, len(predictions)]
    order = [*class_names, "accuracy", "macro avg", "weighted avg"]
    table = table.loc[order, ["precision", "recall", "f1", "support"]]
    return table.astype({"precision": float, "recall": float, "f1": float, "support": int})


def confusion_matrix(
    predictions: Predictions, class_names: Sequence[str], normalize: str | None = None
) -> pd.DataFrame:
    """How many images of each true class were predicted as each class.

    Args:
        predictions: from :func:`predict`.
        class_names: the name of each class, in label order.
        normalize: ``None`` for counts; ``"true"`` divides each row by its class's images
            (the diagonal is then the per-class recall); ``"pred"`` divides each column
            by the images predicted as that class (the diagonal is the precision);
            ``"all"`` divides by all images.

    Returns:
        A ``(K, K)`` DataFrame, rows the true class (index named ``true``) and columns the
        predicted class (named ``predicted``); int counts, or float shares when normalised
        (0 for a row or column without images).

    Raises:
        ValueError: for an unknown ``normalize``, or a label without a name.

    >>> p = Predictions(torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0, 1, 1]),
    ...                 torch.tensor([0, 0, 1]))
    >>> confusion_matrix(p, ["cat", "dog"]).to_numpy().tolist()
    [[1, 1], [0, 1]]
    """
    if normalize not in NORMALIZE_CHOICES:
        raise ValueError(f"Unknown normalize {normalize!r}; choose one of {NORMALIZE_CHOICES}.")
    known = _check_names(predictions, class_names)
    matrix = skm.confusion_matrix(
        predictions.targets.numpy(),
        predictions.predictions.numpy(),
        labels=list(range(known)),
        normalize=normalize,
    )  # (K, K): rows true, columns predicted
    index = pd.Index(list(class_names), name="true")
    columns = pd.Index(list(class_names), name="predicted")
    return pd.DataFrame(matrix, index=index, columns=columns)


# ----------------------------------------------------------------------------------------------
# One-vs-rest curves: ROC and precision-recall
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RocCurves:
    """One-vs-rest ROC curves: class ``c``'s images against all others, ranked by ``p_c``.

    Attributes:
        fpr: per class name, the false-positive rates of the curve's points (empty for a
            class with no images, or only images, in the split).
        tpr: per class name, the true-positive rates, same length as ``fpr``.
        auc: the area under each curve (AUROC), indexed by class name; ``NaN`` where
            undefined. 0.5 is a random ranking, 1.0 a perfect one.
        macro_auc: the mean AUROC over the classes where it is defined.
    """

    fpr: dict[str, np.ndarray]
    tpr: dict[str, np.ndarray]
    auc: pd.Series
    macro_auc: float


@dataclass(frozen=True)
class PrCurves:
    """One-vs-rest precision-recall curves, for each class against all others.

    Attributes:
        precision: per class name, the precision of the curve's points (empty for a class
            without images in the split).
        recall: per class name, the recall of the same points.
        average_precision: each curve's average precision (AP, the area under the step
            curve), indexed by class name; ``NaN`` for a class without images.
        macro_average_precision: the mean AP over classes with images ("mAP").
        prevalence: each class's share of the images: the AP of a random ranking, drawn
            as the baseline.
    """

    precision: dict[str, np.ndarray]
    recall: dict[str, np.ndarray]
    average_precision: pd.Series
    macro_average_precision: float
    prevalence: pd.Series


def _one_vs_rest(
    predictions: Predictions, class_names: Sequence[str]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """For each class: its name, whether each image is of it, and its probability."""
    _check_scored(predictions, class_names)
    targets = predictions.targets.numpy()
    scores = predictions.probabilities.to(torch.float64).numpy()  # (N, K)
    return [(name, targets == c, scores[:, c]) for c, name in enumerate(class_names)]


def _nan_mean(values: pd.Series) -> float:
    """The mean of the defined values; ``NaN`` (without a warning) when none is defined."""
    defined = values.dropna()
    return float(defined.mean()) if len(defined) else float("nan")


def roc_curves(predictions: Predictions, class_names: Sequence[str]) -> RocCurves:
    """One-vs-rest ROC curves and AUROC per class (scikit-learn's ``roc_curve`` and
    ``roc_auc_score``), and their macro average.

    AUROC is the chance that a random image of the class gets a higher ``p_c`` than a
    random image of another class; unlike accuracy it judges the ranking, not a threshold.

    Args:
        predictions: from :func:`predict`.
        class_names: the name of each class, in label order (one per probability column).

    Returns:
        The :class:`RocCurves`.

    Raises:
        ValueError: when the names do not match the classes scored.
    """
    fpr, tpr, auc = {}, {}, {}
    for name, positive, scores in _one_vs_rest(predictions, class_names):
        if positive.all() or not positive.any():  # one class only: no curve
            fpr[name], tpr[name], auc[name] = np.empty(0), np.empty(0), np.nan
            continue
        fpr[name], tpr[name], _ = skm.roc_curve(positive, scores)
        auc[name] = float(skm.roc_auc_score(positive, scores))
    auroc = pd.Series(auc, name="auroc", dtype=float)
    return RocCurves(fpr=fpr, tpr=tpr, auc=auroc, macro_auc=_nan_mean(auroc))


def pr_curves(predictions: Predictions, class_names: Sequence[str]) -> PrCurves:
    """One-vs-rest precision-recall curves and average precision per class
    (scikit-learn's ``precision_recall_curve`` and ``average_precision_score``).

    Where a class is rare, the PR curve shows what the ROC curve hides: how many of the
    images ranked highest for the class really are of it.

    Args:
        predictions: from :func:`predict`.
        class_names: the name of each class, in label order (one per probability column).

    Returns:
        The :class:`PrCurves`.

    Raises:
        ValueError: when the names do not match the classes scored.
    """
    precision, recall, ap, prevalence = {}, {}, {}, {}
    for name, positive, scores in _one_vs_rest(predictions, class_names):
        prevalence[name] = float(positive.mean())
        if not positive.any():  # no image of the class: precision and AP undefined
            precision[name], recall[name], ap[name] = np.empty(0), np.empty(0), np.nan
            continue
        precision[name], recall[name], _ = skm.precision_recall_curve(positive, scores)
        ap[name] = float(skm.average_precision_score(positive, scores))
    average = pd.Series(ap, name="average precision", dtype=float)
    return PrCurves(
        precision=precision,
        recall=recall,
        average_precision=average,
        macro_average_precision=_nan_mean(average),
        prevalence=pd.Series(prevalence, name="prevalence", dtype=float),
    )
