"""Convolutional networks: the book's SimpleCNN and a fast residual CNN (ResNet-9).

Both follow timm's model interface (``forward_features``, ``forward_head``,
``reset_classifier``, ``num_classes``) and describe their feature maps in ``feature_info``,
as timm's CNNs do: ``model.feature_info[-1]["module"]`` names the last convolutional block,
the layer Grad-CAM hooks.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._common import _check_int, _check_rate, _make_classifier
from ._registry import register_model

__all__ = [
    "ConvBNReLU",
    "ResNet9",
    "ResidualBlock",
    "SimpleCNN",
    "resnet9",
    "resnet9_narrow",
    "simple_cnn",
]


# ----------------------------------------------------------------------------------------------
# SimpleCNN: the seed table
# ----------------------------------------------------------------------------------------------


class SimpleCNN(nn.Module):
    """Two convolutions and two dense layers: the book's first network.

    ======================================  ===================  ==================
    layer                                   output (32x32x3)     parameters
    ======================================  ===================  ==================
    Conv2d(in, 32, 3x3, no padding) + ReLU  (32, 30, 30)         896
    MaxPool2d(2)                            (32, 15, 15)         0
    Conv2d(32, 64, 3x3, no padding) + ReLU  (64, 13, 13)         18,496
    MaxPool2d(2)                            (64, 6, 6)           0
    Flatten, Linear(2304, 128) + ReLU       (128,)               295,040
    Linear(128, num_classes)                (10,)                1,290
    ======================================  ===================  ==================

    For a 28x28x1 input (MNIST) the counts are 320, 18,496, 204,928 and 1,290.

    Args:
        num_classes: outputs of the classifier; 0 for none (the forward returns the 128
            pre-logit features).
        in_chans: channels of the input images.
        image_size: height and width of the (square) input images, at least 10; it fixes the
            size of the first dense layer.

    Raises:
        ValueError: for an image size below 10 or a non-positive channel count.

    The last convolutional block, for Grad-CAM, is ``features.act2`` (its ReLU output).

    >>> SimpleCNN(num_classes=10)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, image_size: int = 32) -> None:
        super().__init__()
        _check_int(in_chans, "in_chans", 1)
        _check_int(image_size, "image_size", 10)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.image_size = image_size
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(in_chans, 32, kernel_size=3),
                act1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(32, 64, kernel_size=3),
                act2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
            )
        )
        side = ((image_size - 2) // 2 - 2) // 2  # two 3x3 valid convolutions, two 2x2 pools
        self.num_features = 64  # channels of the feature map (timm's convention)
        self.head_hidden_size = 128  # size of the pre-logit features
        self.feature_info = [
            dict(num_chs=32, reduction=1, module="features.act1"),
            dict(num_chs=64, reduction=2, module="features.act2"),
        ]
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.act3 = nn.ReLU()
        self.fc2 = _make_classifier(128, num_classes)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The feature map after the second pooling: ``(B, 64, s, s)``, ``s = 6`` at 32x32."""
        if images.shape[1:] != (self.in_chans, self.image_size, self.image_size):
            raise ValueError(
                f"SimpleCNN was built for ({self.in_chans}, {self.image_size}, "
                f"{self.image_size}) images, got {tuple(images.shape[1:])}; build it with "
                "in_chans and image_size to match."
            )
        return self.features(images)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits ``(B, num_classes)``, or the 128 hidden features when ``pre_logits``."""
        hidden = self.act3(self.fc1(self.flatten(features)))  # (B, 128)
        return hidden if pre_logits else self.fc2(hidden)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        return self.forward_head(self.forward_features(images))

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.fc2

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer by a new one with ``num_classes`` outputs (0: none)."""
        self.fc2 = _make_classifier(self.head_hidden_size, num_classes)
        self.num_classes = num_classes


# ----------------------------------------------------------------------------------------------
# ResNet-9: a fast residual network for CIFAR-sized images
# ----------------------------------------------------------------------------------------------


class ConvBNReLU(nn.Sequential):
    """A 3x3 convolution (padding 1, no bias: batch norm has one), batch norm, ReLU.

    >>> ConvBNReLU(3, 8)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 8, 32, 32])
    """

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
                bn=nn.BatchNorm2d(out_chans),
                act=nn.ReLU(),  # not in place: hooks (Grad-CAM) may hold the BN output
            )
        )


class ResidualBlock(nn.Module):
    """``x + f(x)`` where ``f`` is two :class:`ConvBNReLU` of the same width (He et al., 2016).

    The identity path lets the gradient skip ``f``, which is what makes deep networks
    trainable; ``f`` only has to learn a correction to its input.
    """

    def __init__(self, chans: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(chans, chans)
        self.conv2 = ConvBNReLU(chans, chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same shape in and out: ``(B, C, H, W)``."""
        return x + self.conv2(self.conv1(x))


class ResNet9(nn.Module):
    """A ResNet-9-style network: residual blocks (He et al., 2016) in the compact layout of
    the DAWNBench CIFAR-10 entries (Page, 2018, "How to train your ResNet"), which reached 94%
    test accuracy in 24 epochs on one GPU.

    The stem is one :class:`ConvBNReLU`; each of the three stages doubles the width with a
    :class:`ConvBNReLU`, halves the resolution with a 2x2 max pool and, where ``residual``
    says so, adds a :class:`ResidualBlock`. A global pool and a linear layer classify.

    ====================  ==================  ==========
    part                  output (32x32x3)    residual
    ====================  ==================  ==========
    stem                  (64, 32, 32)
    stages.0              (128, 16, 16)       yes
    stages.1              (256, 8, 8)         no
    stages.2              (512, 4, 4)         yes
    global pool, fc       (num_classes,)
    ====================  ==================  ==========

    Args:
        num_classes: outputs of the classifier; 0 for none (the forward returns pooled
            features).
        in_chans: channels of the input images.
        widths: channels of the stem and of each stage (one more than the stages).
        width_mult: multiplies every width (rounded, at least 1): 0.5 halves them and cuts
            the compute about four times.
        residual: for each stage, whether it ends with a residual block.
        global_pool: ``"max"`` (as in the DAWNBench ResNet-9) or ``"avg"``.
        drop_rate: dropout probability before the classifier.

    Raises:
        ValueError: for inconsistent widths, a bad pool name or a probability outside [0, 1).

    Grad-CAM hooks the last stage, ``feature_info[-1]["module"]`` (``stages.2`` by default).

    >>> ResNet9(num_classes=10, width_mult=0.25)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        width_mult: float = 1.0,
        residual: Sequence[bool] = (True, False, True),
        global_pool: str = "max",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        _check_int(in_chans, "in_chans", 1)
        widths = self._scaled_widths(widths, width_mult)
        if len(residual) != len(widths) - 1:
            raise ValueError(
                f"residual needs one flag per stage ({len(widths) - 1}), got {list(residual)}."
            )
        if global_pool not in ("max", "avg"):
            raise ValueError(f"global_pool must be 'max' or 'avg', got {global_pool!r}.")
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = widths[-1]
        self.stem = ConvBNReLU(in_chans, widths[0])
        self.stages = nn.Sequential(
            *(
                self._make_stage(widths[i], widths[i + 1], residual[i])
                for i in range(len(widths) - 1)
            )
        )
        self.feature_info = [
            dict(num_chs=width, reduction=2**i, module=f"stages.{i - 1}" if i else "stem")
            for i, width in enumerate(widths)
        ]
        pool = nn.AdaptiveMaxPool2d(1) if global_pool == "max" else nn.AdaptiveAvgPool2d(1)
        self.global_pool = pool
        self.flatten = nn.Flatten()
        self.head_drop = nn.Dropout(_check_rate(drop_rate, "drop_rate"))
        self.fc = _make_classifier(self.num_features, num_classes)

    @staticmethod
    def _scaled_widths(widths: Sequence[int], width_mult: float) -> list[int]:
        """``widths`` times ``width_mult``, rounded, after checking both."""
        if len(widths) < 2 or any(isinstance(w, bool) or not isinstance(w, int) for w in widths):
            raise ValueError(f"widths must be two or more integers, got {widths!r}.")
        if isinstance(width_mult, bool) or not width_mult > 0:
            raise ValueError(f"width_mult must be a positive number, got {width_mult!r}.")
        if min(widths) < 1:
            raise ValueError(f"widths must be positive, got {widths!r}.")
        return [max(1, round(w * width_mult)) for w in widths]

    @staticmethod
    def _make_stage(in_chans: int, out_chans: int, residual: bool) -> nn.Sequential:
        """Widen, halve the resolution, then optionally refine with a residual block."""
        parts: OrderedDict[str, nn.Module] = OrderedDict(
            conv=ConvBNReLU(in_chans, out_chans), pool=nn.MaxPool2d(2)
        )
        if residual:
            parts["residual"] = ResidualBlock(out_chans)
        return nn.Sequential(parts)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last feature map ``(B, widths[-1], H / 8, W / 8)``."""
        return self.stages(self.stem(images))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits ``(B, num_classes)``, or the pooled features when ``pre_logits``."""
        pooled = self.head_drop(self.flatten(self.global_pool(features)))  # (B, C)
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)``, H and W at least 8."""
        return self.forward_head(self.forward_features(images))

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer by a new one with ``num_classes`` outputs (0: none)."""
        self.fc = _make_classifier(self.num_features, num_classes)
        self.num_classes = num_classes


# ----------------------------------------------------------------------------------------------
# Registered entry points
# ----------------------------------------------------------------------------------------------


@register_model
def simple_cnn(num_classes: int = 10, **kwargs: Any) -> SimpleCNN:
    """The book's first CNN (the seed table): 315,722 parameters for 32x32x3 and 10 classes."""
    return SimpleCNN(num_classes=num_classes, **kwargs)


@register_model
def resnet9(num_classes: int = 10, **kwargs: Any) -> ResNet9:
    """ResNet-9, widths 64-128-256-512: about 6.6M parameters; the GPU (``full``) model."""
    return ResNet9(num_classes=num_classes, **kwargs)


@register_model
def resnet9_narrow(num_classes: int = 10, **kwargs: Any) -> ResNet9:
    """ResNet-9 at half width (32-64-128-256): a quarter of the compute, for CPUs."""
    kwargs.setdefault("width_mult", 0.5)
    return ResNet9(num_classes=num_classes, **kwargs)
