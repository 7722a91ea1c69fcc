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
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from torch import Tensor

__all__ = [
    "compare_augmentations",
    "plot_bars",
    "plot_class_balance",
    "plot_grouped_bars",
    "plot_history",
    "plot_search",
    "preview_augmentations",
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
                ax.set_title(titles[r][c], fontsize=8)
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
