"""Every test runs headless (offscreen Qt) and with settings and log folders of its own, so no
test reads or writes the user's remembered image areas, speed choices or log."""

from __future__ import annotations

import os

import pytest

import sonoguide  # noqa: F401  (ONNX Runtime telemetry off before any test loads onnxruntime)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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
