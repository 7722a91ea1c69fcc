"""helpers.evaluate: predictions match a hand computation; per-class recall matches a count."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import evaluate
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
