"""Data: from a source of images to batches a model can train on.

This is the first stage of the pipeline, read top to bottom in the order the data flows:

1. **Sources.** CIFAR-10 through torchvision's download; a local CIFAR-10 copy named by the
   environment variable ``CIFAR10_PATH`` (machines without internet); or any folder of images
   in the ImageFolder layout, as a directory or a ``.tar.gz``/``.tgz``/``.tar``/``.zip``
   archive (read in place, never extracted). :func:`describe_source` says which one is used.
2. **ETL.** A source is decoded once into a cache file under ``data_dir()/cache/``: uint8
   image tensors ``(N, 3, H, W)`` per split, int64 labels, class names, a fingerprint of the
   source and the list of unreadable files skipped. Later loads reuse the file while the
   source is unchanged (the full CIFAR-10 in well under a second instead of several seconds).
3. **Splits and statistics.** Seeded, stratified train/validation splits, k-fold indices and
   subsets; class counts and class weights; per-channel mean and std; exact duplicates.
4. **Loaders.** The standard path (a ``Dataset`` with per-image ``transforms.v2`` and a
   ``DataLoader``) and the fast path (:class:`DeviceLoader`: the whole uint8 set as one tensor
   on the device, whole batches augmented at once). :func:`make_loaders` builds either from a
   :class:`helpers.config.DataConfig` (:func:`make_loaders_from_indices` takes the training
   and validation images by index instead, for k-fold cross-validation). Both repeat
   exactly per epoch (``set_loader_epoch``), which is what lets training resume exactly, and
   both share the data out between processes under ``torchrun``.

Example:
    >>> data = load_dataset("cifar10")  # doctest: +SKIP
    >>> loaders = make_loaders(data, DataConfig(), device=get_device())  # doctest: +SKIP
"""

from ._constants import (
    CIFAR10_CLASSES,
    CIFAR10_ENV,
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGE_EXTENSIONS,
    CorruptImageWarning,
    ImageData,
    SyntheticDataWarning,
)
from ._etl import load_dataset, make_synthetic_data
from ._files import compare_image_formats, write_image_folder
from ._loaders import (
    DeviceLoader,
    EpochSampler,
    Loaders,
    TensorImageDataset,
    WeightedEpochSampler,
    build_dataloader,
    compare_loaders,
    make_loaders,
    make_loaders_from_indices,
    measure_throughput,
    set_loader_epoch,
)
from ._sources import describe_source
from ._splits import (
    channel_stats,
    class_counts,
    class_weights,
    find_duplicates,
    long_tailed_subset,
    sample_weights,
    stratified_kfold,
    stratified_split,
    stratified_subset,
    take,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_ENV",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGE_EXTENSIONS",
    "CorruptImageWarning",
    "DeviceLoader",
    "EpochSampler",
    "ImageData",
    "Loaders",
    "SyntheticDataWarning",
    "TensorImageDataset",
    "WeightedEpochSampler",
    "build_dataloader",
    "channel_stats",
    "class_counts",
    "class_weights",
    "compare_image_formats",
    "compare_loaders",
    "describe_source",
    "find_duplicates",
    "load_dataset",
    "long_tailed_subset",
    "make_loaders",
    "make_loaders_from_indices",
    "make_synthetic_data",
    "measure_throughput",
    "sample_weights",
    "set_loader_epoch",
    "stratified_kfold",
    "stratified_split",
    "stratified_subset",
    "take",
    "write_image_folder",
]
