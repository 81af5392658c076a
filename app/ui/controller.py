"""Qt-free pieces of the window: its dependencies, background model loading, rates.

What to draw on a frame is decided by the live session (sonoguide.pipeline.session), which the
window and the headless runner share; the window owns Qt only.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonoguide.pipeline.analysis import MODE_LABELS, MODE_SCENES
from sonoguide.pipeline.calibration import default_snapshot_dir
from sonoguide.pipeline.frames import Roi
from sonoguide.pipeline.models import LoadedModel
from sonoguide.pipeline.session import Worker
from sonoguide.sources.base import FrameSource

MODES = MODE_LABELS  # the window's name for them (sonoguide.pipeline.analysis is the registry)
PHANTOM_SCENE_FOR_MODE = MODE_SCENES


@dataclass
class Deps:
    """Everything the window reaches outside the UI; tests inject fakes here."""

    open_source: Callable[[str], FrameSource]
    load_model: Callable[[str, str | None], LoadedModel]  # (mode, path or None=default)
    make_worker: Callable[[Any, Any], Worker]  # (segmenter, analyzer) -> inference thread
    detect_roi: Callable[[np.ndarray], Roi] = Roi.full
    find_scale: Callable[[np.ndarray, Roi], Any] | None = None  # depth ruler -> DepthScale
    roi_store: Any = None  # sonoguide.pipeline.calibration.RoiStore: get(key), set(key, roi=, ...)
    list_devices: Callable[[], list] = field(default=lambda: [])
    snapshot_dir: Path = field(default_factory=default_snapshot_dir)


class ModelLoader:
    """Loads a model on a background thread so the live image never waits for it."""

    def __init__(self, load: Callable[[str, str | None], LoadedModel]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._result: tuple[int, str, LoadedModel | None, str] | None = None
        self._request = 0
        self.loading_mode: str | None = None

    def request(self, mode: str, path: str | None, recalibrate: bool = False) -> None:
        """Load in the background; recalibrate: measure the variants' speed here again."""
        with self._lock:
            self._request += 1
            ticket = self._request
        self.loading_mode = mode

        def run() -> None:
            try:
                model = (self._load(mode, path, recalibrate=True) if recalibrate
                         else self._load(mode, path))
                error = ""
            except Exception as exc:  # a bad model must never take the app down
                model, error = None, f"{exc}" or type(exc).__name__
            with self._lock:
                if ticket == self._request:  # an older request finishing late is ignored
                    self._result = (ticket, mode, model, error)

        threading.Thread(target=run, name=f"load-model:{mode}", daemon=True).start()

    def poll(self) -> tuple[str, LoadedModel | None, str] | None:
        """(mode, model or None, error message) once the newest request is done, else None."""
        with self._lock:
            if self._result is None:
                return None
            _, mode, model, error = self._result
            self._result = None
        self.loading_mode = None
        return mode, model, error


class RateMeter:
    """Events per second over the last few seconds (input fps, inference fps)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def tick(self, t: float) -> None:
        self._times.append(t)
        while self._times and t - self._times[0] > self._window_s:
            self._times.popleft()

    def rate(self, now: float) -> float:
        while self._times and now - self._times[0] > self._window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


def median(values: collections.deque[float] | list[float]) -> float | None:
    return float(np.median(np.asarray(values))) if len(values) else None
