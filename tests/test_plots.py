"""Tests for helpers.plots: each figure has the expected axes, titles, bars and pixels."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torchvision.transforms import v2

from helpers import plots
from helpers.transforms import build_transforms

MEAN = (0.49, 0.48, 0.45)
STD = (0.25, 0.24, 0.26)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)


def _shown(ax) -> np.ndarray:
    """The pixels an axis displays."""
    return np.asarray(ax.images[0].get_array())


def _bars(fig: Figure) -> list:
    return [bar for container in fig.axes[0].containers for bar in container]


# --- show_images -----------------------------------------------------------------------------


def test_show_images_grid_layout_and_titles():
    images = _images(10)
    fig = plots.show_images(images, titles=[f"t{i}" for i in range(10)], ncols=4)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 12  # 3 rows of 4; the last two cells are blank
    assert sum(len(ax.images) for ax in fig.axes) == 10
    assert [ax.get_title() for ax in fig.axes[:10]] == [f"t{i}" for i in range(10)]
    np.testing.assert_allclose(_shown(fig.axes[5]), images[5].permute(1, 2, 0).numpy() / 255)
    assert plt.get_fignums() == []  # returned, not left open in pyplot


def test_show_images_accepts_float_normalised_and_grey_images():
    images = _images(3)
    unit = images.float() / 255
    normalised = (unit - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    expected = unit[1].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(_shown(plots.show_images(unit).axes[1]), expected, atol=1e-6)
    fig = plots.show_images(normalised, mean=MEAN, std=STD)
    np.testing.assert_allclose(_shown(fig.axes[1]), expected, atol=1e-6)
    grey = plots.show_images(images[:, :1], ncols=2)
    assert _shown(grey.axes[0]).shape == (8, 8) and len(grey.axes) == 4
    sizes = plots.show_images([images[0], torch.zeros(3, 16, 16, dtype=torch.uint8)])
    assert _shown(sizes.axes[1]).shape == (16, 16, 3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: plots.show_images(torch.zeros(8, 8)), r"\(N, C, H, W\)"),
        (lambda: plots.show_images(torch.zeros(2, 4, 8, 8)), "1 or 3 channels"),
        (lambda: plots.show_images(_images(3), titles=["a", "b"]), "2 titles for 3 images"),
        (lambda: plots.show_images(_images(3), ncols=0), "ncols"),
        (lambda: plots.show_images([]), "at least one"),
        (lambda: plots.show_images(_images(2).float(), mean=MEAN), "both mean and std"),
        (lambda: plots.show_images(torch.zeros(1, 3, 4, 4, dtype=torch.int64)), "uint8"),
    ],
)
def test_show_images_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- show_image_grid -------------------------------------------------------------------------


def _labelled(counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixel value is 40 * label, shuffled together with their labels."""
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    images = (labels * 40).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    return images[order], labels[order]


def test_show_image_grid_one_row_per_class():
    images, labels = _labelled([6, 5, 2])
    fig = plots.show_image_grid(images, labels, ["cat", "dog", "frog"], per_class=4)
    axes = np.array(fig.axes).reshape(3, 4)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["cat", "dog", "frog"]
    assert [sum(len(ax.images) for ax in row) for row in axes] == [4, 4, 2]
    for label, row in enumerate(axes):
        for ax in row:
            if ax.images:  # every image shown in a row belongs to that row's class
                np.testing.assert_allclose(_shown(ax), label * 40 / 255)


def test_show_image_grid_seed_picks_the_images():
    images = _images(40)
    labels = torch.arange(40) % 2

    def shown(seed: int) -> list[np.ndarray]:
        fig = plots.show_image_grid(images, labels.tolist(), ["a", "b"], per_class=3, seed=seed)
        return [_shown(ax) for ax in fig.axes]

    assert all(np.array_equal(a, b) for a, b in zip(shown(0), shown(0), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(shown(0), shown(1), strict=True))


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (_images(4), torch.tensor([0, 1, 0]), "one label per image"),
        (_images(3), torch.tensor([0, 1, 2]), r"\[0, 1\]"),
        (_images(3)[0], torch.tensor([0, 1, 0]), r"\(N, C, H, W\)"),
        (_images(3), torch.tensor([[0, 1, 0]]), "1-D"),
    ],
)
def test_show_image_grid_rejects_bad_input(images, labels, message):
    with pytest.raises(ValueError, match=message):
        plots.show_image_grid(images, labels, ["a", "b"])


# --- plot_class_balance ----------------------------------------------------------------------


def test_plot_class_balance_from_a_sequence():
    fig = plots.plot_class_balance([50, 30, 8], ["cat", "dog", "frog"], title="Train split")
    ax = fig.axes[0]
    assert [bar.get_width() for bar in _bars(fig)] == [50, 30, 8]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "frog"]
    assert [t.get_text() for t in ax.texts] == ["50", "30", "8"]
    assert ax.get_title() == "Train split"


def test_plot_class_balance_from_the_data_table():
    table = pd.DataFrame({"class": ["a", "b"], "count": [7, 3], "share": [0.7, 0.3]})
    fig = plots.plot_class_balance(table)
    assert [bar.get_width() for bar in _bars(fig)] == [7, 3]
    numbers = plots.plot_class_balance(torch.tensor([4, 6]))
    assert [t.get_text() for t in numbers.axes[0].get_yticklabels()] == ["0", "1"]


def test_plot_class_balance_one_bar_per_split():
    table = pd.DataFrame(
        {"class": [0, 1, 0, 1], "count": [9, 8, 2, 1], "split": ["train"] * 2 + ["val"] * 2}
    )
    fig = plots.plot_class_balance(table, ["cat", "dog"])
    assert sorted(bar.get_width() for bar in _bars(fig)) == [1, 2, 8, 9]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train", "val"]


@pytest.mark.parametrize(
    ("counts", "names", "message"),
    [
        ([1, 2, 3], ["a", "b"], "3 counts for 2 class_names"),
        (pd.DataFrame({"class": ["a"], "n": [1]}), None, "lacks \\['count'\\]"),
        ([3, -1], None, "negative"),
        ([[1, 2]], None, "1-D"),
        ([], None, "at least one"),
        (pd.DataFrame({"class": [0, 5], "count": [1, 2]}), ["a", "b"], "do not fit"),
    ],
)
def test_plot_class_balance_rejects_bad_input(counts, names, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_class_balance(counts, names)


# --- augmentation previews -------------------------------------------------------------------


def test_preview_augmentations_unnormalises_the_draws():
    image = _images(1, size=16)[0]
    eval_tf = build_transforms(False, image_size=16, mean=MEAN, std=STD)  # deterministic
    fig = plots.preview_augmentations(image, eval_tf, n=3, mean=MEAN, std=STD)
    assert [ax.get_title() for ax in fig.axes] == ["original", "draw 1", "draw 2", "draw 3"]
    expected = image.permute(1, 2, 0).numpy() / 255
    for ax in fig.axes:
        np.testing.assert_allclose(_shown(ax), expected, atol=1e-5)


def test_preview_augmentations_accepts_uint8_outputs_and_is_seeded():
    image = _images(1, size=16)[0]
    flip = v2.RandomHorizontalFlip()
    state = torch.get_rng_state()
    fig = plots.preview_augmentations(image, flip, n=12, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is untouched
    original = image.permute(1, 2, 0).numpy() / 255
    flipped = [np.allclose(_shown(ax), original[:, ::-1]) for ax in fig.axes[1:]]
    for is_flipped, ax in zip(flipped, fig.axes[1:], strict=True):
        assert is_flipped or np.allclose(_shown(ax), original)
    assert 0 < sum(flipped) < 12
    again = plots.preview_augmentations(image, flip, n=12, seed=3)
    assert all(
        np.array_equal(_shown(a), _shown(b)) for a, b in zip(fig.axes, again.axes, strict=True)
    )


def test_compare_augmentations_one_row_per_transform():
    image = _images(1, size=32)[0]
    names = ("none", "standard", "strong")
    tfs = {p: build_transforms(True, preset=p, mean=MEAN, std=STD) for p in names}
    fig = plots.compare_augmentations(image, tfs, n=4, mean=MEAN, std=STD)
    axes = np.array(fig.axes).reshape(3, 5)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == list(names)
    assert axes[0, 0].get_title() == "original" and axes[1, 0].get_title() == ""
    for ax in axes[0]:  # the "none" preset shows the original every time
        np.testing.assert_allclose(_shown(ax), _shown(axes[0, 0]), atol=1e-5)
    assert all(_shown(ax).min() >= 0 and _shown(ax).max() <= 1 for ax in fig.axes)


def test_previews_reject_bad_input():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        plots.preview_augmentations(_images(2), v2.RandomHorizontalFlip())
    with pytest.raises(ValueError, match="n must be a positive integer"):
        plots.preview_augmentations(_images(1)[0], v2.RandomHorizontalFlip(), n=0)
    with pytest.raises(ValueError, match="at least one transform"):
        plots.compare_augmentations(_images(1)[0], {})
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):  # a transform returning a batch
        plots.preview_augmentations(_images(1)[0], lambda x: x[None])


# ---------------------------------------------------------------------------------------------
# Training and comparisons
# ---------------------------------------------------------------------------------------------


def test_plot_history_draws_one_panel_per_quantity() -> None:
    history = [
        {"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "train_acc": 0.1 * e,
         "val_acc": 0.09 * e, "lr": 0.1 / e}
        for e in range(1, 5)
    ]  # fmt: skip
    fig = plots.plot_history(history, title="run")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    loss_lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in loss_lines] == ["train", "val"]
    assert list(loss_lines[1].get_ydata()) == [h["val_loss"] for h in history]
    assert list(loss_lines[0].get_xdata()) == [1, 2, 3, 4]


def test_plot_history_skips_missing_quantities_and_rejects_empty() -> None:
    fig = plots.plot_history([{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}])
    assert [ax.get_title() for ax in fig.axes] == ["loss"]
    with pytest.raises(ValueError, match="empty"):
        plots.plot_history([])
    with pytest.raises(ValueError, match="none of the keys"):
        plots.plot_history([{"epoch": 1, "speed": 3.0}])


def test_plot_bars_labels_each_bar() -> None:
    fig = plots.plot_bars({"fp32": 1000.0, "bf16": 2500.0}, xlabel="images/s", title="speed")
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == [1000.0, 2500.0]
    assert [t.get_text() for t in ax.texts] == ["1,000", "2,500"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fp32", "bf16"]
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_bars({}, xlabel="x")


def test_show_feature_maps_one_axis_per_map() -> None:
    maps = torch.randn(1, 5, 6, 6)
    fig = plots.show_feature_maps(maps, titles=list("abcde"), ncols=3)
    assert len(fig.axes) == 6  # 2 rows of 3; the last one is left empty
    assert [ax.get_title() for ax in fig.axes[:5]] == list("abcde")
    assert len(fig.axes[5].images) == 0
    shown = fig.axes[1].images[0].get_array()
    assert np.allclose(shown, maps[0, 1].numpy())
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        plots.show_feature_maps(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="titles"):
        plots.show_feature_maps(torch.zeros(2, 4, 4), titles=["x"])


# --- plot_search and plot_grouped_bars ---------------------------------------------------------


def _search_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "train.lr": [0.1, 0.01, 0.1, 0.05],
            "data.augment": ["strong", "none", "none", "strong"],
            "best val_acc": [0.6, 0.4, 0.7, 0.5],
        },
        index=["a", "b", "c", "d"],
    )


def test_plot_search_draws_one_panel_per_key_with_every_trial_and_the_best_starred() -> None:
    fig = plots.plot_search(_search_table(), ["train.lr", "data.augment"], title="search")
    lr_ax, augment_ax = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["lr", "augment"]
    assert [t.get_text() for t in lr_ax.get_xticklabels()] == ["0.01", "0.05", "0.1"]
    assert [t.get_text() for t in augment_ax.get_xticklabels()] == ["none", "strong"]
    points, star = lr_ax.collections
    assert points.get_offsets().tolist() == [[2, 0.6], [0, 0.4], [2, 0.7], [1, 0.5]]
    assert star.get_offsets().tolist() == [[2, 0.7]]  # trial "c": lr 0.1, augment none
    assert augment_ax.collections[1].get_offsets().tolist() == [[0, 0.7]]
    assert fig._suptitle.get_text() == "search"


def test_plot_search_names_missing_columns() -> None:
    with pytest.raises(ValueError, match=r"columns \['train.wd'\]"):
        plots.plot_search(_search_table(), ["train.wd"])
    with pytest.raises(ValueError, match="at least one key"):
        plots.plot_search(_search_table(), [])
    with pytest.raises(ValueError, match="needs trials"):
        plots.plot_search(_search_table().iloc[:0], ["train.lr"])


def test_plot_grouped_bars_one_colour_per_column_one_group_per_row() -> None:
    table = pd.DataFrame(
        {"plain": [0.9, 0.1], "weighted": [0.8, 0.4], "sampler": [0.7, 0.5]},
        index=["airplane", "truck"],
    )
    fig = plots.plot_grouped_bars(table, ylabel="recall", title="recall", percent=True)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [0.9, 0.1, 0.8, 0.4, 0.7, 0.5]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain", "weighted", "sampler"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["airplane", "truck"]
    centres = [p.get_x() + p.get_width() / 2 for p in ax.patches[::2]]  # the airplane bars
    assert centres == pytest.approx([-0.8 / 3, 0.0, 0.8 / 3])
    assert ax.get_title() == "recall" and ax.get_ylabel() == "recall"
    with pytest.raises(ValueError, match="non-empty table of numbers"):
        plots.plot_grouped_bars(pd.DataFrame(), ylabel="x")
    with pytest.raises(ValueError, match="non-empty table of numbers"):
        plots.plot_grouped_bars(pd.DataFrame({"a": ["x"]}), ylabel="x")


# --- evaluation figures ------------------------------------------------------------------------

EVAL_NAMES = ["cat", "dog", "ship"]


def _eval_predictions():
    from helpers import evaluate

    generator = torch.Generator().manual_seed(0)
    targets = torch.arange(30) % 3
    logits = torch.randn(30, 3, generator=generator) + 2 * torch.nn.functional.one_hot(targets, 3)
    return evaluate.Predictions(logits, logits.softmax(1), logits.argmax(1), targets)


def test_plot_confusion_matrix_heat_map_with_class_names() -> None:
    counts = pd.DataFrame([[2, 1, 0], [0, 1, 1], [0, 0, 1]], index=EVAL_NAMES, columns=EVAL_NAMES)
    fig = plots.plot_confusion_matrix(counts)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the heat map and its colour bar
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == EVAL_NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == EVAL_NAMES
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert [t.get_text() for t in ax.texts][:3] == ["2", "1", "0"]
    shares = plots.plot_confusion_matrix(counts, normalize="true").axes[0]
    assert [t.get_text() for t in shares.texts][:3] == ["67%", "33%", "0%"]
    with pytest.raises(ValueError, match="Unknown normalize 'all'"):
        plots.plot_confusion_matrix(counts, normalize="all")
    with pytest.raises(ValueError, match="square table"):
        plots.plot_confusion_matrix(counts.iloc[:2])


def test_plot_roc_and_pr_curves_draw_one_line_per_class() -> None:
    from helpers import evaluate

    predictions = _eval_predictions()
    roc = evaluate.roc_curves(predictions, EVAL_NAMES)
    fig = plots.plot_roc_curves(roc)
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and len(ax.lines) == 4  # three classes and the chance line
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == f"cat ({roc.auc['cat']:.3f})" and labels[-1] == "chance (0.500)"
    assert f"{roc.macro_auc:.3f}" in ax.get_title()
    pr = evaluate.pr_curves(predictions, EVAL_NAMES)
    ax = plots.plot_pr_curves(pr).axes[0]
    assert len(ax.lines) == 4 and ax.get_xlabel() == "recall"
    assert f"{pr.average_precision['dog']:.3f}" in ax.get_legend().get_texts()[1].get_text()


def test_plot_reliability_one_panel_per_table_with_the_ece() -> None:
    from helpers import evaluate

    predictions = _eval_predictions()
    before = evaluate.reliability_bins(predictions.probabilities, predictions.targets, n_bins=5)
    scaled = evaluate.apply_temperature(predictions, 2.0)
    after = evaluate.reliability_bins(scaled.probabilities, scaled.targets, n_bins=5)
    fig = plots.plot_reliability(before, after)
    assert len(fig.axes) == 2
    ece = evaluate.expected_calibration_error(predictions.probabilities, predictions.targets, 5)
    assert fig.axes[0].get_title() == f"before: ECE {ece:.1%}"
    assert fig.axes[1].get_title().startswith("after temperature scaling: ECE")
    assert len(plots.plot_reliability(before).axes) == 1
    with pytest.raises(ValueError, match="missing"):
        plots.plot_reliability(before.drop(columns="accuracy"))


def test_show_errors_titles_each_mistake_with_true_and_predicted_class() -> None:
    from helpers import evaluate

    predictions = _eval_predictions()
    errors = evaluate.most_confident_errors(predictions, k=5)
    images = _images(len(predictions))
    fig = plots.show_errors(images, errors, EVAL_NAMES, ncols=3)
    assert len(fig.axes) == 3 * -(-len(errors) // 3)
    true, predicted, confidence = errors.loc[0, ["true", "predicted", "confidence"]]
    expected = f"true: {EVAL_NAMES[int(true)]}\npred: {EVAL_NAMES[int(predicted)]} {confidence:.0%}"
    assert fig.axes[0].get_title() == expected
    shown = images[int(errors.loc[0, "index"])].permute(1, 2, 0).numpy() / 255
    np.testing.assert_allclose(_shown(fig.axes[0]), shown)
    with pytest.raises(ValueError, match="no mistake"):
        plots.show_errors(images, errors.iloc[:0], EVAL_NAMES)
    with pytest.raises(ValueError, match="without a name"):
        plots.show_errors(images, errors, ["cat"])


def test_show_errors_titles_of_neighbouring_images_do_not_overlap() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names = ["airplane", "automobile", "truck"]  # the longest CIFAR-10 name predicted
    errors = pd.DataFrame(
        {"index": range(8), "true": [0, 2] * 4, "predicted": [1] * 8, "confidence": [1.0] * 8}
    )
    fig = plots.show_errors(_images(8, size=32), errors, names, ncols=8)
    FigureCanvasAgg(fig).draw()
    boxes = [ax.title.get_window_extent() for ax in fig.axes]
    assert all(left.x1 < right.x0 for left, right in itertools.pairwise(boxes))
