"""What an exported model must carry to be used correctly: its preprocessing and its labels.

A network alone maps normalised tensors to logits. To classify a photo one also needs the
image size it was trained at, the mean and std its inputs were normalised with, and the name
of each output. :class:`ModelMeta` holds them, and travels as a JSON *sidecar* next to the
exported file (``model.onnx`` and ``model.ts`` share ``model.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from helpers.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from helpers.train import TrainedModel

SIDECAR_FORMAT = 1  # bump when the sidecar's fields change; newer files are refused


@dataclass(frozen=True)
class ModelMeta:
    """The preprocessing and labels of a trained model: what its sidecar JSON holds.

    Attributes:
        model_name: the architecture (``"resnet9_narrow"``, a timm name, ...).
        class_names: the name of each output, in logit order.
        image_size: the side of the square images the model was trained on, in pixels.
        mean: per-channel mean the inputs were normalised with, on the [0, 1] scale.
        std: per-channel standard deviation, on the [0, 1] scale.
        version: identifies these weights (reported by the web app with every answer).
        checkpoint: the :mod:`helpers.train` checkpoint the model came from, if any; a
            :class:`~helpers.export.Predictor` of an exported file loads it to explain.
        stats_source: where ``mean`` and ``std`` came from: ``"checkpoint"``,
            ``"given"`` or ``"cifar10-constants"``.
        format: the sidecar's format number.

    Raises:
        ValueError: for an empty name or class list, a non-positive image size, or
            mean/std of different lengths or with a non-positive std.

    >>> meta = ModelMeta("simple_cnn", ("cat", "dog"), 32, (0.5,) * 3, (0.25,) * 3, "v1")
    >>> ModelMeta.from_dict(meta.to_dict()) == meta
    True
    """

    model_name: str
    class_names: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    version: str
    checkpoint: str | None = None
    stats_source: str = "checkpoint"
    format: int = SIDECAR_FORMAT

    def __post_init__(self) -> None:
        for name in ("class_names", "mean", "std"):  # lists from JSON become tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = [
            (not self.model_name, "model_name must not be empty"),
            (not self.class_names, "class_names must not be empty"),
            (not isinstance(self.image_size, int) or self.image_size < 1, "image_size < 1"),
            (not self.mean or len(self.mean) != len(self.std), "mean/std lengths differ"),
            (any(s <= 0 for s in self.std), "std must be positive"),
            (not self.version, "version must not be empty"),
        ]
        bad = [message for failed, message in problems if failed]
        if bad:
            raise ValueError(f"Bad model metadata ({'; '.join(bad)}): {self!r}")

    @property
    def num_classes(self) -> int:
        """How many outputs the model has."""
        return len(self.class_names)

    @property
    def in_chans(self) -> int:
        """How many colour channels the model reads."""
        return len(self.mean)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples become lists)."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelMeta:
        """Rebuild from :meth:`to_dict` output; ``ValueError`` names unknown or missing keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown model metadata keys {unknown}; expected {sorted(known)}.")
        try:
            return cls(**values)
        except TypeError as err:
            raise ValueError(f"Incomplete model metadata: {err}") from err


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    """The sidecar of an exported model: the same path with ``.json`` as its suffix.

    >>> sidecar_path("exports/model.onnx").as_posix()
    'exports/model.json'
    """
    return Path(model_path).with_suffix(".json")


def save_meta(meta: ModelMeta, model_path: str | os.PathLike[str]) -> Path:
    """Write ``meta`` as the sidecar of ``model_path``, atomically.

    Args:
        meta: what to write.
        model_path: the exported model file (``model.onnx``); it need not exist yet.

    Returns:
        The sidecar's path (``model.json``).
    """
    path = sidecar_path(model_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(meta.to_dict(), stream, indent=2)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def load_meta(model_path: str | os.PathLike[str]) -> ModelMeta:
    """Read the sidecar of an exported model.

    Args:
        model_path: the exported model (``model.onnx``) or its sidecar (``model.json``).

    Returns:
        The :class:`ModelMeta`.

    Raises:
        FileNotFoundError: when the sidecar is missing; the message says how to write one.
        ValueError: for a sidecar that is not valid JSON, has bad fields, or a newer format.
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: an exported model needs its sidecar (image size, mean, "
            "std, class names). Export with helpers.export.export_model, or write one with "
            "helpers.export.save_meta."
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(values).__name__}.")
    if not isinstance(values.get("format"), int) or values["format"] > SIDECAR_FORMAT:
        raise ValueError(
            f"{path} has format {values.get('format')!r}; this helpers reads up to "
            f"{SIDECAR_FORMAT}. Update helpers."
        )
    return ModelMeta.from_dict(values)


def _file_digest(path: Path, length: int = 8) -> str:
    """The first ``length`` hex digits of the file's SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def _resolve_stats(
    trained: TrainedModel, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """``mean, std`` and where they came from: given, the checkpoint, or CIFAR-10's constants."""
    if (mean is None) != (std is None):
        raise ValueError("Give both mean and std, or neither.")
    if mean is not None and std is not None:
        return tuple(mean), tuple(std), "given"
    if trained.mean is not None and trained.std is not None:
        return tuple(trained.mean), tuple(trained.std), "checkpoint"
    if trained.config.data.source == "cifar10":
        # Older checkpoints lack the statistics make_loaders computed from the training
        # split; for CIFAR-10 they agree with the published constants to about 1e-3.
        return CIFAR10_MEAN, CIFAR10_STD, "cifar10-constants"
    raise ValueError(
        f"{trained.path} does not record the mean and std its inputs were normalised with "
        f"(it predates helpers storing them), and its source {trained.config.data.source!r} "
        "is not CIFAR-10. Pass mean= and std=: the run's Loaders.mean and Loaders.std, or "
        "helpers.data.channel_stats of its training images."
    )


def _resolve_class_names(trained: TrainedModel) -> tuple[str, ...]:
    """The checkpoint's class names; CIFAR-10's or numbers when the run did not store them."""
    if trained.class_names:
        return tuple(trained.class_names)
    count = trained.config.model.num_classes
    if trained.config.data.source == "cifar10" and count == len(CIFAR10_CLASSES):
        return CIFAR10_CLASSES
    return tuple(str(index) for index in range(count))


def meta_from_trained(
    trained: TrainedModel,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    version: str | None = None,
) -> ModelMeta:
    """The :class:`ModelMeta` of a model loaded with :func:`helpers.train.load_trained`.

    The image size and model name come from the run's config, the class names from the
    checkpoint. The mean and std are, in order of preference: the ones given, the ones the
    checkpoint recorded (the statistics :func:`helpers.data.make_loaders` computed from the
    training split), or, for an older CIFAR-10 checkpoint, :data:`helpers.data.CIFAR10_MEAN`
    and :data:`helpers.data.CIFAR10_STD`.

    Args:
        trained: the loaded checkpoint.
        mean: per-channel mean to use instead of the checkpoint's.
        std: per-channel std, given with ``mean``.
        version: names these weights; ``None`` gives ``<model>-epoch<N>-<sha256[:8]>`` of
            the checkpoint file.

    Returns:
        The :class:`ModelMeta`, with ``checkpoint`` set to the checkpoint's absolute path.

    Raises:
        ValueError: for only one of mean and std, or when neither they nor the checkpoint
            give the statistics of a data set other than CIFAR-10.
    """
    mean_, std_, source = _resolve_stats(trained, mean, std)
    path = Path(trained.path).resolve()
    name = trained.config.model.name
    return ModelMeta(
        model_name=name,
        class_names=_resolve_class_names(trained),
        image_size=trained.config.data.image_size,
        mean=mean_,
        std=std_,
        version=version or f"{name}-epoch{trained.epoch}-{_file_digest(path)}",
        checkpoint=str(path),
        stats_source=source,
    )
