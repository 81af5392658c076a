"""Replaying a recording with what was shown then, instead of a fresh analysis.

RecordedFindings is a stand-in for a loaded model: the live session runs it like any model,
but its worker (RecordedWorker) does not infer; it rebuilds each frame's Segmentation from the
overlay recorded with that frame (frames.jsonl, carried in frame.meta["recorded"] by
sonoguide.sources.recording.RecordingSource). So a trainer sees exactly what the doctor saw, drawn
by the same view, with no model installed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from sonoguide.pipeline.findings import guidance_from_record
from sonoguide.pipeline.frames import Frame, Roi, Segmentation, Structure, Target

RECORDED = "recorded"


def segmentation_from_record(frame: Frame) -> Segmentation | None:
    """The overlay recorded with `frame`, in the replayed picture's coordinates (the recording
    holds the image area only, so recorded full-frame coordinates move by its corner)."""
    line = frame.meta.get("recorded") if frame.meta else None
    overlay = line.get("overlay") if isinstance(line, dict) else None
    if not isinstance(overlay, dict):
        return None
    dx, dy = (line.get("roi") or [0, 0])[:2]
    classes = tuple(overlay.get("classes") or ("background",))
    roi = Roi(0, 0, frame.width, frame.height)
    labels = np.zeros((frame.height, frame.width), np.uint8)
    structures = []
    for s in overlay.get("structures", []):
        contour = np.asarray(s.get("contour") or [], np.float32).reshape(-1, 2) - (dx, dy)
        name = s.get("class")
        if name in classes and len(contour) >= 3:
            cv2.fillPoly(labels, [np.rint(contour).astype(np.int32)], classes.index(name))
        cx, cy = s.get("centroid_xy", (0.0, 0.0))
        structures.append(Structure(name, contour, float(s.get("area_px", 0.0)),
                                    (cx - dx, cy - dy), float(s.get("confidence", 0.0)),
                                    s.get("area_mm2"), bool(s.get("unsure", False))))
    target = None
    if isinstance(t := overlay.get("target"), dict):
        target = Target(t["class"], t["x"] - dx, t["y"] - dy, t.get("depth_mm"),
                        float(t.get("confidence", 0.0)), bool(t.get("unsure", False)))
    latency = float(overlay.get("latency_ms") or 0.0) / 1000.0
    return Segmentation(frame.frame_id, frame.t_capture, frame.t_capture + latency, classes, roi,
                        labels, tuple(structures), target,
                        {k: float(v) for k, v in (overlay.get("present") or {}).items()},
                        guidance=guidance_from_record(overlay, dx, dy))


@dataclass(frozen=True)
class _Contract:
    version: str
    classes: tuple[str, ...]


class _RecordedSegmenter:
    """What the window and reports read of a model, for the recorded findings."""

    provider = RECORDED
    provider_note = ""

    def __init__(self, name: str, version: str, classes: tuple[str, ...]) -> None:
        self.name = name
        self.classes = classes
        self.contract = _Contract(version, classes)
        self.path = RECORDED


class _RecordedAnalyzer:
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def reset(self) -> None:
        pass


class RecordedFindings:
    """LoadedModel-like: the recording's own findings, shown as they were."""

    speed_note = "recorded findings: nothing is inferred"
    settings_problem = ""

    def __init__(self, manifest: dict, classes: tuple[str, ...] = ()) -> None:
        self.manifest = manifest  # the recording's recording.json, as read: tells it apart
        model = manifest.get("model") or {}
        self.segmenter = _RecordedSegmenter(f"recorded ({model.get('name') or 'no model'})",
                                            str(model.get("version") or "-"), classes)
        self.analyzer = _RecordedAnalyzer(str(manifest.get("mode") or RECORDED))

    @property
    def version(self) -> str:
        return self.segmenter.contract.version

    @property
    def provider(self) -> str:
        return RECORDED

    @property
    def name(self) -> str:
        return self.segmenter.name

    @staticmethod
    def make_worker(_segmenter: Any, _analyzer: Any) -> RecordedWorker:
        return RecordedWorker()


class RecordedWorker:
    """The session's Worker for RecordedFindings: each submitted frame's result at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: Segmentation | None = None
        self._listeners: list[Callable[[Segmentation], None]] = []
        self._finished: list[Callable[[int], None]] = []
        self.frames_submitted = self.frames_inferred = self.error_count = 0
        self.frames_dropped = 0
        self.errors: list[str] = []
        self.inference_ms_history: list[float] = []

    def submit(self, frame: Frame) -> None:
        result = segmentation_from_record(frame)
        with self._lock:
            self.frames_submitted += 1
            if result is not None:
                self._latest = result
                self.frames_inferred += 1
            listeners = list(self._listeners) if result is not None else []
            finished = list(self._finished)
        for callback in listeners:
            callback(result)
        for done in finished:
            done(frame.frame_id)

    def latest(self) -> Segmentation | None:
        with self._lock:
            return self._latest

    def add_listener(self, cb: Callable[[Segmentation], None]) -> None:
        self._listeners.append(cb)

    def add_finished_listener(self, cb: Callable[[int], None]) -> None:
        self._finished.append(cb)

    def remove_listener(self, cb: Callable) -> None:
        for group in (self._listeners, self._finished):
            if cb in group:
                group.remove(cb)

    def set_model(self, _segmenter: Any, _analyzer: Any) -> None:
        with self._lock:
            self._latest = None

    def stats(self) -> Any:
        from sonoguide.pipeline.worker import WorkerStats

        return WorkerStats(self.frames_submitted, self.frames_inferred, 0, 0, None, None, None,
                           0.0, RECORDED, RECORDED)

    def stop(self) -> None:
        pass
