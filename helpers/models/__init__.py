"""Models: the networks the book trains, a registry of them, and timm's for the rest.

This is the architecture stage of the pipeline. Every model here has timm's interface
(``forward_features``, ``forward_head(x, pre_logits=False)``, ``reset_classifier``,
``num_classes``, ``feature_info``), so the training, evaluation and interpretation code
treats ours and timm's alike.

1. **SimpleCNN**, the book's first network: two 3x3 convolutions with max pooling and two
   dense layers (315,722 parameters for CIFAR-10).
2. **ResNet9**, a fast residual CNN for 32x32 images: batch-normalised 3x3 convolutions,
   three stages that halve the resolution and residual blocks ``x + f(x)``
   (He et al., 2016, "Deep Residual Learning for Image Recognition"), in the compact form
   popularised by the DAWNBench CIFAR-10 entries. ``resnet9_narrow`` halves every width.
3. **VisionTransformer**, written from its parts: patch embedding, class token, position
   embedding, multi-head self-attention, MLP, pre-norm encoder blocks (Dosovitskiy et al.,
   2021, "An Image is Worth 16x16 Words"), from ``vit_tiny_cifar`` up to the paper's
   ``vit_b16`` (86.6M parameters). Attention maps come from ``return_attention=True``.
4. **FastNet**, the network of the fast recipe (:mod:`helpers.fast`): a frozen 2x2
   patch-whitening convolution and three groups of two 3x3 convolutions (64-256-256),
   after Jordan's airbench94 (2024); ``create_model("fastnet")``.
5. **A registry**: :func:`create_model` builds our models by name (:func:`list_models`)
   and any other name through :func:`timm.create_model`, with pretrained weights from
   timm's hub or, offline, from a local file.
6. **summary**: a layer table with output shapes and parameter counts;
   :func:`receptive_field` measures how much of the input one unit of a layer sees.

Example:
    >>> import torch
    >>> model = create_model("simple_cnn", num_classes=10)
    >>> summary(model).attrs["total_params"]
    315722
    >>> vit = create_model("vit_tiny_cifar", num_classes=10)
    >>> logits, maps = vit(torch.zeros(2, 3, 32, 32), return_attention=True)
    >>> maps[0].shape  # (batch, heads, 1 + 64 patches, 1 + 64 patches), one per block
    torch.Size([2, 4, 65, 65])
"""

from ._cnn import ConvBNReLU, ResidualBlock, ResNet9, SimpleCNN, resnet9, resnet9_narrow, simple_cnn
from ._fastnet import FastNet, fastnet
from ._receptive import receptive_field
from ._registry import create_model, create_model_from_config, list_models, register_model
from ._summary import count_parameters, summary
from ._vit import (
    MLP,
    EncoderBlock,
    MultiHeadSelfAttention,
    PatchEmbedding,
    VisionTransformer,
    vit_b16,
    vit_small_cifar,
    vit_tiny_cifar,
)

__all__ = [
    "MLP",
    "ConvBNReLU",
    "EncoderBlock",
    "FastNet",
    "MultiHeadSelfAttention",
    "PatchEmbedding",
    "ResNet9",
    "ResidualBlock",
    "SimpleCNN",
    "VisionTransformer",
    "count_parameters",
    "create_model",
    "create_model_from_config",
    "fastnet",
    "list_models",
    "receptive_field",
    "register_model",
    "resnet9",
    "resnet9_narrow",
    "simple_cnn",
    "summary",
    "vit_b16",
    "vit_small_cifar",
    "vit_tiny_cifar",
]
