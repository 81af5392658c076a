"""Trainee mode: "click the vein", scored against the truth; and the phantom's scanning task.

Qt-free. A question is asked about one frame (the view freezes it), so the click is judged on
the very image it was made on. What a click is scored against, in order:
1. the frame's truth (`Frame.truth`: the phantom's label map, in sonoguide.phantom label codes);
2. where no truth exists, the model's *sure* outline of that frame (a structure under the
   model's calibrated unsure level is no reference), and the verdict says so;
3. neither: the click is not scored, and the verdict says why.
Nothing in the app loads hand-drawn labels for video clips yet: a clip is scored against the
model's sure outline (a recording replayed with its recorded findings: the outlines shown when
it was recorded). A source that sets `Frame.truth` (same codes) is scored like the phantom.

Coordinates are full-frame pixel coordinates as `Structure` contours use them: a pixel's centre
is at its integer (column, row).
"""

from __future__ import annotations

import csv
import inspect
import io
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sonoguide.phantom.labels import (
    ARTERY,
    JUGULAR_CLASSES,
    LABEL_NAMES,
    PLEXUS_CLASSES,
    VEIN,
    to_model_classes,
)
from sonoguide.pipeline.analysis import MODES, TARGET_CLASS, Analyzer
from sonoguide.pipeline.files import write_atomically
from sonoguide.pipeline.frames import Frame, Roi, Segmentation

TARGET = "target"  # the mode's puncture / injection target, asked beside the structures
TRUTH = "phantom truth"
MODEL = "model outline"
# Plexus target: fascicles closer than this fraction of the image-area width are one plexus,
# as the Analyzer groups them (its own default, read rather than copied).
CLUSTER_GAP_FRAC: float = inspect.signature(Analyzer).parameters["cluster_gap_frac"].default

# Scanning task. A vessel counts as in view with at least this much lumen (4 mm2: a fully
# compressed IJ keeps ~20 mm2 of slit on the phantom, a 2-3 mm vessel is 3-7 mm2).
MIN_VESSEL_MM2 = 4.0
MIN_VESSEL_FRAC = 0.0025  # the same, as a share of the image area, without a pixel spacing
# Open vein: height/width of its lumen. The phantom's IJ is 0.6-1.0 unpressed and drops under
# 0.3 near full compression; a slit is "visible" but is not the view the task asks for.
MIN_VEIN_OPEN = 0.3
MAX_PRESSURE = 0.5  # simulator probe pressure above which the vein is pressed (half height)
SCAN_HOLD_S = 1.0  # the good view must be held this long: a sweep passing through is no find
SCAN_KEY = "scan: vein + artery"


def mode_classes(mode: str) -> tuple[str, ...]:
    """The class list of the mode's model: the one that holds the mode's target class."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return next(c for c in (PLEXUS_CLASSES, JUGULAR_CLASSES) if TARGET_CLASS[mode] in c)


def truth_mask(truth: np.ndarray, classes: Sequence[str], name: str) -> np.ndarray:
    """Pixels of model class `name` in a phantom label map (plexus "vessel" = artery + vein)."""
    classes = tuple(classes)
    try:
        return to_model_classes(truth, classes) == classes.index(name)
    except KeyError:  # a class list without a phantom mapping: match label names
        codes = [code for code, label in LABEL_NAMES.items() if label == name]
        return np.isin(truth, codes)


@dataclass(frozen=True)
class Question:
    number: int
    structure: str  # a class name of the mode, or TARGET
    mode: str
    classes: tuple[str, ...]
    frame: Frame  # the frozen image the click is judged on
    seg: Segmentation | None  # the model's result for that frame when asked, if any
    text: str

    @property
    def key(self) -> str:
        """Score row: the target is kept apart per mode (the nerve plexus, the vein)."""
        return _key(self.structure, self.mode)


@dataclass(frozen=True)
class Verdict:
    question: Question
    click: tuple[float, float]
    scored: bool  # False: nothing to score against (message says why)
    hit: bool
    against: str | None  # TRUTH, MODEL, or None when not scored
    distance: float | None  # click to the structure's centre, in `unit`
    edge_distance: float | None  # click to its nearest edge, 0 on a hit
    unit: str  # "mm" with a pixel spacing, else "px"
    centre: tuple[float, float] | None  # full-frame px of the structure judged against
    outline: np.ndarray | None  # (K, 2) its outline, full-frame px (to reveal)
    message: str


@dataclass(frozen=True)
class StructureScore:
    key: str
    asked: int
    scored: int
    hits: int
    median_mm: float | None
    median_px: float | None  # clicks on images without a pixel spacing
    against: tuple[str, ...]  # what clicks were scored against
    median_time_s: float | None = None  # scanning task: time to find the view

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.scored if self.scored else None


@dataclass(frozen=True)
class ViewCheck:
    ok: bool
    hint: str
    vein_mm2: float | None = None  # largest vein lumen in view (px2 without a spacing)
    artery_mm2: float | None = None


@dataclass
class _Scan:
    started: float
    ok_since: float | None = None
    found_after: float | None = None


@dataclass
class _Tally:
    asked: int = 0
    verdicts: list[Verdict] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


def _key(structure: str, mode: str) -> str:
    return f"{TARGET} ({TARGET_CLASS[mode]})" if structure == TARGET else structure


class TraineeSession:
    """Questions, verdicts and the session score of one trainee.

    mode: "plexus" or "jugular" (may change between questions; scores are kept per structure).
    classes: the model's class list, if one is loaded (default: the mode's shipped classes).
    """

    def __init__(self, mode: str = "jugular", classes: Sequence[str] | None = None) -> None:
        self.mode = mode
        self.classes = tuple(classes) if classes else mode_classes(mode)
        self._count = 0
        self._tallies: dict[str, _Tally] = {}
        self._answered: set[int] = set()
        self._scan: _Scan | None = None

    def set_mode(self, mode: str, classes: Sequence[str] | None = None) -> None:
        self.mode = mode
        self.classes = tuple(classes) if classes else mode_classes(mode)

    @property
    def structures(self) -> tuple[str, ...]:
        return (*self.classes[1:], TARGET)

    # --- questions --------------------------------------------------------------------------
    def ask(self, frame: Frame, seg: Segmentation | None = None,
            structure: str | None = None) -> Question:
        """The next question about `frame`: the given structure, else the least asked one
        that can be scored on this frame (any, when none can yet: the model may still answer
        for this frame before the click)."""
        seg = seg if seg is not None and seg.frame_id == frame.frame_id else None
        if structure is None:
            candidates = [s for s in self.structures
                          if _reference(frame, seg, self.mode, self.classes, s)[0] is not None]
            pool = candidates or list(self.structures)
            structure = min(pool, key=lambda s: self._asked(_key(s, self.mode)))
        elif structure not in self.structures:
            raise ValueError(f"{structure!r} is not asked in {self.mode} mode; one of "
                             f"{', '.join(self.structures)}")
        self._count += 1
        question = Question(self._count, structure, self.mode, self.classes, frame, seg,
                            _question_text(structure, self.mode))
        self._tally(question.key).asked += 1
        return question

    def answer(self, question: Question, x: float, y: float,
               seg: Segmentation | None = None) -> Verdict:
        """Score a click at full-frame (x, y) on the question's frame. seg: the model's result
        for that frame as it is now (it may have landed after the question was asked)."""
        if question.number in self._answered:
            raise ValueError(f"question {question.number} was already answered")
        self._answered.add(question.number)
        frame = question.frame
        if seg is None or seg.frame_id != frame.frame_id:
            seg = question.seg
        verdict = _judge(question, float(x), float(y), seg)
        self._tally(question.key).verdicts.append(verdict)
        return verdict

    def withdraw(self, question: Question) -> None:
        """An unanswered question taken back (practice stopped, the image moved on): it no
        longer counts as asked."""
        if question.number not in self._answered:
            self._answered.add(question.number)
            self._tally(question.key).asked -= 1

    # --- scanning task (phantom) ------------------------------------------------------------
    def scan_start(self, t: float) -> None:
        self._scan = _Scan(float(t))
        self._tally(SCAN_KEY).asked += 1

    def scan_stop(self) -> None:
        self._scan = None

    @property
    def scanning(self) -> bool:
        return self._scan is not None

    def scan_update(self, frame: Frame, t: float, simulator: Any = None) -> ViewCheck:
        """Check the view now; a good view held SCAN_HOLD_S counts as found (once per start),
        its time from the start kept for the score."""
        check = view_check(frame, simulator)
        scan = self._scan
        if scan is None or scan.found_after is not None:
            return check
        if not check.ok:
            scan.ok_since = None
            return check
        if scan.ok_since is None:
            scan.ok_since = t
        if t - scan.ok_since >= SCAN_HOLD_S:
            scan.found_after = scan.ok_since - scan.started
            self._tally(SCAN_KEY).times.append(scan.found_after)
            return ViewCheck(True, f"Found in {scan.found_after:.1f} s: {check.hint}",
                             check.vein_mm2, check.artery_mm2)
        return check

    @property
    def scan_found_after(self) -> float | None:
        return self._scan.found_after if self._scan is not None else None

    # --- score --------------------------------------------------------------------------------
    def _asked(self, key: str) -> int:
        tally = self._tallies.get(key)
        return tally.asked if tally is not None else 0

    def _tally(self, key: str) -> _Tally:
        return self._tallies.setdefault(key, _Tally())

    def scores(self) -> list[StructureScore]:
        """One row per structure asked (in the order first asked), the scanning task last."""
        rows = []
        for key, tally in self._tallies.items():
            scored = [v for v in tally.verdicts if v.scored]
            by_unit = {unit: [v.distance for v in scored if v.unit == unit
                              and v.distance is not None] for unit in ("mm", "px")}
            # the scanning task: every attempt is scored, a view found in time is its hit
            n_scored = tally.asked if key == SCAN_KEY else len(scored)
            hits = len(tally.times) if key == SCAN_KEY else sum(v.hit for v in scored)
            rows.append(StructureScore(
                key, tally.asked, n_scored, hits, _median(by_unit["mm"]), _median(by_unit["px"]),
                tuple(dict.fromkeys(v.against for v in scored if v.against)),
                _median(tally.times)))
        rows.sort(key=lambda r: r.key == SCAN_KEY)
        return rows

    def verdicts(self) -> list[Verdict]:
        return [v for tally in self._tallies.values() for v in tally.verdicts]

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["structure", "asked", "scored", "hits", "hit_rate",
                         "median_distance_mm", "median_distance_px", "scored_against",
                         "median_time_s"])
        for r in self.scores():
            writer.writerow([r.key, r.asked, r.scored, r.hits, _fmt(r.hit_rate, 3),
                             _fmt(r.median_mm, 2), _fmt(r.median_px, 1), "; ".join(r.against),
                             _fmt(r.median_time_s, 2)])
        return out.getvalue()

    def export_csv(self, path: str | os.PathLike) -> Path:
        """Write the session score (whole or not at all) and return the path."""
        path = Path(path)
        write_atomically(path, self.to_csv())
        return path

    def reset(self) -> None:
        self._tallies.clear()
        self._answered.clear()
        self._scan = None


# --- judging ---------------------------------------------------------------------------------
def _question_text(structure: str, mode: str) -> str:
    if structure == TARGET:
        return f"Click the target (the {TARGET_CLASS[mode]}'s centre)"
    return f"Click the {structure}"


def _median(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _area(frame: Frame) -> Roi:
    return (frame.roi or Roi.full(frame.image)).clamp(frame.width, frame.height)


def _in_area(mask: np.ndarray, roi: Roi) -> np.ndarray:
    """The mask with everything outside the image area cleared (the screen around is no
    anatomy)."""
    kept = np.zeros(mask.shape, bool)
    kept[roi.y:roi.y + roi.h, roi.x:roi.x + roi.w] = mask[roi.y:roi.y + roi.h,
                                                          roi.x:roi.x + roi.w]
    return kept


def _sure_mask(seg: Segmentation, name: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The model's sure outlines of class `name` filled in, or None if it has none."""
    sure = [s for s in seg.structures if s.class_name == name and not s.unsure]
    if not sure:
        return None
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(s.contour).astype(np.int32) for s in sure], 1)
    return mask.astype(bool)


def _class_mask(frame: Frame, seg: Segmentation | None, classes: tuple[str, ...],
                name: str) -> tuple[np.ndarray | None, str | None, str]:
    """(mask, against, why-not) of one class on this frame."""
    if frame.truth is not None:
        mask = _in_area(truth_mask(frame.truth, classes, name), _area(frame))
        if not mask.any():
            return None, TRUTH, f"there is no {name} in this image (phantom truth)"
        return mask, TRUTH, ""
    if seg is None:
        return None, None, "cannot score: no truth and no model result for this image"
    mask = _sure_mask(seg, name, frame.image.shape[:2])
    if mask is None:
        return None, None, "cannot score: no truth and the model is unsure"
    return mask, MODEL, ""


def _target_region(mask: np.ndarray, mode: str, roi: Roi
                   ) -> tuple[np.ndarray, tuple[float, float]]:
    """The mode's target in a class mask, as the Analyzer places it: the largest vein
    (jugular) or the largest cluster of nerve fascicles (plexus). Returns the region a click
    must fall in (the filled convex hull: between fascicles is on the plexus) and its centre
    (the members' centroid)."""
    count, cc, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if mode == "plexus" and count > 2:
        gap = max(1, round(CLUSTER_GAP_FRAC * roi.w))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
        n, clusters = cv2.connectedComponents(cv2.dilate(mask.astype(np.uint8), kernel),
                                              connectivity=8)
        sizes = [int((mask & (clusters == c)).sum()) for c in range(1, n)]
        members = mask & (clusters == 1 + int(np.argmax(sizes)))
    else:
        members = cc == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    ys, xs = np.nonzero(members)
    hull = cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32))
    region = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(region, [hull.reshape(-1, 2)], 1)
    return region.astype(bool) | members, (float(xs.mean()), float(ys.mean()))


def _reference(frame: Frame, seg: Segmentation | None, mode: str, classes: tuple[str, ...],
               structure: str) -> tuple[np.ndarray | None, str | None, str,
                                        tuple[float, float] | None]:
    """(region mask, against, why-not, fixed centre) a click on `structure` is judged by."""
    name = TARGET_CLASS[mode] if structure == TARGET else structure
    mask, against, why = _class_mask(frame, seg, classes, name)
    if mask is None or structure != TARGET:
        return mask, against, why, None
    region, centre = _target_region(mask, mode, _area(frame))
    return region, against, why, centre


def _what_is_at(frame: Frame, seg: Segmentation | None, classes: tuple[str, ...],
                col: int, row: int) -> str | None:
    """The class under a pixel, by the same reference (truth, else the model's sure outlines)."""
    if not (0 <= row < frame.height and 0 <= col < frame.width):
        return None
    if frame.truth is not None:
        code = int(frame.truth[row, col])
        for name in classes[1:]:
            if truth_mask(np.array([[code]], np.uint8), classes, name)[0, 0]:
                return name
        return None
    if seg is None:
        return None
    for s in seg.structures:
        if not s.unsure and cv2.pointPolygonTest(s.contour.reshape(-1, 1, 2).astype(np.float32),
                                                 (float(col), float(row)), False) >= 0:
            return s.class_name
    return None


def _judge(question: Question, x: float, y: float, seg: Segmentation | None) -> Verdict:
    frame = question.frame
    region, against, why, centre = _reference(frame, seg, question.mode, question.classes,
                                              question.structure)
    spacing = frame.pixel_spacing_mm
    unit, scale = ("mm", float(spacing)) if spacing else ("px", 1.0)
    if region is None:
        return Verdict(question, (x, y), False, False, None, None, None, unit, None, None, why)
    count, cc = cv2.connectedComponents(region.astype(np.uint8), connectivity=8)
    col, row = int(round(x)), int(round(y))
    inside = 0 <= row < cc.shape[0] and 0 <= col < cc.shape[1] and cc[row, col] > 0
    if inside:
        part, edge = int(cc[row, col]), 0.0
    else:  # the nearest part of the structure, and how far its edge is
        ys, xs = np.nonzero(cc)
        d = np.hypot(xs - x, ys - y)
        j = int(np.argmin(d))
        part, edge = int(cc[ys[j], xs[j]]), float(d[j])
    member = (cc == part).astype(np.uint8)
    if centre is None:
        ys, xs = np.nonzero(member)
        centre = (float(xs.mean()), float(ys.mean()))
    contours, _ = cv2.findContours(member, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)
    distance = float(np.hypot(centre[0] - x, centre[1] - y)) * scale
    edge *= scale
    what = _key(question.structure, question.mode)
    if inside:
        message = f"Hit: the {what}, {distance:.1f} {unit} from its centre"
    else:
        clicked = _what_is_at(frame, seg, question.classes, col, row)
        message = (f"Miss: the {what} is {edge:.1f} {unit} away"
                   + (f" (you clicked the {clicked})" if clicked else ""))
    message += ("; scored against the phantom's truth" if against == TRUTH else
                "; scored against the model's outline (no ground truth for this image)")
    return Verdict(question, (x, y), True, inside, against, distance, edge, unit, centre,
                   outline, message)


# --- scanning task ---------------------------------------------------------------------------
def _largest(mask: np.ndarray) -> tuple[int, float]:
    """(area px, height/width) of the largest component; (0, 0) for none."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return 0, 0.0
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    w, h = int(stats[i, cv2.CC_STAT_WIDTH]), int(stats[i, cv2.CC_STAT_HEIGHT])
    return int(stats[i, cv2.CC_STAT_AREA]), h / max(w, 1)


def view_check(frame: Frame, simulator: Any = None) -> ViewCheck:
    """Whether the vein and the artery are both in view (phantom truth), and a hint.

    simulator (optional, PhantomSimulator-like, duck-typed): its probe pressure, slide, depth
    and anatomy turn "not in view" into which way to move the probe.
    """
    if frame.truth is None:
        return ViewCheck(False, "The scanning task needs the phantom (no truth for this image)")
    roi = _area(frame)
    truth = frame.truth
    spacing = frame.pixel_spacing_mm
    per_px = spacing * spacing if spacing else 1.0
    need = MIN_VESSEL_MM2 / per_px if spacing else MIN_VESSEL_FRAC * roi.w * roi.h
    vein_px, vein_open = _largest(_in_area(truth == VEIN, roi))
    artery_px, _ = _largest(_in_area(truth == ARTERY, roi))
    vein_in, artery_in = vein_px >= need, artery_px >= need
    pressure = float(getattr(simulator, "pressure", 0.0) or 0.0)
    pressed = vein_in and (vein_open < MIN_VEIN_OPEN or pressure > MAX_PRESSURE)
    sizes = (vein_px * per_px, artery_px * per_px)
    if vein_in and artery_in and not pressed:
        return ViewCheck(True, "Good view: the vein and the artery are both in view", *sizes)
    if pressed or (not vein_in and pressure > MAX_PRESSURE):
        return ViewCheck(False, "Less pressure: the vein is compressed", *sizes)
    missing = [name for name, seen in (("vein", vein_in), ("artery", artery_in)) if not seen]
    hints = [_where(simulator, name, frame) for name in missing]
    hints = [h for h in hints if h]
    if not hints:
        hints = [_edge_hint(truth, roi, VEIN if vein_in else ARTERY, missing)]
    return ViewCheck(False, "; ".join(hints), *sizes)


def _where(simulator: Any, name: str, frame: Frame) -> str:
    """Where a vessel off the picture lies, from the simulator's anatomy (tilt ignored: a
    few degrees move a 20 mm deep vessel by 1-2 mm)."""
    vessel = getattr(getattr(simulator, "anatomy", None), name, None)
    if vessel is None:
        return f"this phantom scene has no {name} to find" if simulator is not None else ""
    spacing = frame.pixel_spacing_mm or getattr(simulator, "pixel_spacing_mm", None)
    if not spacing:
        return ""
    half = min(frame.width * spacing / 2,
               float(getattr(simulator, "probe_width_mm", frame.width * spacing)) / 2)
    x = float(vessel.cx) - float(getattr(simulator, "probe_offset_mm", 0.0))
    depth = float(getattr(simulator, "depth_mm", frame.height * spacing))
    if x - vessel.a > half - 1.0:
        return f"Slide the probe right (+): the {name} lies {x - half:.0f} mm past the right edge"
    if x + vessel.a < -half + 1.0:
        return f"Slide the probe left (-): the {name} lies {-half - x:.0f} mm past the left edge"
    if vessel.cy + vessel.b > depth:
        return f"Increase the depth: the {name} lies {vessel.cy:.0f} mm deep"
    return f"The {name} should be in view: less pressure, hold the probe still"


def _edge_hint(truth: np.ndarray, roi: Roi, seen_code: int, missing: list[str]) -> str:
    """Without the simulator: a vessel cut by the picture's side hints at the way to go."""
    what = " and ".join(missing)
    seen = _in_area(truth == seen_code, roi)
    if len(missing) == 2 or not seen.any():
        return f"Find the {what}: slide the probe slowly left and right"
    xs = np.nonzero(seen.any(axis=0))[0]
    if xs.min() <= roi.x + 1:
        return f"The {what} is not in view: slide the probe left (-)"
    if xs.max() >= roi.x + roi.w - 2:
        return f"The {what} is not in view: slide the probe right (+)"
    return f"The {what} is not in view: slide the probe slowly left and right"
