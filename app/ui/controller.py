"""Qt-free pieces of the live view: what to load, how fast things run, whether to paint.

The window owns Qt; everything that can be decided without Qt lives here so it can be tested
and reasoned about on its own.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.pipeline.frames import Frame, Roi, Segmentation, overlay_is_fresh
from app.sources.base import FrameSource

MODES = {"plexus": "Nerve block", "jugular": "IJ cannulation"}
PHANTOM_SCENE_FOR_MODE = {"plexus": "phantom:plexus", "jugular": "phantom:jugular"}


class Worker(Protocol):
    """What the window needs from app.pipeline.worker.InferenceWorker."""

    def submit(self, frame: Frame) -> None: ...
    def latest(self) -> Segmentation | None: ...
    def add_listener(self, cb: Callable[[Segmentation], None]) -> None: ...
    def set_model(self, segmenter: Any, analyzer: Any) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class LoadedModel:
    segmenter: Any  # app.pipeline.segmenter.Segmenter (or a test fake with the same attributes)
    analyzer: Any

    @property
    def version(self) -> str:
        contract = getattr(self.segmenter, "contract", None)
        return str(getattr(contract, "version", "?"))

    @property
    def provider(self) -> str:
        return str(getattr(self.segmenter, "provider", "?"))

    @property
    def name(self) -> str:
        return str(getattr(self.segmenter, "name", "model"))


@dataclass
class Deps:
    """Everything the window reaches outside the UI; tests inject fakes here."""

    open_source: Callable[[str], FrameSource]
    load_model: Callable[[str, str | None], LoadedModel]  # (mode, path or None=default)
    make_worker: Callable[[Any, Any, Callable[[Frame], Roi]], Worker]
    detect_roi: Callable[[np.ndarray], Roi] = Roi.full
    roi_store: Any = None  # app.pipeline.calibration.RoiStore: get(key), set(key, roi=, ...)
    list_devices: Callable[[], list] = field(default=lambda: [])
    spacing_from_two_points: Callable[..., float] | None = None
    snapshot_dir: Path = Path("snapshots")


class ModelLoader:
    """Loads a model on a background thread so the live image never waits for it."""

    def __init__(self, load: Callable[[str, str | None], LoadedModel]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._result: tuple[int, str, LoadedModel | None, str] | None = None
        self._request = 0
        self.loading_mode: str | None = None

    def request(self, mode: str, path: str | None) -> None:
        with self._lock:
            self._request += 1
            ticket = self._request
        self.loading_mode = mode

        def run() -> None:
            try:
                model, error = self._load(mode, path), ""
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


@dataclass(frozen=True)
class OverlayDecision:
    paint: Segmentation | None  # the result to paint, or None = hide the overlay
    lagging: bool  # the model is running but its newest answer is too old for this frame


def decide_overlay(result: Segmentation | None, shown: Frame | None, *, model_ready_since: float
                   | None, budget_s: float, warmup_s: float = 1.0) -> OverlayDecision:
    """Paint only a fresh result; say "lagging" when a running model has nothing fresh.

    Before the first result, allow `warmup_s` from when the model became ready (first runs are
    slower), then call it lagging too.
    """
    if shown is None or model_ready_since is None:
        return OverlayDecision(None, False)
    if result is not None and overlay_is_fresh(result, shown, budget_s):
        return OverlayDecision(result, False)
    if result is None:
        return OverlayDecision(None, shown.t_capture - model_ready_since > warmup_s)
    return OverlayDecision(None, result.frame_id < shown.frame_id)
