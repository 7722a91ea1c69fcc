"""Training: from batches and a model to trained weights, checkpoints and a history.

The stage the training chapter teaches, in the order a run uses it:

1. **Metrics.** :func:`accuracy` (top-k, as torchvision's reference scripts) and an
   :class:`AverageMeter` weighted by batch size.
2. **Optimisation.** :func:`build_optimizer` (SGD with Nesterov momentum, or AdamW), with
   weight decay on weights only (:func:`param_groups`), and per-step learning-rate
   schedules (:class:`LRSchedule`: one-cycle, cosine with linear warm-up, constant).
3. **The loop.** :func:`train_one_epoch` and :func:`evaluate_epoch`: one pass each, with
   mixed precision, channels-last, gradient clipping and an EMA of the weights
   (:class:`ModelEma`), and no per-step waiting for the GPU.
4. **A run.** :func:`fit` repeats them for the configured epochs: one summary line per
   epoch, early stopping (:class:`EarlyStopping`), atomic checkpoints (``last.pt`` every
   epoch, ``best.pt`` on improvement) that resume exactly after a crash, TensorBoard logs,
   and ``DistributedDataParallel`` under ``torchrun``. :func:`run_training` is the whole
   of ``python -m helpers train``: data, model, fit, test.

Example:
    >>> result = fit(model, loaders, cfg, device=get_device())  # doctest: +SKIP
    >>> plot_history(result.history)  # doctest: +SKIP
"""

from ._checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_states,
    load_checkpoint,
    load_weights,
    restore_rng_states,
    save_checkpoint,
)
from ._ema import ModelEma, unwrap_model
from ._fit import RESUMABLE_CHANGES, EarlyStopping, FitResult, fit, resolve_checkpoint_dir
from ._loop import evaluate_epoch, train_one_epoch
from ._metrics import AverageMeter, accuracy, count_correct, sum_across_processes
from ._optim import (
    OPTIMIZERS,
    SCHEDULES,
    LRSchedule,
    build_optimizer,
    build_scheduler,
    param_groups,
)
from ._run import TrainedModel, evaluate_best, fit_or_load, load_trained, run_training

__all__ = [
    "CHECKPOINT_FORMAT",
    "OPTIMIZERS",
    "RESUMABLE_CHANGES",
    "SCHEDULES",
    "AverageMeter",
    "EarlyStopping",
    "FitResult",
    "LRSchedule",
    "ModelEma",
    "TrainedModel",
    "accuracy",
    "build_optimizer",
    "build_scheduler",
    "capture_rng_states",
    "count_correct",
    "evaluate_best",
    "evaluate_epoch",
    "fit",
    "fit_or_load",
    "load_checkpoint",
    "load_trained",
    "load_weights",
    "param_groups",
    "resolve_checkpoint_dir",
    "restore_rng_states",
    "run_training",
    "save_checkpoint",
    "sum_across_processes",
    "train_one_epoch",
    "unwrap_model",
]
