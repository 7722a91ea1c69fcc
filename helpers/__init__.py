"""helpers: the tested code behind the book *Image classification with PyTorch*.

One module per stage of the pipeline, in the order data flows through them::

    config, runtime     run configuration and profiles; device, seeds, threads, precision
    data, transforms    sources, ETL cache, splits, loaders; paired and batched augmentation
    models              SimpleCNN, ResNet-9, a Vision Transformer; a registry over timm's
    train, tune         fit with checkpoints, resume, AMP, EMA, DDP; short runs compared
    recipes             the named settings each model of the book is trained with
    fast                the fast recipe: CIFAR-10 to 93-94% in minutes (CPU), seconds (GPU)
    evaluate            predictions, reports, curves, calibration, k-fold CV, error analysis
    transfer            pretrained timm models, their preprocessing, freezing, linear probes
    explain             Grad-CAM for CNNs; attention maps and rollout for ViTs
    export              TorchScript/ONNX checked against eager, int8, a Predictor
    serve               a FastAPI app: predictions, explanations, metrics, upload page
    monitor             drift of inputs and predictions: image features, PSI, tests
    plots, widgets      every figure; interactive explorers with static fallbacks

Notebooks import the package once and call it qualified, so every call shows its origin::

    import helpers as hp
    device = hp.runtime.get_device()
"""

from importlib import import_module
from types import ModuleType

__version__ = "0.1.0"

# Submodules load on first use: `import helpers` stays fast, and a missing optional extra
# (for example the serving stack) only matters to the module that needs it.
_SUBMODULES = (
    "config",
    "runtime",
    "data",
    "transforms",
    "models",
    "train",
    "recipes",
    "fast",
    "tune",
    "evaluate",
    "transfer",
    "explain",
    "export",
    "serve",
    "monitor",
    "plots",
    "widgets",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
