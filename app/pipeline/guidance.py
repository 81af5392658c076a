"""Needle guidance on one analysed frame: the projected path, and warnings that are rare and right.

A warning is raised only from what is drawn sure: a needle the detector found and a structure the
model outlined solid (never dashed). The rules, per mode:

- IJ cannulation: the tip is inside the artery (danger), or the needle's projected path crosses
  the artery before it reaches the vein (caution).
- Nerve block: the tip is inside a nerve outline, intraneural (danger), or the projected path
  crosses a vessel (caution).

Beside the needle, each vessel's behaviour over the last seconds (sonoguide.pipeline.
vessel_behaviour: does it compress, does it pulse); when it contradicts the model's class, a
caution says so ("Labelled vein, but it pulses like an artery").

An out-of-plane dot may be the tip or a cut through the shaft; inside the artery or a nerve either
means the needle is there, so it warns too. `WarningGate` shows a warning once two consecutive
results agree and drops it with the first result that lacks it: never longer than the evidence.

Qt-free. The needle is found on the image area (ROI) and moved to full-frame pixels here, where
the structures and the target already are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from sonoguide.pipeline.frames import Roi, Structure, Target
from sonoguide.pipeline.needle import (
    IN_PLANE,
    NeedleDetector,
    NeedleFinding,
    NeedleTracker,
    PathToTarget,
    path_to_target,
    project_path,
)
from sonoguide.pipeline.vessel_behaviour import BehaviourReport, VesselBehaviour

DANGER, CAUTION = "danger", "caution"


@dataclass(frozen=True)
class Warning:
    key: str  # stable id, e.g. "tip_in_artery"
    word: str  # the banner's short word
    text: str  # one line saying why
    level: str  # DANGER (red) or CAUTION (amber)


TIP_IN_ARTERY = Warning("tip_in_artery", "ARTERY", "Needle in the artery", DANGER)
ARTERY_FIRST = Warning("artery_on_path", "ARTERY ON PATH",
                       "The path crosses the artery before the vein", CAUTION)
INTRANEURAL = Warning("intraneural", "INTRANEURAL", "Needle tip inside the nerve", DANGER)
VESSEL_ON_PATH = Warning("vessel_on_path", "VESSEL ON PATH", "The path crosses a vessel", CAUTION)
CHECK_VESSEL = Warning("check_vessel", "CHECK VESSEL", "", CAUTION)  # text: the behaviour's
WARNINGS = {w.key: w for w in (TIP_IN_ARTERY, ARTERY_FIRST, INTRANEURAL, VESSEL_ON_PATH,
                               CHECK_VESSEL)}


@dataclass(frozen=True)
class NeedlePath:
    """The shaft extended beyond the tip to the image area's edge (drawn dashed)."""

    start: tuple[float, float]  # the tip, full-frame px
    end: tuple[float, float]  # where the line leaves the image area
    approach_deg: float  # the shaft to the skin surface
    to_target: PathToTarget | None  # distance along it to the target, angle of approach


@dataclass(frozen=True)
class Guidance:
    needle: NeedleFinding | None
    path: NeedlePath | None
    warnings: tuple[Warning, ...]
    vessels: BehaviourReport | None = None  # each vessel's behaviour, when measured


def _inside(contour: np.ndarray, point: tuple[float, float]) -> bool:
    return cv2.pointPolygonTest(contour.astype(np.float32).reshape(-1, 1, 2),
                                (float(point[0]), float(point[1])), False) >= 0


def ray_entry(start: tuple[float, float], end: tuple[float, float],
              contour: np.ndarray) -> float | None:
    """Distance in px from `start` along the segment start-end to where it first meets the closed
    polygon (0 when start is inside), or None when it never does."""
    return 0.0 if _inside(contour, start) else _crossing(start, end, contour)


def _crossing(start: tuple[float, float], end: tuple[float, float],
              contour: np.ndarray) -> float | None:
    """Distance in px from `start` to the first crossing of the segment with the polygon's
    edges, or None."""
    p = np.asarray(start, np.float64)
    d = np.asarray(end, np.float64) - p
    length = float(np.hypot(*d))
    if length == 0.0:
        return None
    a = contour.astype(np.float64).reshape(-1, 2)
    b = np.roll(a, -1, axis=0)
    e = b - a
    denom = d[0] * e[:, 1] - d[1] * e[:, 0]
    ok = np.abs(denom) > 1e-12
    w = a - p
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (w[:, 0] * e[:, 1] - w[:, 1] * e[:, 0]) / denom  # along the ray, 0..1
        u = (w[:, 0] * d[1] - w[:, 1] * d[0]) / denom  # along the polygon's edge, 0..1
    hit = ok & (t >= 0.0) & (t <= 1.0) & (u >= 0.0) & (u <= 1.0)
    return float(t[hit].min() * length) if hit.any() else None


NOTCH_MM = 2.0  # how far around the tip a structure that the shaft cut into is looked for
_NOTCH_PX = 8.0  # the same without a depth scale (about 2 mm at a typical 0.25 mm/px)


def tip_within(contour: np.ndarray, finding: NeedleFinding, reach_px: float) -> bool:
    """The tip is inside the outline, or in the notch the needle cut into it.

    A model may leave the needle's own bright pixels out of the structure it pierces, so the
    outline runs around the shaft and the tip sits just outside it. That notch is told from a
    tip merely near the structure by the outline's shape: the same outline lies ahead of the
    tip along the shaft and on both sides across it, each within `reach_px`. A tip short of a
    convex structure has it ahead only; a tip between two outlines has each on one side."""
    if _inside(contour, finding.tip):
        return True
    d = finding.direction
    if d is None or reach_px <= 0:
        return False
    x, y = finding.tip
    ahead = (x + d[0] * reach_px, y + d[1] * reach_px)
    left = (x - d[1] * reach_px, y + d[0] * reach_px)
    right = (x + d[1] * reach_px, y - d[0] * reach_px)
    return all(_crossing(finding.tip, end, contour) is not None for end in (ahead, left, right))


def _sure(structures: Iterable[Structure], *classes: str) -> list[Structure]:
    return [s for s in structures if s.class_name in classes and not s.unsure]


def _first_hit(start, end, structures: list[Structure]) -> float | None:
    hits = [d for s in structures if (d := ray_entry(start, end, s.contour)) is not None]
    return min(hits) if hits else None


def _path(finding: NeedleFinding, roi: Roi, target: Target | None,
          mm_per_px: float | None) -> NeedlePath | None:
    """finding: full-frame px. The path stops at the image area's edge, not the screen's."""
    if finding.kind != IN_PLANE or finding.direction is None or not finding.tip_in_view:
        return None
    local = finding.moved(-roi.x, -roi.y)
    ex, ey = project_path(local, (roi.h, roi.w))
    to_target = (path_to_target(finding, (target.x, target.y), mm_per_px)
                 if target is not None else None)
    return NeedlePath(finding.tip, (ex + roi.x, ey + roi.y), float(finding.angle_deg or 0.0),
                      to_target)


def assess(mode: str, structures: Iterable[Structure], target: Target | None,
           finding: NeedleFinding | None, roi: Roi,
           mm_per_px: float | None = None) -> Guidance:
    """What to draw and warn about for one frame. structures, target: full-frame px (as the
    Analysis has them); finding: as the detector found it on the image area `roi`."""
    if finding is None:
        return Guidance(None, None, ())
    finding = finding.moved(roi.x, roi.y)
    structures = list(structures)
    path = _path(finding, roi, target, mm_per_px)
    reach = NOTCH_MM / mm_per_px if mm_per_px else _NOTCH_PX
    warnings: list[Warning] = []
    if mode == "jugular":
        arteries, veins = _sure(structures, "artery"), _sure(structures, "vein")
        if any(tip_within(s.contour, finding, reach) for s in arteries):
            warnings.append(TIP_IN_ARTERY)
        elif path is not None and arteries:
            artery = _first_hit(path.start, path.end, arteries)
            vein = _first_hit(path.start, path.end, veins)
            if artery is not None and (vein is None or artery < vein):
                warnings.append(ARTERY_FIRST)
    elif mode == "plexus":
        if any(tip_within(s.contour, finding, reach) for s in _sure(structures, "nerve")):
            warnings.append(INTRANEURAL)
        if path is not None and _first_hit(path.start, path.end,
                                           _sure(structures, "vessel")) is not None:
            warnings.append(VESSEL_ON_PATH)
    return Guidance(finding, path, tuple(warnings))


class WarningGate:
    """Shows a warning once `confirm` consecutive results raise it; drops it with the first
    result that does not. One per stream; fed each new result (not each shown frame)."""

    def __init__(self, confirm: int = 2) -> None:
        self.confirm = max(1, int(confirm))
        self._runs: dict[str, int] = {}

    def update(self, warnings: Iterable[Warning]) -> tuple[Warning, ...]:
        now = {w.key: w for w in warnings}
        self._runs = {key: self._runs.get(key, 0) + 1 for key in now}
        shown = [w for key, w in now.items() if self._runs[key] >= self.confirm]
        return tuple(sorted(shown, key=lambda w: w.level != DANGER))

    def reset(self) -> None:
        self._runs.clear()


class Guide:
    """Guidance beyond one frame's outlines, for one stream: the needle found on the image area,
    its path, warnings through the gate, and the vessels' behaviour. Fed every result in order,
    on the worker's thread, right after the analyzer (so it sees the same frame).

    needle_confirm: results that must agree before a needle is drawn. 1: on needle-free phantom
    frames the detector drew no false needle (0 of 1,680), and waiting for a second result only
    drew the needle later (python -m sonoguide.pipeline.needle_eval). warn_confirm: results in a
    row a warning needs before it shows."""

    def __init__(self, mode: str, detector: NeedleDetector | None = None,
                 needle_confirm: int = 1, warn_confirm: int = 2) -> None:
        self.mode = mode
        self.detector = detector or NeedleDetector()
        self.tracker = NeedleTracker(confirm=needle_confirm)
        self.gate = WarningGate(confirm=warn_confirm)
        self.behaviour = VesselBehaviour()
        self._stream: tuple | None = None

    def update(self, roi_image: np.ndarray, structures: Iterable[Structure],
               target: Target | None, roi: Roi, mm_per_px: float | None,
               source: str | None = None, t: float | None = None) -> Guidance:
        """One result: its image area's picture, what the analyzer found on it, and the
        frame's capture time `t` (the vessels' behaviour is read over time; None skips it)."""
        if (source, roi) != self._stream:  # another source or image area: start afresh
            self.reset()
            self._stream = (source, roi)
        structures = tuple(structures)
        finding = self.tracker.update(self.detector.detect(roi_image, mm_per_px), mm_per_px)
        found = assess(self.mode, structures, target, finding, roi, mm_per_px)
        warnings = list(found.warnings)
        vessels = None
        if t is not None:
            # sure outlines only: a dashed fragment that flickers in and out would read as a
            # vessel that "compresses" (seen on the phantom neck with no pressure at all)
            vessels = self.behaviour.update([s for s in structures if not s.unsure], t)
            if vessels.cautions:
                warnings.append(dataclasses.replace(CHECK_VESSEL, text=vessels.cautions[0]))
        return dataclasses.replace(found, warnings=self.gate.update(warnings), vessels=vessels)

    def reset(self) -> None:
        """A new stream, a new image area: nothing carried over."""
        self.tracker.reset()
        self.gate.reset()
        self.behaviour.reset()


def path_text(path: NeedlePath) -> str:
    """The path's label: the angle of approach, and the distance to the target along it."""
    text = f"{path.approach_deg:.0f}\N{DEGREE SIGN}"
    if path.to_target is not None and path.to_target.distance_mm is not None:
        text += f"  target {path.to_target.distance_mm:.0f} mm"
    return text
