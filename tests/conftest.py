"""Shared test settings: CPU by default, no hub downloads, a private data folder per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent

# Like timm's tests: the device under test comes from the environment, CPU by default.
TORCH_DEVICE = os.environ.get("TORCH_DEVICE", "cpu")


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point helpers' data folder at a fresh temporary folder, so tests never share caches."""
    path = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("HELPERS_DATA_DIR", str(path))
    return path


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: tiny models run fastest (and steadiest on a busy
    machine) so. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
