"""Hardware and process settings: device choice, seeding, CPU threads and mixed precision.

This is the only module of :mod:`helpers` that inspects the hardware. Everything else takes a
``device`` (and a precision) as an argument, so the same code runs on a laptop CPU, an Apple
GPU (MPS), a CUDA GPU, or several of them under ``torchrun``.

Under ``torchrun`` each process calls :func:`init_distributed` once: it reads the rank and
world size that ``torchrun`` puts in the environment, joins the process group (NCCL between
CUDA GPUs, gloo between CPU processes) and says which device this process drives. Outside
``torchrun`` the same call returns a single-process :class:`DistInfo`, so scripts need no
branch for the two cases.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import torch

__all__ = [
    "DistInfo",
    "autocast_dtype",
    "cleanup_distributed",
    "cuda_is_available",
    "describe_runtime",
    "get_device",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_colab",
    "is_main_process",
    "measure_matmul_throughput",
    "seed_everything",
    "set_threads",
    "synchronize",
]


def cuda_is_available() -> bool:
    """Whether a usable CUDA device is present."""
    return torch.cuda.is_available()


def _mps_is_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(preferred: str | None = None) -> torch.device:
    """Pick the device to compute on: CUDA, then Apple MPS, then the CPU.

    Args:
        preferred: ``None`` or ``"auto"`` to choose automatically, or an explicit device
            (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``), which must be available.

    Returns:
        The chosen :class:`torch.device`.

    Raises:
        ValueError: for a device string that is not one of the kinds above.
        RuntimeError: when an explicitly requested device is not available here.

    >>> get_device("cpu")
    device(type='cpu')
    """
    if preferred is None or preferred == "auto":
        if cuda_is_available():
            return torch.device("cuda")
        if _mps_is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preferred)
    except RuntimeError as err:
        raise ValueError(
            f"Unknown device {preferred!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        ) from err
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unsupported device {preferred!r}; use 'auto', 'cpu', 'cuda' or 'mps'.")
    if device.type == "cuda":
        if not cuda_is_available():
            raise RuntimeError(f"Device {preferred!r} requested but CUDA is not available here.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"Device {preferred!r} requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are present."
            )
    if device.type == "mps" and not _mps_is_available():
        raise RuntimeError("Device 'mps' requested but Apple's MPS backend is not available here.")
    return device


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python's, NumPy's and PyTorch's random number generators.

    Args:
        seed: any non-negative integer.
        deterministic: also make PyTorch pick deterministic kernels (and raise on operations
            that have none) and switch off cuDNN autotuning. Slower, but two runs give the
            same numbers bit for bit on the same machine. ``False`` restores the defaults.

    Raises:
        ValueError: for a negative or non-integer seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds every CUDA device too
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; it must be set before first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def _available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container limits)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def set_threads(num_threads: int | None = None) -> int:
    """Set how many CPU threads PyTorch uses for one operation.

    Args:
        num_threads: the number of threads; ``None`` uses every core this process may run
            on (under ``torchrun``, the cores are shared out between the local processes).

    Returns:
        The number of threads now in use.

    Raises:
        ValueError: for a count below 1.
    """
    if num_threads is None:
        local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        num_threads = max(1, _available_cores() // max(1, local_procs))
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}.")
    torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def _cpu_supports_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (AVX-512 BF16 or AMX) that oneDNN uses."""
    mkldnn_bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(mkldnn_bf16()) if mkldnn_bf16 is not None else False
    except RuntimeError:
        return False


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype to autocast to on ``device``, or ``None`` for full fp32.

    Args:
        device: where the model runs.
        precision: ``"fp32"`` (no autocast), ``"bf16"``, ``"fp16"``, or ``"auto"``: bf16 on a
            CUDA GPU that supports it (else fp16), bf16 on a CPU with native bf16 (AMX or
            AVX-512 BF16), fp32 elsewhere.

    Raises:
        ValueError: for an unknown precision, or one the device cannot run.
    """
    choices = ("auto", "fp32", "bf16", "fp16")
    if precision not in choices:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(choices)}.")
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision 'fp16' is not supported on the CPU; use 'bf16' or 'fp32'.")
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and _cpu_supports_bf16():
        return torch.bfloat16
    return None


def is_colab() -> bool:
    """Whether this code runs inside Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe_runtime(device: torch.device | None = None) -> dict[str, str]:
    """What this environment has: versions, device, threads and precision support.

    Args:
        device: the device to describe; :func:`get_device` when ``None``.

    Returns:
        An ordered mapping of human-readable facts, for a table in a notebook.
    """
    device = device if device is not None else get_device()
    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "helpers": _version("helpers"),
        "device": str(device),
        "colab": "yes" if is_colab() else "no",
        "cpu threads": str(torch.get_num_threads()),
        "cpu bf16 (AMX/AVX-512)": "yes" if _cpu_supports_bf16() else "no",
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        facts["gpu"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        facts["cuda"] = str(torch.version.cuda)
    precision = autocast_dtype(device)
    facts["autocast"] = str(precision).replace("torch.", "") if precision else "fp32 (none)"
    return facts


def measure_matmul_throughput(
    device: torch.device, *, size: int = 1024, precisions: tuple[str, ...] = ("fp32", "bf16")
) -> dict[str, float]:
    """Measure matrix-multiply speed on ``device`` in TFLOP/s, for each precision.

    A rough, honest picture of what the hardware can do: the same ``size x size`` product is
    timed in fp32 and under autocast to each lower precision the device supports (bf16 on a
    CPU with AMX runs many times faster than fp32).

    Args:
        device: where to measure.
        size: the side of the square matrices.
        precisions: names accepted by :func:`autocast_dtype`; unsupported ones are left out.

    Returns:
        Precision name to TFLOP/s (higher is faster).
    """
    import time

    left = torch.randn(size, size, device=device)
    right = torch.randn(size, size, device=device)
    results = {}
    for precision in precisions:
        try:
            dtype = autocast_dtype(device, precision)
        except ValueError:
            continue  # e.g. fp16 on a CPU
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            for _ in range(3):  # warm up kernels and caches
                left @ right
            synchronize(device)
            repeats, start = 10, time.perf_counter()
            for _ in range(repeats):
                left @ right
            synchronize(device)
            seconds = (time.perf_counter() - start) / repeats
        results[precision] = 2 * size**3 / seconds / 1e12
    return results


def synchronize(device: torch.device) -> None:
    """Wait for queued work on an asynchronous device (CUDA, MPS) to finish."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ----------------------------------------------------------------------------------------------
# Several processes: torchrun and torch.distributed
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly one-process) distributed run."""

    rank: int  # this process, 0 .. world_size - 1; rank 0 writes files and prints
    world_size: int  # processes in the run
    local_rank: int  # this process on its machine; picks the GPU
    device: torch.device  # the device this process computes on

    @property
    def is_distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes checkpoints and prints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    """An integer environment variable set by ``torchrun``; ``ValueError`` if malformed."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"Environment variable {name}={raw!r} is not an integer.") from err


def init_distributed(preferred: str | None = None) -> DistInfo:
    """Join the process group that ``torchrun`` set up, or describe a single process.

    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) this initialises
    :mod:`torch.distributed` from the environment, with NCCL when the device is a CUDA GPU
    (each process takes GPU ``LOCAL_RANK``) and gloo on CPUs. Calling it again returns the
    same answer without initialising twice.

    Args:
        preferred: the device kind, as for :func:`get_device` (``None``/``"auto"``,
            ``"cpu"``, ``"cuda"``, ``"mps"``); under ``torchrun`` a CUDA device becomes
            ``cuda:LOCAL_RANK``.

    Returns:
        A :class:`DistInfo` for this process.

    Raises:
        ValueError: for a bad device string or malformed ``torchrun`` variables; or MPS
            with several processes (it has no collective backend).
        RuntimeError: when a requested device is not available here.
    """
    import torch.distributed as dist

    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1 and not dist.is_initialized():
        return DistInfo(rank=0, world_size=1, local_rank=0, device=get_device(preferred))
    local_rank = _env_int("LOCAL_RANK", 0)
    device = get_device(preferred)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    elif device.type == "mps":
        raise ValueError("Several processes cannot share MPS; use device 'cpu' under torchrun.")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def get_rank() -> int:
    """This process's rank in the process group; 0 outside distributed runs."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """How many processes take part; 1 outside distributed runs."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Whether this process is rank 0 (always true outside distributed runs)."""
    return get_rank() == 0


def cleanup_distributed() -> None:
    """Leave the process group, if this process joined one; safe to call always."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
