"""The markers let an app-only install run the suite: without torch, pytest-qt or the datasets,
`-m "not gui and not torch and not realdata"` still collects most tests, and none of those
needs what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP_ONLY = "not gui and not torch and not realdata"
# An install without the training extras or the test plugins: importing them fails, as there.
WITHOUT = ("import sys; sys.modules.update(torch=None, pytestqt=None); import pytest; "
           "sys.exit(pytest.main(sys.argv[1:]))")


def test_an_app_only_install_collects_the_app_tests_and_nothing_that_needs_more():
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", WITHOUT, "--collect-only", "-q", "-p",
                           "no:cacheprovider", "-m", APP_ONLY, "tests"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert len(ids) > 300, f"only {len(ids)} tests for an app-only install"
    files = {i.split("::")[0] for i in ids}
    assert {"tests/test_worker.py", "tests/test_sources.py", "tests/test_shipped_models.py",
            "tests/test_dependencies.py", "tests/test_trainee.py", "tests/test_overlay.py"} <= files
    # left out by their markers (these modules import fine without torch or pytest-qt) ...
    assert not files & {"tests/test_dequantize.py", "tests/test_scanner_clip.py"}  # torch
    assert not [i for i in ids if "qtbot" in i or "test_overlay_items_are_reused" in i]  # gui
    assert not [i for i in ids if "test_roi.py" in i and "real" in i]  # realdata
    # ... or skipped as modules that need what is missing
    assert not files & {"tests/test_window.py", "tests/test_trainee_window.py",
                        "tests/test_training.py", "tests/test_export.py"}
