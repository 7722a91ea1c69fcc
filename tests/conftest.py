"""Shared test settings: CPU by default, no hub downloads, a private data folder per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
