"""Patch whitening: the first layer's filters from the training patches' covariance."""

from __future__ import annotations

import torch
from torch import nn

from helpers.models import FastNet
from helpers.models._fastnet import PatchWhitening


def _whitening_layer(net: nn.Module) -> PatchWhitening:
    """The :class:`PatchWhitening` of a FastNet (compiled or not), or the layer itself."""
    net = getattr(net, "_orig_mod", net)  # torch.compile keeps the module here
    layer = net.whiten if isinstance(net, FastNet) else net
    if not isinstance(layer, PatchWhitening):
        raise ValueError(
            f"init_whitening needs a FastNet or a PatchWhitening layer, got {type(net).__name__}."
        )
    return layer


def patch_covariance(
    images: torch.Tensor, kernel_size: int, *, chunk_size: int = 1000
) -> torch.Tensor:
    """The (uncentred) covariance of every ``k x k`` patch of ``images``.

    Args:
        images: ``(N, C, H, W)`` float images, normalised (mean about 0 per channel).
        kernel_size: the patch side ``k``.
        chunk_size: images unfolded at a time, to bound memory.

    Returns:
        A ``(C k k, C k k)`` float64 matrix, in the order of a convolution's filter
        ``(C, k, k)`` flattened.

    Raises:
        ValueError: for images that are not 4-D or smaller than the patch.
    """
    if images.ndim != 4 or min(images.shape[-2:]) < kernel_size:
        raise ValueError(
            f"images must be (N, C, H, W) with H, W >= {kernel_size}, got {tuple(images.shape)}."
        )
    dim = images.shape[1] * kernel_size**2
    total = torch.zeros(dim, dim, dtype=torch.float64, device=images.device)
    count = 0
    for chunk in images.split(chunk_size):
        patches = chunk.float().unfold(2, kernel_size, 1).unfold(3, kernel_size, 1)
        # (n, C, H', W', k, k) -> (n * H' * W', C * k * k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dim).double()
        total += patches.T @ patches
        count += len(patches)
    return total / count


@torch.no_grad()
def init_whitening(net: nn.Module, images: torch.Tensor, *, eps: float = 5e-4) -> None:
    """Set the whitening filters of ``net`` from the patches of ``images``.

    The ``C k^2`` eigenvectors of the patch covariance, each divided by the square root of
    its eigenvalue plus ``eps``, make a convolution whose outputs are uncorrelated with unit
    variance (on these images); the layer holds them and their negatives (``2 C k^2``
    filters), largest eigenvalue first. The bias is reset to zero.

    Args:
        net: a :class:`~helpers.models.FastNet` (compiled or not) or its
            :class:`PatchWhitening` layer.
        images: ``(N, C, H, W)`` normalised training images (a few thousand suffice).
        eps: added to each eigenvalue; damps the directions of near-zero variance.

    Raises:
        ValueError: for another kind of network, images whose channels differ from the
            layer's, or a non-positive ``eps``.
    """
    layer = _whitening_layer(net)
    if images.ndim != 4 or images.shape[1] != layer.in_chans:
        raise ValueError(f"images must be (N, {layer.in_chans}, H, W), got {tuple(images.shape)}.")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}.")
    k = layer.kernel_size
    covariance = patch_covariance(images, k)  # (D, D), D = C k k
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)  # largest first
    filters = eigenvectors.T / (eigenvalues.clamp(min=0) + eps).sqrt()[:, None]  # (D, D)
    weight = torch.cat([filters, -filters]).view(-1, layer.in_chans, k, k)  # (2D, C, k, k)
    layer.weight.copy_(weight.to(layer.weight.dtype))
    layer.bias.zero_()
