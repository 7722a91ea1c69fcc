"""Tests for helpers.widgets: when widgets are enabled, the static fallback, the live panel."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from helpers import plots, widgets
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
