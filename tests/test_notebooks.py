"""Notebook hygiene: committed without outputs, one parameters cell, listed in the TOC."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.conftest import REPO_ROOT
from tools.build_book import toc_files, toc_notebooks

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
class TestNotebook:
    def test_valid_and_without_outputs(self, path: Path) -> None:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name}: strip outputs before committing"
                assert cell.execution_count is None, f"{path.name}: strip execution counts"

    def test_one_parameters_cell_starting_with_profile(self, path: Path) -> None:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
        assert tagged[0].cell_type == "code"
        assert tagged[0].source.startswith('PROFILE = "auto"')

    def test_named_in_order_and_titled(self, path: Path) -> None:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+", path.stem), f"{path.name}: name it NN_topic"
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0]
        assert first.cell_type == "markdown" and first.source.startswith("# ")

    def test_imports_helpers_as_hp(self, path: Path) -> None:
        nb = nbformat.read(path, as_version=4)
        sources = [c.source for c in nb.cells if c.cell_type == "code"]
        assert any("import helpers as hp" in s for s in sources)
        assert not any(re.search(r"from helpers(\.\w+)? import \*", s) for s in sources)

    def test_listed_in_toc(self, path: Path) -> None:
        assert path in toc_notebooks()


def test_toc_notebooks_are_in_file_name_order() -> None:
    names = [p.name for p in toc_notebooks()]
    assert names == sorted(names)


def test_every_toc_entry_exists() -> None:
    for entry in toc_files(REPO_ROOT / "_toc.yml"):
        candidates = [REPO_ROOT / f"{entry}{suffix}" for suffix in ("", ".md", ".ipynb")]
        assert any(c.is_file() for c in candidates), f"_toc.yml names {entry}, which is missing"
