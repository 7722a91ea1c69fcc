"""A Vision Transformer written from its parts (Dosovitskiy et al., 2021).

An image is cut into ``P x P`` patches; each patch becomes a token (a vector of ``D``
numbers) through one linear map, a learned class token is put in front, and a learned
position embedding is added, because attention by itself ignores order. A stack of encoder
blocks then lets every token look at every other one. The class token's final state,
normalised, goes to a linear head.

Each part is a small module that a chapter can show and test on its own:

* :class:`PatchEmbedding`: ``(B, C, H, W) -> (B, N, D)``, a convolution whose kernel and
  stride equal the patch size (the same as flattening each patch and applying a Linear);
* :class:`MultiHeadSelfAttention`: one Linear makes queries, keys and values for every head;
  ``softmax(q k^T / sqrt(d)) v`` mixes the tokens; a Linear projects the heads back to ``D``;
* :class:`MLP`: Linear, GELU, dropout, Linear, dropout, applied to each token alone;
* :class:`EncoderBlock`: pre-norm residual blocks, ``x + attn(LN(x))`` then ``x + mlp(LN(x))``;
* :class:`VisionTransformer`: all of the above, with the class token and position embedding.

Attention normally runs through :func:`torch.nn.functional.scaled_dot_product_attention`,
which fuses the steps (and never stores the ``T x T`` weights when it can avoid it). When
the weights are asked for (``return_attention=True``, for attention maps), the same
computation runs step by step and keeps them.

Parameter names follow timm's ``VisionTransformer``, so a timm ViT's ``state_dict`` (for
example pretrained ViT-B/16 weights) loads into the matching :class:`VisionTransformer`.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import torch
import torch.nn.functional as F
from torch import nn

from ._common import _check_int, _check_rate, _make_classifier
from ._registry import register_model

__all__ = [
    "MLP",
    "EncoderBlock",
    "MultiHeadSelfAttention",
    "PatchEmbedding",
    "VisionTransformer",
    "vit_b16",
    "vit_small_cifar",
    "vit_tiny_cifar",
]


class PatchEmbedding(nn.Module):
    """Cut an image into non-overlapping patches and map each one to a ``D``-dim token.

    Args:
        image_size: height and width of the (square) images.
        patch_size: side of each square patch; must divide ``image_size``.
        in_chans: channels of the images.
        embed_dim: size ``D`` of each token.

    Raises:
        ValueError: when ``patch_size`` does not divide ``image_size``.

    >>> PatchEmbedding(32, 4, 3, 64)(torch.zeros(2, 3, 32, 32)).shape  # 8 x 8 patches
    torch.Size([2, 64, 64])
    """

    def __init__(self, image_size: int, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        _check_int(image_size, "image_size", 1)
        _check_int(patch_size, "patch_size", 1)
        if image_size % patch_size:
            raise ValueError(
                f"patch_size {patch_size} does not divide image_size {image_size}; "
                "choose a divisor such as "
                f"{[p for p in range(1, image_size + 1) if image_size % p == 0][-4:]}."
            )
        self.image_size = image_size
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size  # patches per side
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, D)`` for images ``(B, C, H, W)``, ``N = (H / P) * (W / P)``."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"This ViT was built for {self.image_size}x{self.image_size} images, got "
                f"{tuple(images.shape[-2:])}; resize them or build it with image_size to match."
            )
        patches = self.proj(images)  # (B, D, H / P, W / P)
        return patches.flatten(2).transpose(1, 2)  # (B, N, D)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention: every token attends to every token, in ``num_heads`` ways.

    Args:
        dim: size ``D`` of each token; must be a multiple of ``num_heads``.
        num_heads: number of heads; each works on ``D / num_heads`` dimensions.
        qkv_bias: whether the query/key/value projection has a bias.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.
        fused: use :func:`~torch.nn.functional.scaled_dot_product_attention` unless the
            weights are asked for; ``False`` always computes step by step, which trained
            ``vit_tiny_cifar`` twice as fast under bf16 autocast on a 2-core AMX CPU.

    Raises:
        ValueError: when ``dim`` is not a multiple of ``num_heads``.

    >>> attn = MultiHeadSelfAttention(64, num_heads=4)
    >>> out, weights = attn(torch.zeros(2, 17, 64), return_attention=True)
    >>> out.shape, weights.shape
    (torch.Size([2, 17, 64]), torch.Size([2, 4, 17, 17]))
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        fused: bool = True,
    ) -> None:
        super().__init__()
        _check_int(num_heads, "num_heads", 1)
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}.")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5  # keeps q.k of order 1 whatever the head size
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(_check_rate(attn_drop, "attn_drop"))
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(_check_rate(proj_drop, "proj_drop"))
        self.fused = fused

    def forward(
        self, tokens: torch.Tensor, return_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend.

        Args:
            tokens: ``(B, T, D)``.
            return_attention: also return the attention weights (computed step by step
                instead of by the fused kernel).

        Returns:
            The new tokens ``(B, T, D)`` and the weights ``(B, heads, T, T)`` (each row sums
            to 1) or ``None``, like :class:`torch.nn.MultiheadAttention`.
        """
        batch, length, dim = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        weights = None
        if return_attention or not self.fused:
            scores = (q * self.scale) @ k.transpose(-2, -1)  # (B, heads, T, T)
            weights = scores.softmax(dim=-1)  # (B, heads, T, T), rows sum to 1
            mixed = self.attn_drop(weights) @ v  # (B, heads, T, head_dim)
        else:
            drop = self.attn_drop.p if self.training else 0.0
            mixed = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, heads, T, hd)
        merged = mixed.transpose(1, 2).reshape(batch, length, dim)  # (B, T, D)
        return self.proj_drop(self.proj(merged)), weights if return_attention else None


class MLP(nn.Module):
    """The per-token feed-forward network: Linear, GELU, dropout, Linear, dropout.

    Dropout follows each dense layer, as in the paper (its Appendix B.1).

    Args:
        dim: size of each token, in and out.
        hidden_dim: width of the hidden layer (4 x ``dim`` in the paper).
        drop: dropout probability.

    >>> MLP(64, 256)(torch.zeros(2, 17, 64)).shape
    torch.Size([2, 17, 64])
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(_check_rate(drop, "drop"))
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T, D) -> (B, T, D)``, each token on its own."""
        hidden = self.drop1(self.act(self.fc1(tokens)))  # (B, T, hidden_dim)
        return self.drop2(self.fc2(hidden))  # (B, T, D)


class EncoderBlock(nn.Module):
    """A pre-norm Transformer encoder block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``.

    Normalising before each sub-layer (not after, as in the original Transformer) keeps the
    residual path an identity, so deep stacks train without warm-up tricks.

    Args:
        dim: size ``D`` of each token.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        qkv_bias: whether the query/key/value projection has a bias.
        drop: dropout after the attention projection and in the MLP.
        attn_drop: dropout on the attention weights.
        fused_attn: see :class:`MultiHeadSelfAttention` (``fused``).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        fused_attn: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiHeadSelfAttention(dim, num_heads, qkv_bias, attn_drop, drop, fused_attn)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, round(dim * mlp_ratio), drop)

    def forward(
        self, tokens: torch.Tensor, return_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, T, D) -> (B, T, D)``, and the attention weights ``(B, heads, T, T)`` or None."""
        attended, weights = self.attn(self.norm1(tokens), return_attention)
        tokens = tokens + attended  # (B, T, D)
        tokens = tokens + self.mlp(self.norm2(tokens))  # (B, T, D)
        return tokens, weights


class VisionTransformer(nn.Module):
    """A Vision Transformer (ViT) classifier, from tiny CIFAR models to ViT-B/16.

    ==============  =====  =====  =====  =====  ======  =========================
    config          image  patch  dim    depth  heads   parameters (10 classes)
    ==============  =====  =====  =====  =====  ======  =========================
    vit_tiny_cifar  32     4      128    4      4       0.8M
    vit_small_cifar 32     4      192    6      3       2.7M
    vit_b16         224    16     768    12     12      85.8M (86.6M, 1000 classes)
    ==============  =====  =====  =====  =====  ======  =========================

    Args:
        num_classes: outputs of the head; 0 for none (the forward returns the normalised
            class token).
        in_chans: channels of the input images.
        image_size: height and width of the (square) images; fixes the position embedding.
        patch_size: side of each patch; must divide ``image_size``.
        embed_dim: size ``D`` of every token.
        depth: number of encoder blocks.
        num_heads: attention heads per block; must divide ``embed_dim``.
        mlp_ratio: hidden width of each MLP as a multiple of ``embed_dim``.
        qkv_bias: whether the query/key/value projections have biases.
        drop_rate: dropout after the embeddings and after every dense layer but the qkv.
        attn_drop_rate: dropout on the attention weights.
        fused_attn: compute attention with the fused kernel (see
            :class:`MultiHeadSelfAttention`); the results are the same either way.

    Raises:
        ValueError: for sizes that do not fit together (see the parts).

    ``get_attention_maps(images)`` returns the attention weights of every block.

    >>> vit = VisionTransformer(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    >>> logits, maps = vit(torch.zeros(2, 3, 32, 32), return_attention=True)
    >>> logits.shape, len(maps), maps[0].shape  # 16 patches + the class token
    (torch.Size([2, 10]), 2, torch.Size([2, 2, 17, 17]))
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        image_size: int = 32,
        patch_size: int = 4,
        embed_dim: int = 192,
        depth: int = 6,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        fused_attn: bool = True,
    ) -> None:
        super().__init__()
        _check_int(depth, "depth", 1)
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = embed_dim
        self.patch_embed = PatchEmbedding(image_size, patch_size, in_chans, embed_dim)
        num_tokens = self.patch_embed.num_patches + 1  # the patches and the class token
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, embed_dim))
        self.pos_drop = nn.Dropout(_check_rate(drop_rate, "drop_rate"))
        self.blocks = nn.ModuleList(
            EncoderBlock(
                embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, fused_attn
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = _make_classifier(embed_dim, num_classes)
        self.feature_info = [
            dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}")
            for i in range(depth)
        ]
        self.apply(self._init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """Small truncated-normal weights and zero biases for the dense layers."""
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def _encode(
        self, images: torch.Tensor, return_attention: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Normalised tokens ``(B, 1 + N, D)`` and, when asked, each block's attention."""
        tokens = self.patch_embed(images)  # (B, N, D)
        cls_token = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        tokens = torch.cat([cls_token, tokens], dim=1)  # (B, 1 + N, D)
        tokens = self.pos_drop(tokens + self.pos_embed)  # (B, 1 + N, D)
        maps = []
        for block in self.blocks:
            tokens, weights = block(tokens, return_attention)  # (B, 1 + N, D)
            if weights is not None:
                maps.append(weights)  # (B, heads, 1 + N, 1 + N)
        return self.norm(tokens), maps

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """All the final tokens ``(B, 1 + N, D)``, normalised; the class token first."""
        return self._encode(images, return_attention=False)[0]

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Logits ``(B, num_classes)`` from the class token, or the token when ``pre_logits``."""
        cls_state = tokens[:, 0]  # (B, D)
        return cls_state if pre_logits else self.head(cls_state)

    @overload
    def forward(
        self, images: torch.Tensor, return_attention: Literal[False] = ...
    ) -> torch.Tensor: ...

    @overload
    def forward(
        self, images: torch.Tensor, return_attention: Literal[True]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]: ...

    def forward(
        self, images: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Classify images ``(B, C, H, W)``.

        Args:
            images: a batch of images of the size the model was built for.
            return_attention: also return every block's attention weights.

        Returns:
            Logits ``(B, num_classes)``; with ``return_attention``, the logits and a list
            (one per block) of ``(B, heads, 1 + N, 1 + N)`` weights whose rows sum to 1.
        """
        tokens, maps = self._encode(images, return_attention)
        logits = self.forward_head(tokens)
        return (logits, maps) if return_attention else logits

    def get_attention_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every block's attention weights ``(B, heads, 1 + N, 1 + N)``, first block first.

        Row ``i`` of a head's map says how much token ``i`` draws on each token; row 0 is the
        class token. Call it under ``torch.no_grad()`` in eval mode for a deterministic map.
        """
        return self._encode(images, return_attention=True)[1]

    def get_classifier(self) -> nn.Module:
        """The linear head."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a new one with ``num_classes`` outputs (0: none)."""
        self.head = _make_classifier(self.num_features, num_classes)
        self._init_weights(self.head)
        self.num_classes = num_classes


# ----------------------------------------------------------------------------------------------
# Registered entry points
# ----------------------------------------------------------------------------------------------


def _vit(num_classes: int, defaults: dict[str, Any], kwargs: dict[str, Any]) -> VisionTransformer:
    """A ViT from a named configuration, with the caller's keyword arguments on top."""
    return VisionTransformer(num_classes=num_classes, **{**defaults, **kwargs})


@register_model
def vit_tiny_cifar(num_classes: int = 10, **kwargs: Any) -> VisionTransformer:
    """A ViT small enough to train briefly on a CPU: 32x32 images, 4x4 patches, dim 128,
    4 blocks of 4 heads."""
    defaults = dict(image_size=32, patch_size=4, embed_dim=128, depth=4, num_heads=4)
    return _vit(num_classes, defaults, kwargs)


@register_model
def vit_small_cifar(num_classes: int = 10, **kwargs: Any) -> VisionTransformer:
    """A ViT for CIFAR on a GPU: 32x32 images, 4x4 patches, dim 192, 6 blocks of 3 heads."""
    defaults = dict(image_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3)
    return _vit(num_classes, defaults, kwargs)


@register_model
def vit_b16(num_classes: int = 10, **kwargs: Any) -> VisionTransformer:
    """The paper's ViT-Base/16: 224x224 images, 16x16 patches, dim 768, 12 blocks of
    12 heads, MLP 3072; 86.6M parameters with a 1000-class head."""
    defaults = dict(image_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12)
    return _vit(num_classes, defaults, kwargs)
