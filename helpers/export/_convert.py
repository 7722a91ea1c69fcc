"""Exporting a trained network to TorchScript and ONNX, each checked against eager PyTorch.

An export is only as good as its agreement with the model it came from. Every function here
runs the eager model and the exported one on the same inputs (a random batch of a size other
than the one exported with, so the dynamic batch dimension is exercised, plus any real
images given) and raises :class:`ParityError` when the largest difference between their
logits exceeds a tolerance.

* **TorchScript** (``torch.jit.trace``) is a serialised graph that runs from C++ or Python
  without the model's source code. PyTorch 2.14 deprecates it in favour of ``torch.export``;
  it still works, and we silence that deprecation notice.
* **ONNX** is an open format that many runtimes read; we run it with ONNX Runtime. The
  export uses ``torch.onnx.export``'s default, the ``torch.export``-based ("dynamo")
  exporter, which needs the ``onnxscript`` package (in the ``serve`` extra).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from helpers.train import TrainedModel, load_trained

from ._meta import ModelMeta, meta_from_trained, save_meta

DEFAULT_OPSET = 18  # ONNX opset; ONNX Runtime 1.17 and later run it
DEFAULT_ATOL = 1e-4  # largest |eager - exported| logit difference accepted, float32
EXPORT_FORMATS = ("onnx", "torchscript")
_SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}
_PARITY_BATCH = 3  # random images per parity check: not 1, so a fixed batch size shows


class ParityError(RuntimeError):
    """An exported model's outputs differ from the eager model's by more than the tolerance."""


# ---------------------------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------------------------


def _run_session(session: Any, images: Tensor) -> np.ndarray:
    """Logits of an ONNX Runtime session for a ``(B, C, H, W)`` batch."""
    name = session.get_inputs()[0].name
    return session.run(None, {name: images.detach().cpu().float().numpy()})[0]


def _run_exported(exported: Any, images: Tensor) -> np.ndarray:
    """Logits of an ONNX Runtime session or a callable (TorchScript module) as NumPy."""
    if hasattr(exported, "get_inputs") and hasattr(exported, "run"):  # an InferenceSession
        return _run_session(exported, images)
    with torch.inference_mode():
        return torch.as_tensor(exported(images)).float().cpu().numpy()


def check_parity(
    eager: nn.Module,
    exported: Callable[[Tensor], Tensor] | Any,
    inputs: Tensor | Sequence[Tensor],
    *,
    atol: float = DEFAULT_ATOL,
) -> float:
    """The largest absolute difference between eager and exported logits, checked.

    Args:
        eager: the original model, in eval mode, on the CPU.
        exported: a TorchScript module (any callable from a batch to logits) or an
            ``onnxruntime.InferenceSession``.
        inputs: one ``(B, C, H, W)`` batch or several, preprocessed as for the model.
        atol: the largest difference accepted.

    Returns:
        ``max |eager(x) - exported(x)|`` over every logit of every batch.

    Raises:
        ParityError: when the difference exceeds ``atol``, the outputs' shapes differ, or
            either output is not finite.

    >>> model = nn.Linear(4, 2).eval()
    >>> check_parity(model, torch.jit.trace(model, torch.zeros(1, 4)), torch.randn(3, 4))
    0.0
    """
    batches = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    worst = 0.0
    for images in batches:
        with torch.inference_mode():
            expected = eager(images).float().cpu().numpy()  # (B, K)
        actual = _run_exported(exported, images)  # (B, K)
        if actual.shape != expected.shape:
            raise ParityError(f"Exported output shape {actual.shape} != eager {expected.shape}.")
        if not (np.isfinite(actual).all() and np.isfinite(expected).all()):
            raise ParityError("The eager or the exported model gave non-finite logits.")
        worst = max(worst, float(np.abs(actual - expected).max(initial=0.0)))
    if worst > atol:
        raise ParityError(
            f"The exported model's logits differ from eager PyTorch by up to {worst:.3g} "
            f"(tolerance {atol:.1g}); the export changed what the model computes."
        )
    return worst


def _parity_inputs(example: Tensor, inputs: Tensor | None) -> list[Tensor]:
    """A seeded random batch shaped like ``example`` (but 3 images), then the real ``inputs``."""
    generator = torch.Generator().manual_seed(0)
    shape = (_PARITY_BATCH, *example.shape[1:])  # (3, C, H, W)
    batches = [torch.randn(shape, generator=generator)]
    if inputs is not None:
        batches.append(inputs.detach().float().cpu())
    return batches


def _cpu_eval_copy(model: nn.Module) -> nn.Module:
    """A CPU copy in eval mode: exporting never moves or changes the caller's model."""
    return copy.deepcopy(model).cpu().eval()


def _check_example(example: Any) -> None:
    """``ValueError`` unless ``example`` is a ``(B, C, H, W)`` float tensor."""
    if not isinstance(example, Tensor) or example.ndim != 4 or not example.is_floating_point():
        shape = tuple(example.shape) if isinstance(example, Tensor) else type(example).__name__
        raise ValueError(f"example must be a (B, C, H, W) float tensor, got {shape}.")


# ---------------------------------------------------------------------------------------------
# TorchScript
# ---------------------------------------------------------------------------------------------


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch.jit's deprecation notice and its TracerWarnings.

    The warnings say that a shape check (``if images.shape[1:] != ...``) became a constant
    in the trace: right for a model whose input size is fixed (the sidecar records it). What
    matters, that the trace generalises to other batches, the parity check verifies.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.\S+` is deprecated", category=FutureWarning
        )
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def load_torchscript(path: str | os.PathLike[str]) -> torch.jit.ScriptModule:
    """Load a TorchScript file onto the CPU, in eval mode.

    Args:
        path: a file written by :func:`export_torchscript`.

    Returns:
        The scripted module.

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for a file that is not TorchScript.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"TorchScript file {file} does not exist.")
    try:
        with _quiet_jit():
            module = torch.jit.load(str(file), map_location="cpu")
    except RuntimeError as err:
        raise ValueError(f"{file} is not a TorchScript file: {err}") from err
    return module.eval()


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike[str],
    example: Tensor,
    *,
    inputs: Tensor | None = None,
    meta: ModelMeta | None = None,
    atol: float = DEFAULT_ATOL,
) -> Path:
    """Trace ``model`` to TorchScript, save it, reload it and check it against eager.

    Tracing records the operations one forward pass runs, so Python control flow that
    depends on the data is frozen (shape checks become constants; the TracerWarnings that
    say so are silenced). The parity check runs the reloaded file on a batch of another
    size than ``example``, which shows whether the trace generalises.

    Args:
        model: the trained network (not changed; a CPU copy is traced).
        path: the file to write (``model.ts``); its folder is created.
        example: a ``(B, C, H, W)`` float batch of the model's input size.
        inputs: real preprocessed images to check parity on as well.
        meta: written as the sidecar (``model.json``) when given.
        atol: the largest logit difference accepted.

    Returns:
        The path written.

    Raises:
        ValueError: for an example that is not a 4-D float tensor.
        ParityError: when the reloaded module disagrees with the eager model.
    """
    _check_example(example)
    eager = _cpu_eval_copy(model)
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_jit(), torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(eager, example.detach().float().cpu())
        torch.jit.save(traced, str(file))
    check_parity(eager, load_torchscript(file), _parity_inputs(example, inputs), atol=atol)
    if meta is not None:
        save_meta(meta, file)
    return file


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------


def onnx_session(path: str | os.PathLike[str], *, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path``.

    Args:
        path: an ``.onnx`` file.
        threads: intra-op threads (one operator spread over cores); ``None`` lets ONNX
            Runtime choose (all physical cores). Inter-op parallelism stays off.

    Returns:
        An ``onnxruntime.InferenceSession``.

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for a non-positive thread count or a file ONNX Runtime cannot load.
        ImportError: when onnxruntime is not installed (``pip install helpers[serve]``).
    """
    import onnxruntime as ort

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"ONNX file {file} does not exist.")
    options = ort.SessionOptions()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}.")
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            str(file), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # onnxruntime raises its own exception types
        raise ValueError(f"ONNX Runtime cannot load {file}: {err}") from err


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    image_size: int,
    in_chans: int = 3,
    opset: int = DEFAULT_OPSET,
    inputs: Tensor | None = None,
    meta: ModelMeta | None = None,
    atol: float = DEFAULT_ATOL,
) -> Path:
    """Export ``model`` to ONNX with a dynamic batch size, and check it in ONNX Runtime.

    The graph is captured with ``torch.export`` from a batch of one image; its input
    ``images`` is ``(batch, in_chans, image_size, image_size)`` and its output ``logits``
    ``(batch, num_classes)``, where ``batch`` may be any size.

    Args:
        model: the trained network (not changed; a CPU copy is exported).
        path: the file to write (``model.onnx``), as one file (models under 2 GB).
        image_size: the side of the model's square input, in pixels.
        in_chans: the input's channels.
        opset: the ONNX operator set version.
        inputs: real preprocessed images to check parity on as well.
        meta: written as the sidecar (``model.json``) when given.
        atol: the largest logit difference accepted.

    Returns:
        The path written.

    Raises:
        ValueError: for a non-positive image size or channel count.
        ParityError: when ONNX Runtime's logits disagree with the eager model's.
        ImportError: without onnxscript or onnxruntime (``pip install helpers[serve]``).
    """
    for name, value in (("image_size", image_size), ("in_chans", in_chans)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    eager = _cpu_eval_copy(model)
    example = torch.randn(1, in_chans, image_size, image_size)  # (1, C, H, W)
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            eager,
            (example,),
            str(file),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),  # any batch size
            opset_version=opset,
            external_data=False,
            verbose=False,
        )
    check_parity(eager, onnx_session(file), _parity_inputs(example, inputs), atol=atol)
    if meta is not None:
        save_meta(meta, file)
    return file


# ---------------------------------------------------------------------------------------------
# A trained checkpoint to an export folder
# ---------------------------------------------------------------------------------------------


def export_model(
    trained: TrainedModel | str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    formats: Sequence[str] = EXPORT_FORMATS,
    name: str = "model",
    version: str | None = None,
    inputs: Tensor | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
) -> dict[str, Path]:
    """Export a trained model to ONNX and/or TorchScript, with its sidecar, parity-checked.

    Args:
        trained: a :func:`helpers.train.load_trained` result or a checkpoint path.
        folder: where to write ``<name>.onnx``, ``<name>.ts`` and ``<name>.json``.
        formats: any of :data:`EXPORT_FORMATS`.
        name: the files' stem.
        version: the model version for the sidecar (see :func:`meta_from_trained`).
        inputs: real preprocessed images to check parity on as well.
        opset: the ONNX operator set version.
        atol: the largest logit difference accepted.

    Returns:
        The paths written, by format, and ``"meta"`` for the sidecar.

    Raises:
        ValueError: for an unknown or empty format list, or an unusable checkpoint.
        ParityError: when an export disagrees with the eager model.

    >>> export_model("data/checkpoints/run/best.pt", "exports")  # doctest: +SKIP
    {'onnx': PosixPath('exports/model.onnx'), 'torchscript': ..., 'meta': ...}
    """
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown or not formats:
        raise ValueError(f"formats must be some of {EXPORT_FORMATS}, got {list(formats)!r}.")
    if not isinstance(trained, TrainedModel):
        trained = load_trained(trained)
    meta = meta_from_trained(trained, version=version)
    base = Path(folder) / name
    size, chans = meta.image_size, meta.in_chans
    paths: dict[str, Path] = {}
    if "onnx" in formats:
        paths["onnx"] = export_onnx(
            trained.model,
            base.with_suffix(".onnx"),
            image_size=size,
            in_chans=chans,
            opset=opset,
            inputs=inputs,
            atol=atol,
        )
    if "torchscript" in formats:
        example = torch.zeros(1, chans, size, size)  # (1, C, H, W)
        paths["torchscript"] = export_torchscript(
            trained.model, base.with_suffix(".ts"), example, inputs=inputs, atol=atol
        )
    paths["meta"] = save_meta(meta, base)
    return paths
