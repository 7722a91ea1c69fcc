"""helpers.evaluate: every metric against a hand computation or scikit-learn; calibration,
cross-validation, error analysis and behavioural checks on small made-up examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers import evaluate
from helpers.config import DataConfig, RunConfig, TrainConfig, data_dir
from helpers.data import make_synthetic_data
from tests.conftest import TORCH_DEVICE


class FirstPixels(nn.Module):
    """Logits are the first three pixel values of the first channel: known by construction."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.9)  # would scramble the logits if left in training mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.drop(images[:, 0, 0, :3])  # (B, 3)


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    rows = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [4.0, 1.0, 0.0]])
    images = torch.zeros(4, 3, 2, 3)
    images[:, 0, 0, :] = rows  # (B, C, H, W) with the logits in row 0 of channel 0
    labels = torch.tensor([0, 2, 2, 1])
    return [(images[:3], labels[:3]), (images[3:], labels[3:])]


def test_predict_keeps_logits_probabilities_classes_and_targets_in_order() -> None:
    model = FirstPixels().to(TORCH_DEVICE)
    predictions = evaluate.predict(model, _batches(), TORCH_DEVICE)
    expected = torch.cat([images[:, 0, 0, :3] for images, _ in _batches()])
    assert not model.training  # evaluation mode: dropout off
    assert len(predictions) == 4 and predictions.logits.device.type == "cpu"
    assert torch.equal(predictions.logits, expected)
    assert torch.allclose(predictions.probabilities, expected.softmax(dim=1))
    assert predictions.predictions.tolist() == [0, 1, 2, 0]
    assert predictions.targets.tolist() == [0, 2, 2, 1]
    assert predictions.targets.dtype == torch.int64


def test_predict_under_bf16_autocast_returns_float32_logits() -> None:
    predictions = evaluate.predict(
        FirstPixels(), _batches(), "cpu", autocast_dtype=torch.bfloat16, channels_last=True
    )
    assert predictions.logits.dtype == torch.float32
    assert predictions.predictions.tolist() == [0, 1, 2, 0]


def test_predict_refuses_an_empty_loader() -> None:
    with pytest.raises(ValueError, match="no batch"):
        evaluate.predict(FirstPixels(), [], "cpu")


def test_per_class_recall_matches_a_hand_count() -> None:
    # class 0: 2 images, 1 right; class 1: 1 image, 0 right; class 2: 3 images, 3 right;
    # class 3: no image at all (recall undefined).
    targets = torch.tensor([0, 0, 1, 2, 2, 2])
    predicted = torch.tensor([0, 2, 0, 2, 2, 2])
    logits = torch.zeros(6, 4)
    predictions = evaluate.Predictions(logits, logits.softmax(1), predicted, targets)
    recall = evaluate.per_class_recall(predictions, ["cat", "dog", "ship", "frog"])
    assert list(recall.index) == ["cat", "dog", "ship", "frog"]
    assert recall.iloc[:3].tolist() == [0.5, 0.0, 1.0] and math.isnan(recall["frog"])
    assert recall.iloc[:3].mean() == pytest.approx((0.5 + 0.0 + 1.0) / 3)  # balanced accuracy


def test_per_class_recall_needs_a_name_for_every_class() -> None:
    predictions = evaluate.Predictions(
        torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 2]), torch.tensor([0, 1])
    )
    with pytest.raises(ValueError, match=r"predictions must lie in \[0, 1\]"):
        evaluate.per_class_recall(predictions, ["cat", "dog"])


def test_predictions_refuse_shapes_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match=r"predictions \(2,\) and targets \(3,\)"):
        evaluate.Predictions(
            torch.zeros(3, 2), torch.zeros(3, 2), torch.tensor([0, 1]), torch.tensor([0, 0, 1])
        )
    with pytest.raises(ValueError, match=r"logits must be \(N, K\)"):
        evaluate.Predictions(torch.zeros(3), torch.zeros(3, 2), torch.zeros(3), torch.zeros(3))


# ----------------------------------------------------------------------------------------------
# Test-time augmentation and top-k accuracy
# ----------------------------------------------------------------------------------------------


def test_predict_with_flip_tta_averages_the_probabilities_of_image_and_mirror() -> None:
    predictions = evaluate.predict(FirstPixels(), _batches(), "cpu", tta_flip=True)
    rows = torch.cat([images[:, 0, 0, :3] for images, _ in _batches()])  # (4, 3)
    # the images are 3 px wide, so the mirror image's logits are the row reversed
    expected = (rows.softmax(dim=1) + rows.flip(-1).softmax(dim=1)) / 2
    assert torch.allclose(predictions.probabilities, expected, atol=1e-6)
    assert torch.allclose(predictions.logits, expected.log(), atol=1e-6)  # log of the average
    assert predictions.predictions[1] == 1  # [0, 3, 1] and [1, 3, 0] agree on class 1


def test_topk_accuracy_matches_a_hand_count() -> None:
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    predictions = _from_logits(logits, torch.tensor([2, 0, 2, 2]))
    # row 0: target ranked 2nd; row 1: 1st; row 2: 1st; row 3: last
    assert evaluate.topk_accuracy(predictions, k=(1, 2, 3)) == {1: 0.5, 2: 0.75, 3: 1.0}
    assert evaluate.topk_accuracy(predictions, k=2) == {2: 0.75}
    with pytest.raises(ValueError, match=r"topk values must lie in \[1, 3\]"):
        evaluate.topk_accuracy(predictions)  # the default k=(1, 5) needs 5 classes


# ----------------------------------------------------------------------------------------------
# Per-class metrics, the report and the confusion matrix
# ----------------------------------------------------------------------------------------------

NAMES = ["cat", "dog", "ship"]


def _from_logits(logits: torch.Tensor, targets: torch.Tensor) -> evaluate.Predictions:
    return evaluate.Predictions(logits, logits.softmax(1), logits.argmax(1), targets)


def _hand_example() -> evaluate.Predictions:
    """6 images: cat 3 (2 right, 1 as dog), dog 2 (1 right, 1 as ship), ship 1 (right)."""
    targets = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.nn.functional.one_hot(predicted, 3).float() * 2  # (6, 3), arg-max = predicted
    return _from_logits(logits, targets)


def _random_example(n: int = 200, k: int = 4, seed: int = 0) -> evaluate.Predictions:
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, k, (n,), generator=generator)
    logits = torch.randn(n, k, generator=generator) + 1.5 * torch.nn.functional.one_hot(targets, k)
    return _from_logits(logits, targets)


def test_classification_report_matches_a_hand_computation() -> None:
    report = evaluate.classification_report(_hand_example(), NAMES)
    assert list(report.index) == [*NAMES, "accuracy", "macro avg", "weighted avg"]
    assert list(report.columns) == ["precision", "recall", "f1", "support"]
    assert report.loc[NAMES, "precision"].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert report.loc[NAMES, "recall"].tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert report.loc[NAMES, "f1"].tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert report["support"].tolist() == [3, 2, 1, 6, 6, 6]
    assert report.loc["accuracy", ["precision", "recall", "f1"]].tolist() == pytest.approx(
        [4 / 6] * 3
    )
    assert report.loc["macro avg", "recall"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert report.loc["weighted avg", "precision"] == pytest.approx((3 * 1 + 2 * 0.5 + 0.5) / 6)


def test_classification_report_matches_scikit_learn() -> None:
    from sklearn.metrics import precision_recall_fscore_support

    predictions = _random_example()
    names = ["a", "b", "c", "d"]
    report = evaluate.classification_report(predictions, names)
    expected = precision_recall_fscore_support(predictions.targets, predictions.predictions)
    for column, values in zip(["precision", "recall", "f1", "support"], expected, strict=True):
        assert report.loc[names, column].tolist() == pytest.approx(values.tolist())
    accuracy = (predictions.predictions == predictions.targets).float().mean().item()
    assert report.loc["accuracy", "f1"] == pytest.approx(accuracy)
    with pytest.raises(ValueError, match="distinct"):
        evaluate.classification_report(predictions, ["a", "b", "c", "a"])


def test_confusion_matrix_counts_and_normalises_by_row() -> None:
    counts = evaluate.confusion_matrix(_hand_example(), NAMES)
    assert counts.to_numpy().tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert counts.index.name == "true" and counts.columns.name == "predicted"
    assert list(counts.index) == NAMES and list(counts.columns) == NAMES
    shares = evaluate.confusion_matrix(_hand_example(), NAMES, normalize="true")
    assert shares.loc["cat"].tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert shares.sum(axis=1).tolist() == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="Unknown normalize 'rows'"):
        evaluate.confusion_matrix(_hand_example(), NAMES, normalize="rows")


def test_per_class_accuracy_is_the_diagonal_over_the_row_sums() -> None:
    predictions = _hand_example()
    accuracy = evaluate.per_class_accuracy(predictions, [*NAMES, "frog"])
    assert accuracy.iloc[:3].tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert math.isnan(accuracy["frog"])  # no frog image
    recall = evaluate.per_class_recall(predictions, [*NAMES, "frog"])
    assert accuracy.iloc[:3].tolist() == pytest.approx(recall.iloc[:3].tolist())


# ----------------------------------------------------------------------------------------------
# ROC and precision-recall curves
# ----------------------------------------------------------------------------------------------


def _two_class_example() -> evaluate.Predictions:
    dog = torch.tensor([0.1, 0.4, 0.35, 0.8])  # p(dog) of 2 cats, then 2 dogs
    probabilities = torch.stack([1 - dog, dog], dim=1)  # (4, 2)
    return evaluate.Predictions(
        probabilities.log(), probabilities, probabilities.argmax(1), torch.tensor([0, 0, 1, 1])
    )


def test_roc_curves_match_a_hand_computation() -> None:
    roc = evaluate.roc_curves(_two_class_example(), ["cat", "dog"])
    # dogs score 0.35 and 0.8, cats 0.1 and 0.4: 3 of the 4 (dog, cat) pairs are ordered right
    assert roc.auc.tolist() == pytest.approx([0.75, 0.75]) and roc.macro_auc == pytest.approx(0.75)
    assert roc.fpr["dog"][-1] == 1.0 and roc.tpr["dog"][-1] == 1.0
    assert len(roc.fpr["dog"]) == len(roc.tpr["dog"])


def test_roc_macro_auc_matches_scikit_learn_and_skips_absent_classes() -> None:
    from sklearn.metrics import roc_auc_score

    predictions = _random_example()
    roc = evaluate.roc_curves(predictions, ["a", "b", "c", "d"])
    expected = roc_auc_score(predictions.targets, predictions.probabilities, multi_class="ovr")
    assert roc.macro_auc == pytest.approx(expected)
    only_cats = evaluate.Predictions(
        torch.zeros(2, 2), torch.full((2, 2), 0.5), torch.tensor([0, 0]), torch.tensor([0, 0])
    )
    roc = evaluate.roc_curves(only_cats, ["cat", "dog"])
    assert roc.auc.isna().all() and len(roc.fpr["cat"]) == 0 and math.isnan(roc.macro_auc)
    with pytest.raises(ValueError, match="score 2 classes but 3"):
        evaluate.roc_curves(_two_class_example(), ["cat", "dog", "ship"])


def test_pr_curves_match_a_hand_computation() -> None:
    pr = evaluate.pr_curves(_two_class_example(), ["cat", "dog"])
    # ranked by p(dog): dog, cat, dog, cat; AP = 0.5 * 1 + 0.5 * 2/3
    assert pr.average_precision["dog"] == pytest.approx(0.5 + 1 / 3)
    assert pr.prevalence.tolist() == [0.5, 0.5]
    assert pr.macro_average_precision == pytest.approx(pr.average_precision.mean())
    assert len(pr.precision["dog"]) == len(pr.recall["dog"])


# ----------------------------------------------------------------------------------------------
# Calibration
# ----------------------------------------------------------------------------------------------


def test_ece_and_reliability_bins_match_a_hand_computation() -> None:
    probabilities = torch.tensor([[0.9, 0.1], [0.15, 0.85], [0.3, 0.7], [0.55, 0.45]])
    targets = torch.tensor([0, 0, 1, 1])  # right, wrong, right, wrong
    bins = evaluate.reliability_bins(probabilities, targets, n_bins=5)
    assert bins["count"].tolist() == [0, 0, 1, 1, 2]
    assert bins["upper"].tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert bins["accuracy"].iloc[2:].tolist() == [0.0, 1.0, 0.5]
    assert bins["confidence"].iloc[2:].tolist() == pytest.approx([0.55, 0.7, 0.875])
    assert bins["accuracy"].iloc[:2].isna().all()  # empty bins
    # ECE = (1 * 0.55 + 1 * 0.3 + 2 * 0.375) / 4
    ece = evaluate.expected_calibration_error(probabilities, targets, n_bins=5)
    assert ece == pytest.approx(0.4)


def test_calibration_refuses_bad_input() -> None:
    probabilities = torch.full((3, 2), 0.5)
    with pytest.raises(ValueError, match=r"probabilities must be \(N, K\)"):
        evaluate.expected_calibration_error(probabilities, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        evaluate.reliability_bins(probabilities, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="softmax outputs, not logits"):
        evaluate.reliability_bins(probabilities * 4, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        evaluate.reliability_bins(probabilities, torch.tensor([0, 1, 1]), n_bins=0)


def test_negative_log_likelihood_matches_a_hand_computation() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p(true) = 1/2 and 3/4
    nll = evaluate.negative_log_likelihood(logits, torch.tensor([1, 0]))
    assert nll == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)


def _overconfident(scale: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Calibrated logits (targets drawn from their own softmax), multiplied by ``scale``."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 10, generator=generator) * 2  # (N, K)
    targets = torch.multinomial(logits.softmax(dim=1), 1, generator=generator).flatten()
    return logits * scale, targets


def test_temperature_scaling_recovers_the_temperature_and_improves_nll() -> None:
    logits, targets = _overconfident(5.0)
    temperature = evaluate.fit_temperature(logits, targets)
    assert temperature == pytest.approx(5.0, rel=0.1)
    before = _from_logits(logits, targets)
    after = evaluate.apply_temperature(before, temperature)
    assert torch.equal(after.predictions, before.predictions)  # the ranking is unchanged
    nll_before = evaluate.negative_log_likelihood(before.logits, targets)
    nll_after = evaluate.negative_log_likelihood(after.logits, targets)
    assert nll_after < 0.8 * nll_before
    ece_before = evaluate.expected_calibration_error(before.probabilities, targets)
    assert evaluate.expected_calibration_error(after.probabilities, targets) < ece_before / 2


def test_fit_temperature_works_on_inference_mode_predictions() -> None:
    logits, targets = _overconfident(0.5)  # underconfident: T below 1
    with torch.inference_mode():
        logits = logits.clone()  # an inference tensor, as predict makes them
    assert evaluate.fit_temperature(logits, targets) == pytest.approx(0.5, rel=0.1)


def test_apply_temperature_refuses_a_bad_temperature() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive and finite"):
            evaluate.apply_temperature(_hand_example(), bad)


# ----------------------------------------------------------------------------------------------
# Error analysis
# ----------------------------------------------------------------------------------------------


def test_most_confident_errors_are_sorted_by_confidence() -> None:
    probabilities = torch.tensor([[0.6, 0.4], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.9, 0.1]])
    targets = torch.tensor([1, 1, 1, 0, 0])  # wrong: 0 (0.6), 2 (0.8), 3 (0.7)
    predictions = evaluate.Predictions(
        probabilities.log(), probabilities, probabilities.argmax(1), targets
    )
    errors = evaluate.most_confident_errors(predictions, k=2)
    assert errors["index"].tolist() == [2, 3]
    assert errors["true"].tolist() == [1, 0] and errors["predicted"].tolist() == [0, 1]
    assert errors["confidence"].tolist() == pytest.approx([0.8, 0.7])
    assert len(evaluate.most_confident_errors(predictions, k=10)) == 3  # only 3 errors
    with pytest.raises(ValueError, match="k must be a positive integer"):
        evaluate.most_confident_errors(predictions, k=0)


def test_most_confused_pairs_are_the_largest_off_diagonal_cells() -> None:
    pairs = evaluate.most_confused_pairs(_hand_example(), NAMES, k=5)
    assert pairs.to_dict("records") == [
        {"true": "dog", "predicted": "ship", "count": 1, "share": 0.5},
        {"true": "cat", "predicted": "dog", "count": 1, "share": pytest.approx(1 / 3)},
    ]
    assert len(evaluate.most_confused_pairs(_hand_example(), NAMES, k=1)) == 1
    with pytest.raises(ValueError, match="k must be a positive integer"):
        evaluate.most_confused_pairs(_hand_example(), NAMES, k=0)


# ----------------------------------------------------------------------------------------------
# Behavioural checks
# ----------------------------------------------------------------------------------------------


class MeanColour(nn.Module):
    """Classifies by the mean colour: blind to where things are, so invariant to a flip."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images.mean(dim=(2, 3)))  # (B, 4)


class LeftOrRight(nn.Module):
    """Class 0 when the left half is brighter, class 1 otherwise: a flip swaps them."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        half = images.shape[-1] // 2
        left, right = images[..., :half].mean(dim=(1, 2, 3)), images[..., half:].mean(dim=(1, 2, 3))
        return torch.stack([left, right], dim=1)  # (B, 2)


def _normalised_images(n: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_invariance_of_a_flip_invariant_model_is_one() -> None:
    torch.manual_seed(0)
    report = evaluate.invariance_report(
        MeanColour(), _normalised_images(), "cpu", mean=(0.5,) * 3, std=(0.25,) * 3
    )
    assert list(report.index) == [
        "horizontal flip",
        "shift right 2 px",
        "shift left 2 px",
        "shift down 2 px",
        "shift up 2 px",
        "brightness +0.1",
        "brightness -0.1",
    ]
    assert report.loc["horizontal flip", "agreement"] == 1.0
    assert report.loc["horizontal flip", "changed"] == 0
    assert (report["images"] == 32).all() and report["agreement"].between(0, 1).all()
    evaluate.check_invariance(report.loc[["horizontal flip"]], min_agreement=1.0)


def test_invariance_report_runs_the_model_as_it_was_trained() -> None:
    seen = []

    class Recording(MeanColour):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            logits = super().forward(images)
            seen.append((logits.dtype, images.is_contiguous(memory_format=torch.channels_last)))
            return logits

    torch.manual_seed(0)
    report = evaluate.invariance_report(
        Recording(), _normalised_images(), "cpu", autocast_dtype=torch.bfloat16, channels_last=True
    )
    assert len(report) == 7 and report["agreement"].between(0, 1).all()
    assert len(seen) == 8  # the original images, then each of the 7 changes: one batch each
    assert set(seen) == {(torch.bfloat16, True)}


def test_check_invariance_fails_a_model_that_reads_left_from_right() -> None:
    report = evaluate.invariance_report(LeftOrRight(), _normalised_images(), "cpu", shift=0)
    assert list(report.index) == ["horizontal flip", "brightness +0.1", "brightness -0.1"]
    assert report.loc["horizontal flip", "agreement"] == 0.0  # every prediction swaps
    with pytest.raises(evaluate.InvarianceError, match=r"horizontal flip 0\.0%"):
        evaluate.check_invariance(report, min_agreement=0.9)
    with pytest.raises(ValueError, match=r"min_agreement must lie in \[0, 1\]"):
        evaluate.check_invariance(report, min_agreement=1.5)


def test_shift_and_brightness_changes_match_hand_values() -> None:
    from helpers.evaluate._behaviour import _brighten, _shift

    row = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    assert _shift(row, 2, 0).flatten().tolist() == [1.0, 1.0, 1.0, 2.0]  # edge repeated
    assert _shift(row, -1, 0).flatten().tolist() == [2.0, 3.0, 4.0, 4.0]
    column = row.view(1, 1, 4, 1)
    assert _shift(column, 0, 1).flatten().tolist() == [1.0, 1.0, 2.0, 3.0]
    pixels = torch.tensor([0.2, 0.95]).view(1, 1, 1, 2)
    normalised = (pixels - 0.5) / 0.25
    brighter = _brighten(normalised, 0.1, mean=(0.5,), std=(0.25,))
    assert (brighter * 0.25 + 0.5).flatten().tolist() == pytest.approx([0.3, 1.0])  # clamped


def test_invariance_report_refuses_bad_input() -> None:
    uint8 = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="float"):
        evaluate.invariance_report(MeanColour(), uint8, "cpu")
    with pytest.raises(ValueError, match="shift 8 px must be smaller"):
        evaluate.invariance_report(MeanColour(), _normalised_images(2), "cpu", shift=8)
    with pytest.raises(ValueError, match="both mean and std"):
        evaluate.invariance_report(MeanColour(), _normalised_images(2), "cpu", mean=(0.5,) * 3)


# ----------------------------------------------------------------------------------------------
# Cross-validation
# ----------------------------------------------------------------------------------------------


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(images)).mean(dim=(2, 3)))  # (B, 10)


def _cv_config(**train: object) -> RunConfig:
    options = {"epochs": 1, "precision": "fp32", "progress": False, "run_name": "cv", **train}
    data = DataConfig(image_size=8, batch_size=8, augment="none")
    return RunConfig(profile="smoke", data=data, train=TrainConfig(**options))


def test_cross_validate_trains_one_model_per_fold_on_a_partition(capsys) -> None:
    data = make_synthetic_data(3, 1, image_size=8)  # 30 training images, 3 per class
    cfg = _cv_config()
    table = evaluate.cross_validate(
        cfg, data, folds=3, device="cpu", build_model=lambda _: TinyNet(), verbose=False
    )
    assert list(table.index) == [0, 1, 2]
    assert table["val_images"].tolist() == [10, 10, 10]
    assert (table["train_images"] + table["val_images"] == 30).all()
    held_out = np.concatenate(list(table.attrs["val_index"].values()))
    assert sorted(held_out.tolist()) == list(range(30))  # every image held out exactly once
    assert set(evaluate.FOLD_METRICS) <= set(table.columns)
    assert table["accuracy"].between(0, 1).all() and (table["epochs"] == 1).all()
    for fold in range(3):  # each fold's checkpoints under its own run name
        assert (data_dir() / "checkpoints" / f"cv_fold{fold}" / "last.pt").is_file()
    again = evaluate.cross_validate(
        cfg, data, folds=3, device="cpu", build_model=lambda _: TinyNet(), verbose=False
    )
    pd.testing.assert_frame_equal(again, table)  # finished folds resume, not retrain
    summary = evaluate.summarise_folds(table)
    assert list(summary.index) == list(evaluate.FOLD_METRICS)
    assert summary.loc["accuracy", "mean"] == pytest.approx(table["accuracy"].mean())
    assert summary.loc["accuracy", "std"] == pytest.approx(table["accuracy"].std())


def test_cross_validate_with_custom_metrics_and_a_checkpoint_dir(tmp_path) -> None:
    data = make_synthetic_data(2, 1, image_size=8)  # 20 images, 2 per class
    cfg = _cv_config(checkpoint_dir=str(tmp_path / "cv"))
    table = evaluate.cross_validate(
        cfg,
        data,
        folds=2,
        device="cpu",
        build_model=lambda _: TinyNet(),
        metrics={"images": lambda p: float(len(p))},
        verbose=False,
    )
    assert table["images"].tolist() == [10.0, 10.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv_fold0", "cv_fold1"]


def test_cross_validate_refuses_bad_settings() -> None:
    data = make_synthetic_data(2, 1, image_size=8)
    with pytest.raises(ValueError, match="early stopping"):
        evaluate.cross_validate(_cv_config(early_stopping_patience=2), data, folds=2)
    with pytest.raises(ValueError, match="k must be an integer of at least 2"):
        evaluate.cross_validate(_cv_config(), data, folds=1, build_model=lambda _: TinyNet())
    with pytest.raises(ValueError, match="k=3 folds need 3 images per class"):
        evaluate.cross_validate(_cv_config(), data, folds=3, build_model=lambda _: TinyNet())
    with pytest.raises(ValueError, match="needs a table"):
        evaluate.summarise_folds(pd.DataFrame({"train_images": [1, 2]}))
