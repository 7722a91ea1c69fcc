"""Write a benchmark's results as a Markdown page that the book's benchmarks page includes."""

from __future__ import annotations

import datetime as dt
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent.parent / "book" / "benchmarks"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub/MyST Markdown table; numbers are printed as given (format them first)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line saying where the figures were measured."""
    cpu = _cpu_name()
    return (
        f"{platform.system()} {cpu}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def write_report(name: str, title: str, body: str, directory: Path | None = None) -> Path:
    """Write ``book/benchmarks/<name>.md`` (or ``<directory>/<name>.md``) with the command,
    machine and date above ``body``."""
    directory = RESULTS_DIR if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    module = f"benchmarks.{Path(sys.argv[0]).stem}"
    command = shlex.join(["python", "-m", module, *sys.argv[1:]])
    today = dt.date.today().isoformat()
    page = (
        f"## {title}\n\n"
        f"Measured on {today}: {machine_line()}.\n"
        f"Command: `{command}`\n\n{body.strip()}\n"
    )
    path = directory / f"{name}.md"
    path.write_text(page, encoding="utf-8")
    return path
