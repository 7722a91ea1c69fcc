"""Evaluation: a trained model's predictions on a split, and what can be learned from them.

Training reports one number per epoch (loss and accuracy). Judging a model needs more. The
stage the evaluation chapter teaches, in the order a reader uses it:

1. **Predictions.** :func:`predict` runs a model over a loader once (optionally with
   horizontal-flip test-time augmentation) and keeps logits, probabilities, predicted
   classes and true labels as :class:`Predictions`; every metric below is computed from
   them without running the model again. :func:`topk_accuracy` is the first of them.
2. **Per-class metrics.** :func:`classification_report` (precision, recall, F1, support,
   from scikit-learn), :func:`confusion_matrix`, :func:`per_class_recall` and
   :func:`per_class_accuracy`: they expose a model that ignores rare classes while its
   overall accuracy looks fine.
3. **Rankings.** :func:`roc_curves` and :func:`pr_curves`: one-vs-rest ROC (AUROC) and
   precision-recall (average precision) curves per class.
4. **Calibration.** :func:`reliability_bins`, :func:`expected_calibration_error` and
   :func:`negative_log_likelihood` say whether a 90% confidence means 90% right;
   :func:`fit_temperature` and :func:`apply_temperature` fix an overconfident model with
   one number fitted on the validation split.
5. **Cross-validation.** :func:`cross_validate` trains one model per stratified fold and
   scores each on its held-out fold; :func:`summarise_folds` gives mean and spread.
6. **Error analysis.** :func:`most_confident_errors` and :func:`most_confused_pairs`.
7. **Behavioural checks.** :func:`invariance_report` measures whether predictions survive
   a flip, a small shift or a brightness change; :func:`check_invariance` is the gate.

Example:
    >>> predictions = predict(model, loaders.test, device)  # doctest: +SKIP
    >>> classification_report(predictions, data.class_names)  # doctest: +SKIP
"""

from ._behaviour import InvarianceError, check_invariance, invariance_report
from ._calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)
from ._crossval import FOLD_METRICS, cross_validate, summarise_folds
from ._errors import most_confident_errors, most_confused_pairs
from ._metrics import (
    NORMALIZE_CHOICES,
    PrCurves,
    RocCurves,
    classification_report,
    confusion_matrix,
    per_class_accuracy,
    per_class_recall,
    pr_curves,
    roc_curves,
)
from ._predict import Predictions, predict, topk_accuracy

__all__ = [
    "FOLD_METRICS",
    "NORMALIZE_CHOICES",
    "InvarianceError",
    "PrCurves",
    "Predictions",
    "RocCurves",
    "apply_temperature",
    "check_invariance",
    "classification_report",
    "confusion_matrix",
    "cross_validate",
    "expected_calibration_error",
    "fit_temperature",
    "invariance_report",
    "most_confident_errors",
    "most_confused_pairs",
    "negative_log_likelihood",
    "per_class_accuracy",
    "per_class_recall",
    "pr_curves",
    "predict",
    "reliability_bins",
    "roc_curves",
    "summarise_folds",
    "topk_accuracy",
]
