"""Tests for helpers.widgets: when widgets are enabled, the static fallbacks, the live panels."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from helpers import explain, plots, widgets
from helpers.models import create_model
from helpers.transforms import PRESETS

MEAN = (0.49, 0.48, 0.45)
STD = (0.25, 0.24, 0.26)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=generator)


@pytest.fixture
def in_kernel(monkeypatch):
    """Pretend to run inside a Jupyter kernel."""
    monkeypatch.delenv(widgets.STATIC_ENV, raising=False)
    shell = SimpleNamespace(kernel=object())
    monkeypatch.setattr(widgets, "_ipython_shell", lambda: shell)


# --- widgets_enabled -------------------------------------------------------------------------


def test_widgets_enabled_in_a_kernel(in_kernel):
    assert widgets.widgets_enabled()


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_static_env_switches_widgets_off(in_kernel, monkeypatch, value):
    monkeypatch.setenv(widgets.STATIC_ENV, value)
    assert not widgets.widgets_enabled()


def test_widgets_off_outside_a_kernel(monkeypatch):
    monkeypatch.delenv(widgets.STATIC_ENV, raising=False)
    assert not widgets.widgets_enabled()  # pytest runs without an IPython shell
    monkeypatch.setattr(widgets, "_ipython_shell", lambda: SimpleNamespace())  # terminal IPython
    assert not widgets.widgets_enabled()


def test_widgets_off_without_ipywidgets(in_kernel, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # makes `import ipywidgets` fail
    assert not widgets.widgets_enabled()
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        widgets.augmentation_explorer(torch.zeros(1, 3, 8, 8), mean=MEAN, std=STD, interactive=True)


# --- augmentation_explorer -------------------------------------------------------------------


def test_static_fallback_has_one_row_per_preset(images, in_kernel, monkeypatch):
    monkeypatch.setenv(widgets.STATIC_ENV, "1")
    fig = widgets.augmentation_explorer(images, mean=MEAN, std=STD, n=3)
    assert isinstance(fig, Figure)
    axes = np.array(fig.axes).reshape(len(PRESETS), 4)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == list(PRESETS)
    assert [ax.get_title() for ax in axes[0]] == ["original", "draw 1", "draw 2", "draw 3"]
    strong = [np.asarray(ax.images[0].get_array()) for ax in axes[2]]
    assert not np.allclose(strong[0], strong[1])  # strength 1 visibly changes the image


def test_interactive_false_gives_the_figure_even_in_a_kernel(images, in_kernel):
    fig = widgets.augmentation_explorer(images, mean=MEAN, std=STD, n=2, interactive=False)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * len(PRESETS)


def test_interactive_panel_has_the_controls(images, in_kernel):
    panel = widgets.augmentation_explorer(images, mean=MEAN, std=STD, n=2)
    assert isinstance(panel, ipywidgets.VBox)
    controls, output = panel.children
    assert isinstance(output, ipywidgets.Output)
    preset, strength, index, redraw = controls.children
    assert tuple(preset.options) == PRESETS and preset.value == "standard"
    assert (strength.min, strength.max, strength.value) == (0.0, 1.0, 1.0)
    assert (index.min, index.max) == (0, len(images) - 1)
    assert isinstance(redraw, ipywidgets.Button)


def test_changing_a_control_rerenders(images, in_kernel, monkeypatch):
    calls = []
    preview = plots.preview_augmentations

    def recording_preview(image, transform, **kwargs):
        calls.append((image, transform, kwargs["seed"]))
        return preview(image, transform, **kwargs)

    monkeypatch.setattr(plots, "preview_augmentations", recording_preview)
    panel = widgets.augmentation_explorer(images, mean=MEAN, std=STD, n=2, interactive=True)
    preset, _, index, redraw = panel.children[0].children
    preset.value = "strong"
    index.value = 3
    redraw.click()
    assert len(calls) == 4  # the first drawing, then one per change
    assert "TrivialAugmentWide" in repr(calls[1][1]) and "TrivialAugmentWide" not in repr(
        calls[0][1]
    )
    assert torch.equal(calls[2][0], images[3])
    assert [seed for *_, seed in calls] == [0, 0, 0, 1]


def test_update_callback_returns_the_new_figure(images):
    explorer = widgets.AugmentationExplorer(images, mean=MEAN, std=STD, n=3)
    first = explorer.figure
    for preset in PRESETS:
        explorer.preset.value = preset
        explorer.strength.value = 0.35
        figure = explorer.update()
        assert isinstance(figure, Figure) and figure is explorer.figure
        assert len(figure.axes) == 4
    assert explorer.figure is not first


def test_explorer_rejects_bad_images():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        widgets.augmentation_explorer(torch.zeros(3, 8, 8), mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="non-empty"):
        widgets.augmentation_explorer(torch.zeros(0, 3, 8, 8), mean=MEAN, std=STD)


# --- explanation_browser ---------------------------------------------------------------------

CLASSES = ("cat", "dog", "frog")


@pytest.fixture
def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("simple_cnn", num_classes=len(CLASSES)).eval()


@pytest.fixture
def normalised() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(5, 3, 32, 32, generator=generator)


def test_explanation_static_fallback_shows_the_first_images(cnn, normalised, monkeypatch):
    monkeypatch.setenv(widgets.STATIC_ENV, "1")
    labels = torch.tensor([0, 1, 2, 0, 1])
    fig = widgets.explanation_browser(cnn, normalised, labels, CLASSES, MEAN, STD, n=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 3  # image, overlay, bars
    assert [fig.axes[i].get_title() for i in (0, 3)] == ["true: cat", "true: dog"]
    heat = explain.explain(cnn, normalised[1:2])[0]
    shown = np.asarray(fig.axes[4].images[0].get_array())
    assert np.allclose(shown, explain.overlay(normalised[1], heat, MEAN, STD), atol=1e-6)
    assert len(fig.axes[2].patches) == 3  # top-3 of three classes


def test_explanation_panel_has_the_controls(cnn, normalised, in_kernel):
    panel = widgets.explanation_browser(cnn, normalised, [0, 1, 2, 0, 1], CLASSES, MEAN, STD)
    assert isinstance(panel, ipywidgets.VBox)
    controls, output = panel.children
    assert isinstance(output, ipywidgets.Output)
    index, target, alpha = controls.children
    assert (index.min, index.max, index.value) == (0, len(normalised) - 1, 0)
    assert list(target.options) == [
        ("predicted class", -1),
        *((n, i) for i, n in enumerate(CLASSES)),
    ]
    assert target.value == -1 and not target.disabled
    assert (alpha.min, alpha.max, alpha.value) == (0.0, 1.0, 0.5)


def test_explanation_controls_redraw_and_explain_the_chosen_class(cnn, normalised, monkeypatch):
    calls = []
    draw = plots.show_explained_predictions

    def recording_draw(images, heatmaps, *args, **kwargs):
        calls.append((images, heatmaps, kwargs["alpha"]))
        return draw(images, heatmaps, *args, **kwargs)

    monkeypatch.setattr(plots, "show_explained_predictions", recording_draw)
    browser = widgets.ExplanationBrowser(cnn, normalised, [0, 1, 2, 0, 1], CLASSES, MEAN, STD)
    expected = torch.softmax(cnn(normalised), dim=1).detach()
    assert torch.allclose(browser.probabilities, expected, atol=1e-5)
    browser.index.value = 3
    browser.target.value = 2
    browser.alpha.value = 0.25
    assert len(calls) == 4  # the first drawing, then one per change
    assert torch.equal(calls[1][0], normalised[3:4])
    grad_cam = explain.grad_cam(cnn, normalised[3:4], class_idx=2)
    assert torch.allclose(calls[2][1], grad_cam, atol=1e-6)
    assert calls[3][2] == 0.25 and len(browser._heatmaps) == 3  # opacity reuses the map
    assert isinstance(browser.figure, Figure) and len(browser.figure.axes) == 3


def test_explanation_panel_cannot_pick_a_class_for_a_vit(normalised, in_kernel):
    torch.manual_seed(0)
    vit = create_model("vit_tiny_cifar", num_classes=len(CLASSES)).eval()
    panel = widgets.explanation_browser(vit, normalised[:2], [0, 1], CLASSES, MEAN, STD)
    _, target, _ = panel.children[0].children
    assert target.disabled  # attention rollout does not depend on the class


def test_explanation_browser_rejects_bad_input(cnn, normalised):
    with pytest.raises(ValueError, match="one label per image"):
        widgets.explanation_browser(cnn, normalised, [0, 1], CLASSES, interactive=False)
    with pytest.raises(ValueError, match="non-empty"):
        widgets.explanation_browser(cnn, normalised[:0], [], CLASSES, interactive=False)
    with pytest.raises(ValueError, match="n must be"):
        widgets.explanation_browser(cnn, normalised, [0] * 5, CLASSES, n=0)
