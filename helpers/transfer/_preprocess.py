"""A pretrained model's own preprocessing, and two ways to apply it to small images."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms import v2

from helpers.train import unwrap_model
from helpers.transforms import build_transforms

# timm's interpolation names, as torch.nn.functional.interpolate calls them.
_INTERPOLATE_MODES = {"nearest": "nearest", "bilinear": "bilinear", "bicubic": "bicubic"}


@dataclass(frozen=True)
class Preprocessing:
    """How a pretrained model expects its images: timm's ``resolve_model_data_config``.

    The fields, and their order, are those of timm's dict, so ``dataclasses.asdict`` of
    this equals ``timm.data.resolve_model_data_config(model)``.

    Attributes:
        input_size: ``(C, H, W)`` the weights were trained at.
        interpolation: how images were resized (``"bicubic"``, ``"bilinear"``, ...).
        mean: per-channel mean on the [0, 1] scale, subtracted after scaling.
        std: per-channel standard deviation on the [0, 1] scale.
        crop_pct: the share of the resized image that the evaluation centre crop keeps.
        crop_mode: timm's crop mode (``"center"``, ``"squash"``, ``"border"``).
    """

    input_size: tuple[int, int, int]
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    crop_mode: str = "center"

    @property
    def image_size(self) -> int:
        """The side of the square input, in pixels (``input_size[-1]``)."""
        return int(self.input_size[-1])


def timm_model(model: nn.Module) -> nn.Module:
    """The timm model inside ``model``: unwraps DDP, ``torch.compile`` and
    :class:`WithPreprocessing`.

    Args:
        model: a timm model, possibly wrapped.

    Returns:
        The innermost model.

    Raises:
        ValueError: when that model lacks timm's interface (``forward_features``,
            ``forward_head``, ``get_classifier``, ``reset_classifier``).
    """
    inner = unwrap_model(model)
    while isinstance(inner, WithPreprocessing):
        inner = unwrap_model(inner.model)
    needed = ("forward_features", "forward_head", "get_classifier", "reset_classifier")
    missing = [name for name in needed if not callable(getattr(inner, name, None))]
    if missing:
        raise ValueError(
            f"{type(inner).__name__} lacks timm's model interface ({', '.join(missing)}); "
            "build the model with helpers.transfer.create_pretrained or timm.create_model."
        )
    return inner


def data_config(model: nn.Module) -> Preprocessing:
    """The preprocessing a pretrained model was trained with, from its timm config.

    Args:
        model: a timm model, possibly wrapped (see :func:`timm_model`).

    Returns:
        A :class:`Preprocessing`: input size, interpolation, mean, std, crop share.

    Raises:
        ValueError: for a model without timm's interface.

    >>> import timm
    >>> data_config(timm.create_model("resnet18")).image_size
    224
    """
    from timm.data import resolve_model_data_config

    resolved = resolve_model_data_config(timm_model(model))
    names = {field.name for field in dataclasses.fields(Preprocessing)}
    return Preprocessing(**{key: value for key, value in resolved.items() if key in names})


def _interpolation_mode(interpolation: str) -> str:
    """timm's interpolation name as ``F.interpolate`` mode; ``ValueError`` for others."""
    if interpolation not in _INTERPOLATE_MODES:
        raise ValueError(
            f"Unsupported interpolation {interpolation!r}; choose one of "
            f"{', '.join(_INTERPOLATE_MODES)}."
        )
    return _INTERPOLATE_MODES[interpolation]


def _check_stats(name: str, mean: Sequence[float], std: Sequence[float]) -> None:
    """``ValueError`` unless mean and std have one value per channel and std is positive."""
    if len(mean) == 0 or len(mean) != len(std) or any(s <= 0 for s in std):
        raise ValueError(
            f"{name} mean and std need one value per channel (std positive), got {mean!r} "
            f"and {std!r}."
        )


def pretrained_transforms(
    model: nn.Module,
    train: bool,
    *,
    preset: str = "standard",
    strength: float = 1.0,
    center_crop: bool = False,
) -> v2.Compose:
    """Per-image ``transforms.v2`` pipeline that feeds small images to a pretrained model.

    Each image is first resized to the model's input size with the model's interpolation,
    then goes through :func:`helpers.transforms.build_transforms` at that size with the
    model's mean and std: the same augmentation presets as training from scratch, applied
    to the upscaled image. Feed its output to the bare model: :class:`WithPreprocessing`
    is the in-model alternative, and the two together would preprocess twice.

    Args:
        model: a timm model; its :func:`data_config` sets size, interpolation, mean, std.
        train: ``True`` for the augmenting pipeline, ``False`` for evaluation.
        preset: an augmentation preset of :data:`helpers.transforms.PRESETS`.
        strength: in [0, 1], scales the augmentation (see ``build_transforms``).
        center_crop: evaluation only: resize to ``size / crop_pct`` and keep the centre,
            as timm evaluates on ImageNet. Off by default: it cuts the border off images
            that were already cropped tightly (CIFAR-10's 32x32 objects).

    Returns:
        A pipeline from a uint8 ``(C, h, w)`` image (tensor, PIL or NumPy) to a float32
        ``(C, H, W)`` tensor normalised with the model's statistics.

    Raises:
        ValueError: as ``build_transforms``, or for a model without timm's interface.
    """
    config = data_config(model)
    size = config.image_size
    mode = v2.InterpolationMode(config.interpolation)
    if center_crop and not train:
        resize = [
            v2.Resize(math.floor(size / config.crop_pct), interpolation=mode, antialias=True),
            v2.CenterCrop(size),
        ]
    else:
        resize = [v2.Resize((size, size), interpolation=mode, antialias=True)]
    then = build_transforms(
        train, preset=preset, image_size=size, mean=config.mean, std=config.std, strength=strength
    )
    return v2.Compose([v2.ToImage(), *resize, then])


def _affine(
    mean: Sequence[float],
    std: Sequence[float],
    input_mean: Sequence[float] | None,
    input_std: Sequence[float] | None,
) -> tuple[Tensor, Tensor]:
    """``scale, shift`` with ``x * scale + shift`` = renormalised ``x``, both ``(1, C, 1, 1)``.

    An input normalised with ``(input_mean, input_std)`` is ``(x01 - input_mean) /
    input_std``; the model wants ``(x01 - mean) / std``. Without input statistics the
    input is on [0, 1].
    """
    _check_stats("The model's", mean, std)
    if (input_mean is None) != (input_std is None):
        raise ValueError("Give both input_mean and input_std, or neither (inputs on [0, 1]).")
    channels = len(mean)
    input_mean = (0.0,) * channels if input_mean is None else input_mean
    input_std = (1.0,) * channels if input_std is None else input_std
    _check_stats("The input's", input_mean, input_std)
    if len(input_mean) != channels:
        raise ValueError(f"input_mean has {len(input_mean)} channels, the model {channels}.")
    mean_t, std_t = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    in_mean = torch.tensor(input_mean).view(1, -1, 1, 1)
    in_std = torch.tensor(input_std).view(1, -1, 1, 1)
    return in_std / std_t, (in_mean - mean_t) / std_t


def _resize(images: Tensor, size: int, mode: str) -> Tensor:
    """Resize a ``(B, C, h, w)`` float batch to ``(B, C, size, size)``; no-op at that size."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    shrink = images.shape[-1] > size or images.shape[-2] > size
    options = {} if mode == "nearest" else {"align_corners": False, "antialias": shrink}
    return F.interpolate(images, size=(size, size), mode=mode, **options)


def preprocess_batch(
    images: Tensor,
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
) -> Tensor:
    """Resize and renormalise a whole batch on its device, for the fast path.

    Renormalising is a per-channel affine map and resizing a per-channel weighted average
    whose weights sum to one, so the two commute: the affine map runs first, on the small
    images, where it is cheapest.

    Args:
        images: ``(B, C, h, w)``: uint8 on [0, 255], or float, either on [0, 1] or
            normalised with ``input_mean`` and ``input_std``.
        image_size: the side of the square output, in pixels.
        mean: the model's per-channel mean, on [0, 1].
        std: the model's per-channel standard deviation, on [0, 1].
        interpolation: ``"bicubic"``, ``"bilinear"`` or ``"nearest"``.
        input_mean: the statistics the float ``images`` were normalised with; ``None``
            for images on [0, 1] (and for uint8 images).
        input_std: given together with ``input_mean``.

    Returns:
        ``(B, C, image_size, image_size)`` float, normalised as the model expects.

    Raises:
        ValueError: for a batch that is not 4-D, input statistics with uint8 images, an
            unknown interpolation, or statistics of the wrong length.

    >>> batch = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    >>> preprocess_batch(batch, image_size=64, mean=(0.5,) * 3, std=(0.5,) * 3).unique()
    tensor([1.])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        if input_mean is not None:
            raise ValueError("uint8 images are on [0, 255]; input statistics apply to floats.")
        images = images.float() / 255.0  # (B, C, h, w) on [0, 1]
    scale, shift = _affine(mean, std, input_mean, input_std)
    images = images * scale.to(images.device) + shift.to(images.device)  # (B, C, h, w)
    return _resize(images, image_size, _interpolation_mode(interpolation))


class WithPreprocessing(nn.Module):
    """A pretrained model that takes the loaders' small images and preprocesses them itself.

    ``forward`` renormalises the batch from the loaders' statistics to the model's and
    resizes it to the model's input size (:func:`preprocess_batch`), then runs the model.
    Putting this step inside the model, rather than in the loaders, is what makes one
    model work with both of :func:`helpers.data.make_loaders`' paths unchanged: the
    standard ``DataLoader`` and the fast :class:`~helpers.data.DeviceLoader` both deliver
    small normalised images (augmented at their native size), and the resize runs on the
    training device, in one batched call, after the batch has crossed to it: 49 times less
    data to load and move than 224x224 images. Exported models and a ``Predictor`` then
    carry their preprocessing with them. timm's ``forward_features``, ``forward_head``,
    ``get_classifier``, ``reset_classifier`` and ``no_weight_decay`` pass through, so
    the wrapper trains with :func:`helpers.train.fit` and probes like the bare model.

    Args:
        model: a timm model.
        input_mean: the per-channel mean the loaders normalised with
            (``Loaders.mean``); ``None`` for inputs on [0, 1].
        input_std: the loaders' standard deviation (``Loaders.std``).
        image_size: the side the model sees; the model's input size when ``None``.
        mean: the model's mean; from :func:`data_config` when ``None``.
        std: the model's standard deviation; from :func:`data_config` when ``None``.
        interpolation: the resize method; the model's when ``None``.

    Raises:
        ValueError: as :func:`preprocess_batch`, or for a model without timm's interface.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str | None = None,
    ) -> None:
        super().__init__()
        config = data_config(model)
        self.model = model
        self.image_size = config.image_size if image_size is None else int(image_size)
        self.mode = _interpolation_mode(interpolation or config.interpolation)
        scale, shift = _affine(
            config.mean if mean is None else mean,
            config.std if std is None else std,
            input_mean,
            input_std,
        )
        # Not in the state dict: the weights stay those of the bare model (as in timm).
        self.register_buffer("scale", scale, persistent=False)  # (1, C, 1, 1)
        self.register_buffer("shift", shift, persistent=False)  # (1, C, 1, 1)

    def preprocess(self, images: Tensor) -> Tensor:
        """Renormalise and resize a ``(B, C, h, w)`` batch to ``(B, C, S, S)``."""
        images = images * self.scale + self.shift  # (B, C, h, w)
        return _resize(images, self.image_size, self.mode)  # (B, C, S, S)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, K)`` for a batch of the loaders' images ``(B, C, h, w)``."""
        return self.model(self.preprocess(images))

    def forward_features(self, images: Tensor) -> Tensor:
        """The model's unpooled features of the preprocessed batch."""
        return self.model.forward_features(self.preprocess(images))

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """The model's head: pooled features ``(B, D)`` or logits ``(B, K)``."""
        return self.model.forward_head(features, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        """The model's classifier layer."""
        return self.model.get_classifier()

    def reset_classifier(self, num_classes: int, *args: object, **kwargs: object) -> None:
        """Replace the model's classifier by a fresh one with ``num_classes`` outputs."""
        self.model.reset_classifier(num_classes, *args, **kwargs)

    def no_weight_decay(self) -> set[str]:
        """The model's no-weight-decay parameter names, as this wrapper names them."""
        names = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else ()
        return {f"model.{name}" for name in names}

    @property
    def num_classes(self) -> int:
        """The model's number of outputs."""
        return int(self.model.num_classes)

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, interpolation={self.mode!r}"
