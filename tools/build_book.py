"""Build the book: execute every notebook with papermill, then render HTML with jupyter-book.

The notebooks under ``notebooks/`` are never written to. Each one is executed into a staging
copy of the book (``<out>/src``) with the chosen run profile injected as a papermill parameter;
jupyter-book 1.x then renders that staging copy with notebook execution switched off and
warnings treated as errors.

Usage (the README's ``make book`` calls this)::

    python tools/build_book.py --profile smoke
    python tools/build_book.py --profile quick --only 01_data_preparation
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("auto", "smoke", "quick", "full")
# Copied into the staging folder as they are; notebooks are executed into it instead. The
# deployment chapter shows the Dockerfile, the compose file and the image workflow.
STAGED = (
    "_config.yml",
    "_toc.yml",
    "book",
    "helpers",
    "benchmarks",
    "Dockerfile",
    "deploy",
    ".github/workflows",
)


def toc_files(toc_path: Path) -> list[str]:
    """Every document named in a jupyter-book ``_toc.yml`` (root first), without suffix."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", toc.get("chapters", [])))
    return files


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks named in ``_toc.yml``, in book order."""
    names = [f for f in toc_files(root / "_toc.yml") if f.startswith("notebooks/")]
    return [root / f"{name.removesuffix('.ipynb')}.ipynb" for name in names]


def stage_sources(out: Path) -> Path:
    """Copy the book's non-notebook sources into ``out/src`` and return that folder."""
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    for name in STAGED:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.is_file():
            shutil.copy2(path, src / name)
    return src


def execute_notebook(notebook: Path, target: Path, profile: str, timeout: int) -> float:
    """Execute one notebook with papermill into ``target``; return the seconds it took."""
    import papermill

    # The rendered book cannot run widgets: helpers.widgets shows static figures instead.
    os.environ["HELPERS_STATIC_WIDGETS"] = "1"
    # Figures must be captured as outputs, whatever backend the calling shell chose (Agg, say).
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(target),
        parameters={"PROFILE": profile},
        kernel_name="python3",
        cwd=str(notebook.parent),  # run where a reader's JupyterLab would run it
        execution_timeout=timeout,
        progress_bar=False,
        request_save_on_cell_execute=False,
    )
    return time.perf_counter() - start


def execute_all(notebooks: list[Path], src: Path, profile: str, timeout: int) -> list[str]:
    """Execute every notebook, going on after a failure; return the failures' messages."""
    failures = []
    for notebook in notebooks:
        target = src / "notebooks" / notebook.name
        print(f"[book] executing {notebook.relative_to(ROOT)} (PROFILE={profile}) ...", flush=True)
        try:
            seconds = execute_notebook(notebook, target, profile, timeout)
        except Exception as err:  # report every failing notebook, not just the first
            failures.append(f"{notebook.name}: {type(err).__name__}: {err}")
            print(f"[book] FAILED {notebook.name}\n{err}", flush=True)
            continue
        print(f"[book] {notebook.name} done in {seconds:.0f} s", flush=True)
    return failures


def render(src: Path, out: Path) -> Path:
    """Render ``src`` to HTML with jupyter-book (no execution, warnings as errors)."""
    cmd = [
        sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(src),
        "--path-output", str(out), "--builder", "html", "-W", "--keep-going",
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    return out / "_build" / "html"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile",
        default="auto",
        choices=PROFILES,
        help="run profile injected into every notebook (default: auto)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "_build", help="build folder (default: _build)"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="execute only these notebooks (names without .ipynb); default: all",
    )
    parser.add_argument(
        "--timeout", type=int, default=3600, help="seconds one cell may run (default: 3600)"
    )
    parser.add_argument(
        "--no-render", action="store_true", help="execute the notebooks but do not render HTML"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Execute the notebooks and render the book; return the process exit status."""
    args = parse_args(argv)
    out = args.out.resolve()
    notebooks = toc_notebooks()
    if args.only:
        unknown = sorted(set(args.only) - {nb.stem for nb in notebooks})
        if unknown:
            names = ", ".join(nb.stem for nb in notebooks)
            raise SystemExit(f"Unknown notebook(s) {', '.join(unknown)}; choose from {names}.")
        notebooks = [nb for nb in notebooks if nb.stem in args.only]
    src = stage_sources(out)
    for notebook in toc_notebooks():
        if notebook not in notebooks:  # rendered without outputs, so the TOC stays whole
            shutil.copy2(notebook, src / "notebooks" / notebook.name)
    failures = execute_all(notebooks, src, args.profile, args.timeout)
    if failures:
        print("[book] notebooks that failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    if args.no_render:
        print(f"[book] executed notebooks are in {src / 'notebooks'}")
        return 0
    html = render(src, out)
    print(f"[book] the book is at {(html / 'index.html').as_uri()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
