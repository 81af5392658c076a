"""Scanner-like screens with a depth ruler at a known scale, for the depth-scale finder.

    python -m tests.scanner_screens --measure [--n 300] [--seed 0] [--detect]
        [--without-added-styles]
    python -m tests.scanner_screens --save SEED [--out DIR]    (look at one screen)

A screen looks like tests.clips.scanner_screen: dark UI, a coloured top bar with patient text,
a button bar, a speckled B-mode image, and beside it a depth ruler drawn as a scanner does it:
ticks at whole pixels every 10 mm (majors), often with minors every 5 or 2 mm, over 2-16 cm of
depth; lines (1-3 px thick), dots or "+" crosses, left or right of the image or inside its
dark margin, grown from a base line, towards the image or centred, with or without a spine,
white, grey or coloured, with or without cm labels, on a dark or mid-grey UI. Distractors:
parameter text in a column beside the image, a grey-map colour bar, a TGC curve with evenly
spaced nodes, a focus marker, loose labels. Some screens are drawn at another size and
rescaled, as a capture card does, some blurred (an analog capture), JPEG-compressed or noisy.
Every screen is the same for the same seed and knows its true mm per pixel.

--measure runs sonoguide.pipeline.depth_scale.find_depth_scale over n such screens (and n/5
without a ruler) and prints how often it found the scale within 2 %, was wrong, or asked, by
ruler style and by each trait of the screens (where it fails shows what to fix). Rulers whose
ticks are all alike, without a cm number beside them, cannot be read without asking (1 cm or
5 mm apart?): the share within 2 % of the others is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from sonoguide.pipeline.frames import Roi
from tests.clips import speckle_image

SIZES = ((640, 480), (1280, 720), (1920, 1080))
NATIVE_SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 720), (1280, 1024), (1920, 1080))
DEPTHS_MM = (20, 25, 30, 35, 40, 45, 50, 60, 70, 80, 90, 100, 120, 140, 160)
MIN_TICK_GAP_PX = 5  # scanners leave out minor ticks that would be denser than this
MIN_DOT_GAP_PX = 8  # ... and minor dots
FONT = cv2.FONT_HERSHEY_SIMPLEX
COLOURS = ((235, 220, 60), (90, 230, 90), (90, 220, 235), (250, 160, 50), (150, 180, 255))
MENU = ("B-mode", "Gain 54", "DR 66", "Freq 12 MHz", "FR 30 Hz", "Focus 1", "Map C",
        "Persist 2", "Preset Nerve", "Power 100%")


@dataclass(frozen=True)
class Ruler:
    """How the depth ruler is drawn (lengths in the scanner's own pixels)."""

    minor_mm: float | None = 5.0  # None: major ticks (every 10 mm) only
    side: str = "right"  # of the image: "left" / "right"
    inside: bool = False  # over the image area's dark margin instead of beside it
    gap: int = 12  # px between the image edge and the ruler
    mark: str = "line"  # "line" / "dot" / "cross" (a "+", centred on the ruler's column)
    thickness: int = 2  # line ticks: px tall (minor ticks may be thinner)
    minor_thickness: int | None = None  # None: as thick as the majors
    major_len: int = 14  # line: px long; dot: its radius is major_len // 5
    minor_len: int = 7
    anchor: str = "near"  # ticks share their end "near" / "far" from the image, or "centre"
    spine: bool = False  # a vertical line joining the ticks' shared end
    colour: tuple[int, int, int] = (230, 230, 230)
    labels: bool = True  # the cm number beside each major tick
    label_every_cm: int = 1  # ... or beside every 2nd (5th) one only: 0, 2, 4 cm (0, 5, 10 cm)


@dataclass(frozen=True)
class Screen:
    """One drawn screen and its truth (capture pixels)."""

    image: np.ndarray  # RGB uint8
    roi: Roi  # the image area
    mm_per_px: float  # true vertical scale
    depth_mm: float
    ruler: Ruler | None
    seed: int = 0
    native: tuple[int, int] = (0, 0)  # the size the scanner drew it at (w, h)
    distractors: tuple[str, ...] = field(default=())
    background: int = 12  # the UI's grey level
    jpeg: int | None = None  # the capture's JPEG quality, if compressed
    noise: float = 0.0  # capture noise, grey levels (sd)
    blur: float = 0.0  # capture blur, Gaussian sigma (px)

    @property
    def major_spacing_px(self) -> float:
        return 10.0 / self.mm_per_px


# --- drawing -------------------------------------------------------------------------------

def _text(scr: np.ndarray, text: str, org: tuple[int, int], scale: float,
          colour: tuple[int, int, int], thickness: int = 1) -> None:
    cv2.putText(scr, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)


def _ruler_box(roi: Roi, ruler: Ruler) -> tuple[int, int]:
    """First and last column of the ruler's ticks (the major ones' extent)."""
    if ruler.side == "right":
        edge = roi.x + roi.w
        c0 = edge - ruler.gap - ruler.major_len if ruler.inside else edge + ruler.gap
    else:
        c0 = roi.x + ruler.gap if ruler.inside else roi.x - ruler.gap - ruler.major_len
    return c0, c0 + ruler.major_len - 1


def _draw_ruler(scr: np.ndarray, roi: Roi, depth_mm: float, ruler: Ruler, scale: float) -> None:
    mm_per_px = depth_mm / roi.h
    c0, c1 = _ruler_box(roi, ruler)
    # the image lies left of a ruler on its right side (beside it or in its margin): there the
    # "near" end of the ticks is their left one
    low_end = (ruler.anchor == "near") == (ruler.side == "right")
    step = ruler.minor_mm or 10.0
    count = int(round(depth_mm / step))
    ys = []
    for i in range(count + 1):
        mm = i * step
        y = roi.y + int(round(mm / mm_per_px))
        major = abs(mm / 10 - round(mm / 10)) < 1e-6
        ys.append(y)
        if ruler.mark == "dot":
            radius = max(1, ruler.major_len // 5) if major else 1
            cx = (c0 + c1) // 2
            cv2.circle(scr, (cx, y), radius, ruler.colour, -1)
        elif ruler.mark == "cross":
            arm = cross_arm(ruler, major)
            cx = (c0 + c1) // 2
            cv2.line(scr, (cx - arm, y), (cx + arm, y), ruler.colour, 1)
            cv2.line(scr, (cx, y - arm), (cx, y + arm), ruler.colour, 1)
        else:
            length = ruler.major_len if major else ruler.minor_len
            t = ruler.thickness if major else (ruler.minor_thickness or ruler.thickness)
            if ruler.anchor == "centre":
                a = (c0 + c1) // 2 - length // 2
            else:
                a = c0 if low_end else c1 - length + 1
            top = y - (t - 1) // 2
            cv2.rectangle(scr, (a, top), (a + length - 1, top + t - 1), ruler.colour, -1)
        if major and ruler.labels and int(round(mm / 10)) % ruler.label_every_cm == 0:
            text = str(int(round(mm / 10)))
            (tw, th), _ = cv2.getTextSize(text, FONT, 0.45 * scale, 1)
            gap = int(round(6 * scale))
            tx = c1 + gap if ruler.side == "right" else c0 - gap - tw  # away from the image
            _text(scr, text, (tx, y + th // 2), 0.45 * scale, ruler.colour)
    if ruler.spine and ruler.mark == "line":
        x = c0 if low_end else c1
        if ruler.anchor == "centre":
            x = (c0 + c1) // 2
        cv2.line(scr, (x, ys[0]), (x, ys[-1]), ruler.colour, 1)


def cross_arm(ruler: Ruler, major: bool) -> int:
    """px from a "+" mark's centre to the end of its arms."""
    arm = max(2, ruler.major_len // 4)
    return arm if major else max(1, arm // 2)


def _free_side_x(roi: Roi, ruler: Ruler | None, side: str, distance: int, width: int) -> int:
    """Left column of something `width` wide, `distance` px beside the image on `side` (past
    the ruler and its labels when the ruler is there)."""
    extra = 0
    if ruler is not None and ruler.side == side and not ruler.inside:
        extra = ruler.gap + ruler.major_len + 30
    if side == "right":
        return roi.x + roi.w + extra + distance
    return roi.x - extra - distance - width


def draw_screen(size: tuple[int, int] = (1280, 720), depth_mm: float = 40.0,
                ruler: Ruler | None = Ruler(), *, seed: int = 0, roi: Roi | None = None,
                distractors: tuple[str, ...] = ("labels", "menu", "colourbar", "tgc", "focus"),
                native: tuple[int, int] | None = None, background: int = 12,
                straight_tgc: bool = False, jpeg: int | None = None, noise: float = 0.0,
                blur: float = 0.0) -> Screen:
    """A scanner screen with its depth ruler, drawn at `native` size (default: `size`) and
    rescaled to `size` as a capture card would (blur: an analog capture's, Gaussian sigma in
    px); roi is in native pixels (default: a typical placement). The truth is in capture
    pixels."""
    rng = np.random.default_rng(seed)
    width, height = native or size
    scale = height / 720
    if roi is None:
        h = int(height * 0.72)
        w = min(int(h * 1.1), int(width * 0.55))
        roi = Roi((width - w) // 2, int(height * 0.11), w, h)
    scr = np.full((height, width, 3), background, np.uint8)
    white = (235, 235, 235)
    cv2.rectangle(scr, (0, 0), (width, int(height * 0.07)), (140, 70, 40), -1)
    _text(scr, "PATIENT: DOE^JANE  ID 12345  MI 0.9 TIS 0.4", (int(12 * scale), int(34 * scale)),
          0.7 * scale, white, max(1, int(scale + 0.5)))
    cv2.rectangle(scr, (0, height - int(height * 0.08)), (width, height), (30, 50, 90), -1)
    for i, label in enumerate(["Freeze", "Gain", "Depth", "Focus", "Preset"]):
        bx = int((20 + i * 150) * scale)
        cv2.rectangle(scr, (bx, height - int(50 * scale)), (bx + int(130 * scale),
                      height - int(12 * scale)), (60, 120, 160), -1)
        _text(scr, label, (bx + int(12 * scale), height - int(24 * scale)), 0.6 * scale, white)
    scr[roi.y:roi.y + roi.h, roi.x:roi.x + roi.w] = speckle_image(roi.h, roi.w, seed)[..., None]
    if ruler is not None and ruler.inside:  # the image's dark margin the ruler is drawn over
        margin = ruler.gap + ruler.major_len + int(8 * scale)
        x0 = roi.x + roi.w - margin if ruler.side == "right" else roi.x
        scr[roi.y:roi.y + roi.h, x0:x0 + margin] = rng.integers(0, 4, (roi.h, margin, 1))
    other = "left" if ruler is None or ruler.side == "right" else "right"
    if "menu" in distractors:  # a column of parameter text, evenly spaced lines
        spacing = int(round(rng.uniform(0.04, 0.06) * height))
        side = other if rng.random() < 0.7 else ("right" if other == "left" else "left")
        mx = _free_side_x(roi, ruler, side, int(rng.uniform(10, 60) * scale), int(110 * scale))
        for i, label in enumerate(MENU[: int(rng.integers(6, len(MENU) + 1))]):
            _text(scr, label, (mx, roi.y + int(30 * scale) + i * spacing), 0.5 * scale,
                  (215, 215, 215))
    if "colourbar" in distractors:  # grey map bar with a border
        bw, bh = int(12 * scale), int(roi.h * rng.uniform(0.25, 0.4))
        bx = _free_side_x(roi, ruler, other, int(rng.uniform(8, 40) * scale), bw)
        by = roi.y + int(roi.h * 0.05)
        ramp = np.linspace(255, 0, bh, dtype=np.float32)[:, None, None]
        scr[by:by + bh, bx:bx + bw] = np.repeat(np.repeat(ramp, bw, 1), 3, 2).astype(np.uint8)
        cv2.rectangle(scr, (bx - 1, by - 1), (bx + bw, by + bh), (200, 200, 200), 1)
    if "tgc" in distractors:  # a gain curve with evenly spaced nodes
        tx = _free_side_x(roi, ruler, other, int(rng.uniform(20, 70) * scale), int(30 * scale))
        nodes = 8
        offsets = (np.zeros(nodes) if straight_tgc
                   else rng.uniform(-1, 1, nodes).cumsum() * 4 * scale)
        points = np.array([[tx + 15 * scale + dx, roi.y + roi.h * (0.05 + 0.9 * i / (nodes - 1))]
                           for i, dx in enumerate(offsets)], np.int32)
        cv2.polylines(scr, [points], False, (200, 200, 120), 1, cv2.LINE_AA)
        for px, py in points:
            cv2.circle(scr, (int(px), int(py)), max(2, int(2 * scale)), (220, 220, 140), -1)
    if ruler is not None:
        _draw_ruler(scr, roi, depth_mm, ruler, scale)
    if "focus" in distractors and ruler is not None:  # a triangle pointing at the focal depth
        fy = roi.y + int(roi.h * rng.uniform(0.2, 0.7))
        c0, c1 = _ruler_box(roi, ruler)
        s = int(6 * scale)
        if ruler.side == "right":
            fx = c1 + int(30 * scale)
            tri = [(fx, fy), (fx + s, fy - s), (fx + s, fy + s)]
        else:
            fx = c0 - int(30 * scale)
            tri = [(fx, fy), (fx - s, fy - s), (fx - s, fy + s)]
        cv2.fillPoly(scr, [np.array(tri, np.int32)], (240, 200, 60))
    if "labels" in distractors:
        _text(scr, f"D {depth_mm / 10:.1f} cm", (roi.x, roi.y + roi.h + int(24 * scale)),
              0.6 * scale, white)
        _text(scr, "L14-6  Nerve  FR 30Hz", (roi.x + roi.w - int(220 * scale),
              roi.y - int(12 * scale)), 0.5 * scale, (200, 200, 200))
    mm_per_px = depth_mm / roi.h
    if (width, height) != tuple(size):  # the capture card's rescaling
        fx, fy = size[0] / width, size[1] / height
        interp = cv2.INTER_AREA if fy < 1 else cv2.INTER_LINEAR
        scr = cv2.resize(scr, tuple(size), interpolation=interp)
        x0, y0 = int(round(roi.x * fx)), int(round(roi.y * fy))
        roi = Roi(x0, y0, int(round((roi.x + roi.w) * fx)) - x0,
                  int(round((roi.y + roi.h) * fy)) - y0)
        mm_per_px /= fy
    if blur > 0:  # an analog (VGA, composite) capture's soft edges
        scr = cv2.GaussianBlur(scr, (0, 0), blur)
    if jpeg is not None:  # an MJPG capture card
        _, data = cv2.imencode(".jpg", scr[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg])
        scr = np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    if noise > 0:
        scr = np.clip(scr + rng.normal(0, noise, scr.shape), 0, 255).astype(np.uint8)
    return Screen(scr, roi, mm_per_px, float(depth_mm), ruler, seed, (width, height),
                  tuple(distractors), background, jpeg, noise, blur)


def random_ruler(rng: np.random.Generator, scale: float, mm_per_px: float) -> Ruler:
    """A ruler style as some scanner might draw it at this scale (native pixels)."""
    minor = rng.choice(np.array([0.0, 5.0, 2.0]), p=[0.2, 0.45, 0.35])
    dot = rng.random() < 0.2
    # scanners leave out minor ticks that would crowd each other
    gap = MIN_DOT_GAP_PX if dot else MIN_TICK_GAP_PX
    if minor == 2.0 and 2.0 / mm_per_px < gap:
        minor = 5.0
    if minor == 5.0 and 5.0 / mm_per_px < gap:
        minor = 0.0
    thickness = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
    major_len = int(round(rng.uniform(8, 20) * scale)) if not dot else int(rng.choice([10, 15]))
    minor_len = max(3, int(round(major_len * rng.uniform(0.35, 0.6))))
    inside = rng.random() < 0.15
    colour_kind = rng.random()
    if colour_kind < 0.45:
        colour = (int(rng.integers(225, 256)),) * 3
    elif colour_kind < 0.75:
        colour = (int(rng.integers(130, 215)),) * 3
    else:
        colour = tuple(int(c) for c in COLOURS[int(rng.integers(len(COLOURS)))])
    return Ruler(minor_mm=float(minor) or None, side="left" if rng.random() < 0.35 else "right",
                 inside=inside, gap=int(rng.integers(2, 7) if inside
                                        else rng.integers(3, int(40 * scale) + 4)),
                 mark="dot" if dot else "line", thickness=thickness,
                 minor_thickness=int(rng.integers(1, thickness + 1)), major_len=major_len,
                 minor_len=minor_len,
                 anchor=str(rng.choice(["near", "far", "centre"], p=[0.6, 0.25, 0.15])),
                 spine=bool(rng.random() < 0.3), colour=colour,
                 labels=bool(rng.random() < 0.6 and not inside))


def random_screen(seed: int, *, with_ruler: bool = True, added_styles: bool = True) -> Screen:
    """A screen drawn from the whole range of sizes, depths, ruler styles and distractors.
    added_styles=False: without the styles added since the first figures ("+" marks, a
    mid-grey UI, blur), each screen as it was drawn then."""
    rng = np.random.default_rng(10_000 + seed)
    size = SIZES[int(rng.integers(len(SIZES)))]
    native = size
    if rng.random() < 0.3:  # drawn at the scanner's own size, rescaled by the capture card
        native = NATIVE_SIZES[int(rng.integers(len(NATIVE_SIZES)))]
    width, height = native
    scale = height / 720
    h = int(height * rng.uniform(0.6, 0.8))
    w = min(int(h * rng.uniform(0.75, 1.35)), int(width * 0.55))
    x = int(rng.uniform(0.2 * width, 0.8 * width - w))
    y = int(height * rng.uniform(0.09, 0.13))
    roi = Roi(x, y, w, h)
    depth = float(rng.choice(DEPTHS_MM))
    ruler = random_ruler(rng, scale, depth / h) if with_ruler else None
    if ruler is not None and ruler.inside:  # an inside ruler keeps to the image's margin
        ruler = replace(ruler, major_len=min(ruler.major_len, max(5, int(0.05 * w) - ruler.gap)))
        ruler = replace(ruler, minor_len=min(ruler.minor_len, max(3, ruler.major_len * 3 // 5)))
    distractors = tuple(d for d in ("labels", "menu", "colourbar", "tgc", "focus")
                        if rng.random() < 0.6)
    background = int(rng.integers(0, 41))
    straight_tgc = bool(rng.random() < 0.3)
    jpeg = int(rng.integers(70, 95)) if rng.random() < 0.25 else None
    noise = float(rng.uniform(0, 2.5)) if rng.random() < 0.4 else 0.0
    # styles added since the first figures draw on a generator of their own: the rest of each
    # screen stays as it was drawn then (and all of it with added_styles=False)
    more = np.random.default_rng(30_000 + seed)
    crosses, grey_ui, blurred = (more.random(3) < (0.12, 0.15, 0.15)) & added_styles
    if crosses and ruler is not None and ruler.mark == "line":
        # "+" marks, where they leave room between them
        cross = replace(ruler, mark="cross", anchor="centre", spine=False)
        if (ruler.minor_mm or 10.0) * h / depth >= 2 * cross_arm(cross, True) + 4:
            ruler = cross
    if grey_ui:
        background = int(more.integers(50, 91))
    blur = float(more.uniform(0.6, 1.1)) if blurred else 0.0
    return draw_screen(size, depth, ruler, seed=seed, roi=roi, distractors=distractors,
                       native=native, background=background, straight_tgc=straight_tgc,
                       jpeg=jpeg, noise=noise, blur=blur)


# --- measurement ---------------------------------------------------------------------------

def outcome(screen: Screen, result: object) -> str:
    """'right' (scale within 2 %), 'wrong' (a scale more than 2 % off, not asked),
    'asked' (the tick interval asked for, about ticks of the ruler: 10, 5 or 2 mm apart to
    within 2 %), 'asked-bad' (asked about a spacing that is not the ruler's), 'none' (no
    scale, a reason given)."""
    if getattr(result, "found", False):
        return "right" if abs(result.mm_per_px / screen.mm_per_px - 1) <= 0.02 else "wrong"
    if getattr(result, "needs_interval", False):
        # right when the ticks shown are the ruler's (1 cm, or the 5 or 2 mm minors, as the
        # user reading the ruler will answer)
        mm = result.major_spacing_px * screen.mm_per_px
        ok = any(abs(mm / interval - 1) <= 0.02 for interval in (2.0, 5.0, 10.0))
        return "asked" if ok else "asked-bad"
    return "none"


def traits(screen: Screen) -> dict[str, str]:
    """What a screen's ruler and capture are like, for the breakdown of the outcomes: where
    the finder fails shows what to fix."""
    r = screen.ruler
    assert r is not None
    w, h = screen.image.shape[1], screen.image.shape[0]
    fy = h / screen.native[1]
    grey = len(set(r.colour)) == 1
    # ticks that cannot be told apart: one level (or dots of one size), no cm number beside them
    dot_alike = r.mark == "dot" and max(1, r.major_len // 5) == 1
    alike = not r.minor_mm or dot_alike
    return {
        "minor": f"{r.minor_mm:g} mm" if r.minor_mm else "none",
        "mark": r.mark,
        "levels": ("one level, labelled" if alike and r.labels and not dot_alike
                   else "one level, unlabelled" if alike else "two levels"),
        "side": r.side + (" inside" if r.inside else ""),
        "anchor": r.anchor + (" +spine" if r.spine and r.mark == "line" else ""),
        "thickness": f"{r.thickness}/{r.minor_thickness}" if r.mark == "line" else r.mark,
        "colour": ("white" if grey and r.colour[0] >= 225 else "grey" if grey else "colour"),
        "capture": f"{w}x{h}",
        "rescale": "none" if screen.native == (w, h) else "up" if fy > 1 else "down",
        "jpeg": "jpeg" if screen.jpeg else "raw",
        "noise": "noisy" if screen.noise > 0 else "clean",
        "blur": "blurred" if screen.blur > 0 else "sharp",
        "background": f"grey {screen.background // 20 * 20}-{screen.background // 20 * 20 + 19}",
    }


def measure(n: int = 300, seed: int = 0, detect: bool = False, added_styles: bool = True
            ) -> dict:
    from sonoguide.pipeline.depth_scale import find_depth_scale
    from sonoguide.pipeline.roi import detect_roi

    cv2.setNumThreads(1)  # "on one core": the time is this thread's CPU time, whatever else runs
    counts: dict[str, int] = {}
    times: list[float] = []
    bad: list[str] = []
    by_style: dict[str, list[str]] = {}
    by_trait: dict[str, dict[str, list[str]]] = {}
    for s in range(seed, seed + n):
        screen = random_screen(s, added_styles=added_styles)
        roi = detect_roi(screen.image) if detect else screen.roi
        t0 = time.thread_time()
        result = find_depth_scale(screen.image, roi)
        times.append((time.thread_time() - t0) * 1000)
        what = outcome(screen, result)
        counts[what] = counts.get(what, 0) + 1
        minor = screen.ruler.minor_mm
        style = f"minor {minor:g}" if minor else "major only"
        by_style.setdefault(f"{style}, {screen.ruler.mark}", []).append(what)
        kind = traits(screen)
        for trait, value in kind.items():
            by_trait.setdefault(trait, {}).setdefault(value, []).append(what)
        # worth a look: anything but a found scale, or a question about ticks that can be
        # told apart (two levels, or cm labels)
        if what in ("wrong", "asked-bad", "none") or (
                what == "asked" and "unlabelled" not in kind["levels"]):
            bad.append(f"seed {s}: {what}: {result.reason} (truth {screen.mm_per_px:.4f} mm/px)")
    false_claims = 0
    for s in range(seed, seed + max(1, n // 5)):
        screen = random_screen(s, with_ruler=False, added_styles=added_styles)
        roi = detect_roi(screen.image) if detect else screen.roi
        result = find_depth_scale(screen.image, roi)
        if result.found or result.needs_interval:
            false_claims += 1
            bad.append(f"seed {s} (no ruler): {result.reason}")
    return {"n": n, "counts": counts, "times": times, "bad": bad, "by_style": by_style,
            "by_trait": by_trait, "empty": max(1, n // 5), "false_claims": false_claims}


def _report(m: dict) -> None:
    n, c = m["n"], m["counts"]

    def pct(k: int) -> str:
        return f"{100 * k / n:.1f} %"

    found = c.get("right", 0) + c.get("wrong", 0)
    asked = c.get("asked", 0) + c.get("asked-bad", 0) + c.get("none", 0)
    times = sorted(m["times"])
    print(f"screens: {n}")
    print(f"found (mm/px given): {pct(found)}")
    print(f"within 2 % of the truth: {pct(c.get('right', 0))} of all screens")
    print(f"wrong (> 2 % off, not asked): {c.get('wrong', 0)}")
    print(f"asked: {pct(asked)} (tick interval: {c.get('asked', 0)} with the right spacing, "
          f"{c.get('asked-bad', 0)} with a wrong one; no scale: {c.get('none', 0)})")
    print(f"right or rightly asked (scale within 2 % once the interval is known): "
          f"{pct(c.get('right', 0) + c.get('asked', 0))}")
    print(f"screens without a ruler: {m['empty']}, a scale or spacing claimed on "
          f"{m['false_claims']}")
    levels = [o for style, v in m["by_style"].items() if "minor" in style for o in v]
    print(f"  of the {len(levels)} rulers with minor ticks: "
          f"{100 * levels.count('right') / max(len(levels), 1):.1f} % within 2 %")
    print(f"time (one thread, CPU): median {statistics.median(times):.2f} ms, "
          f"p95 {times[int(0.95 * (len(times) - 1))]:.2f} ms, max {times[-1]:.2f} ms")
    def summary(outcomes: list[str]) -> str:
        counts = ", ".join(f"{k} {outcomes.count(k)}" for k in sorted(set(outcomes)))
        return (f"{len(outcomes)} screens, {100 * outcomes.count('right') / len(outcomes):.1f} "
                f"% within 2 %: {counts}")

    for style, outcomes in sorted(m["by_style"].items()):
        print(f"  {style}: {summary(outcomes)}")
    told = [o for v, outs in m["by_trait"]["levels"].items() if "unlabelled" not in v
            for o in outs]
    print(f"within 2 % where the ticks can be told apart (two levels, or cm labels): "
          f"{100 * told.count('right') / max(len(told), 1):.1f} % of {len(told)}")
    for trait, values in m["by_trait"].items():
        print(f"by {trait}:")
        for value, outcomes in sorted(values.items()):
            print(f"    {value}: {summary(outcomes)}")
    worst_first = sorted(m["bad"], key=lambda line: ": wrong:" not in line)
    for line in worst_first[:20]:
        print("  " + line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--measure", action="store_true", help="measure find_depth_scale")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--detect", action="store_true",
                   help="give it the detected image area (detect_roi), as the app does")
    p.add_argument("--without-added-styles", action="store_true",
                   help='the screens as first drawn (no "+" marks, mid-grey UI or blur)')
    p.add_argument("--save", type=int, default=None, help="write this seed's screen as PNG")
    p.add_argument("--out", default=".", help="folder for --save")
    a = p.parse_args(argv)
    if a.save is not None:
        screen = random_screen(a.save)
        path = Path(a.out) / f"screen_{a.save}.png"
        cv2.imwrite(str(path), screen.image[:, :, ::-1])
        print(f"{path}: {screen.native} -> {screen.image.shape[1]}x{screen.image.shape[0]}, "
              f"roi {screen.roi}, {screen.mm_per_px:.4f} mm/px, {screen.ruler}")
        return 0
    if not a.measure:
        p.error("nothing to do: --measure or --save SEED")
    _report(measure(a.n, a.seed, a.detect, not a.without_added_styles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
