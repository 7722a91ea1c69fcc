"""Monitoring (helpers.monitor): PSI against hand-computed values, image features of known
images, and a drift report that flags darkened and noisy images but not a fresh sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import helpers as hp
from helpers import monitor


def test_psi_matches_the_formula_on_known_bins() -> None:
    # Reference: 4 equally full quartile bins; actual: shares 0.1, 0.2, 0.3, 0.4 of them.
    expected = np.repeat([0.5, 1.5, 2.5, 3.5], 100)
    actual = np.repeat([0.5, 1.5, 2.5, 3.5], [10, 20, 30, 40])
    by_hand = sum((a - 0.25) * math.log(a / 0.25) for a in (0.1, 0.2, 0.3, 0.4))
    assert monitor.psi(expected, actual, bins=4) == pytest.approx(by_hand)
    assert monitor.psi(expected, expected, bins=4) == 0.0


def test_psi_is_near_zero_for_two_samples_of_one_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 20_000)
    assert monitor.psi(reference, rng.normal(0, 1, 20_000)) < 0.01
    small = monitor.psi(reference, rng.normal(0.3, 1, 20_000))
    large = monitor.psi(reference, rng.normal(1.0, 1, 20_000))
    assert 0.05 < small < large and large > 0.25
    outside = monitor.psi(reference, np.full(100, 50.0))  # beyond the reference's range
    assert outside > 5


def test_label_psi_and_bad_input() -> None:
    by_hand = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert monitor.label_psi([0, 1] * 50, [0, 0, 0, 1] * 25, 2) == pytest.approx(by_hand)
    assert monitor.label_psi(torch.tensor([0, 1, 2]), torch.tensor([2, 1, 0]), 3) == 0.0
    with pytest.raises(ValueError, match="empty"):
        monitor.psi([], [1.0])
    with pytest.raises(ValueError, match="bins"):
        monitor.psi([1.0], [1.0], bins=1)


def test_image_features_of_known_images() -> None:
    black = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    white = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    stripes = torch.zeros(1, 3, 4, 4)
    stripes[..., ::2] = 1.0  # vertical stripes, float in [0, 1]: columns alternate 1, 0
    features = monitor.image_features(torch.cat([black, white.float() / 255, stripes]))
    assert features["brightness"].tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert features["contrast"][:2].tolist() == [0.0, 0.0] and features["contrast"][2] > 0.4
    # horizontal neighbours always differ by 1, vertical ones never: the mean is 0.5
    assert features["edges"].tolist() == pytest.approx([0.0, 0.0, 0.5])
    assert monitor.image_features(white)["brightness"].tolist() == [1.0]
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        monitor.image_features(torch.zeros(3, 4, 4))


def test_prediction_features() -> None:
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    features = monitor.prediction_features(probs)
    assert features["predicted class"].tolist() == [1, 0]
    assert features["confidence"].tolist() == pytest.approx([0.7, 0.5])
    assert np.issubdtype(features["predicted class"].dtype, np.integer)


def test_drift_report_flags_darkened_and_noisy_images_but_not_a_fresh_sample() -> None:
    data = hp.data.make_synthetic_data(30, 30, image_size=16, seed=0)
    reference = monitor.image_features(data.train_images)  # (300, 3, 16, 16) uint8
    fresh = monitor.image_features(data.test_images)
    darker = monitor.image_features((data.test_images.float() * 0.5).to(torch.uint8))
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(data.test_images.shape, generator=generator) * 40
    noisy = monitor.image_features((data.test_images.float() + noise).clamp(0, 255))

    same = monitor.drift_report(reference, fresh)
    assert set(same.index) == {"brightness", "contrast", "edges"}
    assert (same["shift"] == "stable").all() and (same["p value"] > 0.001).all()
    dark = monitor.drift_report(reference, darker)
    assert dark.loc["brightness", "shift"] == "major" and dark.loc["brightness", "p value"] < 1e-6
    assert dark.loc["brightness", "current mean"] < dark.loc["brightness", "reference mean"]
    assert monitor.drift_report(reference, noisy).loc["edges", "shift"] == "major"


def test_drift_report_on_labels_uses_a_chi_squared_test() -> None:
    rng = np.random.default_rng(0)
    reference = {"predicted class": rng.integers(0, 10, 2000)}
    balanced = {"predicted class": rng.integers(0, 10, 2000)}
    skewed = {"predicted class": np.where(rng.random(2000) < 0.5, 3, rng.integers(0, 10, 2000))}
    same = monitor.drift_report(reference, balanced, num_classes=10)
    assert same.loc["predicted class", "test"] == "chi2"
    assert same.loc["predicted class", "shift"] == "stable"
    shifted = monitor.drift_report(reference, skewed, num_classes=10)
    assert shifted.loc["predicted class", "shift"] == "major"
    assert shifted.loc["predicted class", "p value"] < 1e-6
    with pytest.raises(ValueError, match="lacks"):
        monitor.drift_report(reference, {"confidence": np.ones(3)})
