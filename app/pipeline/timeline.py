"""Per-class area over time: a vein that flattens under probe pressure, an artery that pulses.

Anaesthetists judge a vessel by how its cross-section changes (a vein compresses, an artery
pulses), which one frame cannot show. `AreaTimeline` keeps a bounded rolling history of the
total area per class of each Segmentation, in mm^2 where the pixel spacing is known, else in
full-frame pixels. Qt-free: the window draws it, the headless run summarises it and writes CSV.
"""

from __future__ import annotations

import collections
import csv
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.pipeline.frames import Segmentation

MM2, PX = "mm2", "px"


@dataclass(frozen=True)
class AreaSample:
    """Total area per class (0.0 = none seen) of one Segmentation."""

    frame_id: int
    t: float  # the frame's capture time (monotonic s)
    areas: dict[str, float]
    unit: str | None  # MM2 or PX; None while nothing was found (0 is 0 in either unit)


def area_sample(seg: Segmentation) -> AreaSample:
    """Sum the structures of each class: in mm^2 as the analyzer measured them when the frame
    carried its scale (source or calibration), else in full-frame pixels."""
    classes = seg.classes[1:]  # background is not a structure
    areas = dict.fromkeys(classes, 0.0)
    unit: str | None = None
    for s in seg.structures:
        if s.area_mm2 is not None:
            value, unit = s.area_mm2, MM2
        else:
            value, unit = s.area_px, PX
        areas[s.class_name] = areas.get(s.class_name, 0.0) + float(value)
    return AreaSample(seg.frame_id, seg.t_capture, areas, unit)


class AreaTimeline:
    """Rolling history of AreaSamples: the last `window_s` seconds, at most `max_samples`.

    Thread-safe (the worker thread may add while the GUI thread reads). The history starts
    over when the classes (another model) or the unit (a calibration arrived) change, so one
    line never mixes models or units.
    """

    def __init__(self, window_s: float = 10.0, max_samples: int = 1200) -> None:
        if window_s <= 0 or max_samples <= 0:
            raise ValueError("window_s and max_samples must be > 0")
        self.window_s = window_s
        self._samples: collections.deque[AreaSample] = collections.deque(maxlen=max_samples)
        self._lock = threading.Lock()
        self._classes: tuple[str, ...] = ()
        self._unit: str | None = None
        self.version = 0  # rises on every change: a reader redraws only when it moved

    def add(self, seg: Segmentation) -> AreaSample:
        sample = area_sample(seg)
        classes = tuple(seg.classes[1:])
        with self._lock:
            if classes != self._classes or (
                    sample.unit is not None and self._unit is not None
                    and sample.unit != self._unit):
                self._samples.clear()
                self._classes, self._unit = classes, None
            if self._samples and sample.t < self._samples[-1].t:
                self._samples.clear()  # time went backwards: a new source or clock
            self._unit = self._unit or sample.unit
            self._samples.append(sample)
            while self._samples and sample.t - self._samples[0].t > self.window_s:
                self._samples.popleft()
            self.version += 1
        return sample

    def reset(self) -> None:
        with self._lock:
            self._samples.clear()
            self._classes, self._unit = (), None
            self.version += 1

    @property
    def classes(self) -> tuple[str, ...]:
        return self._classes

    @property
    def unit(self) -> str:
        """MM2 or PX; PX until a structure with a known spacing was seen."""
        return self._unit or PX

    def __len__(self) -> int:
        return len(self._samples)

    def samples(self) -> list[AreaSample]:
        with self._lock:
            return list(self._samples)

    def series(self, now: float | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(t relative to `now` or the newest sample, in s (<= 0); area per class)."""
        with self._lock:
            samples, classes = list(self._samples), self._classes
        if not samples:
            return np.zeros(0), {c: np.zeros(0) for c in classes}
        ref = samples[-1].t if now is None else now
        t = np.array([s.t - ref for s in samples])
        return t, {c: np.array([s.areas.get(c, 0.0) for s in samples]) for c in classes}


def summarize(samples: Iterable[AreaSample]) -> dict:
    """{"unit": ..., "classes": {name: {"median", "min", "max", "frames_seen", "frames"}}}
    over all samples. Frames where a class was not found count as 0 area in median/min
    (a collapsed vein is 0 too); frames_seen says how often it was there at all."""
    samples = list(samples)
    unit = next((s.unit for s in samples if s.unit is not None), PX)
    names: list[str] = []
    for s in samples:
        names.extend(n for n in s.areas if n not in names)
    out: dict[str, dict] = {}
    for name in names:
        values = np.array([s.areas.get(name, 0.0) for s in samples], float)
        out[name] = {"median": round(float(np.median(values)), 2),
                     "min": round(float(values.min()), 2),
                     "max": round(float(values.max()), 2),
                     "frames_seen": int((values > 0).sum()), "frames": int(values.size)}
    return {"unit": unit, "classes": out}


def write_csv(path: Path, samples: Iterable[AreaSample]) -> None:
    """frame_id, t (s from the first sample), then one area column per class (unit in the
    header, e.g. vein_mm2)."""
    samples = list(samples)
    unit = next((s.unit for s in samples if s.unit is not None), PX)
    names: list[str] = []
    for s in samples:
        names.extend(n for n in s.areas if n not in names)
    t0 = samples[0].t if samples else 0.0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["frame_id", "t_s", *(f"{n}_{unit}" for n in names)])
        for s in samples:
            writer.writerow([s.frame_id, f"{s.t - t0:.4f}",
                             *(f"{s.areas.get(n, 0.0):.2f}" for n in names)])
