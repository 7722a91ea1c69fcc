"""Packaging: `pip install .` keeps an installed torch that is in range (as on Colab)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO_ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CONSTRAINTS = REPO_ROOT / "requirements" / "constraints.txt"


def _requirements() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    return {r.name: r for r in reqs}


def _pins() -> dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"constraints must pin exactly: {line}"
            pins[req.name.lower()] = Version(spec.version)
    return pins


def test_runtime_dependencies_are_ranges_not_pins() -> None:
    for name, req in _requirements().items():
        assert all(s.operator != "==" for s in req.specifier), f"{name} is pinned in pyproject"


def test_constraints_pin_the_tested_torch_inside_the_ranges() -> None:
    pins = _pins()
    assert pins["torch"] == Version("2.14.1")
    assert pins["torchvision"] == Version("0.29.1")
    for name, req in _requirements().items():
        assert name.lower() in pins, f"{name} is not pinned in requirements/constraints.txt"
        assert req.specifier.contains(pins[name.lower()]), f"{name} pin is outside its range"


def test_book_extra_pins_jupyter_book_1() -> None:
    book = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["book"]]
    (jb,) = [r for r in book if r.name == "jupyter-book"]
    assert jb.specifier.contains("1.0.4") and not jb.specifier.contains("2.0.0")


@pytest.mark.slow
def test_pip_install_keeps_the_installed_torch(tmp_path) -> None:
    """With torch already installed (as on Colab), installing helpers installs only helpers."""
    installed = Version(metadata.version("torch").split("+")[0])
    assert _requirements()["torch"].specifier.contains(installed)
    report = tmp_path / "report.json"
    env = dict(os.environ, PIP_CONSTRAINT="")  # no machine-wide constraint, like a user's pip
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
         str(REPO_ROOT)],
        check=True, env=env, timeout=600,
    )  # fmt: skip
    planned = {
        item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]
    }
    assert "torch" not in planned and "torchvision" not in planned, planned
    assert "helpers" in planned
