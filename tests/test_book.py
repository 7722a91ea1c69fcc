"""The book: every notebook executes with papermill in the smoke profile, and renders cleanly.

One session-wide build (``tools/build_book.py --profile smoke``) runs the notebooks into a
temporary folder and renders them with jupyter-book; the tests below read its results.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


@dataclass
class Build:
    returncode: int
    log: str
    out: Path
    sources_before: dict[str, str]

    @property
    def html(self) -> Path:
        return self.out / "_build" / "html"


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in NOTEBOOKS}


@pytest.fixture(scope="session")
def book(tmp_path_factory: pytest.TempPathFactory) -> Build:
    out = tmp_path_factory.mktemp("book")
    env = dict(os.environ)
    env.pop("HELPERS_DATA_DIR", None)  # share the repository's data cache, as a reader would
    before = _digests()
    proc = subprocess.run(
        [sys.executable, "tools/build_book.py", "--profile", "smoke", "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return Build(proc.returncode, proc.stdout + proc.stderr, out, before)


def test_book_builds_without_warnings(book: Build) -> None:
    assert book.returncode == 0, book.log[-6000:]
    # Sphinx warnings look like "file.ipynb:12: WARNING: ..." (-W turns them into errors).
    assert "WARNING:" not in book.log, book.log[-6000:]
    assert "the book is at" in book.log
    assert (book.html / "index.html").is_file()


def test_sources_are_not_written_to(book: Build) -> None:
    assert _digests() == book.sources_before


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executed_in_smoke_profile(book: Build, path: Path) -> None:
    executed = book.out / "src" / "notebooks" / path.name
    assert executed.is_file(), book.log[-4000:]
    nb = nbformat.read(executed, as_version=4)
    assert nb.metadata["papermill"]["parameters"] == {"PROFILE": "smoke"}
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "a cell was not executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any(c.outputs for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_rendered_page_shows_outputs(book: Build, path: Path) -> None:
    page = book.html / "notebooks" / f"{path.stem}.html"
    assert page.is_file()
    html = page.read_text(encoding="utf-8")
    assert 'class="cell_output' in html, "no executed output on the page"


def test_rendered_book_has_figures_and_text_outputs(book: Build) -> None:
    intro = (book.html / "notebooks" / "00_introduction.html").read_text(encoding="utf-8")
    assert "resolves to" in intro and "smoke" in intro  # a printed output
    assert "<table" in intro  # a DataFrame output
    images = list((book.html / "_images").glob("*.png"))
    assert images, "no figure was rendered"
    assert any(img.name in intro for img in images), "chapter 0's figure is not on its page"
