"""The fast recipe (after airbench94): CIFAR-10 past 90% test accuracy in 9 minutes on 2 CPU cores.

A compact training recipe in the spirit of Keller Jordan's airbench94 (2024: 94.01% mean
test accuracy over 1,000 runs in 3.83 s on one A100), written for this package: every
setting is a field of :class:`FastConfig`, and every trick can be switched off alone.

Read in pipeline order:

1. **Data** (:func:`prepare_fast_data`, :class:`FastLoader`): all 50,000 training images
   as one uint8 tensor on the device, batches of 1,024 shifted by up to 2 pixels (reflect
   padding) and flipped whole, the flip alternating per epoch; no validation split.
2. **Network** (:class:`~helpers.models.FastNet`, ``create_model("fastnet")``): a frozen
   2x2 patch-whitening convolution (:func:`init_whitening`: the eigenvectors of the
   training patches' covariance, and their negatives), three groups of two 3x3
   convolutions (64, 256, 256 channels) with max pooling, batch norm without a learnable
   scale and GELU, a global max pool and a bias-free linear head scaled by 1/9.
3. **Optimisation** (:func:`build_optimizers`): summed label-smoothed (0.2)
   cross-entropy; Nesterov SGD with learning rate and weight decay per 1,024 examples,
   batch-norm biases 64x faster, the whitening bias trained for the first 3 epochs only;
   a linear warm-up then linear decay; a lookahead average of the weights
   (:class:`Lookahead`). A Muon-style orthogonalised update for the 3x3 filters is an
   option (``optimizer="muon"``).
4. **Evaluation** (:func:`evaluate_tta`): test-time augmentation averaging the logits of
   the mirrored and 1-pixel-shifted images.

:func:`train_fast` runs it all and times training and evaluation separately, with the
data already on the device. From the command line::

    python -m helpers fast --seeds 3              # the profile auto picks: quick on a CPU
    python -m helpers fast --profile full epochs=6 lookahead=false   # key=value: FastConfig

Profiles size it (:func:`fast_config`): ``full`` is airbench94's 9.9 epochs (a GPU);
``quick`` is :data:`QUICK_EPOCHS` epochs for 2 CPU cores with AMX; ``smoke`` is one epoch
on 1,024 images. The quick schedule is what fits 10 minutes of training and evaluation on
2 Xeon cores with AMX: FastNet trains at about 1,210 images/s there in bf16 autocast and
channels-last (fp32 is 3.3 times slower, ``torch.compile`` 0.7 times as fast on this CPU),
so 13 epochs take about 8.8 minutes and the TTA evaluation 14 s. ``benchmarks/fast.py``
measures it over seeds, with an ablation of every lever and longer budgets, and
``benchmarks/fast_gpu.py`` times the full profile on a GPU with CUDA events.

Example:
    >>> from helpers.data import make_synthetic_data
    >>> cfg = FastConfig(epochs=1, batch_size=50, widths=(8, 8, 8), tta_level=0)
    >>> train_fast(make_synthetic_data(10, 5), cfg, device="cpu").steps
    2
"""

from helpers.models import FastNet

from ._config import (
    FLIPS,
    OPTIMIZERS,
    PRECISIONS,
    QUICK_EPOCHS,
    TTA_LEVELS,
    FastConfig,
    FastResult,
    fast_config,
    format_results,
    profile_values,
    summarize_results,
    total_steps,
)
from ._data import FastData, FastLoader, prepare_fast_data
from ._evaluate import evaluate_tta, tta_logits
from ._optim import (
    Lookahead,
    Muon,
    build_optimizers,
    lookahead_decay,
    lr_factor,
    orthogonalize,
    set_lr_factor,
    sgd_settings,
)
from ._train import build_fast_model, evaluate_fast, fit_fast, train_fast, warm_up
from ._whiten import init_whitening, patch_covariance

__all__ = [
    "FLIPS",
    "OPTIMIZERS",
    "PRECISIONS",
    "QUICK_EPOCHS",
    "TTA_LEVELS",
    "FastConfig",
    "FastData",
    "FastLoader",
    "FastNet",
    "FastResult",
    "Lookahead",
    "Muon",
    "build_fast_model",
    "build_optimizers",
    "evaluate_fast",
    "evaluate_tta",
    "fast_config",
    "fit_fast",
    "format_results",
    "init_whitening",
    "lookahead_decay",
    "lr_factor",
    "orthogonalize",
    "patch_covariance",
    "prepare_fast_data",
    "profile_values",
    "set_lr_factor",
    "sgd_settings",
    "summarize_results",
    "total_steps",
    "train_fast",
    "tta_logits",
    "warm_up",
]
