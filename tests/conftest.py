"""Every test runs headless (offscreen Qt) and with settings and log folders of its own, so no
test reads or writes the user's remembered image areas, speed choices or log.

Markers (pyproject.toml lists them; --strict-markers refuses any other):
  gui       opens Qt widgets (pytest-qt). A test using qtbot is marked gui here even if it
            forgot to say so, so `-m "not gui"` leaves out every one.
  torch     tests the training package (torch, onnx: pip install .[train]).
  realdata  reads datasets under the data root training uses: pytest's --data-root, else
            $SONOGUIDE_DATA_ROOT, else ../shared/data beside the repository. The marker's
            arguments name what it needs there (e.g. realdata("usgra-seg/images")); where that
            is missing the test is skipped, saying where it looked.
An app-only install runs the rest: pytest -m "not gui and not torch and not realdata".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sonoguide  # noqa: F401  (ONNX Runtime telemetry off before any test loads onnxruntime)
from sonoguide.paths import DATA_ROOT_ENV, data_root

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--data-root", default=None,
                     help="datasets for the realdata tests, as training's --data-root (default: "
                          f"${DATA_ROOT_ENV}, else ../shared/data beside the repository)")


def pytest_configure(config: pytest.Config) -> None:
    root = config.getoption("--data-root")
    if root:  # through the environment, so sonoguide.paths.data_root() finds it everywhere
        os.environ[DATA_ROOT_ENV] = str(Path(root).expanduser().resolve())


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "qtbot" in getattr(item, "fixturenames", ()) and item.get_closest_marker("gui") is None:
            item.add_marker(pytest.mark.gui)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("realdata"):
        root = data_root()
        for part in mark.args or ("",):
            if not (root / part).exists():
                pytest.skip(f"real data not found: {root / part} (point pytest --data-root or "
                            f"${DATA_ROOT_ENV} at the datasets; default ../shared/data beside "
                            "the repository)")


@pytest.fixture(autouse=True)
def _own_settings_folder(tmp_path_factory, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    monkeypatch.setenv("SONOGUIDE_LOG_DIR", str(tmp_path_factory.mktemp("logs")))


@pytest.fixture
def started():
    """Start sources (and their consumers); stop them all after the test, newest first."""
    things = []

    def start(thing):
        things.append(thing)
        thing.start()
        return thing

    yield start
    for thing in reversed(things):
        thing.stop()
