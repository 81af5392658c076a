"""Installed from a wheel, SonoGuide is one package, `sonoguide`, that carries its models.

The wheel is built from this checkout, installed into a folder of its own and run from a folder
outside the checkout: the shipped model must be found as package data, not beside the sources.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sonoguide import paths
from sonoguide.pipeline.analysis import MODES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not in this environment")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (built,) = out.glob("sonoguide-*.whl")
    return built


def test_the_wheel_holds_one_package_with_the_models_configs_and_splits(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"sonoguide"}, f"other top-level packages in the wheel: {sorted(top)}"
    for mode in MODES:
        assert f"sonoguide/models/{mode}.onnx" in names
        assert f"sonoguide/models/{mode}.md" in names  # its model card
    assert "sonoguide/training/splits/usgra-seg.json" in names
    assert any(n.startswith("sonoguide/training/configs/") and n.endswith(".json") for n in names)


def test_an_installed_copy_infers_with_its_shipped_model(wheel, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                           "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_in = tmp_path / "elsewhere"
    run_in.mkdir()
    env = {k: v for k, v in os.environ.items() if k != paths.MODELS_DIR_ENV}
    env.update(PYTHONPATH=str(target), QT_QPA_PLATFORM="offscreen")
    where = subprocess.run(
        [sys.executable, "-c", "import sonoguide, sonoguide.paths as p; "
         "print(sonoguide.__file__); print(p.models_dir()); print(p.repository())"],
        cwd=run_in, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    package_file, models, repository = where.stdout.split()
    assert Path(package_file).is_relative_to(target), "the checkout was imported, not the wheel"
    assert Path(models) == target / "sonoguide" / "models"
    assert repository == "None"  # an installed copy has no checkout around it

    proc = subprocess.run(
        [sys.executable, "-m", "sonoguide", "--headless", "--source", "phantom",
         "--max-frames", "30", "--report", "r.json"],
        cwd=run_in, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((run_in / "r.json").read_text())
    assert report["frames_inferred"] > 0
    assert report["model"]["name"] == "jugular"


def test_models_are_found_in_the_package_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.MODELS_DIR_ENV, raising=False)
    assert (paths.models_dir() / "jugular.onnx").is_file()
    monkeypatch.setenv(paths.MODELS_DIR_ENV, str(tmp_path))
    assert paths.models_dir() == tmp_path


def test_data_root_order_is_flag_then_environment_then_beside_the_repository(monkeypatch,
                                                                            tmp_path):
    monkeypatch.setenv(paths.DATA_ROOT_ENV, str(tmp_path / "env"))
    assert paths.data_root(tmp_path / "flag") == tmp_path / "flag"
    assert paths.data_root() == tmp_path / "env"
    monkeypatch.delenv(paths.DATA_ROOT_ENV)
    assert paths.data_root() == REPO.parent / "shared" / "data"
