"""Per-class area over time: a vein that flattens under probe pressure, an artery that pulses.

Anaesthetists judge a vessel by how its cross-section changes (a vein compresses, an artery
pulses), which one frame cannot show. `AreaTimeline` keeps a bounded rolling history of the
total area per class of each Segmentation, in mm^2 where the pixel spacing is known, else in
full-frame pixels. Qt-free: the window draws it, the headless run summarises it and writes CSV.
"""

from __future__ import annotations

import collections
import csv
import math
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sonoguide.pipeline.files import replace_atomically
from sonoguide.pipeline.frames import Segmentation

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


MEDIAN_SAMPLE = 20_000  # per class; medians of longer runs come from a uniform sample


class AreaSummary:
    """Running per-class area statistics of a run of any length, in bounded memory.

    min, max, frames_seen and frames are exact; the median is exact up to MEDIAN_SAMPLE frames
    and taken from a uniform reservoir sample (seeded, so a run is reproducible) beyond that:
    an 8-hour run at 30 fps must not keep 864,000 records to report one median.
    """

    def __init__(self, sample_size: int = MEDIAN_SAMPLE, seed: int = 0) -> None:
        self._sample_size = sample_size
        self._rng = np.random.default_rng(seed)
        self._unit: str | None = None
        self._frames = 0
        self._names: list[str] = []
        self._min: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._seen: dict[str, int] = {}
        self._first_frame: dict[str, int] = {}  # frames before a class first appeared count 0
        # the median's sample: one row a frame, one column a class (in _names order), float32
        self._reservoir = np.zeros((sample_size, 0), np.float32)
        self._kept = 0  # rows of it in use

    def add(self, sample: AreaSample) -> None:
        self._unit = self._unit or sample.unit
        for name in sample.areas:
            if name not in self._first_frame:
                self._names.append(name)
                self._widen()
                self._first_frame[name] = self._frames
                self._min[name], self._max[name], self._seen[name] = (
                    (0.0 if self._frames else math.inf), 0.0, 0)
        for name in self._names:
            value = float(sample.areas.get(name, 0.0))
            self._min[name] = min(self._min[name], value)
            self._max[name] = max(self._max[name], value)
            self._seen[name] += value > 0
        self._frames += 1
        row = [float(sample.areas.get(name, 0.0)) for name in self._names]
        if self._kept < self._sample_size:
            self._reservoir[self._kept] = row
            self._kept += 1
        else:  # reservoir sampling: every frame so far is kept with the same probability
            slot = int(self._rng.integers(0, self._frames))
            if slot < self._sample_size:
                self._reservoir[slot] = row

    def _widen(self) -> None:
        """A column for a class seen for the first time (0 in the rows kept so far)."""
        wider = np.zeros((self._sample_size, len(self._names)), np.float32)
        wider[:, :self._reservoir.shape[1]] = self._reservoir
        self._reservoir = wider

    def as_dict(self) -> dict:
        """{"unit": ..., "classes": {name: {"median", "min", "max", "frames_seen", "frames"}}}.
        Frames where a class was not found count as 0 area in median/min (a collapsed vein
        is 0 too); frames_seen says how often it was there at all."""
        out: dict[str, dict] = {}
        for column, name in enumerate(self._names):
            values = self._reservoir[:self._kept, column].astype(float)
            out[name] = {"median": round(float(np.median(values)), 2),
                         "min": round(self._min[name], 2), "max": round(self._max[name], 2),
                         "frames_seen": self._seen[name], "frames": self._frames}
        summary: dict = {"unit": self._unit or PX, "classes": out}
        if self._frames > self._sample_size:
            summary["median_of"] = self._sample_size  # frames in the median's uniform sample
        return summary


def summarize(samples: Iterable[AreaSample]) -> dict:
    """AreaSummary.as_dict() of `samples`."""
    summary = AreaSummary()
    for sample in samples:
        summary.add(sample)
    return summary.as_dict()


class TimelineCsv:
    """Per-frame class areas written as they come: frame_id, t (s from the first sample), then
    one area column per class (unit in the header, e.g. vein_mm2).

    Rows go to a temporary file beside the target at once (memory stays flat over hours); the
    header, which needs the unit, is known only at the end: close() writes header + rows to the
    final name atomically, so a crash never leaves half a CSV under that name.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows = tempfile.TemporaryFile("w+", newline="", dir=self.path.parent,
                                            prefix=f".{self.path.name}.", suffix=".rows")
        self._writer = csv.writer(self._rows)
        self._names: list[str] | None = None
        self._unit: str | None = None
        self._t0: float | None = None

    def add(self, sample: AreaSample) -> None:
        if self._names is None:
            self._names, self._t0 = list(sample.areas), sample.t
        self._unit = self._unit or sample.unit
        self._writer.writerow([sample.frame_id, f"{sample.t - self._t0:.4f}",
                               *(f"{sample.areas.get(n, 0.0):.2f}" for n in self._names)])

    def close(self) -> None:
        """Write the final file (header, then every row) and drop the temporary one."""
        try:
            self._rows.seek(0)
            with replace_atomically(self.path, "w", newline="") as fh:
                csv.writer(fh).writerow(["frame_id", "t_s", *(f"{n}_{self._unit or PX}"
                                                               for n in self._names or [])])
                shutil.copyfileobj(self._rows, fh)
        finally:
            self._rows.close()


def write_csv(path: Path, samples: Iterable[AreaSample]) -> None:
    """All of `samples` as a TimelineCsv."""
    out = TimelineCsv(path)
    for sample in samples:
        out.add(sample)
    out.close()
