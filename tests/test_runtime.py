"""Tests for helpers.runtime: devices, seeding, threads and precision."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from helpers import runtime


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cuda_is_available", lambda: True)
    assert runtime.get_device().type == "cuda"
    monkeypatch.setattr(runtime, "cuda_is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_is_available", lambda: True)
    assert runtime.get_device("auto").type == "mps"
    monkeypatch.setattr(runtime, "_mps_is_available", lambda: False)
    assert runtime.get_device(None) == torch.device("cpu")


def test_get_device_explicit_cpu() -> None:
    assert runtime.get_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu0", "tpu", "meta"])
def test_get_device_rejects_unknown_devices(name: str) -> None:
    with pytest.raises(ValueError, match="cpu"):
        runtime.get_device(name)


def test_get_device_unavailable_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cuda_is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.get_device("cuda")


def _draw() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_makes_runs_repeat() -> None:
    runtime.seed_everything(123)
    first = _draw()
    runtime.seed_everything(123)
    assert _draw() == first
    runtime.seed_everything(124)
    assert _draw() != first


def test_seeded_training_steps_match() -> None:
    def one_run() -> torch.Tensor:
        runtime.seed_everything(7)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            inputs, targets = torch.randn(4, 8), torch.randint(0, 2, (4,))
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(one_run(), one_run())


def test_deterministic_mode_toggles_torch_flags() -> None:
    try:
        runtime.seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark
    finally:
        runtime.seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(seed: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(seed)  # type: ignore[arg-type]


def test_set_threads() -> None:
    before = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert runtime.set_threads() >= 1
    finally:
        torch.set_num_threads(before)


def test_set_threads_shares_cores_between_local_processes(monkeypatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "_available_cores", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    try:
        assert runtime.set_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("count", [0, -2, 1.5])
def test_set_threads_rejects_bad_counts(count: object) -> None:
    with pytest.raises(ValueError, match="num_threads"):
        runtime.set_threads(count)  # type: ignore[arg-type]


def test_autocast_dtype_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert runtime.autocast_dtype(cpu, "fp32") is None
    assert runtime.autocast_dtype(cpu, "bf16") is torch.bfloat16
    monkeypatch.setattr(runtime, "_cpu_supports_bf16", lambda: True)
    assert runtime.autocast_dtype(cpu, "auto") is torch.bfloat16
    monkeypatch.setattr(runtime, "_cpu_supports_bf16", lambda: False)
    assert runtime.autocast_dtype(cpu, "auto") is None
    with pytest.raises(ValueError, match="not supported on the CPU"):
        runtime.autocast_dtype(cpu, "fp16")
    with pytest.raises(ValueError, match="fp32, bf16"):
        runtime.autocast_dtype(cpu, "int8")


def test_autocast_dtype_on_cuda_prefers_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert runtime.autocast_dtype(cuda) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert runtime.autocast_dtype(cuda) is torch.float16


def test_describe_runtime_lists_the_essentials() -> None:
    facts = runtime.describe_runtime(torch.device("cpu"))
    assert facts["torch"] == torch.__version__
    assert facts["device"] == "cpu"
    for key in ("python", "torchvision", "timm", "helpers", "autocast", "cpu threads"):
        assert facts[key]


def test_is_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert not runtime.is_colab()
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20260101-060000_RC00")
    assert runtime.is_colab()


def test_matmul_throughput_is_positive_for_supported_precisions() -> None:
    results = runtime.measure_matmul_throughput(
        torch.device("cpu"), size=64, precisions=("fp32", "bf16", "fp16")
    )
    assert set(results) == {"fp32", "bf16"}  # fp16 is not offered on the CPU
    assert all(value > 0 for value in results.values())


def test_init_distributed_outside_torchrun_is_one_process(monkeypatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = runtime.init_distributed("cpu")
    assert info == runtime.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert info.is_main and not info.is_distributed
    assert runtime.get_rank() == 0 and runtime.get_world_size() == 1
    assert runtime.is_main_process()
    runtime.cleanup_distributed()  # nothing to leave: no error


def test_init_distributed_rejects_malformed_torchrun_variables(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        runtime.init_distributed("cpu")


def test_init_distributed_picks_gloo_on_the_cpu_under_torchrun(monkeypatch) -> None:
    """What torchrun sets up: the rank and world size in the environment."""
    import torch.distributed as dist

    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    backends: list[str] = []
    monkeypatch.setattr(dist, "init_process_group", lambda backend: backends.append(backend))
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(backends))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    info = runtime.init_distributed("cpu")
    assert backends == ["gloo"]
    assert (info.rank, info.world_size, info.local_rank) == (1, 2, 1) and not info.is_main
    assert runtime.init_distributed("cpu") == info and backends == ["gloo"]  # joins once
    monkeypatch.setattr(runtime, "get_device", lambda preferred: torch.device("mps"))
    with pytest.raises(ValueError, match="cannot share MPS"):
        runtime.init_distributed("mps")
