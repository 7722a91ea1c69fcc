"""Figures for every chapter: image grids, class balance, augmentation previews, learning curves.

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``.
The figure is closed in pyplot's registry before it is returned, so Jupyter shows it exactly
once, as the value of the cell (make the call the last line of a cell, or pass the figure to
``display``), scripts can ``fig.savefig(...)`` it, and a long loop does not pile up open figures.

Images are ``(C, H, W)`` tensors with 1 or 3 channels, in one of three forms:

* ``uint8`` in [0, 255], as the data module stores them;
* floating point in [0, 1];
* floating point normalised with a per-channel ``mean`` and ``std`` (pass both, and the image
  is un-normalised for display).

Example:
    >>> images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    >>> fig = show_images(images, titles=["a", "b", "c", "d"], ncols=2)
    >>> len(fig.axes)
    4
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from torch import Tensor

if TYPE_CHECKING:
    from helpers.evaluate import PrCurves, RocCurves

__all__ = [
    "compare_augmentations",
    "compare_explanations",
    "plot_bars",
    "plot_class_balance",
    "plot_confusion_matrix",
    "plot_grouped_bars",
    "plot_history",
    "plot_pr_curves",
    "plot_reliability",
    "plot_roc_curves",
    "plot_search",
    "preview_augmentations",
    "show_errors",
    "show_explained_predictions",
    "show_explanations",
    "show_feature_maps",
    "show_image_grid",
    "show_images",
]

CELL_INCHES = 1.2  # side of one image in a grid, in inches

Pixels = np.ndarray  # (H, W, 3) or (H, W) floats in [0, 1], ready for imshow


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


def _subplots(nrows: int, ncols: int, figsize: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with a 2-D array of axes, closed in pyplot's registry."""
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained")
    plt.close(fig)  # the caller owns it; Jupyter displays the returned figure once
    return fig, axes


def _check_stats(mean: Sequence[float] | None, std: Sequence[float] | None, channels: int) -> None:
    """Raise ``ValueError`` unless mean and std are both absent, or both one value per channel."""
    if (mean is None) != (std is None):
        raise ValueError("Pass both mean and std to un-normalise images, or neither.")
    if mean is not None and (len(mean) != channels or len(std) != channels):  # type: ignore[arg-type]
        raise ValueError(f"mean and std need {channels} values each, got {mean!r} and {std!r}.")


def _to_pixels(
    image: Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> Pixels:
    """Convert one ``(C, H, W)`` image to ``imshow`` pixels in [0, 1] (see the module docs)."""
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"An image must be a (C, H, W) tensor with 1 or 3 channels, got {shape}.")
    image = image.detach().cpu()
    if image.dtype == torch.uint8:
        pixels = image.float() / 255
    elif image.is_floating_point():
        pixels = image.float()
        _check_stats(mean, std, image.shape[0])
        if mean is not None and std is not None:
            pixels = pixels * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    else:
        raise ValueError(f"Images must be uint8 or floating point, got {image.dtype}.")
    pixels = pixels.clamp(0, 1).permute(1, 2, 0).numpy()  # (H, W, C)
    return pixels[..., 0] if pixels.shape[-1] == 1 else pixels


def _style_axis(ax: Axes) -> None:
    """No ticks and no frame, but keep the axis on so a row label stays visible."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_grid(
    rows: Sequence[Sequence[Pixels]],
    *,
    ncols: int,
    titles: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    title_fontsize: float = 8,
) -> Figure:
    """Draw ``rows`` of pixels (short rows leave blank cells), with titles and row labels."""
    label_inches = 1.2 if row_labels else 0.0
    figsize = (ncols * CELL_INCHES + label_inches, len(rows) * (CELL_INCHES + 0.25))
    fig, axes = _subplots(len(rows), ncols, figsize)
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            _style_axis(ax)
            if c < len(row):
                ax.imshow(row[c], cmap="gray" if row[c].ndim == 2 else None, vmin=0, vmax=1)
            if titles is not None and c < len(titles[r]):
                ax.set_title(titles[r][c], fontsize=title_fontsize)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center")
    return fig


def _check_count(name: str, value: int) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


# ---------------------------------------------------------------------------------------------
# Image grids
# ---------------------------------------------------------------------------------------------


def show_images(
    images: Tensor | Sequence[Tensor],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """Show images in a simple grid, row by row.

    Args:
        images: a ``(N, C, H, W)`` tensor, one ``(C, H, W)`` image, or a sequence of
            ``(C, H, W)`` images (their sizes may differ); uint8, float in [0, 1], or
            normalised float (then pass ``mean`` and ``std``).
        titles: one title per image, or ``None``.
        ncols: images per row.
        mean: per-channel mean used to normalise float images, to undo it for display.
        std: per-channel standard deviation used to normalise float images.

    Returns:
        The figure, with ``ceil(N / ncols)`` rows of ``min(N, ncols)`` axes.

    Raises:
        ValueError: for no images, an image that is not ``(C, H, W)`` with 1 or 3 channels,
            a number of titles different from the number of images, or ``ncols < 1``.
    """
    if isinstance(images, Tensor) and images.ndim == 3:
        images = [images]
    if isinstance(images, Tensor) and images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (C, H, W), got {tuple(images.shape)}.")
    _check_count("ncols", ncols)
    pixels = [_to_pixels(image, mean, std) for image in images]
    if not pixels:
        raise ValueError("show_images needs at least one image.")
    if titles is not None and len(titles) != len(pixels):
        raise ValueError(f"Got {len(titles)} titles for {len(pixels)} images; give one each.")
    ncols = min(ncols, len(pixels))
    starts = range(0, len(pixels), ncols)
    rows = [pixels[i : i + ncols] for i in starts]
    row_titles = [list(titles[i : i + ncols]) for i in starts] if titles is not None else None
    return _draw_grid(rows, ncols=ncols, titles=row_titles)


def _check_labelled_images(images: Tensor, labels: Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` unless images are ``(N, C, H, W)`` with one valid label each."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (N, C, H, W) tensor, got {shape}.")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"labels must be 1-D with one label per image: got shape {tuple(labels.shape)} "
            f"for {len(images)} images."
        )
    if num_classes == 0:
        raise ValueError("class_names must name at least one class.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}] to index the {num_classes} class "
            f"names, got values from {labels.min().item()} to {labels.max().item()}."
        )


def show_image_grid(
    images: Tensor,
    labels: Tensor | Sequence[int],
    class_names: Sequence[str],
    *,
    per_class: int = 8,
    seed: int = 0,
) -> Figure:
    """Show a random sample of each class: one row per class, its name on the left.

    Args:
        images: a ``(N, C, H, W)`` tensor (uint8, or float in [0, 1]).
        labels: ``(N,)`` class indices into ``class_names``.
        class_names: the name of each class, in label order.
        per_class: images drawn (without replacement) from each class; a class with fewer
            images leaves blank cells.
        seed: seeds the draw, so the same call shows the same images.

    Returns:
        The figure, with ``len(class_names)`` rows of ``per_class`` axes.

    Raises:
        ValueError: for images that are not ``(N, C, H, W)``, labels that do not match the
            images or fall outside the class names, or ``per_class < 1``.
    """
    labels = torch.as_tensor(labels).cpu()
    _check_labelled_images(images, labels, len(class_names))
    _check_count("per_class", per_class)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for label in range(len(class_names)):
        members = (labels == label).nonzero().flatten()  # (n_c,) indices of this class
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        rows.append([_to_pixels(images[i]) for i in chosen.tolist()])
    return _draw_grid(rows, ncols=per_class, row_labels=list(class_names))


# ---------------------------------------------------------------------------------------------
# Class balance
# ---------------------------------------------------------------------------------------------


def _count_table(
    counts: pd.DataFrame | Sequence[int] | Tensor | np.ndarray, class_names: Sequence[str] | None
) -> pd.DataFrame:
    """A ``class, count`` table (plus ``split`` if given) from a table or a list of counts."""
    if isinstance(counts, pd.DataFrame):
        missing = {"class", "count"} - set(counts.columns)
        if missing:
            raise ValueError(
                f"The counts table needs columns 'class' and 'count'; it lacks {sorted(missing)} "
                f"(it has {list(counts.columns)})."
            )
        table = counts[[c for c in ("class", "count", "split") if c in counts.columns]].copy()
        if class_names is not None:
            if not pd.api.types.is_integer_dtype(table["class"]):
                raise ValueError("class_names applies to a table whose 'class' holds indices.")
            if table["class"].min() < 0 or table["class"].max() >= len(class_names):
                raise ValueError(f"Class indices do not fit the {len(class_names)} class_names.")
            table["class"] = [class_names[i] for i in table["class"]]
    else:
        values = np.asarray(counts.cpu() if isinstance(counts, Tensor) else counts)
        if values.ndim != 1:
            raise ValueError(f"counts must be 1-D, one count per class; got shape {values.shape}.")
        names = class_names if class_names is not None else [str(i) for i in range(len(values))]
        if len(names) != len(values):
            raise ValueError(f"Got {len(values)} counts for {len(names)} class_names.")
        table = pd.DataFrame({"class": list(names), "count": values})
    if table.empty or not pd.api.types.is_numeric_dtype(table["count"]):
        raise ValueError("counts must hold at least one numeric count.")
    if (table["count"] < 0).any():
        raise ValueError("counts must not be negative.")
    table["class"] = table["class"].astype(str)
    return table


def plot_class_balance(
    counts: pd.DataFrame | Sequence[int] | Tensor | np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    title: str = "Images per class",
) -> Figure:
    """Draw one horizontal bar per class, labelled with its count.

    Args:
        counts: a table with columns ``class`` and ``count`` (as the data module's
            class-count table; other columns are ignored, except ``split``, which draws one
            coloured bar per split), or a sequence of counts in class order.
        class_names: names for a sequence of counts, or for integer classes in a table;
            ``None`` keeps the table's classes, or numbers a sequence's classes from 0.
        title: the title of the figure.

    Returns:
        The figure.

    Raises:
        ValueError: for a table without ``class`` and ``count`` columns, counts that do not
            match the class names, or counts that are empty or negative.

    >>> fig = plot_class_balance([50, 30], ["cat", "dog"])
    >>> [float(bar.get_width()) for bar in fig.axes[0].containers[0]]
    [50.0, 30.0]
    """
    table = _count_table(counts, class_names)
    hue = "split" if "split" in table.columns else None
    num_classes = table["class"].nunique()
    fig, axes = _subplots(1, 1, figsize=(6.0, 1.0 + 0.3 * num_classes * (1 + (hue is not None))))
    ax = axes[0, 0]
    sns.barplot(data=table, x="count", y="class", hue=hue, orient="h", errorbar=None, ax=ax)
    for bars in ax.containers:
        ax.bar_label(bars, fmt="{:,.0f}", padding=2, fontsize=8)
    ax.margins(x=0.12)  # room for the count labels
    ax.set(title=title, xlabel="images", ylabel="")
    return fig


# ---------------------------------------------------------------------------------------------
# Augmentation previews
# ---------------------------------------------------------------------------------------------


def _draw_augmentations(
    image: Tensor, transform: Callable[[Tensor], Any], n: int, seed: int
) -> list[Tensor]:
    """Apply ``transform`` to ``image`` n times, seeded, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [transform(image) for _ in range(n)]


def compare_augmentations(
    image: Tensor,
    transforms: Mapping[str, Callable[[Tensor], Any]],
    *,
    n: int = 8,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """Show one image under several augmentations: one row per transform, named on the left.

    Each row starts with the original, then ``n`` random draws of its transform. Every row
    uses the same seed, so rows differ only by their transform.

    Args:
        image: one ``(C, H, W)`` image (uint8, or float in [0, 1]).
        transforms: row name -> a callable from an image to a ``(C, H, W)`` tensor, such as
            a pipeline from :func:`helpers.transforms.build_transforms`.
        n: random draws per row.
        seed: seeds the draws (the global random state is restored afterwards).
        mean: per-channel mean that the transforms normalise with, to undo it for display.
        std: per-channel standard deviation that the transforms normalise with.

    Returns:
        The figure, with ``len(transforms)`` rows of ``n + 1`` axes.

    Raises:
        ValueError: for an image that is not ``(C, H, W)`` with 1 or 3 channels, no
            transforms, ``n < 1``, or a transform that does not return such an image.
    """
    original = _to_pixels(image, mean, std)
    _check_count("n", n)
    if not transforms:
        raise ValueError("transforms must name at least one transform.")
    rows = [
        [original] + [_to_pixels(x, mean, std) for x in _draw_augmentations(image, tf, n, seed)]
        for tf in transforms.values()
    ]
    titles = [["original"] + [f"draw {i + 1}" for i in range(n)]] + [[]] * (len(rows) - 1)
    return _draw_grid(rows, ncols=n + 1, titles=titles, row_labels=list(transforms))


def preview_augmentations(
    image: Tensor,
    transform: Callable[[Tensor], Any],
    *,
    n: int = 8,
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """Show an image next to ``n`` random draws of an augmentation pipeline.

    Args:
        image: one ``(C, H, W)`` image (uint8, or float in [0, 1]).
        transform: a callable from an image to a ``(C, H, W)`` tensor (uint8, or float,
            normalised or not), such as :func:`helpers.transforms.build_transforms`.
        n: random draws to show.
        seed: seeds the draws (the global random state is restored afterwards).
        mean: per-channel mean that ``transform`` normalises with, to undo it for display.
        std: per-channel standard deviation that ``transform`` normalises with.

    Returns:
        The figure: one row of ``n + 1`` axes titled ``original``, ``draw 1``, ...

    Raises:
        ValueError: as :func:`compare_augmentations`.
    """
    original = _to_pixels(image, mean, std)
    _check_count("n", n)
    draws = [_to_pixels(x, mean, std) for x in _draw_augmentations(image, transform, n, seed)]
    titles = ["original"] + [f"draw {i + 1}" for i in range(n)]
    return _draw_grid([[original, *draws]], ncols=n + 1, titles=[titles])


# ---------------------------------------------------------------------------------------------
# Training and comparisons
# ---------------------------------------------------------------------------------------------

_HISTORY_PANELS = (
    ("loss", ("train_loss", "val_loss")),
    ("accuracy", ("train_acc", "val_acc")),
    ("learning rate", ("lr",)),
)


def plot_history(history: Sequence[Mapping[str, float]], *, title: str | None = None) -> Figure:
    """Learning curves of a training run: loss, accuracy and learning rate per epoch.

    Args:
        history: one mapping per epoch, as returned by ``helpers.train.fit``, with an
            ``epoch`` key and any of ``train_loss``, ``val_loss``, ``train_acc``,
            ``val_acc`` and ``lr``; panels whose keys are all missing are left out.
        title: a title over the panels.

    Returns:
        The figure.

    Raises:
        ValueError: for an empty history or one without any plottable key.
    """
    if not history:
        raise ValueError("history is empty: train for at least one epoch first.")
    table = pd.DataFrame(list(history))
    epochs = table["epoch"] if "epoch" in table else pd.Series(range(1, len(table) + 1))
    panels = [(name, [k for k in keys if k in table]) for name, keys in _HISTORY_PANELS]
    panels = [(name, keys) for name, keys in panels if keys]
    if not panels:
        wanted = sorted(k for _, keys in _HISTORY_PANELS for k in keys)
        raise ValueError(f"history has none of the keys {wanted}; got {sorted(table.columns)}.")
    fig, axes = _subplots(1, len(panels), (4.2 * len(panels), 3.2))
    for ax, (name, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            ax.plot(epochs, table[key], marker="o", markersize=3, label=key.split("_")[0])
        ax.set(xlabel="epoch", ylabel=name, title=name)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def plot_bars(
    values: Mapping[str, float] | pd.Series,
    *,
    xlabel: str,
    title: str | None = None,
    fmt: str = "{:,.0f}",
) -> Figure:
    """A horizontal bar chart with the value written at the end of each bar.

    Args:
        values: a label for each bar and its value (a dict or a pandas Series).
        xlabel: what the values measure, with its unit.
        title: a title over the chart.
        fmt: how each value is written next to its bar.

    Returns:
        The figure.

    Raises:
        ValueError: when there is nothing to draw.
    """
    series = pd.Series(values, dtype=float)
    if series.empty:
        raise ValueError("plot_bars needs at least one value.")
    fig, axes = _subplots(1, 1, (6.0, 0.45 * len(series) + 1.2))
    ax = axes[0, 0]
    bars = ax.barh(list(series.index.astype(str)), series.to_numpy(), color=sns.color_palette()[0])
    ax.bar_label(bars, labels=[fmt.format(v) for v in series], padding=3)
    ax.invert_yaxis()  # first value on top, as in a table
    ax.set_xlabel(xlabel)
    ax.margins(x=0.15)
    if title:
        ax.set_title(title)
    return fig


def show_feature_maps(
    maps: Tensor,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    cmap: str = "viridis",
) -> Figure:
    """Show 2-D activation maps (what convolution filters respond to), each scaled on its own.

    Args:
        maps: ``(N, H, W)`` maps, or ``(1, N, H, W)`` (one image's channels).
        titles: one title per map.
        ncols: maps per row.
        cmap: a matplotlib colour map; each map is stretched to its own min..max.

    Returns:
        The figure.

    Raises:
        ValueError: for another shape, or titles of the wrong length.
    """
    maps = maps.detach().float().cpu()
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, H, W) or (1, N, H, W), got {tuple(maps.shape)}.")
    if titles is not None and len(titles) != len(maps):
        raise ValueError(f"{len(maps)} maps but {len(titles)} titles.")
    _check_count("ncols", ncols)
    ncols = min(ncols, len(maps))
    nrows = -(-len(maps) // ncols)
    fig, axes = _subplots(nrows, ncols, (CELL_INCHES * 1.4 * ncols, CELL_INCHES * 1.5 * nrows))
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < len(maps):
            ax.imshow(maps[index].numpy(), cmap=cmap)
            if titles is not None:
                ax.set_title(titles[index], fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------
# Evaluation: confusion matrix, ROC and PR curves, reliability diagram, misclassified images
# ---------------------------------------------------------------------------------------------


def _check_square(matrix: pd.DataFrame) -> None:
    """Raise ``ValueError`` unless ``matrix`` is a non-empty square table of numbers."""
    numeric = all(pd.api.types.is_numeric_dtype(t) for t in matrix.dtypes)
    if matrix.empty or matrix.shape[0] != matrix.shape[1] or not numeric:
        raise ValueError(
            f"A confusion matrix must be a non-empty square table of numbers, got shape "
            f"{matrix.shape}."
        )


def plot_confusion_matrix(
    matrix: pd.DataFrame,
    *,
    normalize: str | None = None,
    title: str | None = None,
    cmap: str = "Blues",
) -> Figure:
    """A heat map of a confusion matrix: true classes down the side, predicted across.

    Args:
        matrix: ``(K, K)`` counts or shares with class names as index and columns, as
            :func:`helpers.evaluate.confusion_matrix` returns it.
        normalize: ``None`` draws the values as they are (shares in [0, 1] are written in
            percent); ``"true"`` first divides each row by its sum, so that each row shows
            where that class's images went and the diagonal is the per-class recall.
        title: a title over the heat map.
        cmap: a matplotlib colour map name.

    Returns:
        The figure: the heat map's axis, then its colour bar's.

    Raises:
        ValueError: for a matrix that is not square and numeric, or an unknown ``normalize``.

    >>> counts = pd.DataFrame([[3, 1], [0, 4]], index=["cat", "dog"], columns=["cat", "dog"])
    >>> [t.get_text() for t in plot_confusion_matrix(counts).axes[0].get_xticklabels()]
    ['cat', 'dog']
    """
    if normalize not in (None, "true"):
        raise ValueError(f"Unknown normalize {normalize!r}; choose None or 'true'.")
    frame = pd.DataFrame(matrix)
    _check_square(frame)
    values = frame.astype(float)
    if normalize == "true":
        values = values.div(values.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    integers = normalize is None and all(pd.api.types.is_integer_dtype(t) for t in frame.dtypes)
    percent = not integers and float(values.to_numpy().max()) <= 1.0
    size = len(frame)
    fig, axes = _subplots(1, 1, (0.55 * size + 2.8, 0.5 * size + 1.8))
    ax = axes[0, 0]
    sns.heatmap(
        values,
        annot=size <= 20,  # beyond that the numbers no longer fit in the cells
        fmt=".0%" if percent else (".0f" if integers else ".3g"),
        annot_kws={"fontsize": 8},
        cmap=cmap,
        vmin=0,
        vmax=1 if percent else None,
        square=True,
        ax=ax,
    )
    ax.set(xlabel="predicted class", ylabel="true class")
    ax.tick_params(axis="x", labelrotation=45)
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_title(title or ("confusion matrix (share of each true class)" if percent else ""))
    return fig


def plot_roc_curves(roc: RocCurves, *, title: str | None = None) -> Figure:
    """One-vs-rest ROC curves, one line per class, with each class's AUROC in the legend.

    Args:
        roc: from :func:`helpers.evaluate.roc_curves`.
        title: a title over the chart; by default it states the macro-average AUROC.

    Returns:
        The figure: one axis, a line per class with a curve plus the chance diagonal.

    Raises:
        ValueError: when no class has a curve.
    """
    drawn = [name for name, fpr in roc.fpr.items() if len(fpr)]
    if not drawn:
        raise ValueError("No class has a ROC curve (each needs images of it and of others).")
    fig, axes = _subplots(1, 1, (5.6, 4.8))
    ax = axes[0, 0]
    for name in drawn:
        ax.plot(roc.fpr[name], roc.tpr[name], lw=1.2, label=f"{name} ({roc.auc[name]:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance (0.500)")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate (recall)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", title="class (AUROC)", title_fontsize=8)
    ax.set_title(title or f"ROC curves, one class vs rest (macro AUROC {roc.macro_auc:.3f})")
    return fig


def plot_pr_curves(pr: PrCurves, *, title: str | None = None) -> Figure:
    """One-vs-rest precision-recall curves, one per class, with its average precision.

    Args:
        pr: from :func:`helpers.evaluate.pr_curves`.
        title: a title over the chart; by default it states the mean average precision.

    Returns:
        The figure: one axis, a step line per class with images, plus the precision of a
        random ranking (the mean class share) as a dashed line.

    Raises:
        ValueError: when no class has a curve.
    """
    drawn = [name for name, recall in pr.recall.items() if len(recall)]
    if not drawn:
        raise ValueError("No class has a precision-recall curve (each needs images of it).")
    fig, axes = _subplots(1, 1, (5.6, 4.8))
    ax = axes[0, 0]
    for name in drawn:
        label = f"{name} ({pr.average_precision[name]:.3f})"
        ax.plot(pr.recall[name], pr.precision[name], lw=1.2, drawstyle="steps-post", label=label)
    chance = float(pr.prevalence.mean())
    ax.axhline(chance, ls="--", lw=1, color="grey", label=f"random ranking ({chance:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", title="class (AP)", title_fontsize=8)
    mean_ap = pr.macro_average_precision
    ax.set_title(title or f"Precision-recall, one class vs rest (mean AP {mean_ap:.3f})")
    return fig


_BIN_COLUMNS = ("lower", "upper", "count", "confidence", "accuracy")


def _draw_reliability(ax: Axes, bins: pd.DataFrame, label: str) -> None:
    """Accuracy bars per confidence bin, the gap to the diagonal in red, and the ECE."""
    missing = [c for c in _BIN_COLUMNS if c not in bins.columns]
    if missing or bins.empty or float(bins["count"].sum()) <= 0:
        raise ValueError(
            f"Reliability bins need columns {list(_BIN_COLUMNS)} and images; missing "
            f"{missing} (make them with helpers.evaluate.reliability_bins)."
        )
    filled = bins[bins["count"] > 0]
    left, width = filled["lower"], filled["upper"] - filled["lower"]
    ax.bar(left, filled["accuracy"], width, align="edge", edgecolor="black", label="accuracy")
    gap = filled["confidence"] - filled["accuracy"]
    ax.bar(
        left,
        gap,
        width,
        bottom=filled["accuracy"],
        align="edge",
        color="tab:red",
        alpha=0.3,
        hatch="//",
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    ece = float((bins["count"] * gap.abs()).sum() / bins["count"].sum())
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"{label}: ECE {ece:.1%}")
    ax.legend(fontsize=7, loc="upper left")


def plot_reliability(
    bins_before: pd.DataFrame,
    bins_after: pd.DataFrame | None = None,
    *,
    labels: Sequence[str] = ("before", "after temperature scaling"),
) -> Figure:
    """Reliability diagrams: accuracy against confidence, bin by bin, with the ECE.

    A calibrated model's bars reach the diagonal; bars below it mean overconfidence. Pass
    a second table to compare, e.g. after temperature scaling, side by side.

    Args:
        bins_before: from :func:`helpers.evaluate.reliability_bins`.
        bins_after: a second table drawn in a second panel, or ``None``.
        labels: the panels' names, written before each one's ECE.

    Returns:
        The figure, with one panel per table.

    Raises:
        ValueError: for a table without the columns of ``reliability_bins`` or without
            images, or fewer labels than panels.
    """
    tables = [bins_before] if bins_after is None else [bins_before, bins_after]
    if len(labels) < len(tables):
        raise ValueError(f"Got {len(labels)} labels for {len(tables)} panels.")
    fig, axes = _subplots(1, len(tables), (4.2 * len(tables), 4.0))
    for ax, bins, label in zip(axes[0], tables, labels, strict=False):
        _draw_reliability(ax, bins, label)
    return fig


def _error_titles(errors: pd.DataFrame, class_names: Sequence[str]) -> list[str]:
    """``true: cat`` / ``pred: dog 97%`` for each row of ``errors``."""
    columns = ("index", "true", "predicted", "confidence")
    if any(c not in errors.columns for c in columns):
        raise ValueError(f"errors needs the columns {list(columns)}, as most_confident_errors.")
    known = len(class_names)
    for column in ("true", "predicted"):
        if not errors[column].between(0, known - 1).all():
            raise ValueError(f"errors[{column!r}] has classes without a name in class_names.")
    return [
        f"true: {class_names[t]}\npred: {class_names[p]} {c:.0%}"
        for t, p, c in zip(errors["true"], errors["predicted"], errors["confidence"], strict=True)
    ]


def show_errors(
    images: Tensor,
    errors: pd.DataFrame,
    class_names: Sequence[str],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    ncols: int = 8,
) -> Figure:
    """A gallery of misclassified images, each titled with its true and predicted class
    and the confidence of the prediction.

    Args:
        images: ``(N, C, H, W)`` images of the split the predictions were made on, in the
            loader's order (uint8, floats in [0, 1], or normalised with ``mean``/``std``).
        errors: from :func:`helpers.evaluate.most_confident_errors`; its ``index`` column
            picks the images.
        class_names: the name of each class, in label order.
        mean: per-channel mean used to normalise the images, to undo it for display.
        std: per-channel std used to normalise the images.
        ncols: images per row.

    Returns:
        The figure, with ``ceil(len(errors) / ncols)`` rows of ``min(len(errors), ncols)``
        axes.

    Raises:
        ValueError: for no errors, missing columns, an index outside ``images``, or a class
            without a name.
    """
    if errors.empty:
        raise ValueError("errors is empty: the model made no mistake to show.")
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError("images must be an (N, C, H, W) tensor.")
    titles = _error_titles(errors, class_names)
    if not errors["index"].between(0, len(images) - 1).all():
        raise ValueError(f"errors['index'] must lie in [0, {len(images) - 1}] (the images).")
    _check_count("ncols", ncols)
    cells = [_to_pixels(images[int(i)], mean, std) for i in errors["index"]]
    ncols = min(ncols, len(cells))
    starts = range(0, len(cells), ncols)
    rows = [cells[i : i + ncols] for i in starts]
    titles_by_row = [titles[i : i + ncols] for i in starts]
    # 7 pt: "pred: automobile 100%" fits the width of one cell without touching the next
    return _draw_grid(rows, ncols=ncols, titles=titles_by_row, title_fontsize=7)


# ---------------------------------------------------------------------------------------------
# Hyperparameter searches and grouped comparisons
# ---------------------------------------------------------------------------------------------


def _ordered_values(values: pd.Series) -> list[Any]:
    """The distinct values of a column, sorted (numbers by size; mixed types as text)."""
    unique = list(pd.unique(values))
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)


def plot_search(
    table: pd.DataFrame,
    keys: Sequence[str],
    *,
    metric: str = "best val_acc",
    title: str | None = None,
) -> Figure:
    """One panel per searched key: every trial's metric against that key's value.

    Such "slice" plots show which hyperparameters matter: a key whose values all reach the
    same accuracy hardly matters (at this budget), one with a clear trend does. The best
    trial is drawn as a red star in every panel.

    Args:
        table: one row per trial with a column per key and one for ``metric``, as
            :func:`helpers.tune.random_search` returns it.
        keys: the columns that were searched (``"train.lr"``, ...), one panel each.
        metric: the column to plot; accuracies (shares in [0, 1]) are shown in percent when
            the name ends in ``acc``.
        title: a title over the panels.

    Returns:
        The figure.

    Raises:
        ValueError: for an empty table, no keys, or a key or metric that is not a column.
    """
    missing = [name for name in (*keys, metric) if name not in table.columns]
    if table.empty or not keys or missing:
        raise ValueError(
            f"plot_search needs trials, at least one key, and columns {missing} "
            f"(the table has {list(table.columns)})."
        )
    scores = table[metric].astype(float)
    best = scores.idxmax()
    fig, axes = _subplots(1, len(keys), (3.2 * len(keys), 3.2))
    for ax, key in zip(axes[0], keys, strict=True):
        order = _ordered_values(table[key])
        position = {value: index for index, value in enumerate(order)}
        x = [position[value] for value in table[key]]
        ax.scatter(x, scores, alpha=0.7)
        ax.scatter([position[table.at[best, key]]], [scores[best]], marker="*", s=200, c="red")
        ax.set_xticks(range(len(order)), [str(value) for value in order])
        ax.set(title=key.split(".")[-1], xlabel=key, xlim=(-0.5, len(order) - 0.5))
        ax.grid(alpha=0.3)
        if metric.endswith("acc"):
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[0, 0].set_ylabel(metric)
    if title:
        fig.suptitle(title)
    return fig


def plot_grouped_bars(
    table: pd.DataFrame | Mapping[str, Mapping[str, float]],
    *,
    ylabel: str,
    title: str | None = None,
    percent: bool = False,
) -> Figure:
    """Grouped vertical bars: one group per row of ``table``, one colour per column.

    Args:
        table: numbers with groups as rows (e.g. classes) and series as columns (e.g.
            methods), or a mapping of series name to ``{group: value}``.
        ylabel: what the values measure, with its unit.
        title: a title over the chart.
        percent: show shares in [0, 1] as percentages on the axis.

    Returns:
        The figure; its legend names the columns.

    Raises:
        ValueError: for an empty table or one with values that are not numbers.

    >>> fig = plot_grouped_bars({"a": {"cat": 0.5, "dog": 1.0}}, ylabel="recall")
    >>> [float(bar.get_height()) for bar in fig.axes[0].patches]
    [0.5, 1.0]
    """
    frame = pd.DataFrame(table)
    if frame.empty or not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes):
        raise ValueError("plot_grouped_bars needs a non-empty table of numbers.")
    groups, series = len(frame.index), len(frame.columns)
    width = 0.8 / series  # the bars of a group share 80% of the space between groups
    fig, axes = _subplots(1, 1, (max(6.0, 0.35 * groups * series + 1.5), 3.6))
    ax = axes[0, 0]
    for column, name in enumerate(frame.columns):
        offsets = np.arange(groups) + (column - (series - 1) / 2) * width
        ax.bar(offsets, frame[name].to_numpy(dtype=float), width, label=str(name))
    ax.set_xticks(range(groups), [str(group) for group in frame.index], rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------------
# Explanations (Grad-CAM, attention rollout)
# ---------------------------------------------------------------------------------------------


def show_explanations(
    images: Tensor,
    heatmaps: Tensor | Sequence[Tensor],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Figure:
    """Show each image next to its heat map laid over it (see :func:`helpers.explain.overlay`).

    Args:
        images: ``(N, C, H, W)``: normalised floats (pass ``mean`` and ``std``), floats in
            [0, 1] or uint8.
        heatmaps: ``(N, H, W)`` maps in [0, 1], as from :func:`helpers.explain.explain`.
        mean: per-channel mean used to normalise the images, to undo it for display.
        std: per-channel standard deviation used to normalise the images.
        titles: one title per image (shown over the image; its overlay has none), or ``None``.
        ncols: image-and-overlay pairs per row.
        alpha: weight of the heat map in each overlay, in [0, 1].
        cmap: a matplotlib colour map name for the heat maps.

    Returns:
        The figure, with ``ceil(N / ncols)`` rows of ``2 * min(N, ncols)`` axes.

    Raises:
        ValueError: for images that are not ``(N, C, H, W)``, a number of heat maps or titles
            different from the number of images, ``ncols < 1``, or as ``overlay`` does.
    """
    from helpers.explain import overlay  # explain imports the models: load it only when used

    if not isinstance(images, Tensor) or images.ndim != 4 or not len(images):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor, got {shape}.")
    if len(heatmaps) != len(images):
        raise ValueError(f"Got {len(heatmaps)} heatmaps for {len(images)} images; give one each.")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"Got {len(titles)} titles for {len(images)} images; give one each.")
    _check_count("ncols", ncols)
    cells: list[Pixels] = []
    for image, heatmap in zip(images, heatmaps, strict=True):
        cells += [_to_pixels(image, mean, std), overlay(image, heatmap, mean, std, alpha, cmap)]
    names = [name for title in titles for name in (title, "")] if titles is not None else None
    per_row = 2 * min(ncols, len(images))
    starts = range(0, len(cells), per_row)
    rows = [cells[i : i + per_row] for i in starts]
    row_titles = [names[i : i + per_row] for i in starts] if names is not None else None
    return _draw_grid(rows, ncols=per_row, titles=row_titles)


def _check_image_batch(images: Any) -> None:
    """Raise ``ValueError`` unless ``images`` is a non-empty ``(N, C, H, W)`` tensor."""
    if not isinstance(images, Tensor) or images.ndim != 4 or not len(images):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty (N, C, H, W) tensor, got {shape}.")


def compare_explanations(
    images: Tensor,
    heatmaps: Mapping[str, Tensor | Sequence[Tensor]],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    titles: Sequence[str] | None = None,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Figure:
    """Several heat maps of each image side by side: one row per image, one column per map.

    Use it to compare methods, layers, classes or models on the same images.

    Args:
        images: ``(N, C, H, W)``: normalised floats (pass ``mean`` and ``std``), floats in
            [0, 1] or uint8.
        heatmaps: a name (the column title, shown over the first row) for each set of
            ``(N, H, W)`` maps in [0, 1], in column order.
        mean: per-channel mean used to normalise the images, to undo it for display.
        std: per-channel standard deviation used to normalise the images.
        titles: one title per image (over the image), or ``None``.
        alpha: weight of the heat map in each overlay, in [0, 1].
        cmap: a matplotlib colour map name for the heat maps.

    Returns:
        The figure, with ``N`` rows of ``1 + len(heatmaps)`` axes.

    Raises:
        ValueError: for images that are not a non-empty ``(N, C, H, W)`` tensor, no heat maps,
            a set of maps or titles whose number differs from the images', or as
            :func:`helpers.explain.overlay` does.

    >>> images, maps = torch.zeros(2, 3, 8, 8), torch.rand(2, 8, 8)
    >>> len(compare_explanations(images, {"a": maps, "b": maps}).axes)
    6
    """
    from helpers.explain import overlay  # explain imports the models: load it only when used

    _check_image_batch(images)
    if not heatmaps or any(len(maps) != len(images) for maps in heatmaps.values()):
        counts = {name: len(maps) for name, maps in heatmaps.items()}
        raise ValueError(f"Give one heat map per image ({len(images)}) in each set, got {counts}.")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"Got {len(titles)} titles for {len(images)} images; give one each.")
    names = [str(name) for name in heatmaps]
    rows, row_titles = [], []
    for i, image in enumerate(images):
        overlays = [overlay(image, maps[i], mean, std, alpha, cmap) for maps in heatmaps.values()]
        rows.append([_to_pixels(image, mean, std), *overlays])
        row_titles.append(
            ["" if titles is None else titles[i], *(names if i == 0 else [""] * len(names))]
        )
    return _draw_grid(rows, ncols=1 + len(names), titles=row_titles)


def _draw_top_classes(
    ax: Axes, probabilities: Tensor, class_names: Sequence[str], label: int | None, topk: int
) -> None:
    """Horizontal bars of the ``topk`` most probable classes, the true one in orange."""
    scores, classes = probabilities.detach().float().cpu().topk(topk)  # (k,), (k,)
    names = [class_names[int(c)] for c in classes]
    colours = ["tab:orange" if int(c) == label else "tab:blue" for c in classes]
    ax.barh(range(topk), scores.numpy(), color=colours)
    ax.set_yticks(range(topk), names, fontsize=8)
    ax.invert_yaxis()  # the most probable class on top
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.tick_params(axis="x", labelsize=7)


def show_explained_predictions(
    images: Tensor,
    heatmaps: Tensor | Sequence[Tensor],
    probabilities: Tensor,
    class_names: Sequence[str],
    labels: Tensor | Sequence[int] | None = None,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    topk: int = 3,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Figure:
    """One row per image: the image, its heat map laid over it, and its top-``k`` classes.

    Args:
        images: ``(N, C, H, W)``: normalised floats (pass ``mean`` and ``std``), floats in
            [0, 1] or uint8.
        heatmaps: ``(N, H, W)`` maps in [0, 1], as from :func:`helpers.explain.explain`.
        probabilities: ``(N, K)`` predicted class probabilities (rows of a softmax).
        class_names: the name of each of the ``K`` classes, in label order.
        labels: ``(N,)`` true classes, or ``None``; given, each image is titled with its
            true class and that class's bar is orange.
        mean: per-channel mean used to normalise the images, to undo it for display.
        std: per-channel standard deviation used to normalise the images.
        topk: how many of the most probable classes to show, at most ``K``.
        alpha: weight of the heat map in each overlay, in [0, 1].
        cmap: a matplotlib colour map name for the heat maps.

    Returns:
        The figure, with ``N`` rows of 3 axes.

    Raises:
        ValueError: for images that are not a non-empty ``(N, C, H, W)`` tensor, heat maps,
            probabilities or labels that do not match them, a class count other than
            ``len(class_names)``, ``topk`` outside ``[1, K]``, or as ``overlay`` does.
    """
    from helpers.explain import overlay  # explain imports the models: load it only when used

    _check_image_batch(images)
    count = len(images)
    if len(heatmaps) != count:
        raise ValueError(f"Got {len(heatmaps)} heatmaps for {count} images; give one each.")
    if probabilities.shape != (count, len(class_names)):
        raise ValueError(
            f"probabilities must be (N, K) = ({count}, {len(class_names)}) for {count} images "
            f"and {len(class_names)} class names, got {tuple(probabilities.shape)}."
        )
    _check_count("topk", topk)
    if topk > len(class_names):
        raise ValueError(f"topk must lie in [1, {len(class_names)}], got {topk}.")
    if labels is not None:
        labels = torch.as_tensor(labels).cpu()
        _check_labelled_images(images, labels, len(class_names))
    fig, axes = _subplots(count, 3, (3.4 * CELL_INCHES + 1.2, count * (CELL_INCHES + 0.3)))
    for row, (image, heatmap) in enumerate(zip(images, heatmaps, strict=True)):
        label = None if labels is None else int(labels[row])
        image_ax, overlay_ax, bars_ax = axes[row]
        for ax, pixels in (
            (image_ax, _to_pixels(image, mean, std)),
            (overlay_ax, overlay(image, heatmap, mean, std, alpha, cmap)),
        ):
            _style_axis(ax)
            ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=1)
        if label is not None:
            image_ax.set_title(f"true: {class_names[label]}", fontsize=8)
        _draw_top_classes(bars_ax, probabilities[row], class_names, label, topk)
    return fig
