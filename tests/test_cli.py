"""The command line, `python -m helpers`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers.__main__ import main


def test_info_prints_environment_profile_and_source(capsys, monkeypatch) -> None:
    monkeypatch.setenv("CIFAR10_PATH", "/nowhere/cifar10.tar.gz")
    assert main(["info", "--device", "cpu", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "cpu" in out
    assert "smoke" in out
    assert "/nowhere/cifar10.tar.gz" in out


def test_bad_profile_is_rejected_with_choices(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["info", "--profile", "fast"])
    assert "smoke" in capsys.readouterr().err


def test_module_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert "info" in proc.stdout
