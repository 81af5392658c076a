"""Scale and remembered ROIs: two-point calibration on the depth ruler, and a per-source store.

A capture card does not say how many mm a pixel is; the user clicks two marks on the scanner's
depth ruler and types their distance. The ROI and that spacing are remembered per source
(source_key) in a small JSON file, so the next session with the same scanner starts calibrated.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sonoguide.pipeline.frames import Roi
from sonoguide.pipeline.settings_file import read_json_settings, write_json_settings

log = logging.getLogger(__name__)

MIN_CALIBRATION_PX = 1.0  # two clicks closer than this cannot give a meaningful scale


def spacing_from_two_points(p1: tuple[float, float], p2: tuple[float, float],
                            distance_mm: float) -> float:
    """mm per pixel from two points `distance_mm` apart (e.g. two depth-ruler marks)."""
    try:
        x1, y1 = (float(v) for v in p1)
        x2, y2 = (float(v) for v in p2)
        distance = float(distance_mm)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"calibration needs two (x, y) points and a distance in mm: {exc}") \
            from exc
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError("calibration points must be finite pixel coordinates")
    if not math.isfinite(distance) or distance <= 0:
        raise ValueError(f"the distance between the points must be a positive number of mm, "
                         f"got {distance_mm!r}")
    pixels = math.hypot(x2 - x1, y2 - y1)
    if pixels < MIN_CALIBRATION_PX:
        raise ValueError("the two calibration points are identical (or less than a pixel apart); "
                         "click two different ruler marks")
    return distance / pixels


def default_config_dir() -> Path:
    """Per-user settings folder for SonoGuide on this OS."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "sonoguide"


def default_snapshot_dir() -> Path:
    """Where snapshots go unless told otherwise: the user's Pictures folder (or home)."""
    pictures = Path.home() / "Pictures"
    return (pictures if pictures.is_dir() else Path.home()) / "SonoGuide"


@dataclass(frozen=True)
class RoiSetting:
    roi: Roi | None = None
    pixel_spacing_mm: float | None = None


_KEEP = object()  # "leave this field as it is" in RoiStore.set


def _roi_from_json(value: object) -> Roi | None:
    if value is None:
        return None
    if (isinstance(value, list) and len(value) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            and value[2] > 0 and value[3] > 0 and value[0] >= 0 and value[1] >= 0):
        return Roi(*value)
    raise ValueError(f"roi must be [x, y, w, h] with w, h > 0, got {value!r}")


def _spacing_from_json(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
            and value > 0:
        return float(value)
    raise ValueError(f"pixel_spacing_mm must be a positive number, got {value!r}")


class RoiStore:
    """ROI and pixel spacing per source key, kept in a JSON file; never raises on bad files.

    A file that cannot be used (see sonoguide.pipeline.settings_file) or a failed save becomes a
    sentence for the user: kept in `problems` (so one found while loading, before any window
    listened, is not lost) and passed to `say` when set. A failed save is told once, not on
    every save, until a save works again; the values stay in memory for the session.
    """

    def __init__(self, path: Path | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.path = Path(path) if path is not None else default_config_dir() / "rois.json"
        self.say = say  # may be set later; called from whichever thread loads or saves
        self._lock = threading.Lock()
        self._problems: list[str] = []
        self._save_failing = False
        self._entries: dict[str, RoiSetting] = self._load()

    @property
    def problems(self) -> list[str]:
        """Every problem told so far, oldest first (a copy)."""
        with self._lock:
            return list(self._problems)

    def get(self, key: str) -> RoiSetting | None:
        with self._lock:
            return self._entries.get(key)

    def set(self, key: str, roi: Roi | None | object = _KEEP,
            pixel_spacing_mm: float | None | object = _KEEP) -> RoiSetting:
        """Remember `roi` and/or `pixel_spacing_mm` for `key` (a field left out is kept;
        None forgets it) and save at once."""
        if roi is not _KEEP and roi is not None and not isinstance(roi, Roi):
            raise ValueError(f"roi must be a Roi or None, got {roi!r}")
        if roi is not _KEEP and isinstance(roi, Roi):
            _roi_from_json([roi.x, roi.y, roi.w, roi.h])  # validates
        if pixel_spacing_mm is not _KEEP:
            pixel_spacing_mm = _spacing_from_json(pixel_spacing_mm)
        with self._lock:
            old = self._entries.get(key, RoiSetting())
            new = RoiSetting(old.roi if roi is _KEEP else roi,
                             old.pixel_spacing_mm if pixel_spacing_mm is _KEEP
                             else pixel_spacing_mm)
            self._entries[key] = new
            problem = self._save()
        self._tell(problem)  # outside the lock: `say` may call back into the store
        return new

    def forget(self, key: str) -> None:
        problem = None
        with self._lock:
            if self._entries.pop(key, None) is not None:
                problem = self._save()
        self._tell(problem)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._entries)

    # --- file ------------------------------------------------------------------------------
    def _load(self) -> dict[str, RoiSetting]:
        read = read_json_settings(self.path)
        if read.problem:
            self._tell(read.problem)
        entries: dict[str, RoiSetting] = {}
        for key, value in read.data.items():
            try:
                if not isinstance(value, dict):
                    raise ValueError("entry is not a JSON object")
                entries[str(key)] = RoiSetting(_roi_from_json(value.get("roi")),
                                               _spacing_from_json(value.get("pixel_spacing_mm")))
            except ValueError as exc:
                log.warning("ROI store %s: ignoring entry %r: %s", self.path, key, exc)
        return entries

    def _save(self) -> str | None:
        """Write the entries (under the lock); the problem to tell, once per failing spell."""
        data = {key: {"roi": None if s.roi is None else [s.roi.x, s.roi.y, s.roi.w, s.roi.h],
                      "pixel_spacing_mm": s.pixel_spacing_mm}
                for key, s in sorted(self._entries.items())}
        problem = write_json_settings(self.path, data)
        if problem is None:
            self._save_failing = False  # a later failure (e.g. disk full again) is told again
            return None
        if self._save_failing:
            log.debug("%s", problem)
            return None
        self._save_failing = True
        return problem

    def _tell(self, problem: str | None) -> None:
        if problem is None:
            return
        log.warning("%s", problem)
        with self._lock:
            self._problems.append(problem)
        say = self.say
        if say is not None:
            try:
                say(problem)
            except Exception:  # a broken listener must not break saving the user's settings
                log.exception("RoiStore: the problem listener failed")
