"""Checkpoints: written atomically, read back safely, holding everything a resume needs."""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

CHECKPOINT_FORMAT = 1  # bump when the layout changes; newer files are refused with a message
_REQUIRED_KEYS = ("format", "epoch", "model", "config")


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a checkpoint atomically: to a temporary file in the same folder, then rename.

    A run killed while saving leaves the previous checkpoint intact (and at worst a stray
    ``.tmp`` file), never a truncated one: ``os.replace`` swaps the file in one step.

    Args:
        state: tensors, numbers, strings, lists and dicts (what ``weights_only`` loads).
        path: the checkpoint file; its folder is created.

    Returns:
        The path written.
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, stream)
            stream.flush()
            os.fsync(stream.fileno())  # on disk before the rename makes it visible
        os.replace(temp, file)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return file


def copy_checkpoint(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Copy a checkpoint file atomically (``best.pt`` from ``last.pt``)."""
    target = Path(target)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        shutil.copyfile(source, temp)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, safely, onto the CPU.

    Loading uses ``torch.load(..., weights_only=True)``, which rebuilds tensors and plain
    containers but never runs code from the file, and ``map_location="cpu"``, so a GPU
    checkpoint opens anywhere.

    Args:
        path: the checkpoint file.

    Returns:
        The checkpoint's dict (``format``, ``epoch``, ``model``, ``config`` and more).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: naming the path, for a truncated or damaged file, a file that is not a
            PyTorch checkpoint or holds objects that are unsafe to load, a checkpoint that
            :mod:`helpers.train` did not write, or one from a newer format.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"Checkpoint {file} does not exist.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"Checkpoint {file} holds objects that weights_only loading refuses, so it was not "
            f"written by helpers.train; load only files you trust. ({err})"
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise ValueError(
            f"Checkpoint {file} cannot be read: it is truncated or damaged, or not a PyTorch "
            f"file ({type(err).__name__}: {err}). Delete it, or resume from another checkpoint."
        ) from err
    _check_layout(state, file)
    return state


def _check_layout(state: Any, file: Path) -> None:
    """``ValueError`` unless ``state`` is a checkpoint of a format this code reads."""
    if not isinstance(state, dict) or not all(key in state for key in _REQUIRED_KEYS):
        found = sorted(map(str, state))[:8] if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{file} is not a helpers.train checkpoint: expected a dict with the keys "
            f"{', '.join(_REQUIRED_KEYS)}, found {found}."
        )
    if not isinstance(state["format"], int) or state["format"] > CHECKPOINT_FORMAT:
        raise ValueError(
            f"Checkpoint {file} has format {state['format']!r}; this version of helpers reads "
            f"formats up to {CHECKPOINT_FORMAT}. Update helpers to load it."
        )


def load_weights(
    model: nn.Module, path: str | os.PathLike[str], *, use_ema: bool = True
) -> nn.Module:
    """Load a checkpoint's weights into ``model`` (in place) and return it.

    Args:
        model: a network of the architecture the checkpoint was trained with.
        path: a checkpoint from :func:`helpers.train.fit` (``best.pt``, ``last.pt``).
        use_ema: take the EMA weights when the run kept them (they are what was validated).

    Returns:
        ``model``, with the weights loaded.

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for a file that is not a readable checkpoint.
        RuntimeError: from ``load_state_dict`` when the architecture does not match.
    """
    state = load_checkpoint(path)
    ema = state.get("ema")
    weights = ema["module"] if use_ema and ema else state["model"]
    model.load_state_dict(weights)
    return model


# ----------------------------------------------------------------------------------------------
# Random number generator states (stored as tensors and plain values: weights_only reads them)
# ----------------------------------------------------------------------------------------------


def capture_rng_states() -> dict[str, Any]:
    """The states of Python's, NumPy's and PyTorch's (CPU and CUDA) generators."""
    _, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Mapping[str, Any]) -> None:
    """Put back what :func:`capture_rng_states` returned."""
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["gauss"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def gather_rng_states() -> list[dict[str, Any]]:
    """Every process's generator states, by rank (only rank 0's answer is complete)."""
    states = capture_rng_states()
    if not (dist.is_available() and dist.is_initialized()):
        return [states]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, states)
    return gathered
