"""Interactive explorers for the notebooks, with static figures for the rendered book.

A widget needs a live kernel behind it: in the static HTML book its sliders would do nothing.
Each explorer therefore has two faces:

* in JupyterLab or Colab, an ``ipywidgets`` panel whose controls redraw a figure;
* everywhere else (no ipywidgets, no kernel, or ``HELPERS_STATIC_WIDGETS=1``, which the book
  build sets while papermill executes the notebooks), a static figure that shows the same
  comparison at a glance.

Make the call the last line of its cell: Jupyter then displays the panel or the figure.

Example:
    >>> widgets_enabled()  # plain Python: no kernel to talk to
    False
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from . import plots
from .transforms import PRESETS, build_transforms

if TYPE_CHECKING:
    import ipywidgets

__all__ = [
    "STATIC_ENV",
    "AugmentationExplorer",
    "ExplanationBrowser",
    "augmentation_explorer",
    "explained_predictions",
    "explanation_browser",
    "preset_comparison",
    "widgets_enabled",
]

STATIC_ENV = "HELPERS_STATIC_WIDGETS"  # set to 1 to get static figures instead of widgets


def widgets_enabled() -> bool:
    """Whether interactive widgets can work here.

    Returns:
        ``True`` inside a live Jupyter or Colab kernel with ipywidgets installed, unless the
        environment variable ``HELPERS_STATIC_WIDGETS`` is ``1`` (or ``true``/``yes``);
        ``False`` otherwise (plain Python, a terminal IPython, no ipywidgets).
    """
    if os.environ.get(STATIC_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    shell = _ipython_shell()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _ipython_shell() -> Any:
    """The running IPython shell, or ``None`` in plain Python or without IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _import_ipywidgets() -> Any:
    """Import ipywidgets, or say how to install it."""
    try:
        import ipywidgets
    except ImportError as err:
        raise ImportError(
            "Interactive explorers need ipywidgets: pip install ipywidgets "
            "(or pass interactive=False for a static figure)."
        ) from err
    return ipywidgets


def _check_images(images: Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a non-empty ``(N, C, H, W)`` tensor."""
    if not isinstance(images, Tensor) or images.ndim != 4 or len(images) == 0:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor, got {shape}.")


class AugmentationExplorer:
    """The controls and the figure behind :func:`augmentation_explorer`.

    Attributes:
        preset: dropdown over :data:`helpers.transforms.PRESETS`.
        strength: slider in [0, 1] that scales the augmentation magnitudes.
        index: slider choosing the image.
        redraw: button that draws new random augmentations.
        output: the area that shows the figure.
        widget: the whole panel, an ``ipywidgets.VBox``; display it.
        figure: the figure shown now.
    """

    def __init__(
        self,
        images: Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int = 32,
        n: int = 8,
    ) -> None:
        widgets = _import_ipywidgets()
        _check_images(images)
        self.images, self.mean, self.std = images, mean, std
        self.image_size, self.n, self.seed = image_size, n, 0
        self.preset = widgets.Dropdown(
            options=list(PRESETS), value="standard", description="preset"
        )
        self.strength = widgets.FloatSlider(
            1.0, min=0.0, max=1.0, step=0.05, description="strength"
        )
        self.index = widgets.IntSlider(0, min=0, max=len(images) - 1, description="image")
        self.redraw = widgets.Button(description="re-draw", icon="refresh")
        self.output = widgets.Output()
        for control in (self.preset, self.strength, self.index):
            control.observe(self.update, names="value")
        self.redraw.on_click(self._on_redraw)
        controls = widgets.HBox([self.preset, self.strength, self.index, self.redraw])
        self.widget: ipywidgets.VBox = widgets.VBox([controls, self.output])
        self.figure: Figure = self.update()

    def _on_redraw(self, _button: Any) -> None:
        """Draw new random augmentations of the same image."""
        self.seed += 1
        self.update()

    def update(self, change: Any = None) -> Figure:
        """Redraw the preview for the current controls (the callback of every control).

        Args:
            change: the traitlets change event; unused, present for ``observe``.

        Returns:
            The new figure, also shown in :attr:`output`.
        """
        from IPython.display import clear_output, display

        strength = min(max(float(self.strength.value), 0.0), 1.0)  # guard float round-off
        options = {"image_size": self.image_size, "mean": self.mean, "std": self.std}
        transform = build_transforms(True, preset=self.preset.value, strength=strength, **options)
        image = self.images[self.index.value]  # (C, H, W)
        figure = plots.preview_augmentations(
            image, transform, n=self.n, seed=self.seed, mean=self.mean, std=self.std
        )
        with self.output:
            clear_output(wait=True)
            display(figure)
        self.figure = figure
        return figure


def preset_comparison(
    image: Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int = 32,
    n: int = 8,
    seed: int = 0,
) -> Figure:
    """One image under every preset at full strength: one row per preset.

    Args:
        image: one ``(C, H, W)`` uint8 image.
        mean: per-channel mean of the training images, on the [0, 1] scale.
        std: per-channel standard deviation of the training images, on the [0, 1] scale.
        image_size: the side of the transformed images, in pixels.
        n: random draws per preset.
        seed: seeds the draws.

    Returns:
        The figure, with one row of ``n + 1`` axes per preset.
    """
    pipelines = {
        preset: build_transforms(True, preset=preset, image_size=image_size, mean=mean, std=std)
        for preset in PRESETS
    }
    return plots.compare_augmentations(image, pipelines, n=n, seed=seed, mean=mean, std=std)


def augmentation_explorer(
    images: Tensor,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int = 32,
    n: int = 8,
    interactive: bool | None = None,
) -> ipywidgets.VBox | Figure:
    """Explore the augmentation presets: a widget in a live notebook, a figure in the book.

    The widget has a preset dropdown, a strength slider (0 to 1), an image slider and a
    re-draw button, above a preview of the chosen image and ``n`` random draws. The static
    figure shows the first image under every preset at strength 1, one row per preset.

    Args:
        images: a ``(N, 3, H, W)`` uint8 tensor, for example a few training images.
        mean: per-channel mean of the training images, on the [0, 1] scale.
        std: per-channel standard deviation of the training images, on the [0, 1] scale.
        image_size: the side of the transformed images, in pixels.
        n: random draws to show per preset.
        interactive: ``True`` for the widget, ``False`` for the figure, ``None`` to choose
            with :func:`widgets_enabled`.

    Returns:
        The ``ipywidgets.VBox`` panel, or the static :class:`~matplotlib.figure.Figure`.

    Raises:
        ValueError: for images that are not a non-empty ``(N, C, H, W)`` tensor, or bad
            mean/std/image size (as :func:`helpers.transforms.build_transforms`).
        ImportError: for ``interactive=True`` without ipywidgets installed.
    """
    _check_images(images)
    if interactive is None:
        interactive = widgets_enabled()
    if not interactive:
        return preset_comparison(images[0], mean=mean, std=std, image_size=image_size, n=n)
    explorer = AugmentationExplorer(images, mean=mean, std=std, image_size=image_size, n=n)
    return explorer.widget


# ---------------------------------------------------------------------------------------------
# Explanation browser
# ---------------------------------------------------------------------------------------------


def _check_labelled(images: Tensor, labels: Tensor | Sequence[int]) -> Tensor:
    """``labels`` as a CPU tensor, after checking there is one per image."""
    _check_images(images)
    labels = torch.as_tensor(labels).cpu()
    if labels.shape != (len(images),):
        raise ValueError(
            f"labels must be (N,) with one label per image: got {tuple(labels.shape)} for "
            f"{len(images)} images."
        )
    return labels


def _probabilities(model: nn.Module, images: Tensor) -> Tensor:
    """``(N, K)`` class probabilities of ``images``, in evaluation mode, on the CPU."""
    from .evaluate import predict  # evaluate loads train and scikit-learn: only when used

    dummy = torch.zeros(len(images), dtype=torch.long)  # predict wants labels; unused here
    return predict(model, [(images, dummy)], images.device).probabilities


def explained_predictions(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | Sequence[int],
    class_names: Sequence[str],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    topk: int = 3,
    alpha: float = 0.5,
) -> Figure:
    """The static face of :func:`explanation_browser`: one row per image, each with its
    heat map (:func:`helpers.explain.explain`, for the predicted class) and top classes.

    Args:
        model: a trained classifier in evaluation mode, on the images' device.
        images: ``(N, C, H, W)`` preprocessed as for the model; keep ``N`` small (a few).
        labels: ``(N,)`` true classes.
        class_names: the name of each class, in label order.
        mean: per-channel mean used to normalise the images, to undo it for display.
        std: per-channel standard deviation used to normalise the images.
        topk: how many of the most probable classes to show.
        alpha: weight of the heat map in each overlay, in [0, 1].

    Returns:
        The figure, as :func:`helpers.plots.show_explained_predictions` draws it.

    Raises:
        ValueError: for images that are not a non-empty ``(N, C, H, W)`` tensor, labels
            that do not match them, or as the explanation and the figure do.
    """
    from .explain import explain  # explain imports the models: load it only when used

    labels = _check_labelled(images, labels)
    heatmaps = explain(model, images)  # (N, H, W)
    return plots.show_explained_predictions(
        images,
        heatmaps,
        _probabilities(model, images),
        class_names,
        labels,
        mean=mean,
        std=std,
        topk=topk,
        alpha=alpha,
    )


class ExplanationBrowser:
    """The controls and the figure behind :func:`explanation_browser`.

    Attributes:
        index: slider choosing the image.
        target: dropdown of the class to explain: ``-1`` for the predicted class, or a class
            index. Disabled for a Vision Transformer, whose attention rollout does not
            depend on the class.
        alpha: slider for the weight of the heat map in the overlay.
        output: the area that shows the figure.
        widget: the whole panel, an ``ipywidgets.VBox``; display it.
        figure: the figure shown now.
        probabilities: ``(N, K)`` the model's class probabilities, computed once.
    """

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor | Sequence[int],
        class_names: Sequence[str],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        *,
        topk: int = 3,
    ) -> None:
        from .explain import explanation_method

        widgets = _import_ipywidgets()
        self.labels = _check_labelled(images, labels)
        self.model, self.images, self.class_names = model, images, list(class_names)
        self.mean, self.std, self.topk = mean, std, topk
        self.probabilities = _probabilities(model, images)  # (N, K)
        self._heatmaps: dict[tuple[int, int], Tensor] = {}  # (image, class) -> (H, W)
        self.index = widgets.IntSlider(0, min=0, max=len(images) - 1, description="image")
        choices = [("predicted class", -1)] + [(n, i) for i, n in enumerate(self.class_names)]
        rollout = explanation_method(model) == "rollout"
        self.target = widgets.Dropdown(
            options=choices, value=-1, description="explain", disabled=rollout
        )
        self.alpha = widgets.FloatSlider(0.5, min=0.0, max=1.0, step=0.05, description="opacity")
        self.output = widgets.Output()
        for control in (self.index, self.target, self.alpha):
            control.observe(self.update, names="value")
        controls = widgets.HBox([self.index, self.target, self.alpha])
        self.widget: ipywidgets.VBox = widgets.VBox([controls, self.output])
        self.figure: Figure = self.update()

    def heatmap(self, index: int, target: int = -1) -> Tensor:
        """The ``(H, W)`` heat map of image ``index`` for class ``target`` (-1: predicted).

        Args:
            index: which image.
            target: the class to explain, or -1 for the predicted one.

        Returns:
            The map, computed on first use and kept.
        """
        from .explain import explain

        key = (index, target)
        if key not in self._heatmaps:
            class_idx = None if target < 0 else target
            image = self.images[index : index + 1]  # (1, C, H, W)
            self._heatmaps[key] = explain(self.model, image, class_idx=class_idx)[0].cpu()
        return self._heatmaps[key]

    def update(self, change: Any = None) -> Figure:
        """Redraw the panel for the current controls (the callback of every control).

        Args:
            change: the traitlets change event; unused, present for ``observe``.

        Returns:
            The new figure, also shown in :attr:`output`.
        """
        from IPython.display import clear_output, display

        index, target = int(self.index.value), int(self.target.value)
        alpha = min(max(float(self.alpha.value), 0.0), 1.0)  # guard float round-off
        figure = plots.show_explained_predictions(
            self.images[index : index + 1],
            self.heatmap(index, target)[None],  # (1, H, W)
            self.probabilities[index : index + 1],
            self.class_names,
            self.labels[index : index + 1],
            mean=self.mean,
            std=self.std,
            topk=self.topk,
            alpha=alpha,
        )
        with self.output:
            clear_output(wait=True)
            display(figure)
        self.figure = figure
        return figure


def explanation_browser(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | Sequence[int],
    class_names: Sequence[str],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    topk: int = 3,
    n: int = 4,
    interactive: bool | None = None,
) -> ipywidgets.VBox | Figure:
    """Browse a model's explanations: a widget in a live notebook, a figure in the book.

    Each view shows an image (titled with its true class), its heat map from
    :func:`helpers.explain.explain` (Grad-CAM for CNNs, attention rollout for ViTs) laid over
    it, and the model's ``topk`` most probable classes (the true class's bar in orange). The
    widget has an image slider, a dropdown of the class to explain (the predicted one or any
    other; CNNs only) and an opacity slider. The static figure shows the first ``n`` images,
    each explained for its predicted class.

    Args:
        model: a trained classifier in evaluation mode, on the images' device.
        images: ``(N, C, H, W)`` preprocessed as for the model (e.g. a test batch); heat
            maps are computed one image at a time, when first shown.
        labels: ``(N,)`` true classes.
        class_names: the name of each class, in label order.
        mean: per-channel mean used to normalise the images, to undo it for display.
        std: per-channel standard deviation used to normalise the images.
        topk: how many of the most probable classes to show.
        n: images in the static figure.
        interactive: ``True`` for the widget, ``False`` for the figure, ``None`` to choose
            with :func:`widgets_enabled`.

    Returns:
        The ``ipywidgets.VBox`` panel, or the static :class:`~matplotlib.figure.Figure`.

    Raises:
        ValueError: for images that are not a non-empty ``(N, C, H, W)`` tensor, labels that
            do not match them, ``n < 1``, or as the explanation and the figure do.
        ImportError: for ``interactive=True`` without ipywidgets installed.
    """
    _check_labelled(images, labels)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    if interactive is None:
        interactive = widgets_enabled()
    if not interactive:
        labels = torch.as_tensor(labels)[:n]
        return explained_predictions(model, images[:n], labels, class_names, mean, std, topk=topk)
    browser = ExplanationBrowser(model, images, labels, class_names, mean, std, topk=topk)
    return browser.widget
