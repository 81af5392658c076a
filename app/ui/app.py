"""GUI entry point: `run_gui(args)` builds the real dependencies and runs the window."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sonoguide.pipeline.analysis import DEFAULT_MODE
from sonoguide.pipeline.models import LoadedModel
from sonoguide.sources.base import FrameSource
from sonoguide.ui.controller import Deps


def make_model_loader(provider: str = "auto", threads: int | None = None,
                      default_path: Callable[[str], Path] | None = None,
                      ) -> Callable[[str, str | None], LoadedModel]:
    """(mode, path or None) -> LoadedModel; raises with a readable message for a bad model.

    default_path: where a mode's model lives when no path is given (tests point it at their
    own models); None = the shipped models, in the variant and thread count measured fastest
    on this machine (sonoguide.pipeline.models.load_for_machine).
    """

    def load(mode: str, path: str | None, recalibrate: bool = False) -> LoadedModel:
        from sonoguide.pipeline.models import load_for_machine

        if path is None and default_path is not None:
            path = str(default_path(mode))
        return load_for_machine(mode, path, provider, threads, recalibrate=recalibrate)

    return load


def make_worker(segmenter: Any, analyzer: Any) -> Any:
    from sonoguide.pipeline.worker import InferenceWorker

    return InferenceWorker(segmenter, analyzer)


def real_deps(provider: str = "auto", threads: int | None = None, *,
              open_source: Callable[[str], FrameSource] | None = None,
              default_path: Callable[[str], Path] | None = None,
              snapshot_dir: Path | None = None) -> Deps:
    """The app's real dependencies; tests swap single pieces (e.g. open_source) for fakes."""
    if open_source is None:
        from sonoguide.sources.factory import open_source
    deps = Deps(open_source=open_source,
                load_model=make_model_loader(provider, threads, default_path),
                make_worker=make_worker)
    if snapshot_dir is not None:
        deps.snapshot_dir = snapshot_dir
    from sonoguide.pipeline.calibration import RoiStore
    from sonoguide.pipeline.depth_scale import find_depth_scale
    from sonoguide.pipeline.roi import detect_roi

    deps.detect_roi, deps.roi_store = detect_roi, RoiStore()
    deps.find_scale = find_depth_scale
    try:
        from sonoguide.sources.devices import list_capture_devices

        deps.list_devices = list_capture_devices
    except ImportError:
        pass
    return deps


def ensure_app() -> Any:
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(sys.argv[:1])
        app.setApplicationName("SonoGuide")
    return app


def run_gui(args: argparse.Namespace) -> int:
    """Open the window on args.source in args.mode; returns the Qt exit code."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("QT_QPA_PLATFORM")):
        print("sonoguide: no display found (set DISPLAY, or run under xvfb-run)", file=sys.stderr)
        return 2
    app = ensure_app()
    from sonoguide.ui.window import MainWindow

    deps = real_deps(getattr(args, "provider", None) or "auto", getattr(args, "threads", None))
    try:
        window = MainWindow(deps, source=getattr(args, "source", None) or "phantom",
                            mode=getattr(args, "mode", None) or DEFAULT_MODE,
                            model_path=getattr(args, "model", None),
                            **_policy_options(args))
    except ValueError as exc:
        print(f"sonoguide: {exc}", file=sys.stderr)
        return 2
    window.show()
    _close_on_ctrl_c(window)
    try:
        return int(app.exec())
    finally:
        window.shutdown()


def _policy_options(args: argparse.Namespace) -> dict:
    """The overlay policy the command line asked for (the window's defaults otherwise)."""
    options: dict = {}
    if getattr(args, "budget_ms", None) is not None:
        options["budget_s"] = args.budget_ms / 1000.0
    if getattr(args, "follow", None):
        options["follow"] = args.follow
    return options


def _close_on_ctrl_c(window: Any) -> None:
    """Ctrl+C in the terminal closes the window cleanly. Python runs signal handlers only when
    it gets control, so a timer hands it control a few times a second."""
    if threading.current_thread() is not threading.main_thread():
        return
    from PySide6 import QtCore

    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake = QtCore.QTimer(window)
    wake.timeout.connect(lambda: None)
    wake.start(250)
