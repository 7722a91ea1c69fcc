"""FastNet: the small VGG-like network of the fast CIFAR-10 recipe (:mod:`helpers.fast`).

Its design follows Keller Jordan's airbench94 (2024), which reaches 94% CIFAR-10 test
accuracy in a few seconds on one GPU: a frozen 2x2 patch-whitening convolution, then three
groups of two 3x3 convolutions (64, 256 and 256 channels), each group halving the
resolution with a max pool, batch norm without a learnable scale, GELU activations, a
global max pool and a bias-free linear head whose logits are scaled down by 9.

This module holds the architecture only; :func:`helpers.fast.init_whitening` sets the
whitening filters from the training images, and :func:`helpers.fast.train_fast` trains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._common import _check_int, _make_classifier
from ._registry import register_model

__all__ = ["ConvGroup", "FastNet", "PatchWhitening", "ScaleFreeBatchNorm", "fastnet"]


class PatchWhitening(nn.Module):
    """A ``k x k`` convolution (no padding) with ``2 * C * k * k`` filters and a bias.

    :func:`helpers.fast.init_whitening` fills the filters with the eigenvectors of the
    covariance of the training images' ``k x k`` patches, each scaled by one over the square
    root of its eigenvalue, and their negatives (so that a following GELU keeps both signs).
    ``frozen=True`` keeps the filters as a buffer: the optimiser never sees them, while the
    bias stays a parameter.

    Args:
        in_chans: channels of the input images.
        kernel_size: side of the patches, in pixels.
        frozen: store the filters as a buffer (not trained) instead of a parameter.

    >>> PatchWhitening(3, 2)(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 24, 31, 31])
    """

    def __init__(self, in_chans: int = 3, kernel_size: int = 2, *, frozen: bool = True) -> None:
        super().__init__()
        _check_int(in_chans, "in_chans", 1)
        _check_int(kernel_size, "kernel_size", 1)
        self.in_chans, self.kernel_size, self.frozen = in_chans, kernel_size, frozen
        self.out_chans = 2 * in_chans * kernel_size**2
        weight = torch.empty(self.out_chans, in_chans, kernel_size, kernel_size)
        if frozen:
            self.register_buffer("weight", weight)
        else:
            self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.empty(self.out_chans))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Filters as a default convolution's (Kaiming-uniform); bias zero."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's own initialisation
        nn.init.zeros_(self.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 2 C k^2, H - k + 1, W - k + 1)``."""
        return F.conv2d(images, self.weight, self.bias)


class ScaleFreeBatchNorm(nn.BatchNorm2d):
    """Batch norm with a learnable shift (bias) but no learnable scale.

    The convolution before it can scale its output freely and batch norm undoes that, so a
    learnable scale adds nothing but a parameter to tune; leaving it out is one of
    airbench's simplifications.

    Args:
        num_features: channels.
        momentum: PyTorch's convention: the weight of each new batch in the running
            statistics (0.1 is PyTorch's default; the fast recipe uses 0.4).
        eps: added to the variance.
    """

    def __init__(self, num_features: int, momentum: float = 0.4, eps: float = 1e-12) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(num_features))

    def reset_parameters(self) -> None:
        """Reset the running statistics and the bias."""
        super().reset_parameters()
        if isinstance(getattr(self, "bias", None), nn.Parameter):
            nn.init.zeros_(self.bias)


def _make_conv(in_chans: int, out_chans: int) -> nn.Conv2d:
    """A 3x3 'same' convolution without bias (batch norm follows)."""
    return nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False)


def _reset_conv(conv: nn.Conv2d) -> None:
    """Default init, then identity (Dirac) filters for the first ``in_chans`` outputs, so
    that at the start each convolution passes its input through (as airbench does)."""
    conv.reset_parameters()
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: conv.in_channels])


class ConvGroup(nn.Module):
    """conv -> max pool 2x2 -> BN -> GELU -> conv -> BN -> GELU: halves the resolution.

    Args:
        in_chans: input channels.
        out_chans: output channels of both convolutions.
        bn_momentum: batch norm momentum (PyTorch's convention).

    >>> ConvGroup(24, 64)(torch.zeros(2, 24, 31, 31)).shape
    torch.Size([2, 64, 15, 15])
    """

    def __init__(self, in_chans: int, out_chans: int, bn_momentum: float = 0.4) -> None:
        super().__init__()
        self.conv1 = _make_conv(in_chans, out_chans)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = ScaleFreeBatchNorm(out_chans, bn_momentum)
        self.conv2 = _make_conv(out_chans, out_chans)
        self.norm2 = ScaleFreeBatchNorm(out_chans, bn_momentum)
        self.act = nn.GELU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise both convolutions and both norms."""
        for conv in (self.conv1, self.conv2):
            _reset_conv(conv)
        for norm in (self.norm1, self.norm2):
            norm.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in, H, W)`` -> ``(B, out, H // 2, W // 2)``."""
        x = self.act(self.norm1(self.pool(self.conv1(x))))  # (B, out, H/2, W/2)
        return self.act(self.norm2(self.conv2(x)))


class FastNet(nn.Module):
    """The network of the fast recipe: patch whitening and three convolution groups.

    ==============================  ====================  ===============
    part                            output (32x32x3)      parameters
    ==============================  ====================  ===============
    whiten (2x2, frozen) + GELU     (24, 31, 31)          24 (bias)
    groups.0                        (64, 15, 15)          50,816
    groups.1                        (256, 7, 7)           737,792
    groups.2                        (256, 3, 3)           1,180,160
    global max pool, fc / 9         (num_classes,)        2,560
    ==============================  ====================  ===============

    Args:
        num_classes: outputs of the classifier; 0 for none (the forward returns the pooled
            features).
        in_chans: channels of the input images.
        widths: channels of the three groups.
        whiten_kernel: side of the whitening patches, in pixels.
        whiten_frozen: keep the whitening filters fixed (a buffer) rather than trained.
        bn_momentum: batch norm momentum, PyTorch's convention (weight of the new batch).
        head_scale: multiplies the logits; a small value keeps the first steps' softmax
            soft, which airbench found to train faster than a smaller head learning rate.

    Raises:
        ValueError: for widths that are not three positive integers, or bad sizes.

    >>> FastNet()(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 256, 256),
        whiten_kernel: int = 2,
        whiten_frozen: bool = True,
        bn_momentum: float = 0.4,
        head_scale: float = 1 / 9,
    ) -> None:
        super().__init__()
        widths = _check_widths(widths)
        if not 0 < bn_momentum <= 1:
            raise ValueError(f"bn_momentum must lie in (0, 1], got {bn_momentum!r}.")
        self.num_classes, self.head_scale = num_classes, float(head_scale)
        self.num_features = self.head_hidden_size = widths[-1]
        self.whiten = PatchWhitening(in_chans, whiten_kernel, frozen=whiten_frozen)
        self.act = nn.GELU()
        chans = [self.whiten.out_chans, *widths]
        self.groups = nn.Sequential(
            *(ConvGroup(chans[i], chans[i + 1], bn_momentum) for i in range(len(widths)))
        )
        self.feature_info = [
            dict(num_chs=width, reduction=2 ** (i + 1), module=f"groups.{i}")
            for i, width in enumerate(widths)
        ]
        self.global_pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        """A bias-free linear head (the identity for 0 classes)."""
        head = _make_classifier(self.num_features, num_classes)
        if isinstance(head, nn.Linear):
            head = nn.Linear(self.num_features, num_classes, bias=False)
        return head

    def reset_parameters(self) -> None:
        """Re-initialise every layer in place (a compiled model stays compiled)."""
        self.whiten.reset_parameters()
        for group in self.groups:
            group.reset_parameters()
        if isinstance(self.fc, nn.Linear):
            self.fc.reset_parameters()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The last feature map: ``(B, widths[-1], 3, 3)`` for 32x32 images."""
        x = self.act(self.whiten(images))  # (B, 24, 31, 31)
        return self.groups(x)  # (B, 64, 15, 15) -> (B, 256, 7, 7) -> (B, 256, 3, 3)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Scaled logits ``(B, num_classes)``, or the pooled features when ``pre_logits``."""
        pooled = self.flatten(self.global_pool(features))  # (B, C)
        if pre_logits or not isinstance(self.fc, nn.Linear):
            return pooled
        return self.fc(pooled) * self.head_scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)``, H and W at least 9."""
        return self.forward_head(self.forward_features(images))

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer by a new one with ``num_classes`` outputs (0: none)."""
        self.fc = self._make_head(num_classes)
        self.num_classes = num_classes


def _check_widths(widths: Sequence[int]) -> list[int]:
    """Three positive integers, or a ``ValueError``."""
    values = list(widths) if isinstance(widths, (list, tuple)) else None
    if (
        values is None
        or len(values) != 3
        or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in values)
    ):
        raise ValueError(f"widths must be three positive integers, got {widths!r}.")
    return values


@register_model
def fastnet(num_classes: int = 10, **kwargs: Any) -> FastNet:
    """The fast recipe's network, widths 64-256-256: about 1.97M parameters."""
    return FastNet(num_classes=num_classes, **kwargs)
