"""Where SonoGuide's files are: the one place that knows, for a checkout, a wheel and a bundle.

The shipped models and the training configs and splits are package data (sonoguide.models,
sonoguide.training), found through importlib.resources wherever the package is installed.
Datasets are never shipped: they are found through --data-root, $SONOGUIDE_DATA_ROOT, or
../shared/data beside the repository when running from a checkout.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

DATA_ROOT_ENV = "SONOGUIDE_DATA_ROOT"
MODELS_DIR_ENV = "SONOGUIDE_MODELS_DIR"


def _package_folder(package: str) -> Path:
    """The folder of a package's data. Installed from a wheel, editable or bundled, the package
    lives on the file system, which ONNX Runtime and OpenCV need (they take paths, not streams)."""
    folder = resources.files(package)
    if not isinstance(folder, Path):  # a zip import: SonoGuide does not ship that way
        raise RuntimeError(f"{package} is not on the file system ({folder}): reinstall SonoGuide")
    return folder


def models_dir() -> Path:
    """The shipped models (sonoguide.models); $SONOGUIDE_MODELS_DIR overrides it."""
    override = os.environ.get(MODELS_DIR_ENV)
    return Path(override) if override else _package_folder("sonoguide.models")


def training_file(*parts: str) -> Path:
    """A file shipped with the training package, e.g. training_file("splits", "usgra-seg.json")."""
    return _package_folder("sonoguide.training").joinpath(*parts)


def repository() -> Path | None:
    """The checkout this copy runs from (the folder holding pyproject.toml above app/), or None
    when SonoGuide is installed from a wheel or bundled."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "app").is_dir() else None


def data_root(override: str | Path | None = None) -> Path:
    """Datasets: --data-root, else $SONOGUIDE_DATA_ROOT, else ../shared/data beside the
    repository (installed copies have no repository: then the current folder's data/)."""
    if override:
        return Path(override).expanduser()
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV]).expanduser()
    repo = repository()
    return repo.parent / "shared" / "data" if repo is not None else Path.cwd() / "data"
