"""Are the guidance warnings rare and right? Scripted needle runs on held-out phantom patients.

    python -m sonoguide.pipeline.guidance_eval                      # seeds 9100-9109, both scenes
    python -m sonoguide.pipeline.guidance_eval --seeds 9100-9129    # 30 patients per scene
    python -m sonoguide.pipeline.guidance_eval --seeds 9100 --scenes jugular --verbose  # quick
    python -m sonoguide.pipeline.guidance_eval --scenes plexus --model runs/x/plexus.int8.onnx

Issue 16 ("Warnings that are rare and right") asks for warnings raised on >= 95 % of the frames
where they should be and on <= 1 % of the frames where they should not.

Patients: one PhantomSimulator(scene, seed) per seed and scene (jugular for IJ cannulation,
plexus for nerve block), with imaging depth, probe width, frequency, gain, dynamic range, TGC,
heart rate and probe offset / tilt drawn from the seed. Seeds 9100+ are used by no test and no
other eval; the shipped models were trained on generator patients whose simulator seeds are
drawn at random from 2**31 (sonoguide.phantom.generator), so these patients are held out.

Runs per patient. IJ: "artery_first" (the line meets the artery before the vein; the tip is
advanced until it is up to 3 mm inside the artery), "vein_clear" (the line meets the vein and no
artery before it; the tip goes up to 3 mm into the vein), "clear" (the line meets neither).
Nerve block: "nerve" (the first structure on the line is the nerve; the tip goes up to 2.5 mm
into it), "vessel_on_path" (the first structure on the line is a vessel; the tip stops 4 mm
short of it), "clear" (no nerve, no vessel on the line). The in-plane angle comes from the truth:
a needle-free frame at the run's start is rendered, the line from the phantom's skin entry point
is cast through its label map at each angle 15-70 degrees, and the run takes the middle of the
longest stretch of consecutive angles that give its scenario (a margin against pulse and
breathing). A run that no angle gives is skipped and counted. The tip then advances at 2-5 mm/s
(drawn per run) for up to `--approach` s and is held still for `--hold` s, at 30 frames per
second of phantom time (pulse and breathing go on), every frame a new render, fed in order
through segmenter -> analyzer -> guide exactly as InferenceWorker._process does (each run its
own stream).

Truth per frame: the guide's rules on the phantom's truth: the frame's anatomy labels, kept
under the needle (PhantomFrame.tissue_labels; the needle's own label would hide the tissue at
its tip), the true tip
(PhantomFrame.needle_tip) and the true direction (the set angle); the path runs from the true
tip to the picture's edge. IJ: tip_in_artery = the tip is on artery; artery_on_path = the path
meets artery before vein (n/a while the tip is in the artery: the guide then raises
tip_in_artery instead). Nerve block: intraneural = the tip is on nerve; vessel_on_path = the
path meets artery or vein. "Visible": at least 10 mm of the shaft is in the picture.

Printed per scenario and warning: frames where it should be raised and the share raised (all
of them, and those with a visible needle), frames where it should not and the share raised; why
the missed ones were missed (the first of: needle not found, no outline of the class at the
true tip / on the true path, outline drawn unsure (dashed), the gate's one-result delay, the
found tip more than 1.5 mm off, the found needle and the outlines disagreeing otherwise) and why
the false ones were raised; how often each class was outlined sure; a what-if column (every
outline counted sure, the same needle, a gate of its own: what the unsure level costs); ms per
call of Guide.update. No pass/fail: figures for the report.

Measured (default: seeds 9100-9109, 2-core CPU, 4-7 min by its load; runs artery_first 8
(2 skipped), vein_clear 10, clear 10, nerve 10, vessel_on_path 9 (1 skipped), clear 10), with
jugular-6 and plexus-7, raised where it should be (visible needle) / where it should not:
tip_in_artery 15.7 % (15.7 %) / 0.0 %; artery_on_path 79.5 % (79.0 %) / 0.0 %; intraneural
71.7 % (73.7 %) / 0.9 %; vessel_on_path 56.9 % (83.2 %) / 0.0 %. Most artery misses are the
artery drawn dashed; docs/guidance.md has the history and the causes.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from sonoguide.phantom.labels import ARTERY, NERVE, VEIN
from sonoguide.pipeline.frames import Roi, Structure
from sonoguide.pipeline.guidance import (
    ARTERY_FIRST,
    INTRANEURAL,
    TIP_IN_ARTERY,
    VESSEL_ON_PATH,
    Guidance,
    WarningGate,
    assess,
    ray_entry,
)
from sonoguide.pipeline.needle import IN_PLANE, NeedleFinding, project_path

if TYPE_CHECKING:  # annotations only: the phantom and the models load when a run starts
    from sonoguide.phantom.simulator import PhantomSimulator
    from sonoguide.pipeline.analysis import Analyzer
    from sonoguide.pipeline.segmenter import Segmenter

SCENARIOS: dict[str, tuple[str, ...]] = {
    "jugular": ("artery_first", "vein_clear", "clear"),
    "plexus": ("nerve", "vessel_on_path", "clear"),
}
KINDS: dict[str, tuple[str, ...]] = {
    "jugular": (TIP_IN_ARTERY.key, ARTERY_FIRST.key),
    "plexus": (INTRANEURAL.key, VESSEL_ON_PATH.key),
}
TIP_KINDS = (TIP_IN_ARTERY.key, INTRANEURAL.key)
MODEL_CLASS = {TIP_IN_ARTERY.key: "artery", ARTERY_FIRST.key: "artery",
               INTRANEURAL.key: "nerve", VESSEL_ON_PATH.key: "vessel"}
TRUTH_CODES = {TIP_IN_ARTERY.key: (ARTERY,), ARTERY_FIRST.key: (ARTERY,),
               INTRANEURAL.key: (NERVE,), VESSEL_ON_PATH.key: (ARTERY, VEIN)}
# the structures a line is judged by: IJ looks at the vessels only, a nerve block at all three
WATCHED = {"jugular": (ARTERY, VEIN), "plexus": (NERVE, ARTERY, VEIN)}
VESSELS = (ARTERY, VEIN)

ANGLES = tuple(range(15, 71))  # degrees, the in-plane angles tried
VISIBLE_MM = 10.0  # shaft in the picture for a needle to count as findable
LEAD_MM = 2.0  # the run starts with the tip at least this far into the picture
APPROACH_MM = 3.0  # ... and at least this far short of the structure it is heading for
INSIDE_MM = {"artery_first": 3.0, "vein_clear": 3.0, "nerve": 2.5}  # (at most half the chord)
MIN_CHORD_MM = {"artery_first": 3.0, "vein_clear": 3.0, "nerve": 2.0, "vessel_on_path": 2.0}
SHORT_OF_MM = 4.0  # vessel_on_path: the tip stops this far before the vessel
CLEAR_DEPTH = 0.6  # clear runs: the tip goes to this share of the imaging depth
EDGE_MM = 3.0  # ... and stays this far inside the picture
TOUCH_MM = 0.5  # an outline this close to the true tip counts as drawn there
TIP_OFF_MM = 1.5  # a found tip further than this from the true one is "off"
NEAR_MM = 1.0  # a false raise with the truth this close to the structure is a boundary case

# why a frame that should have raised a warning did not (the first that applies, in this order)
NOT_FOUND = "needle not found"
NOT_DRAWN = "no outline of the class at the true tip / on the true path"
UNSURE = "outline drawn unsure (dashed)"
SUPERSEDED = "tip drawn in the artery instead"
GATE = "gate delay (onset, or again after a drop)"
TIP_OFF = f"found tip > {TIP_OFF_MM:g} mm off"
DISAGREE = "found needle and outlines disagree"
MISS_REASONS = (NOT_FOUND, NOT_DRAWN, UNSURE, SUPERSEDED, GATE, TIP_OFF, DISAGREE)
# why a frame that should not have raised one did
BOUNDARY = f"truth within {NEAR_MM:g} mm of the structure"
FOUND_OFF = f"found tip > {TIP_OFF_MM:g} mm off"
OUTLINE = "outline where the truth has none"
FALSE_REASONS = (BOUNDARY, FOUND_OFF, OUTLINE)


# --- geometry of the scripted needle (pure) -----------------------------------------------------

@dataclass(frozen=True)
class View:
    """Where an in-plane phantom needle can be seen: picture size, scale, skin entry point."""

    width: int
    height: int
    spacing_mm: float
    entry: tuple[float, float]  # the skin puncture, px (left of the probe's face)
    x_lo: float  # columns the probe's face shows, px
    x_hi: float

    @classmethod
    def of(cls, sim: PhantomSimulator) -> View:
        from sonoguide.phantom.needle import NeedleState, tip_mm

        h, w = sim.size
        sp = sim.pixel_spacing_mm
        half = sim.probe_width_mm / 2
        # a zero-depth needle's tip is its entry point (phantom.needle: 4 mm beyond the face)
        ex_mm, _ = tip_mm(NeedleState(0.0, 45.0), half)
        return cls(w, h, sp, (w / 2 + ex_mm / sp, 0.0), max(0.0, w / 2 - half / sp),
                   min(w - 1.0, w / 2 + half / sp))


@dataclass(frozen=True)
class Run:
    """A stretch of one label code along a line, mm from the skin entry."""

    code: int
    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def cast(labels: np.ndarray, view: View, angle_deg: float, step_px: float = 0.5
         ) -> tuple[np.ndarray, np.ndarray]:
    """The label map sampled along the line from the entry point down-right at `angle_deg`:
    distances from the entry (mm) and codes, only where the picture shows the line."""
    a = math.radians(angle_deg)
    ux, uy = math.cos(a), math.sin(a)
    ex, ey = view.entry
    h = labels.shape[0]
    s_max = min((h - 1 - ey) / uy, (view.x_hi - ex) / ux)
    s = np.arange(0.0, max(s_max, 0.0) + step_px, step_px)
    xs, ys = ex + s * ux, ey + s * uy
    keep = (xs >= view.x_lo) & (xs <= view.x_hi) & (ys >= 0) & (ys <= h - 1)
    xi, yi = np.rint(xs[keep]).astype(np.intp), np.rint(ys[keep]).astype(np.intp)
    return s[keep] * view.spacing_mm, labels[yi, xi]


def label_runs(s: np.ndarray, codes: np.ndarray) -> list[Run]:
    """Consecutive samples of the same non-zero code, as runs (start, end in s's units)."""
    out: list[Run] = []
    if s.size == 0:
        return out
    change = np.flatnonzero(np.diff(codes.astype(np.int32))) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [s.size]])
    for a, b in zip(starts, ends, strict=True):
        if codes[a]:
            out.append(Run(int(codes[a]), float(s[a]), float(s[b - 1])))
    return out


def plan_stop(scenario: str, mode: str, runs: Sequence[Run], s_in: float, s_out: float,
              angle_deg: float, depth_mm: float) -> float | None:
    """Where along the shaft (mm from the entry) the tip stops for `scenario` on this line, or
    None when the line does not give it. s_in, s_out: where the picture shows the line."""
    first = s_in + LEAD_MM
    hits = [r for r in runs if r.code in WATCHED[mode]]
    if scenario == "clear":
        if hits:
            return None
        stop = min(s_out - EDGE_MM, CLEAR_DEPTH * depth_mm / math.sin(math.radians(angle_deg)))
        return stop if stop >= first + 2 * APPROACH_MM else None
    if not hits or hits[0].length < MIN_CHORD_MM[scenario]:
        return None
    r = hits[0]
    if scenario == "vessel_on_path":
        stop = r.start - SHORT_OF_MM
        return stop if r.code in VESSELS and stop >= first + 1.0 else None
    want = {"artery_first": ARTERY, "vein_clear": VEIN, "nerve": NERVE}[scenario]
    if r.code != want or r.start < first + APPROACH_MM:
        return None
    return r.start + min(INSIDE_MM[scenario], r.length / 2)


def middle_of_longest(ok: dict[int, float | None]) -> tuple[int, float] | None:
    """(angle, stop) in the middle of the longest stretch of consecutive angles with a stop:
    the line furthest (in angle) from turning into another scenario."""
    best: list[int] = []
    cur: list[int] = []
    for angle in sorted(ok):
        if ok[angle] is not None and (not cur or angle == cur[-1] + 1):
            cur.append(angle)
        elif ok[angle] is not None:
            cur = [angle]
        else:
            cur = []
        if len(cur) > len(best):
            best = list(cur)
    if not best:
        return None
    angle = best[(len(best) - 1) // 2]
    return angle, float(ok[angle])  # type: ignore[arg-type]


def find_plan(scenario: str, mode: str, labels: np.ndarray, view: View, depth_mm: float,
              angles: Iterable[int] = ANGLES) -> tuple[int, float, float] | None:
    """(angle, start, stop) for a scenario on a needle-free truth label map, or None."""
    ok: dict[int, float | None] = {}
    first: dict[int, float] = {}
    for angle in angles:
        s, codes = cast(labels, view, angle)
        if s.size == 0:
            ok[angle] = None
            continue
        first[angle] = float(s[0])
        ok[angle] = plan_stop(scenario, mode, label_runs(s, codes), float(s[0]), float(s[-1]),
                              angle, depth_mm)
    chosen = middle_of_longest(ok)
    if chosen is None:
        return None
    angle, stop = chosen
    return angle, first[angle] + LEAD_MM, stop


def visible_mm(view: View, tip: tuple[float, float]) -> float:
    """Length of the shaft (entry -> tip) the picture shows, mm (a Liang-Barsky clip)."""
    (ex, ey), (tx, ty) = view.entry, tip
    dx, dy = tx - ex, ty - ey
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, ex - view.x_lo), (dx, view.x_hi - ex), (-dy, ey),
                 (dy, view.height - 1 - ey)):
        if p == 0:
            if q < 0:
                return 0.0
            continue
        r = q / p
        if p < 0:
            t0 = max(t0, r)
        else:
            t1 = min(t1, r)
    return max(0.0, t1 - t0) * math.hypot(dx, dy) * view.spacing_mm


# --- truth (pure) -------------------------------------------------------------------------------

def _truth_finding(tip: tuple[float, float], angle_deg: float) -> NeedleFinding:
    return NeedleFinding(IN_PLANE, (float(tip[0]), float(tip[1])), None, float(angle_deg), True,
                         None, 1.0)


def truth_path(labels: np.ndarray, tip: tuple[float, float], angle_deg: float
               ) -> tuple[tuple[float, float], np.ndarray, np.ndarray]:
    """The true path's end (where it leaves the picture), and the points and codes along it
    from the tip (included) every half pixel."""
    end = project_path(_truth_finding(tip, angle_deg), labels.shape)
    length = math.hypot(end[0] - tip[0], end[1] - tip[1])
    t = np.linspace(0.0, 1.0, max(2, int(length / 0.5) + 1))
    xs = tip[0] + t * (end[0] - tip[0])
    ys = tip[1] + t * (end[1] - tip[1])
    h, w = labels.shape
    xi = np.clip(np.rint(xs), 0, w - 1).astype(np.intp)
    yi = np.clip(np.rint(ys), 0, h - 1).astype(np.intp)
    return end, np.stack([xi, yi], axis=1), labels[yi, xi]


def truth(mode: str, labels: np.ndarray, tip: tuple[float, float], angle_deg: float
          ) -> dict[str, bool | None]:
    """The guide's rules on truth labels (needle-free), the true tip and direction. None: the
    rule does not apply (artery_on_path while the tip is in the artery)."""
    _, _, codes = truth_path(labels, tip, angle_deg)
    at_tip = int(codes[0])  # the path's first point is the tip
    if mode == "jugular":
        inside = at_tip == ARTERY
        first = next((int(c) for c in codes if c in (ARTERY, VEIN)), None)
        return {TIP_IN_ARTERY.key: inside, ARTERY_FIRST.key: None if inside else first == ARTERY}
    return {INTRANEURAL.key: at_tip == NERVE,
            VESSEL_ON_PATH.key: bool(np.isin(codes, VESSELS).any())}


# --- why (pure) ---------------------------------------------------------------------------------

def _near_tip(contour: np.ndarray, point: tuple[float, float], tol_px: float) -> bool:
    d = cv2.pointPolygonTest(contour.astype(np.float32).reshape(-1, 1, 2),
                             (float(point[0]), float(point[1])), True)
    return d >= -tol_px


def miss_reason(kind: str, guidance: Guidance, raw: Iterable[str],
                structures: Sequence[Structure], tip: tuple[float, float],
                end: tuple[float, float], spacing_mm: float) -> str:
    """Why a frame that should have raised `kind` did not. raw: the warnings of this frame
    before the gate; tip, end: the true tip and the true path's end (px)."""
    raw = set(raw)
    needle = guidance.needle
    if needle is None or (kind not in TIP_KINDS and guidance.path is None):
        return NOT_FOUND
    cls = MODEL_CLASS[kind]
    if kind in TIP_KINDS:
        there = [s for s in structures if s.class_name == cls
                 and _near_tip(s.contour, tip, TOUCH_MM / spacing_mm)]
    else:
        there = [s for s in structures if s.class_name == cls
                 and ray_entry(tip, end, s.contour) is not None]
    if not there:
        return NOT_DRAWN
    if all(s.unsure for s in there):
        return UNSURE
    if kind == ARTERY_FIRST.key and TIP_IN_ARTERY.key in raw:
        return SUPERSEDED
    if kind in raw:
        return GATE
    if math.hypot(needle.tip[0] - tip[0], needle.tip[1] - tip[1]) * spacing_mm > TIP_OFF_MM:
        return TIP_OFF
    return DISAGREE


def false_reason(kind: str, guidance: Guidance, labels: np.ndarray, tip: tuple[float, float],
                 path_points: np.ndarray, spacing_mm: float) -> str:
    """Why a frame that should not have raised `kind` did. labels: the truth; path_points: the
    true path's pixels from the tip (truth_path)."""
    mask = np.isin(labels, TRUTH_CODES[kind])
    if mask.any():
        dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
        pts = path_points[:1] if kind in TIP_KINDS else path_points
        if float(dist[pts[:, 1], pts[:, 0]].min()) * spacing_mm <= NEAR_MM:
            return BOUNDARY
    needle = guidance.needle
    if needle is not None and math.hypot(needle.tip[0] - tip[0],
                                         needle.tip[1] - tip[1]) * spacing_mm > TIP_OFF_MM:
        return FOUND_OFF
    return OUTLINE


# --- the runs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """One frame, one warning kind."""

    scene: str
    seed: int
    scenario: str
    kind: str
    should: bool | None  # the truth; None: the rule does not apply
    visible: bool  # >= VISIBLE_MM of shaft in the picture
    raised: bool  # shown by the guide (after the gate)
    reason: str | None  # a miss's or a false raise's why
    # what-if: shown had dashed outlines counted as sure (the same needle, its own gate)
    raised_if_dashed: bool = False


@dataclass
class Tally:
    outcomes: list[Outcome]
    skipped: collections.Counter  # (scene, scenario) -> patients no angle gave it
    runs: collections.Counter  # (scene, scenario) -> runs made
    guide_ms: list[float]
    frame_ms: list[float]  # segmenter + analyzer + guide
    spent: collections.Counter  # seconds per stage
    check_vessel: int = 0  # frames showing the behaviour caution (not measured here)
    no_tip: int = 0  # frames whose true tip left the picture (left out)
    # (scene, scenario, class) -> frames the class was outlined / outlined sure
    drawn: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    sure: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def seeds_from(text: str) -> list[int]:
    """'9100-9109' or '9100,9105-9107' -> the seeds."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def make_patient(scene: str, seed: int, size: int
                 ) -> tuple[PhantomSimulator, np.random.Generator]:
    """The phantom patient and its random stream: anatomy from the seed, scanner settings and
    probe handling (held still during the runs) drawn from it."""
    from sonoguide.phantom.simulator import PhantomSimulator

    rng = np.random.default_rng([seed, zlib.crc32(scene.encode()), 16])
    sim = PhantomSimulator(scene, seed=seed, size=(size, size),
                           depth_mm=float(rng.uniform(30.0, 50.0)),
                           probe_width_mm=float(rng.choice([38.0, 38.0, 46.0, 60.0])),
                           frequency_mhz=float(rng.uniform(7.0, 13.0)))
    sim.set_gain(float(rng.normal(0.0, 3.0)))
    sim.set_dynamic_range(float(rng.uniform(60.0, 80.0)))
    sim.set_tgc(float(rng.uniform(-2.0, 0.5)), float(rng.uniform(0.35, 0.6)) * sim.depth_mm)
    sim.set_heart_rate(float(rng.uniform(55.0, 100.0)))
    sim.set_probe_offset(float(rng.uniform(-3.0, 3.0)))
    sim.set_tilt(float(np.clip(rng.normal(0.0, 3.0), -8.0, 8.0)))
    return sim, rng


def run_patient(scene: str, seed: int, segmenter: Segmenter, analyzer: Analyzer, tally: Tally,
                args: argparse.Namespace, progress: tqdm | None = None,
                verbose: bool = False) -> None:
    """Every scenario of one patient, each a stream of its own through the models."""
    mode = scene
    guide = analyzer.guide
    t_start = time.perf_counter()
    sim, rng = make_patient(scene, seed, args.size)
    tally.spent["patient setup"] += time.perf_counter() - t_start
    for scenario in SCENARIOS[scene]:
        t0 = float(rng.uniform(0.0, 10.0))
        speed = float(rng.uniform(args.speed[0], args.speed[1]))
        t_plan = time.perf_counter()
        sim.set_needle(None)
        bare = sim.render(t0)
        view = View.of(sim)
        plan = find_plan(scenario, mode, bare.labels, view, sim.depth_mm)
        tally.spent["render"] += time.perf_counter() - t_plan
        if progress is not None:
            progress.update(1)
        if plan is None:
            tally.skipped[(scene, scenario)] += 1
            if verbose:
                tqdm.write(f"  {scene} {seed} {scenario}: no angle gives it, skipped")
            continue
        tally.runs[(scene, scenario)] += 1
        angle, start, stop = plan
        start = max(start, stop - speed * args.approach)
        n = int(math.ceil((stop - start) / speed * args.fps)) + int(round(args.hold * args.fps))
        source = f"guidance_eval:{scene}:{seed}:{scenario}"  # its own stream: fresh state
        analyzer.reset()
        guide.reset()
        dashed_gate = WarningGate(guide.gate.confirm)
        counts: collections.Counter = collections.Counter()
        for k in range(n + 1):
            t = t0 + k / args.fps
            s = min(stop, start + speed * k / args.fps)
            depth = s * math.sin(math.radians(angle))
            tr = time.perf_counter()
            sim.set_needle(depth, float(angle), True)
            frame = sim.render(t)
            truth_labels = frame.tissue_labels  # the anatomy under the needle too
            tally.spent["render"] += time.perf_counter() - tr
            if frame.needle_tip is None:
                tally.no_tip += 1
                continue
            sp = frame.pixel_spacing_mm
            # as InferenceWorker._process: the phantom's image area is the whole frame
            tm = time.perf_counter()
            roi = Roi.full(frame.image)
            pred = segmenter.predict(roi.crop(frame.image))
            labels, structures, target, _ = analyzer.analyze(
                pred, roi, sp, frame_id=k, t_capture=t, source=source)
            tg = time.perf_counter()
            g = guide.update(roi.crop(frame.image), structures, target, roi, sp, source=source,
                             t=t)
            done = time.perf_counter()
            tally.guide_ms.append((done - tg) * 1e3)
            tally.frame_ms.append((done - tm) * 1e3)
            tally.spent["segmenter + analyzer"] += tg - tm
            tally.spent["guide"] += done - tg
            tally.check_vessel += any(w.key == "check_vessel" for w in g.warnings)
            tt = time.perf_counter()
            tip = frame.needle_tip
            end, points, _ = truth_path(truth_labels, tip, angle)
            should = truth(mode, truth_labels, tip, angle)
            shown = {w.key for w in g.warnings}
            needle = None if g.needle is None else g.needle.moved(-roi.x, -roi.y)
            raw = {w.key for w in assess(mode, structures, target, needle, roi, sp).warnings}
            # what-if: every outline sure; tells how much the unsure (dashed) level costs
            all_sure = [dataclasses.replace(x, unsure=False) for x in structures]
            if_dashed = {w.key for w in dashed_gate.update(
                assess(mode, all_sure, target, needle, roi, sp).warnings)}
            for cls in {x.class_name for x in structures}:
                tally.drawn[(scene, scenario, cls)] += 1
                tally.sure[(scene, scenario, cls)] += any(
                    x.class_name == cls and not x.unsure for x in structures)
            vis = visible_mm(view, tip) >= VISIBLE_MM
            for kind in KINDS[mode]:
                raised = kind in shown
                reason = None
                if should[kind] and not raised:
                    reason = miss_reason(kind, g, raw, structures, tip, end, sp)
                elif should[kind] is False and raised:
                    reason = false_reason(kind, g, truth_labels, tip, points, sp)
                tally.outcomes.append(Outcome(scene, seed, scenario, kind, should[kind], vis,
                                              raised, reason, kind in if_dashed))
                counts[(kind, should[kind], raised)] += 1
            tally.spent["truth"] += time.perf_counter() - tt
        if verbose:
            parts = []
            for kind in KINDS[mode]:
                yes = counts[(kind, True, True)] + counts[(kind, True, False)]
                no = counts[(kind, False, True)] + counts[(kind, False, False)]
                parts.append(f"{kind} should {counts[(kind, True, True)]}/{yes}, "
                             f"should-not {counts[(kind, False, True)]}/{no}")
            tqdm.write(f"  {scene} {seed} {scenario}: {angle} deg, tip {start:.1f}->{stop:.1f} mm"
                       f" along the shaft at {speed:.1f} mm/s, {n + 1} frames; "
                       + "; ".join(parts))


# --- report -------------------------------------------------------------------------------------

def share(raised: int, n: int) -> str:
    return f"{100.0 * raised / n:6.1f}%" if n else "     - "


def rows(outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Counts of one selection: should (all / visible) and should-not frames, and raised."""
    c: collections.Counter = collections.Counter()
    for o in outcomes:
        if o.should:
            c["should"] += 1
            c["should raised"] += o.raised
            c["should if dashed"] += o.raised_if_dashed
            if o.visible:
                c["vis"] += 1
                c["vis raised"] += o.raised
        elif o.should is False:
            c["not"] += 1
            c["not raised"] += o.raised
            c["not if dashed"] += o.raised_if_dashed
        else:
            c["n/a"] += 1
            c["n/a raised"] += o.raised
    return dict(c)


def report(tally: Tally, scenes: Sequence[str]) -> None:
    head = (f"{'scenario':<16}{'warning':<16}{'should':>7}{'raised':>8}{'vis>=10':>9}"
            f"{'raised':>8}{'not':>7}{'raised':>8}{'n/a':>6}  | what-if dashed counted: "
            f"should, not")
    for scene in scenes:
        mine = [o for o in tally.outcomes if o.scene == scene]
        runs = ", ".join(f"{sc} {tally.runs[(scene, sc)]}" for sc in SCENARIOS[scene])
        skips = ", ".join(f"{sc} {tally.skipped[(scene, sc)]}" for sc in SCENARIOS[scene])
        print(f"\n{scene} ({'IJ cannulation' if scene == 'jugular' else 'nerve block'}): runs "
              f"{runs}; skipped (no angle gives it) {skips}")
        print(head)
        for kind in KINDS[scene]:
            for scenario in (*SCENARIOS[scene], "all"):
                sel = [o for o in mine if o.kind == kind
                       and (scenario == "all" or o.scenario == scenario)]
                c = collections.Counter(rows(sel))
                print(f"{scenario:<16}{kind:<16}{c['should']:>7}"
                      f"{share(c['should raised'], c['should'])}{c['vis']:>9}"
                      f"{share(c['vis raised'], c['vis'])}{c['not']:>7}"
                      f"{share(c['not raised'], c['not'])}{c['n/a']:>6}  |"
                      f"{share(c['should if dashed'], c['should']):>25}"
                      f"{share(c['not if dashed'], c['not'])}")
        classes = sorted({cls for (sc, _, cls) in tally.drawn if sc == scene})
        print("outlines drawn sure (share of the frames with one of the class): " + "; ".join(
            f"{scenario} " + ", ".join(
                f"{cls} {share(tally.sure[(scene, scenario, cls)], d).strip()}"
                for cls in classes if (d := tally.drawn[(scene, scenario, cls)]))
            for scenario in SCENARIOS[scene]))
        for kind in KINDS[scene]:
            sel = [o for o in mine if o.kind == kind]
            for label, keep, order in (
                    ("missed (should, not raised)", lambda o: o.should and not o.raised,
                     MISS_REASONS),
                    ("  of them needle visible", lambda o: o.should and not o.raised and o.visible,
                     MISS_REASONS),
                    ("false (should not, raised)", lambda o: o.should is False and o.raised,
                     FALSE_REASONS)):
                why = collections.Counter(o.reason for o in sel if keep(o))
                text = ", ".join(f"{r} {why[r]}" for r in order if why[r]) or "none"
                print(f"  {kind} {label} {sum(why.values())}: {text}")
            worst = collections.Counter((o.seed, o.scenario) for o in sel
                                        if o.should and not o.raised)
            if worst:
                print(f"  {kind} misses by patient: " + ", ".join(
                    f"{seed} {sc} {n}" for (seed, sc), n in worst.most_common(6)))
    print("\nshould: frames where the truth says raise; vis>=10: those with >= 10 mm of shaft in"
          " the picture; not: frames where it says do not; n/a: artery_on_path while the true tip"
          " is in the artery (the guide raises tip_in_artery there instead); what-if: the same"
          " frames had every outline counted as sure (not what the app does)")
    na = [o for o in tally.outcomes if o.should is None]
    if na:
        print(f"artery_on_path on the n/a frames: raised on {sum(o.raised for o in na)} of "
              f"{len(na)}")
    print(f"check_vessel (behaviour caution, not judged here) shown on {tally.check_vessel} "
          f"frames; frames left out (true tip outside the picture): {tally.no_tip}")
    if tally.guide_ms:
        g, f = np.asarray(tally.guide_ms), np.asarray(tally.frame_ms)
        print(f"Guide.update ms: median {np.median(g):.2f}, p95 {np.percentile(g, 95):.2f}; "
              f"segmenter + analyzer + guide ms: median {np.median(f):.1f}, p95 "
              f"{np.percentile(f, 95):.1f} ({len(g)} frames)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="9100-9109", help="patients per scene, e.g. 9100-9129")
    ap.add_argument("--scenes", default="jugular,plexus")
    ap.add_argument("--size", type=int, default=512, help="picture side, px (the live phantom)")
    ap.add_argument("--fps", type=float, default=30.0, help="frames per second of phantom time")
    ap.add_argument("--speed", type=float, nargs=2, default=(2.0, 5.0),
                    help="advance speed range, mm/s (drawn per run)")
    ap.add_argument("--approach", type=float, default=3.0, help="longest advance, s")
    ap.add_argument("--hold", type=float, default=1.0, help="tip held at its stop, s")
    ap.add_argument("--verbose", action="store_true", help="a line per run")
    ap.add_argument("--model", help="ONNX file instead of the shipped model (one scene only)")
    ap.add_argument("--sure-hold", type=float, help="the analyzer's sure_hold instead of its "
                    "default (how far below its level a sure outline may dim before it turns "
                    "dashed, as a fraction of the way from the level down)")
    args = ap.parse_args(argv)

    from sonoguide.pipeline.models import load_mode
    from sonoguide.pipeline.providers import configure_cv2_threads

    configure_cv2_threads(1)  # as the app runs
    scenes = tuple(s for s in args.scenes.split(",") if s)
    for scene in scenes:
        if scene not in SCENARIOS:
            ap.error(f"unknown scene {scene!r}; choose from {', '.join(SCENARIOS)}")
    if args.model and len(scenes) != 1:
        ap.error("--model needs one --scenes (a model serves one mode)")
    seeds = seeds_from(args.seeds)
    command = "python -m sonoguide.pipeline.guidance_eval " + " ".join(
        sys.argv[1:] if argv is None else argv)
    print("command:", command.strip())
    print(f"patients: seeds {args.seeds} ({len(seeds)}) per scene x {', '.join(scenes)}; "
          f"{args.size}x{args.size} px, {args.fps:g} frames/s of phantom time, advance "
          f"{args.speed[0]:g}-{args.speed[1]:g} mm/s for up to {args.approach:g} s, hold "
          f"{args.hold:g} s; ONNX Runtime CPU 1 thread, OpenCV 1 thread", flush=True)
    started = time.perf_counter()
    tally = Tally([], collections.Counter(), collections.Counter(), [], [],
                  collections.Counter())
    with tqdm(total=sum(len(SCENARIOS[s]) for s in scenes) * len(seeds), desc="runs",
              unit="run", file=sys.stderr) as progress:
        for scene in scenes:
            t_load = time.perf_counter()
            segmenter, analyzer = load_mode(scene, args.model, provider="cpu",
                                            intra_op_threads=1)
            if args.sure_hold is not None:
                analyzer.sure_hold = args.sure_hold
            tqdm.write(f"{scene}: {segmenter.path.name}, version {segmenter.contract.version}")
            tally.spent["model load"] += time.perf_counter() - t_load
            for seed in seeds:
                run_patient(scene, seed, segmenter, analyzer, tally, args, progress,
                            args.verbose)
    report(tally, scenes)
    total = time.perf_counter() - started
    print(f"runtime {total:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in
                                                 tally.spent.items()) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
