"""Typed run configuration, loaded from YAML with ``key=value`` overrides, and run profiles.

A run is described by one frozen :class:`RunConfig` made of sections (``data``, ``model``,
``train``). Every field is typed; loading checks the types and the allowed choices, so a typo
in a YAML file or on the command line fails at once with the valid options, instead of
half-way through a long training run.

Run profiles scale a notebook or a run to the machine it runs on. They change sizes only
(images, epochs, batches), never which code runs:

* ``smoke``: a few hundred images and a batch or two per epoch, for CI;
* ``quick``: meaningful results on a CPU in minutes;
* ``full``: the published numbers, on a GPU;
* ``auto``: ``full`` where CUDA is available, ``quick`` otherwise.

:func:`load_run_config` layers a run's settings: the defaults, then the profile's sizes
(:data:`PROFILE_KEYS`), then the YAML file, then ``key=value`` overrides; so whatever the
user writes wins, and whatever they leave out follows the profile. :func:`apply_profile`
sets a profile's sizes on a config built in code (a notebook's parameters cell).

Example:
    >>> cfg = load_config(overrides=["train.lr=0.05", "data.batch_size=256"])
    >>> cfg.train.lr, cfg.data.batch_size
    (0.05, 256)
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

__all__ = [
    "PROFILES",
    "PROFILE_CHOICES",
    "PROFILE_KEYS",
    "DataConfig",
    "ModelConfig",
    "Profile",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "apply_profile",
    "config_from_dict",
    "config_to_dict",
    "data_dir",
    "load_config",
    "load_run_config",
    "profile_sizes",
    "replace_values",
    "resolve_profile",
    "save_config",
]

T = TypeVar("T")

# ----------------------------------------------------------------------------------------------
# Run profiles
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Sizes for one run profile. ``None`` means "no limit" (the whole data set)."""

    name: str
    train_images: int | None  # images used for training (a stratified subset)
    eval_images: int | None  # images used for validation and test, each
    epochs: int  # default number of epochs for a from-scratch model
    batch_size: int  # default mini-batch size
    max_steps_per_epoch: int | None  # cut each epoch short after this many batches
    description: str

    def pick(self, *, smoke: T, quick: T, full: T) -> T:
        """Choose a value by profile, for the sizes a notebook sets itself.

        >>> PROFILES["quick"].pick(smoke=1, quick=5, full=40)
        5
        """
        return {"smoke": smoke, "quick": quick, "full": full}[self.name]


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        train_images=512,
        eval_images=256,
        epochs=1,
        batch_size=64,
        max_steps_per_epoch=2,
        description="a few hundred images and two batches per epoch: checks that the code runs",
    ),
    "quick": Profile(
        name="quick",
        train_images=10_000,
        eval_images=2_000,
        epochs=8,
        batch_size=128,
        max_steps_per_epoch=None,
        description="a subset of the data and a few epochs: real results on a CPU in minutes",
    ),
    "full": Profile(
        name="full",
        train_images=None,
        eval_images=None,
        epochs=40,
        batch_size=512,
        max_steps_per_epoch=None,
        description="the whole data set and the published schedule: the book's numbers, on a GPU",
    ),
}

PROFILE_CHOICES: tuple[str, ...] = ("auto", *PROFILES)


def resolve_profile(name: str = "auto", *, cuda_available: bool | None = None) -> Profile:
    """Turn a profile name into a :class:`Profile`, resolving ``auto`` for this machine.

    Args:
        name: one of ``auto``, ``smoke``, ``quick``, ``full`` (case-insensitive).
        cuda_available: whether a CUDA device is present; asked from
            :func:`helpers.runtime.cuda_is_available` when ``None``.

    Returns:
        The profile; ``auto`` becomes ``full`` with CUDA and ``quick`` without.

    Raises:
        ValueError: for an unknown name.

    >>> resolve_profile("auto", cuda_available=False).name
    'quick'
    """
    key = str(name).strip().lower()
    if key not in PROFILE_CHOICES:
        raise ValueError(f"Unknown profile {name!r}; choose one of {', '.join(PROFILE_CHOICES)}.")
    if key == "auto":
        if cuda_available is None:
            from helpers.runtime import cuda_is_available

            cuda_available = cuda_is_available()
        key = "full" if cuda_available else "quick"
    return PROFILES[key]


# ----------------------------------------------------------------------------------------------
# Where data, caches and checkpoints live
# ----------------------------------------------------------------------------------------------

DATA_DIR_ENV = "HELPERS_DATA_DIR"


def data_dir() -> Path:
    """The folder for downloads, caches, checkpoints and logs.

    ``$HELPERS_DATA_DIR`` when set; otherwise the repository's ``data/`` folder when
    ``helpers`` runs from a checkout of the book (so notebooks, the command line and tests
    share one cache wherever they are started); otherwise ``./data`` under the working
    directory. The folder is created if missing.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
    else:
        checkout = Path(__file__).resolve().parent.parent
        is_checkout = (checkout / "pyproject.toml").is_file() and (checkout / "_toc.yml").is_file()
        path = checkout / "data" if is_checkout else Path.cwd() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------
# Config sections
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are batched and augmented."""

    source: str = "cifar10"  # "cifar10", or a path to an ImageFolder directory or archive
    image_size: int = 32  # images are resized to image_size x image_size during ETL
    val_fraction: float = 0.1  # share of the training split held out for validation
    train_images: int | None = None  # stratified subset of the training split; None = all
    eval_images: int | None = None  # subset of validation and test splits; None = all
    batch_size: int = 128  # images per mini-batch (per process under torchrun)
    num_workers: int = 0  # DataLoader worker processes; 0 is safe on Windows and macOS
    loader: Literal["standard", "fast"] = "standard"  # fast: whole uint8 set on the device
    augment: Literal["none", "standard", "strong"] = "standard"  # augmentation preset
    balance: Literal["none", "sampler"] = "none"  # "sampler": WeightedRandomSampler


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build; ``name`` is a local model or any timm model name."""

    name: str = "simple_cnn"
    num_classes: int = 10
    pretrained: bool = False  # timm hub weights; offline this needs a local file
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed on to the constructor


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and the bookkeeping of a training run."""

    epochs: int = 10
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # not applied to norms and biases
    # layer-wise lr decay (timm models): layer i of L trains at lr * layer_decay ** (L - i),
    # the head at lr; None = every layer at lr (see helpers.transfer.layer_decay_param_groups)
    layer_decay: float | None = None
    schedule: Literal["constant", "onecycle", "cosine"] = "onecycle"
    warmup_epochs: float = 1.0  # linear warm-up, for the cosine schedule (at most half the run)
    onecycle_peak: float = 0.25  # share of the steps spent rising to the peak lr (one-cycle)
    label_smoothing: float = 0.0  # share of each target spread over the other classes
    # "balanced": weight the training loss by inverse class frequency (mean weight 1), from
    # the training loader's labels; the validation loss stays unweighted
    class_weighting: Literal["none", "balanced"] = "none"
    grad_clip: float | None = None  # max gradient norm; None = no clipping
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # autocast dtype
    channels_last: bool = True
    compile: bool = False  # torch.compile the model
    ema_decay: float | None = None  # exponential moving average of weights; None = off
    monitor: Literal["val_acc", "val_loss", "train_acc", "train_loss"] = "val_acc"  # for best.pt
    monitor_mode: Literal["auto", "max", "min"] = "auto"  # auto: max for *_acc, min for *_loss
    early_stopping_patience: int | None = None  # epochs without improvement; None = off
    early_stopping_min_delta: float = 0.0  # smallest change of the monitor that counts
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke runs)
    checkpoint_dir: str | None = None  # None = data_dir()/checkpoints/<run name>
    run_name: str = "run"
    tensorboard: bool = False  # TensorBoard logs under <checkpoint dir>/tensorboard
    progress: bool = True  # a tqdm progress bar per epoch (one summary line is always printed)
    seed: int = 0
    deterministic: bool = False  # deterministic kernels: slower, repeatable bit for bit


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, as saved in its checkpoints."""

    profile: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ----------------------------------------------------------------------------------------------
# Loading, overriding and saving
# ----------------------------------------------------------------------------------------------


def config_from_dict(cls: type[T], values: Mapping[str, Any], *, where: str = "") -> T:
    """Build a config dataclass from a mapping, checking keys and value types.

    Args:
        cls: the dataclass to build (for example :class:`RunConfig`).
        values: field names to values; nested sections as nested mappings.
        where: a prefix for error messages (the dotted path of this section).

    Raises:
        ValueError: for an unknown key (naming the valid ones) or a value of the wrong type.
    """
    if not isinstance(values, Mapping):
        name = where.rstrip(".") or cls.__name__
        raise ValueError(f"{name} must be a mapping, got {values!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"Unknown key(s) {', '.join(where + k for k in unknown)}; "
            f"valid keys: {', '.join(where + k for k in fields)}."
        )
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(value, hints[key], where + key) for key, value in values.items()}
    return cls(**kwargs)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain dicts, lists and scalars, ready for YAML or a checkpoint."""
    return dataclasses.asdict(cfg)


def replace_values(cfg: T, values: Mapping[str, Any]) -> T:
    """Return a copy of ``cfg`` with dotted keys set to new values, checked like a YAML file.

    Args:
        cfg: a config dataclass (for example :class:`RunConfig`).
        values: dotted keys (``"train.lr"``) and their new values.

    Raises:
        ValueError: for an unknown key (naming the valid ones), a key that runs through a
            value instead of a section, or a value of the wrong type.

    >>> replace_values(RunConfig(), {"train.lr": 0.1, "data.augment": "none"}).train.lr
    0.1
    """
    tree = config_to_dict(cfg)
    for key, value in values.items():
        *parents, leaf = key.strip().split(".")
        node = tree
        for depth, part in enumerate(parents):
            child = node.get(part)
            if not isinstance(child, dict):
                dotted = ".".join(parents[: depth + 1])
                raise ValueError(f"{key!r}: {dotted!r} is not a config section.")
            node = child
        if not leaf or (leaf not in node and not _is_free_mapping(cfg, parents)):
            raise ValueError(f"unknown key {key.strip()!r}; valid keys here: {', '.join(node)}.")
        node[leaf] = value
    return config_from_dict(type(cfg), tree)


def apply_overrides(cfg: T, overrides: Iterable[str]) -> T:
    """Return a copy of ``cfg`` with ``section.key=value`` overrides applied.

    Values are parsed as YAML scalars (``0.1``, ``true``, ``null``, ``[3, 4]``) and then
    checked against the field's type, exactly like values from a file.

    >>> apply_overrides(RunConfig(), ["train.epochs=3"]).train.epochs
    3
    """
    values = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Override {item!r} is not of the form key=value (e.g. train.lr=0.1).")
        values[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    try:
        return replace_values(cfg, values)
    except ValueError as err:
        raise ValueError(f"Override: {err}") from err


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    cls: type[T] = RunConfig,  # type: ignore[assignment]
) -> T:
    """Load a config from a YAML file (or the defaults) and apply ``key=value`` overrides.

    Args:
        path: a YAML file whose top level mirrors ``cls``; ``None`` for the defaults.
        overrides: strings like ``"train.lr=0.1"``, applied after the file.
        cls: the config class; :class:`RunConfig` by default.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for unknown keys, wrong types or malformed overrides.
    """
    values: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"Config file {file} does not exist.")
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        values = loaded if loaded is not None else {}
    return apply_overrides(config_from_dict(cls, values), overrides)


# ----------------------------------------------------------------------------------------------
# Applying a run profile's sizes
# ----------------------------------------------------------------------------------------------

# The config keys a run profile sets: sizes only, never which code runs.
PROFILE_KEYS: tuple[str, ...] = (
    "data.train_images",
    "data.eval_images",
    "train.epochs",
    "train.max_steps_per_epoch",
)


def profile_sizes(profile: Profile) -> dict[str, Any]:
    """The values ``profile`` gives the keys of :data:`PROFILE_KEYS`, by dotted key.

    >>> profile_sizes(PROFILES["smoke"])["train.max_steps_per_epoch"]
    2
    """
    return {
        "data.train_images": profile.train_images,
        "data.eval_images": profile.eval_images,
        "train.epochs": profile.epochs,
        "train.max_steps_per_epoch": profile.max_steps_per_epoch,
    }


def apply_profile(
    cfg: RunConfig,
    profile: str | Profile | None = None,
    *,
    keep: Iterable[str] = (),
    cuda_available: bool | None = None,
) -> RunConfig:
    """Set the sizes of a run profile on ``cfg``, except those the user chose.

    The profile's ``train_images``, ``eval_images``, ``epochs`` and ``max_steps_per_epoch``
    replace the config's values for every key of :data:`PROFILE_KEYS` that is not in
    ``keep``; ``cfg.profile`` becomes the resolved name (``auto`` is decided here), so a
    checkpoint records which profile ran.

    Args:
        cfg: the run config.
        profile: a profile name or :class:`Profile`; ``cfg.profile`` when ``None``.
        keep: dotted keys (``"train.epochs"``) whose values in ``cfg`` stay as they are.
        cuda_available: passed on to :func:`resolve_profile` for ``auto``.

    Returns:
        A new config.

    Raises:
        ValueError: for an unknown profile name.

    >>> apply_profile(RunConfig(), "smoke", keep=["train.epochs"]).data.train_images
    512
    """
    if not isinstance(profile, Profile):
        profile = resolve_profile(
            cfg.profile if profile is None else profile, cuda_available=cuda_available
        )
    kept = set(keep)
    sizes = {k: v for k, v in profile_sizes(profile).items() if k not in kept}
    tree = config_to_dict(cfg)
    tree["profile"] = profile.name
    for key, value in sizes.items():
        section, leaf = key.split(".")
        tree[section][leaf] = value
    return config_from_dict(type(cfg), tree)


def load_run_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    *,
    cuda_available: bool | None = None,
) -> RunConfig:
    """Load a run config and apply its profile's sizes where the user set none.

    The layers, each overriding the one before: the dataclass defaults; the sizes of the
    profile (``profile`` from the file or the overrides, ``auto`` resolved for this
    machine); the YAML file; the ``key=value`` overrides. So ``train.epochs`` written in
    the file or on the command line wins over the profile, and a key left out follows the
    profile (``profile=smoke`` shrinks any config to a smoke run).

    Args:
        path: a YAML file mirroring :class:`RunConfig`; ``None`` for the defaults.
        overrides: strings like ``"train.lr=0.1"``, applied after the file.
        cuda_available: passed on to :func:`resolve_profile` for ``auto``.

    Returns:
        The config, with ``profile`` resolved to ``smoke``, ``quick`` or ``full``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for unknown keys, wrong types, malformed overrides or an unknown profile.
    """
    overrides = list(overrides)
    cfg = load_config(path, overrides)
    given = {item.partition("=")[0].strip() for item in overrides}
    if path is not None:
        given |= _dotted_keys(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
    return apply_profile(cfg, keep=given, cuda_available=cuda_available)


def _dotted_keys(tree: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every key of a nested mapping as a dotted path (``{"a": {"b": 1}}`` gives ``a.b``)."""
    keys = set()
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys.add(dotted)
        if isinstance(value, Mapping):
            keys |= _dotted_keys(value, dotted + ".")
    return keys


def save_config(cfg: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``cfg`` as YAML that :func:`load_config` reads back to an equal config."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
    return file


# ----------------------------------------------------------------------------------------------
# Type checking of values
# ----------------------------------------------------------------------------------------------


def _is_free_mapping(cfg: Any, parents: list[str]) -> bool:
    """Whether ``parents`` leads to a ``dict`` field (free keys, like ``model.kwargs``)."""
    node: Any = cfg
    for part in parents:
        node = getattr(node, part, None)
    return isinstance(node, dict)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint``; widen int to float; build nested sections."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where=where + ".")  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits no type")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}={value!r} is not valid; choose one of {list(args)}.")
        return value
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer, got {value!r}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number, got {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}.")
        return value
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a mapping, got {value!r}.")
        return dict(value)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}.")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    raise TypeError(f"{where}: unsupported config type {hint!r}")  # a bug in a config class
