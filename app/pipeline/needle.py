"""Needle shaft and tip from the image: classical, training-free, about 1-2 ms a frame on a CPU.

In-plane needle: a bright, thin, straight line entering from the left or right side of the
picture and going down at 14-82 degrees to the skin (image top). Out-of-plane needle: a bright
dot with a short comet tail under it; it cannot tell the tip from a cut through the shaft.

How. On a copy shrunk to about `work_px` on the long side (so the cost does not grow with the
screen): a white top-hat keeps what is brighter than its surroundings and thinner than 3 mm
(needle, fascia, vessel walls; not bone or bright tissue areas); a hysteresis threshold relative
to the frame's strongest echoes; a structure tensor gives each bright pixel the direction of
its ridge. A Hough transform over the pixels of oblique ridges proposes lines; each is refitted
robustly through the pixels of its band whose ridge runs along it (the horizontal fascia a shaft
crosses are left out), and cut to its longest run with gaps of at most `max_gap_mm`. A line is
a needle when it is steep enough, long enough, straight (bend), thin (width), evenly bright
along its length, about as bright as the frame's strongest echoes (or long, very straight and
even when dimmer) and starts at the side of the picture (or is long and continuous). On the
full-resolution picture the line is then moved onto the shallowest bright line of its band
(reverberations repeat the shaft below it, never above) and the tip is where the brightness
along it drops half-way to the tissue beyond.

Refused (None; NeedleResult.reason says why): no such line; two separate lines of similar
strength, or two dots (ambiguous: drawing one would be a guess). Flat lines (fascia, bone,
pleura), curved or patchy echoes never count. Figures on held-out phantom patients:
python -m sonoguide.pipeline.needle_eval.

Qt-free, numpy + OpenCV. NeedleDetector keeps no state between calls; NeedleTracker does (one
per stream).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

IN_PLANE, OUT_OF_PLANE = "in_plane", "out_of_plane"
# Scale assumed when the caller has no calibration: a typical 40 mm deep vascular/nerve view.
ASSUMED_DEPTH_MM = 40.0

# reasons a frame gives no finding (NeedleResult.reason)
NO_LINE = "no needle-like line"
AMBIGUOUS = "ambiguous: two bright lines"
BLANK = "blank image"
FOUND = "found"


@dataclass(frozen=True)
class NeedleFinding:
    """A needle in the analysed image. Points are (x, y) pixels of that image (the ROI: add the
    ROI's origin for full-frame pixels, see `moved`)."""

    kind: str  # IN_PLANE or OUT_OF_PLANE ("tip or shaft, cannot tell")
    tip: tuple[float, float]  # in-plane: deep end of the shaft; out-of-plane: the dot
    shaft_start: tuple[float, float] | None  # shallow end of the visible shaft (in-plane)
    angle_deg: float | None  # shaft to the skin surface (image top), 0..90 (in-plane)
    from_left: bool | None  # in-plane: enters from the left edge (goes down to the right)
    tip_depth_mm: float | None  # below the top of the image (skin line); None without a scale
    confidence: float  # 0..1, how clearly the image shows it (not a calibrated probability)
    length_mm: float | None = None  # visible shaft length (in-plane; None without a scale)
    tip_in_view: bool = True  # False: the shaft runs out of the picture, its tip is beyond

    @property
    def shaft_end(self) -> tuple[float, float]:
        return self.tip

    @property
    def direction(self) -> tuple[float, float] | None:
        """Unit vector along the shaft towards its tip (deeper); None out of plane."""
        if self.angle_deg is None or self.from_left is None:
            return None
        a = math.radians(self.angle_deg)
        return (math.cos(a) if self.from_left else -math.cos(a), math.sin(a))

    def moved(self, dx: float, dy: float) -> NeedleFinding:
        """The same finding with its points shifted (ROI -> full-frame pixels: the ROI's x, y).
        Depths stay measured from the top of the analysed image."""
        def mv(p: tuple[float, float] | None) -> tuple[float, float] | None:
            return None if p is None else (p[0] + dx, p[1] + dy)

        return dataclasses.replace(self, tip=mv(self.tip), shaft_start=mv(self.shaft_start))


@dataclass(frozen=True)
class NeedleResult:
    finding: NeedleFinding | None
    reason: str  # FOUND or why nothing is drawn


@dataclass(frozen=True)
class NeedleParams:
    """Tunables, tuned on phantom patients of needle_eval seeds 0-99 only; it measures on
    others (100-139). Lengths in mm work at any screen size and depth setting."""

    work_px: int = 128  # long side of the working copy (0.3 mm a pixel on a 40 mm view)
    tophat_mm: float = 3.0  # wider than the shaft with its reverberations, narrower than tissue
    abs_floor: float = 45.0  # top-hat grey levels: below this nothing counts as a bright echo
    high_frac: float = 0.7  # of the frame's strongest top-hat echo: seeds of bright components
    low_frac: float = 0.4  # ...and what they grow through
    min_angle_deg: float = 14.0  # flatter lines are fascia, bone, pleura
    max_angle_deg: float = 82.0
    candidates: int = 4  # Hough lines examined per frame
    band_mm: float = 2.0  # half-width of the band around a Hough line searched for a shaft
    fit_band_mm: float = 1.2  # ... and around the fitted line: shaft + reverberations
    max_gap_mm: float = 6.0  # longest dark gap bridged along a shaft
    min_length_mm: float = 8.0  # bright shaft needed to draw a needle (from the entry edge)
    # A shaft enters from the side of the picture; one whose shallow end lies further than
    # entry_mm from that edge (its first part lost in a gap, or not a needle at all: the
    # straight part of a curved echo) must be longer and fuller to count
    entry_mm: float = 3.0
    detached_length_mm: float = 15.0
    detached_fill: float = 0.8
    max_bend_mm: float = 0.5  # sagitta of a parabola through the band: more is a curved echo
    max_width_mm: float = 0.55  # spread across the band (sd): a shaft with its echoes is thin
    max_unevenness: float = 0.2  # cv of the brightness along the shaft (per mm maxima)
    # a needle is a specular reflector: about as bright as the frame's strongest echoes
    min_rel_contrast: float = 0.6
    # ... and its grey among the brightest of the picture (median along the shaft / the
    # picture's 99.9th percentile): fascia are bright, a needle brighter still
    min_grey_rel: float = 0.75
    # ... or, dimmer (a steep needle), long, very straight and even
    dim_rel_contrast: float = 0.4
    dim_length_mm: float = 15.0
    dim_bend_mm: float = 0.3
    dim_unevenness: float = 0.15
    dim_grey_rel: float = 0.55
    rival_ratio: float = 0.15  # another needle-like line this strong (vs the best): ambiguous
    rival_unevenness: float = 0.3
    same_share: float = 0.4  # lines sharing this share of their pixels are one needle
    agree_deg: float = 15.0  # a pixel belongs to a line when its ridge runs this close to it
    shapeless: float = 0.3  # ridge coherence under which a pixel's direction is not trusted
    # Out-of-plane: the shaft's cross-section rings down, so the dot has a comet tail under
    # it: a short vertical streak as bright as the frame's brightest echo. A dot without a
    # tail is not told from a bright speck of tissue, so it is not drawn.
    dot_max_mm: float = 4.5  # longest side of a dot with its tail
    dot_tail_mm: float = 2.0  # shortest height of a dot with its tail
    dot_tall: float = 1.8  # height / width
    dot_peak_rel: float = 0.9  # the dot's brightest top-hat / the frame's strongest echoes
    dot_rel: float = 0.6  # ... and its mean with the tail
    dot_border_mm: float = 2.0  # the picture's side edges leave bright rims: not dots there
    dot_side_rel: float = 0.5  # tissue beside the tail / the tail (full-resolution grey)
    dot_asymmetry: float = 0.35  # |left - right| / (tail - darker side)
    edge_mm: float = 1.0  # a shaft ending this close to the picture's edge may go on beyond it


def _odd(n: float) -> int:
    k = max(3, int(round(n)))
    return k if k % 2 else k + 1


@dataclass
class _Line:
    """A candidate shaft in work pixels."""

    cx: float  # a point on the line
    cy: float
    ux: float  # unit direction, uy >= 0 (pointing deeper)
    uy: float
    t0: float  # the run along the line from (cx, cy)
    t1: float
    covered: float  # bright length inside the run (work px)
    contrast: float  # mean top-hat of its pixels
    members: np.ndarray  # indices of its pixels in the frame's bright-pixel list
    t: np.ndarray  # their positions along the line
    d: np.ndarray  # ... and across it
    shaft: tuple[float, float, float, float, float] | None = None  # see _shaft

    @property
    def angle(self) -> float:
        return math.degrees(math.atan2(abs(self.uy), abs(self.ux)))

    @property
    def score(self) -> float:
        return self.covered * self.contrast


@dataclass
class _Frame:
    """One picture prepared for the search."""

    grey: np.ndarray  # full resolution
    xs: np.ndarray  # bright pixels (work px), float32
    ys: np.ndarray
    vals: np.ndarray  # their top-hat
    ridge: np.ndarray  # local direction of the bright ridge there, radians in [0, pi)
    coherence: np.ndarray  # 0..1: how line-like the neighbourhood is
    mask: np.ndarray  # (work) uint8 0/1: bright pixels of oblique ridges, what Hough sees
    peak: float
    sx: float  # work px per full px
    sy: float
    sp: float  # mm per full px (assumed when not known)
    known: bool  # sp came from the caller
    content: tuple[int, int, int, int]  # work px box showing anything

    @property
    def spw(self) -> float:
        return self.sp / self.sx

    @functools.cached_property
    def bright(self) -> float:
        """The picture's 99.9th percentile grey (its brightest echoes); only when needed."""
        hist = cv2.calcHist([self.grey], [0], None, [256], [0, 256]).ravel()
        above = np.cumsum(hist[::-1])
        return float(255 - np.searchsorted(above, max(1, self.grey.size // 1000)))


class NeedleDetector:
    """detect(grey_roi, mm_per_px) per frame; see the module docstring for how."""

    def __init__(self, params: NeedleParams | None = None) -> None:
        self.params = params or NeedleParams()

    def detect(self, image: np.ndarray, mm_per_px: float | None) -> NeedleFinding | None:
        return self.analyse(image, mm_per_px).finding

    def analyse(self, image: np.ndarray, mm_per_px: float | None) -> NeedleResult:
        """The finding, or None with the reason nothing should be drawn."""
        p = self.params
        f = self._prepare(image, mm_per_px)
        if isinstance(f, str):
            return NeedleResult(None, f)
        lines = [ln for ln in (self._fit(f, c) for c in self._hough(f)) if ln is not None]
        lines.sort(key=lambda ln: ln.score, reverse=True)
        best = next((ln for ln in lines if self._valid(ln, f)), None)
        if best is not None:
            # any other needle-like line (judged a little more leniently: where two needles
            # cross, each looks patchier) makes the frame ambiguous
            if any(ln is not best and ln.score >= p.rival_ratio * best.score
                   and not self._same(best, ln) and self._valid(ln, f, rival=True)
                   for ln in lines):
                return NeedleResult(None, AMBIGUOUS)
            return NeedleResult(self._finding(best, f), FOUND)
        # no in-plane shaft: an out-of-plane dot, when exactly one stands out
        return self._dot(f)

    # --- steps -----------------------------------------------------------------------------
    def _prepare(self, image: np.ndarray, mm_per_px: float | None) -> _Frame | str:
        p = self.params
        grey = _grey(image)
        h, w = grey.shape
        # halve (2x2 means: OpenCV's fast path) while over twice work_px, then area-resample
        work = grey
        while max(work.shape) >= 2 * p.work_px:
            hh, ww = work.shape[0] // 2, work.shape[1] // 2
            work = cv2.resize(work[:2 * hh, :2 * ww], (ww, hh), interpolation=cv2.INTER_AREA)
        scale = p.work_px / max(work.shape)
        if scale < 0.9:
            work = cv2.resize(work, (max(8, round(work.shape[1] * scale)),
                                     max(8, round(work.shape[0] * scale))),
                              interpolation=cv2.INTER_AREA)
        sx, sy = work.shape[1] / w, work.shape[0] / h
        known = mm_per_px is not None and mm_per_px > 0
        sp = float(mm_per_px) if known else ASSUMED_DEPTH_MM / h
        k = _odd(p.tophat_mm / (sp / sx))
        # top-hat inside the part that shows anything: the black beyond a narrow probe's face
        # would make the tissue at its edge look like a bright ridge (outside the picture the
        # morphology's border is neutral)
        content = _content_box(work)
        x0, y0, x1, y1 = content
        top = np.zeros_like(work)
        top[y0:y1 + 1, x0:x1 + 1] = cv2.morphologyEx(
            work[y0:y1 + 1, x0:x1 + 1], cv2.MORPH_TOPHAT,
            cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
        # the strongest echoes of this frame set the levels (gain differs between scanners)
        hist = np.bincount(top.ravel(), minlength=256)
        above = np.cumsum(hist[::-1])  # pixels at or above each level, from 255 down
        peak = float(255 - np.searchsorted(above, max(1, top.size // 2000)))
        if peak < p.abs_floor:
            return BLANK if int(grey.max()) == 0 else NO_LINE
        high, low = peak * p.high_frac, max(p.abs_floor, peak * p.low_frac)
        # hysteresis: bright components grown from their brightest pixels
        n, lab = cv2.connectedComponents((top >= low).astype(np.uint8), connectivity=8)
        seeded = np.zeros(n, np.uint8)
        seeded[lab[top >= high]] = 1
        seeded[0] = 0
        mask = seeded[lab]
        ys, xs = np.nonzero(mask)
        if xs.size == 0:
            return NO_LINE
        ridge, coherence = _orientation(top, 0.8 / (sp / sx), ys, xs)
        # the line search sees only pixels of oblique (or shapeless) ridges: the horizontal
        # fascia a shaft crosses would otherwise lend it length
        flat = np.minimum(ridge, np.pi - ridge) < math.radians(p.min_angle_deg - 6.0)
        keep = ~(flat & (coherence >= p.shapeless))
        oblique = np.zeros_like(mask)
        oblique[ys[keep], xs[keep]] = 1
        return _Frame(grey, xs.astype(np.float32), ys.astype(np.float32),
                      top[ys, xs].astype(np.float32), ridge, coherence, oblique, peak, sx, sy,
                      sp, known, content)

    def _hough(self, f: _Frame) -> list[tuple[float, float]]:
        """(rho, theta) of the strongest distinct oblique lines through the bright pixels."""
        p = self.params
        votes = max(4, int(0.5 * p.min_length_mm / f.spw))
        lo, hi = math.radians(90.0 - p.max_angle_deg), math.radians(90.0 - p.min_angle_deg)
        found = []
        # needles from the right (normal angle lo..hi) and from the left (pi - hi..pi - lo)
        for a, b in ((lo, hi), (math.pi - hi, math.pi - lo)):
            got = cv2.HoughLinesWithAccumulator(f.mask, 1, math.radians(1.0), votes,
                                                min_theta=a, max_theta=b)
            if got is not None:
                found.extend(got.reshape(-1, 3)[: 4 * p.candidates].tolist())
        found.sort(key=lambda r: -r[2])
        kept: list[tuple[float, float]] = []
        band = p.band_mm / f.spw
        min_votes = p.min_length_mm / f.spw
        h, w = f.mask.shape
        for rho, theta, v in found:  # non-maximum suppression: one line per shaft
            if v < min(p.rival_ratio * found[0][2], min_votes):  # too weak for any needle
                break
            # a thick shaft also votes for lines a few degrees off that cross it in the
            # picture: the same needle
            if any(abs(theta - t) < math.radians(10.0) and _meet(rho, theta, r, t, w, h, band)
                   for r, t in kept):
                continue
            kept.append((rho, theta))
            if len(kept) == p.candidates:
                break
        return kept

    def _fit(self, f: _Frame, line: tuple[float, float]) -> _Line | None:
        """The band of bright pixels along a Hough line, refitted robustly, cut to its longest
        run with gaps no longer than max_gap_mm (a far speck on the line must not move the
        tip)."""
        p = self.params
        rho, theta = line
        nx, ny = math.cos(theta), math.sin(theta)
        cx, cy = rho * nx, rho * ny
        ux, uy = (ny, -nx) if -nx >= 0 else (-ny, nx)
        band, gap = p.band_mm / f.spw, p.max_gap_mm / f.spw
        fit_band = p.fit_band_mm / f.spw
        min_len = p.min_length_mm / f.spw
        for final in (False, True):  # the Hough line, then the robust fit through its band
            d = (f.xs - cx) * uy - (f.ys - cy) * ux
            idx = np.flatnonzero(np.abs(d) <= (fit_band if final else band))
            idx = idx[self._agree(f, idx, ux, uy)]
            if idx.size < 4:
                return None
            t = (f.xs[idx] - cx) * ux + (f.ys[idx] - cy) * uy
            t0, t1, covered = _longest_run(t, gap)
            if covered < min_len:
                return None
            inside = (t >= t0) & (t <= t1)
            idx, t = idx[inside], t[inside]
            if idx.size < 4:
                return None
            if not final:
                ux, uy, cx, cy = _robust_line(f.xs[idx], f.ys[idx])
        return _Line(cx, cy, ux, uy, t0, t1, float(covered), float(f.vals[idx].mean()), idx, t,
                     d[idx])

    def _shape(self, ln: _Line, f: _Frame) -> tuple[float, float, float]:
        """(bend, width in work px; unevenness): only for lines that could be drawn."""
        t, d = ln.t, ln.d
        # bend: how far the middle third of the band lies off the line through its outer
        # thirds, scaled to the sagitta of a parabola (x 2.25)
        bend = 0.0
        third = (ln.t1 - ln.t0) / 3
        first, last = t < ln.t0 + third, t > ln.t1 - third
        middle = ~(first | last)
        if third > 2 and first.any() and last.any() and middle.any():
            ends = (float(d[first].mean()) + float(d[last].mean())) / 2
            bend = 2.25 * abs(float(d[middle].mean()) - ends)
        # a shaft echoes about equally along its length (one angle to the beam); a line
        # strung through separate echoes does not: brightest top-hat per mm along the run
        mm = ((t - ln.t0) * f.spw).astype(np.int32)
        order = np.argsort(mm, kind="stable")
        starts = np.flatnonzero(np.diff(mm[order], prepend=-1))
        peaks = np.maximum.reduceat(f.vals[ln.members][order], starts)
        uneven = float(peaks.std() / max(float(peaks.mean()), 1e-6))
        return bend, float(d.std()), uneven

    def _agree(self, f: _Frame, idx: np.ndarray, ux: float, uy: float) -> np.ndarray:
        """Which of these pixels have a ridge along the direction (ux, uy)."""
        diff = np.abs(f.ridge[idx] - math.atan2(uy, ux) % math.pi)
        diff = np.minimum(diff, math.pi - diff)
        return (diff <= math.radians(self.params.agree_deg)) | (
            f.coherence[idx] < self.params.shapeless)

    def _valid(self, ln: _Line, f: _Frame, rival: bool = False) -> bool:
        p = self.params
        mm = f.spw
        if not (p.min_angle_deg <= ln.angle <= p.max_angle_deg
                and ln.covered * mm >= p.min_length_mm
                and ln.contrast >= p.dim_rel_contrast * f.peak):
            return False
        x0, _, x1, y1 = f.content
        start_x = ln.cx + ln.t0 * ln.ux
        entry = (start_x - x0) if ln.ux > 0 else (x1 - start_x)
        if entry * mm > p.entry_mm:
            # detached from the entry side: long and continuous, and its deep end in the
            # picture (a bright line merely crossing the picture could be anything)
            end_x, end_y = ln.cx + ln.t1 * ln.ux, ln.cy + ln.t1 * ln.uy
            exit_gap = min(y1 - end_y, (x1 - end_x) if ln.ux > 0 else (end_x - x0))
            if not (ln.covered * mm >= p.detached_length_mm
                    and ln.covered >= p.detached_fill * (ln.t1 - ln.t0)
                    and exit_gap * mm > p.edge_mm):
                return False
        bend, width, uneven = self._shape(ln, f)
        if bend * mm > p.max_bend_mm or width * mm > p.max_width_mm:
            return False
        if rival:
            return uneven <= p.rival_unevenness
        if uneven > p.max_unevenness:
            return False
        grey = self._shaft_grey(ln, f) / max(f.bright, 1.0)  # full resolution
        return (ln.contrast >= p.min_rel_contrast * f.peak and grey >= p.min_grey_rel) or (
            ln.covered * mm >= p.dim_length_mm and bend * mm <= p.dim_bend_mm
            and uneven <= p.dim_unevenness and grey >= p.dim_grey_rel)

    def _shaft(self, ln: _Line, f: _Frame) -> tuple[float, float, float, float, float]:
        """The line on the full picture, moved onto the shaft (the shallowest bright line of
        its band: reverberations lie under it): start x, y, direction, length (full px)."""
        if ln.shaft is None:
            ax, ay = (ln.cx + ln.t0 * ln.ux + 0.5) / f.sx - 0.5, \
                (ln.cy + ln.t0 * ln.uy + 0.5) / f.sy - 0.5
            bx, by = (ln.cx + ln.t1 * ln.ux + 0.5) / f.sx - 0.5, \
                (ln.cy + ln.t1 * ln.uy + 0.5) / f.sy - 0.5
            length = math.hypot(bx - ax, by - ay)
            ux, uy = (bx - ax) / length, (by - ay) / length
            ax, ay = _onto_shaft(f.grey, ax, ay, ux, uy, length, f.sp)
            ln.shaft = (ax, ay, ux, uy, length)
        return ln.shaft

    def _shaft_grey(self, ln: _Line, f: _Frame) -> float:
        """Median grey along the middle of the shaft, full resolution."""
        ax, ay, ux, uy, length = self._shaft(ln, f)
        t = np.linspace(0.1, 0.9, 20) * length
        return float(np.median(_sample(f.grey, ax + t * ux, ay + t * uy)))

    def _same(self, a: _Line, b: _Line) -> bool:
        """b is a's band seen along a slightly different line (reverberations, a thick
        shaft): they share most of b's pixels."""
        shared = np.intersect1d(a.members, b.members, assume_unique=True).size
        return shared >= self.params.same_share * b.members.size

    def _finding(self, line: _Line, f: _Frame) -> NeedleFinding:
        p = self.params
        sx, sy, sp = f.sx, f.sy, f.sp
        ax, ay, ux, uy, length = self._shaft(line, f)
        tip_t = _tip_along(f.grey, ax, ay, ux, uy, length, sp)
        tx, ty = ax + tip_t * ux, ay + tip_t * uy
        edge = p.edge_mm / f.spw
        x0, _, x1, y1 = f.content
        wx, wy = (tx + 0.5) * sx - 0.5, (ty + 0.5) * sy - 0.5
        in_view = wy < y1 - edge and (wx < x1 - edge if ux > 0 else wx > x0 + edge)
        angle = math.degrees(math.atan2(uy, abs(ux)))
        conf = min(1.0, line.covered * f.spw / 15.0) * min(1.0, line.contrast / (0.7 * f.peak))
        return NeedleFinding(IN_PLANE, (tx, ty), (ax, ay), angle, ux > 0,
                             ty * sp if f.known else None, float(conf),
                             tip_t * sp if f.known else None, bool(in_view))

    def _comet(self, f: _Frame, sel: np.ndarray, y: int, bh: int) -> bool:
        """A needle's cross-section and its comet tail: the tail fades with depth (its top
        third at least as bright as its bottom third), and tissue lies on both sides (the
        full-resolution grey 1.5 mm left and right is dark and alike; the bright rim of an
        acoustic shadow or of a large echo has a dark side and a bright one)."""
        p = self.params
        ys, v = f.ys[sel], f.vals[sel]
        third = bh / 3
        if v[ys < y + third].mean() < v[ys >= y + bh - third].mean():
            return False
        g = f.grey
        cx = int(round((float(f.xs[sel].mean()) + 0.5) / f.sx - 0.5))
        rows = np.arange(int(y / f.sy), max(int(y / f.sy) + 1, int((y + bh) / f.sy)))
        rows = rows[rows < g.shape[0]]
        off = max(1, int(round(1.5 / f.sp)))
        centre = float(g[rows, min(max(cx, 0), g.shape[1] - 1)].mean())
        left = float(g[rows, max(0, cx - off)].mean())
        right = float(g[rows, min(g.shape[1] - 1, cx + off)].mean())
        if max(left, right) > p.dot_side_rel * centre:
            return False
        return abs(left - right) <= p.dot_asymmetry * max(centre - min(left, right), 1.0)

    def _dot(self, f: _Frame) -> NeedleResult:
        """An out-of-plane needle: one short vertical streak (the dot and its comet tail) as
        bright as the frame's brightest echoes. Only the pixels whose ridge runs vertically
        count, so a fascia the dot sits on does not hide it."""
        p = self.params
        spw = f.spw
        vertical = (np.abs(f.ridge - np.pi / 2) <= math.radians(20.0)) & (f.coherence >= 0.5)
        streaks = np.zeros_like(f.mask)
        streaks[f.ys[vertical].astype(np.intp), f.xs[vertical].astype(np.intp)] = 1
        n, lab, stats, _ = cv2.connectedComponentsWithStats(streaks, connectivity=8)
        found = []
        x0, _, x1, _ = f.content
        border = p.dot_border_mm / spw
        comp = lab[f.ys.astype(np.intp), f.xs.astype(np.intp)]
        for i in range(1, n):
            x, y, bw, bh, _ = (int(v) for v in stats[i])
            if not (p.dot_tail_mm <= bh * spw <= p.dot_max_mm and bh >= p.dot_tall * bw):
                continue
            if x - x0 < border or x1 - (x + bw - 1) < border:
                continue
            sel = comp == i
            v = f.vals[sel]
            if v.max() < p.dot_peak_rel * f.peak or v.mean() < p.dot_rel * f.peak:
                continue
            if not self._comet(f, sel, y, bh):
                continue
            found.append((i, y, sel))
        if not found:
            return NeedleResult(None, NO_LINE)
        if len(found) > 1:
            return NeedleResult(None, AMBIGUOUS)
        _, top_y, sel = found[0]
        head = sel & (f.ys <= top_y + 0.9 / spw)  # the dot itself, not its comet tail
        w = f.vals[head]
        hx = float(np.average(f.xs[head], weights=w))
        hy = float(np.average(f.ys[head], weights=w))
        x, y = (hx + 0.5) / f.sx - 0.5, (hy + 0.5) / f.sy - 0.5
        conf = 0.5 * min(1.0, float(w.mean()) / f.peak)  # a dot alone is weak evidence
        return NeedleResult(NeedleFinding(OUT_OF_PLANE, (x, y), None, None, None,
                                          y * f.sp if f.known else None, conf), FOUND)


def _meet(rho: float, theta: float, rho2: float, theta2: float, w: int, h: int, near: float
          ) -> bool:
    """Whether Hough line 1 comes within `near` px of line 2 inside the w x h picture."""
    c, s = math.cos(theta), math.sin(theta)
    # points of line 1 across the picture (parameterised by y: it is oblique, never flat)
    ys = np.linspace(0.0, h - 1.0, 9)
    xs = (rho - ys * s) / c if abs(c) > 1e-6 else np.full_like(ys, rho)
    inside = (xs >= 0) & (xs <= w - 1)
    if not inside.any():
        return False
    dist = np.abs(xs[inside] * math.cos(theta2) + ys[inside] * math.sin(theta2) - rho2)
    return bool(dist.min() <= near)


def _grey(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 from grey, (H, W, 1), RGB or RGBA; a mirrored view is copied (OpenCV
    wants positive strides)."""
    if any(s < 0 for s in image.strides):
        image = np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_RGBA2GRAY if image.shape[2] == 4 else cv2.COLOR_RGB2GRAY
        image = cv2.cvtColor(image, code)
    if image.ndim != 2 or image.dtype != np.uint8 or image.size == 0:
        raise ValueError(f"needle detection wants a uint8 grey picture, got {image.dtype} "
                         f"{image.shape}")
    return image


def _content_box(work: np.ndarray) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 (inclusive) of the part of the picture that shows anything: a probe
    narrower than the screen leaves black columns, and a shaft ending there goes on."""
    cols = np.flatnonzero(work.max(axis=0) > 0)
    rows = np.flatnonzero(work.max(axis=1) > 0)
    if cols.size == 0:
        return 0, 0, work.shape[1] - 1, work.shape[0] - 1
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _orientation(top: np.ndarray, sigma: float, ys: np.ndarray, xs: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Structure tensor at the bright pixels: the ridge's direction (across the strongest
    brightness change) and its coherence. Lets a shaft be told from the fascia it crosses."""
    f = top.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    k = (2 * max(1, round(sigma)) + 1,) * 2  # a box: much cheaper than a Gaussian, as good here
    jxx = cv2.boxFilter(gx * gx, -1, k)[ys, xs]
    jyy = cv2.boxFilter(gy * gy, -1, k)[ys, xs]
    jxy = cv2.boxFilter(gx * gy, -1, k)[ys, xs]
    across = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # the dominant gradient direction
    ridge = np.mod(across + np.pi / 2, np.pi)
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / np.maximum(jxx + jyy, 1e-6)
    return ridge.astype(np.float32), coherence.astype(np.float32)


def _robust_line(xs: np.ndarray, ys: np.ndarray, k: float = 1.0, rounds: int = 3
                 ) -> tuple[float, float, float, float]:
    """Orthogonal line fit with Huber weights (k px): reverberation rows and a crossing echo
    pull it less than least squares would. Returns ux, uy (uy >= 0), cx, cy."""
    w = np.ones(xs.size, np.float32)
    ux = uy = cx = cy = 0.0
    for i in range(rounds):
        if i:
            r = np.abs((xs - cx) * uy - (ys - cy) * ux)
            w = np.minimum(1.0, k / np.maximum(r, 1e-6)).astype(np.float32)
        sw = float(w.sum())
        cx, cy = float(w @ xs) / sw, float(w @ ys) / sw
        dx, dy = xs - cx, ys - cy
        sxx, syy, sxy = float(w @ (dx * dx)), float(w @ (dy * dy)), float(w @ (dx * dy))
        theta = 0.5 * math.atan2(2 * sxy, sxx - syy)
        ux, uy = math.cos(theta), math.sin(theta)
    return (ux, uy, cx, cy) if uy >= 0 else (-ux, -uy, cx, cy)


def _longest_run(t: np.ndarray, gap: float) -> tuple[float, float, int]:
    """The stretch of positions t with the most occupied 1 px bins and no hole longer than
    `gap`: (start, end, occupied bins)."""
    ti = np.floor(t).astype(np.intp)
    lo = int(ti.min())
    bins = np.flatnonzero(np.bincount(ti - lo)) + lo
    breaks = np.flatnonzero(np.diff(bins) > gap)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [bins.size - 1]])
    run = int(np.argmax(ends - starts))
    return float(bins[starts[run]]), float(bins[ends[run]] + 1), int(ends[run] - starts[run] + 1)


def _sample(grey: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples of the picture at float points (0 outside)."""
    return cv2.remap(grey, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32)


def _onto_shaft(grey: np.ndarray, ax: float, ay: float, ux: float, uy: float, length: float,
                sp: float) -> tuple[float, float]:
    """The fitted line's start moved across the band onto its shallowest bright line."""
    nx, ny = (-uy, ux) if ux >= 0 else (uy, -ux)  # normal pointing deeper
    along = np.linspace(0.15, 0.85, 24) * length  # the middle of the shaft: ends are unsure
    reach = 1.6 / sp  # mm across, each side
    across = np.arange(-reach, reach + 0.5, 0.5)
    prof = _sample(grey, ax + along[None, :] * ux + across[:, None] * nx,
                   ay + along[None, :] * uy + across[:, None] * ny).mean(axis=1)
    peak, floor = float(prof.max()), float(np.percentile(prof, 10))
    if peak - floor < 10:
        return ax, ay
    shift = float(across[np.flatnonzero(prof >= floor + 0.8 * (peak - floor))[0]])
    return ax + shift * nx, ay + shift * ny


def _tip_along(grey: np.ndarray, ax: float, ay: float, ux: float, uy: float, length: float,
               sp: float) -> float:
    """Distance from the shaft start to the tip: where the brightness along the shaft drops to
    half-way between the shaft's and the tissue's beyond it."""
    step = 0.5
    t = np.arange(length - min(length, 4.0 / sp), length + 4.0 / sp, step)
    nx, ny = -uy, ux
    off = np.array([-0.25, 0.0, 0.25]) / sp  # a line as thick as a needle, not one pixel
    prof = _sample(grey, ax + t[None, :] * ux + off[:, None] * nx,
                   ay + t[None, :] * uy + off[:, None] * ny).max(axis=0)
    on = t <= length - 1.0 / sp
    shaft = float(np.median(prof[on])) if on.any() else float(prof[0])
    beyond = prof[t >= length + 1.5 / sp]
    tissue = float(np.median(beyond)) if beyond.size else 0.0
    if shaft - tissue < 10:
        return length
    half = (shaft + tissue) / 2
    start = int(np.searchsorted(t, length - 1.0 / sp))
    below = np.flatnonzero(prof[start:] < half)
    if below.size == 0:  # bright on beyond the run: keep its end rather than guess further
        return length
    i = start + int(below[0])
    if i == 0:
        return float(t[0])
    a, b = prof[i - 1], prof[i]  # sub-sample: between the last bright and the first dark
    return float(t[i - 1] + ((a - half) / (a - b) if a != b else 0.0) * step)


# --- projected path ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PathToTarget:
    """The target seen from the needle's projected path."""

    distance_mm: float | None  # tip -> target along the path; None: off the path / behind the
    # tip / no scale
    angle_deg: float  # angle of approach: the shaft to the skin surface
    miss_mm: float | None  # how far the target lies beside the path (None without a scale)


def project_path(finding: NeedleFinding, image_shape: tuple[int, ...]) -> tuple[float, float]:
    """Where the shaft, extended beyond the tip, leaves the picture (the bottom, or a side
    first for a flat needle). Out of plane there is no direction: the tip itself."""
    u = finding.direction
    tx, ty = finding.tip
    if u is None:
        return tx, ty
    h, w = int(image_shape[0]), int(image_shape[1])
    ux, uy = u
    limits = [(h - 1 - ty) / uy] if uy > 1e-9 else []
    if ux > 1e-9:
        limits.append((w - 1 - tx) / ux)
    elif ux < -1e-9:
        limits.append(-tx / ux)
    s = max(0.0, min(limits)) if limits else 0.0
    return tx + s * ux, ty + s * uy


def path_to_target(finding: NeedleFinding, target_xy: tuple[float, float],
                   mm_per_px: float | None, tolerance_mm: float = 3.0) -> PathToTarget | None:
    """Distance from the tip to the target along the projected path, when the target lies
    within `tolerance_mm` of the path and ahead of the tip. None out of plane (no path)."""
    u = finding.direction
    if u is None or finding.angle_deg is None:
        return None
    ux, uy = u
    dx, dy = target_xy[0] - finding.tip[0], target_xy[1] - finding.tip[1]
    along = dx * ux + dy * uy
    beside = abs(dx * uy - dy * ux)
    if mm_per_px is None or not mm_per_px > 0:
        return PathToTarget(None, finding.angle_deg, None)
    miss = beside * mm_per_px
    ok = along >= 0 and miss <= tolerance_mm
    return PathToTarget(along * mm_per_px if ok else None, finding.angle_deg, miss)


# --- a few frames' agreement before a needle is shown ---------------------------------------------

class NeedleTracker:
    """Shows a finding only after `confirm` consecutive frames agree on it (similar angle and
    tip), and drops it at the first frame without one: a one-frame bright streak never
    becomes a needle, and nothing stale is drawn. One per stream; not thread-safe."""

    def __init__(self, confirm: int = 2, max_angle_deg: float = 8.0,
                 max_tip_mm: float = 4.0) -> None:
        self.confirm = max(1, int(confirm))
        self.max_angle_deg = max_angle_deg
        self.max_tip_mm = max_tip_mm
        self._last: NeedleFinding | None = None
        self._streak = 0

    def reset(self) -> None:
        self._last, self._streak = None, 0

    def update(self, finding: NeedleFinding | None, mm_per_px: float | None
               ) -> NeedleFinding | None:
        if finding is None:
            self.reset()
            return None
        if self._last is not None and _agree(self._last, finding, mm_per_px, self.max_angle_deg,
                                             self.max_tip_mm):
            self._streak += 1
        else:
            self._streak = 1
        self._last = finding
        return finding if self._streak >= self.confirm else None


def _agree(a: NeedleFinding, b: NeedleFinding, mm_per_px: float | None, max_angle: float,
           max_tip_mm: float) -> bool:
    if a.kind != b.kind or a.from_left != b.from_left:
        return False
    if a.angle_deg is not None and b.angle_deg is not None \
            and abs(a.angle_deg - b.angle_deg) > max_angle:
        return False
    sp = mm_per_px if mm_per_px else 0.1
    return math.hypot(a.tip[0] - b.tip[0], a.tip[1] - b.tip[1]) * sp <= max_tip_mm
