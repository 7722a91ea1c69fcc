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

from matplotlib.figure import Figure
from torch import Tensor

from . import plots
from .transforms import PRESETS, build_transforms

if TYPE_CHECKING:
    import ipywidgets

__all__ = [
    "STATIC_ENV",
    "AugmentationExplorer",
    "augmentation_explorer",
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
