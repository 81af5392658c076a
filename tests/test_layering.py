"""The live app must run where torch is not installed: nothing under app/ may import it."""

import os
import subprocess
import sys
import textwrap


def test_app_never_imports_torch() -> None:
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import sonoguide
        # the app: every module of sonoguide but its training part (which needs torch) and
        # `python -m sonoguide` (importing that runs the app)
        names = [m.name for m in pkgutil.walk_packages(sonoguide.__path__, "sonoguide.")
                 if not m.name.startswith(("sonoguide.training", "sonoguide.models"))
                 and not m.name.endswith(".__main__")]
        for name in names:
            importlib.import_module(name)
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print(len(names), "modules;", "torch imported" if leaked else "no torch")
        sys.exit(1 if leaked else 0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no torch" in proc.stdout


QT_FREE = ("app/pipeline", "app/sources", "app/phantom")
QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6")


def _imported_names(path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_pipeline_sources_and_phantom_never_import_qt() -> None:
    """The live session, sources and phantom run headless and in tests without Qt: any import
    of Qt there, even one inside a function, is a layering break."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in QT_FREE:
        for path in sorted((root / folder).rglob("*.py")):
            leaked = _imported_names(path) & set(QT_MODULES)
            if leaked:
                offenders.append(f"{path.relative_to(root)}: {', '.join(sorted(leaked))}")
    assert not offenders, "Qt imported outside the view layer:\n" + "\n".join(offenders)
    # and at run time: importing every module of those packages loads no Qt module either
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        for package in {[f.replace('app/', 'sonoguide.') for f in QT_FREE]!r}:
            module = importlib.import_module(package)
            for info in pkgutil.walk_packages(module.__path__, package + "."):
                importlib.import_module(info.name)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in {QT_MODULES!r})
        print("Qt imported:", leaked) if leaked else print("no Qt")
        sys.exit(1 if leaked else 0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_layering_check_finds_a_qt_import(tmp_path) -> None:
    """The check above can fail: a module with a lazy PySide6 import is caught."""
    module = tmp_path / "leaky.py"
    module.write_text("def draw():\n    from PySide6 import QtGui\n    return QtGui\n")
    assert "PySide6" in _imported_names(module)


def _ort_queue_after(tmp_path, code: str) -> list[str]:
    home = tmp_path / "home"
    home.mkdir()
    # ONNX Runtime stays quiet where CI is set: drop it, so the check means the same in CI
    env = {k: v for k, v in os.environ.items()
           if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME", "CI")}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


def test_onnx_runtime_collects_nothing_when_the_app_runs_a_model(tmp_path):
    """No telemetry queue is written in the user's home while the app loads and runs models."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    written = _ort_queue_after(tmp_path, textwrap.dedent(f"""
        import numpy as np
        from sonoguide.pipeline.segmenter import Segmenter
        segmenter = Segmenter({str(root / "models" / "jugular.onnx")!r}, provider="cpu")
        segmenter.predict(np.zeros((120, 160), np.uint8))
        """))
    assert not [p for p in written if "onnxruntime" in p.lower()], written


def test_the_telemetry_check_would_see_a_queue(tmp_path):
    """Without the app's switch this ONNX Runtime build writes its queue: the test above can
    fail. (If a later build stops writing it, this says so and the check above still holds.)"""
    written = _ort_queue_after(tmp_path, "import onnxruntime")
    if not written:
        import pytest

        pytest.skip("this ONNX Runtime build writes no telemetry queue at all")
    assert any(".onnxruntime" in p for p in written)
