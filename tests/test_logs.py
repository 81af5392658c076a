"""A field problem leaves a trace: the run's version, model, provider and banners in a log."""

from __future__ import annotations

import logging
import os

import pytest

from sonoguide import cli
from sonoguide.logs import configure_logging
from tests.model_factory import make_model


def test_a_headless_run_logs_what_ran_with_which_model(tmp_path, capsys):
    model = make_model(tmp_path / "plexus-test.onnx")
    code = cli.main(["--headless", "--source", "phantom:plexus", "--mode", "plexus", "--model",
                     str(model), "--provider", "cpu", "--max-frames", "5"])
    assert code == 0, capsys.readouterr().err
    for handler in logging.getLogger().handlers:
        handler.flush()
    with open(os.path.join(os.environ["SONOGUIDE_LOG_DIR"], "sonoguide.log")) as fh:
        log = fh.read()  # the folder the tests' conftest gives every test
    assert "SonoGuide " in log and "Python " in log and "--max-frames 5" in log
    assert "mode plexus: model plexus-test (version test-1)" in log and " on CPU" in log


@pytest.mark.gui
def test_banners_shown_in_the_window_are_logged(qtbot, tmp_path):
    from sonoguide.ui.banners import Banners

    path = configure_logging("INFO", tmp_path)
    banners = Banners()
    qtbot.addWidget(banners)
    banners.set("nosignal", "NO SIGNAL", "last image held, reconnecting...")
    banners.set("nosignal", "NO SIGNAL", "last image held, reconnecting...")  # no repeat
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = [line for line in path.read_text().splitlines() if "banner nosignal" in line]
    assert len(lines) == 1 and "NO SIGNAL: last image held" in lines[0]


def test_an_unwritable_log_folder_leaves_stderr_only(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert configure_logging("INFO", blocked / "logs") is None
    assert "no log file" in capsys.readouterr().err
