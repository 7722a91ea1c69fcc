"""Sources: which copy of the data :func:`load_dataset` reads (see :func:`describe_source`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from helpers.config import Profile, data_dir, resolve_profile

from ._constants import _CIFAR_TRAIN_BATCHES, _TORCHVISION_FOLDER, CIFAR10_ENV

# ----------------------------------------------------------------------------------------------
# Sources: which copy of the data is used
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """A resolved data source. ``kind``: torchvision, folder, tar, zip, download, synthetic."""

    kind: str
    path: Path | None
    origin: str  # why this one: the environment variable, the data folder, or the argument


_KIND_LABELS = {
    "torchvision": "torchvision CIFAR-10 folder",
    "folder": "ImageFolder directory",
    "tar": "archive (tar)",
    "zip": "archive (zip)",
    "download": "download (torchvision)",
    "synthetic": "synthetic stand-in (smoke profile)",
}


def _missing_cifar_message(reason: str = "") -> str:
    """The error text for a missing CIFAR-10: both ways to provide it."""
    because = f" ({reason})" if reason else ""
    return (
        f"CIFAR-10 is not available{because}. Provide it in one of two ways:\n"
        f"  1. let torchvision download it (about 170 MB) into {data_dir()}: call "
        "load_dataset('cifar10', download=True) on a machine with internet access; or\n"
        f"  2. set the environment variable {CIFAR10_ENV} to a local copy: a torchvision "
        f"folder (holding {_TORCHVISION_FOLDER}), an ImageFolder directory "
        "(train/<class>/*.jpg, test/<class>/*.jpg), or a .tar.gz/.zip archive of one."
    )


def _is_smoke(profile: str | Profile | None) -> bool:
    """Whether ``profile`` is the smoke profile (``None`` means no profile: not smoke)."""
    if profile is None:
        return False
    if isinstance(profile, Profile):
        return profile.name == "smoke"
    return resolve_profile(profile).name == "smoke"


def _archive_kind(path: Path) -> str | None:
    """``tar`` or ``zip`` for a supported archive name, else ``None``."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    return None


def _classify_path(path: Path, origin: str) -> _Source:
    """Decide what kind of source an existing path is.

    Raises:
        ValueError: for a file that is not a supported archive.
    """
    if path.is_dir():
        if (path / _TORCHVISION_FOLDER).is_dir():
            return _Source("torchvision", path / _TORCHVISION_FOLDER, origin)
        if (path / _CIFAR_TRAIN_BATCHES[0]).is_file():
            return _Source("torchvision", path, origin)
        return _Source("folder", path, origin)
    kind = _archive_kind(path)
    if kind is None:
        raise ValueError(
            f"{path} is neither a folder nor a supported archive; use a directory or a "
            ".tar.gz, .tgz, .tar or .zip file."
        )
    return _Source(kind, path, origin)


def _resolve_source(
    source: str | os.PathLike[str], *, download: bool, smoke: bool = False
) -> _Source:
    """Find the source to read, without reading it (see :func:`describe_source`)."""
    if not isinstance(source, os.PathLike) and str(source).strip().lower() == "cifar10":
        env = os.environ.get(CIFAR10_ENV, "").strip()
        if env:
            path = Path(env).expanduser()
            if not path.exists():
                raise FileNotFoundError(
                    f"{CIFAR10_ENV}={env!r} but that path does not exist; point it at a "
                    "local CIFAR-10 copy, or unset it to use torchvision's download."
                )
            return _classify_path(path, origin=f"${CIFAR10_ENV}")
        local = data_dir() / _TORCHVISION_FOLDER
        if local.is_dir():
            return _Source("torchvision", local, origin="data folder")
        if smoke:  # the smoke profile never downloads; it says so when it falls back
            return _Source("synthetic", None, origin="smoke profile, no local copy")
        if download:
            return _Source("download", data_dir(), origin="torchvision")
        raise FileNotFoundError(_missing_cifar_message("download=False and no local copy"))
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"Data source {str(source)!r} does not exist; use 'cifar10' or the path of an "
            "ImageFolder directory or a .tar.gz/.zip archive of one."
        )
    return _classify_path(path, origin="argument")


def describe_source(
    source: str | os.PathLike[str] = "cifar10",
    *,
    download: bool = True,
    profile: str | Profile | None = None,
) -> dict[str, str]:
    """Say which copy of the data :func:`load_dataset` would use, without loading images.

    For ``"cifar10"`` the order is: ``$CIFAR10_PATH`` when set, else a torchvision copy
    already in ``data_dir()``, else torchvision's download (in the ``smoke`` profile,
    which never downloads, a synthetic stand-in instead). Problems are reported in the
    ``status`` entry rather than raised, so a notebook can always print the table.

    Args:
        source: ``"cifar10"`` or the path of an ImageFolder directory or archive.
        download: whether a download is allowed, as in :func:`load_dataset`.
        profile: the run profile, as in :func:`load_dataset`.

    Returns:
        Human-readable facts: ``source``, ``kind`` (torchvision folder, ImageFolder
        directory, archive, download, synthetic, or missing), ``path``, ``origin``, the
        environment variable's name (``env var``) and whether it is set (``env var set``),
        the ``cache`` folder and a ``status`` (``ok``, or what is wrong).

    >>> describe_source("cifar10")["env var"]
    'CIFAR10_PATH'
    """
    env = os.environ.get(CIFAR10_ENV, "").strip()
    facts = {"source": str(source), "kind": "missing", "path": "", "origin": "", "status": "ok"}
    try:
        resolved = _resolve_source(source, download=download, smoke=_is_smoke(profile))
    except (FileNotFoundError, ValueError) as err:
        is_cifar = str(source).strip().lower() == "cifar10"
        facts["path"] = env if is_cifar and env else ("" if is_cifar else str(source))
        facts["status"] = str(err).split("\n", 1)[0]
    else:
        facts["kind"] = _KIND_LABELS[resolved.kind]
        facts["path"] = str(resolved.path) if resolved.path else "(generated in memory)"
        facts["origin"] = resolved.origin
    facts.update(
        {
            "env var": CIFAR10_ENV,
            "env var set": f"yes ({env})" if env else "no",
            "cache": str(data_dir() / "cache"),
        }
    )
    return facts
