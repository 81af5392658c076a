"""The depth scale found on the scanner screen: mm per pixel from the depth ruler's tick marks.

A capture card does not say how many mm a pixel is, but every scanner draws a depth ruler beside
the image: tick marks evenly spaced in depth from the skin line (the image's top edge) down, a
major one every centimetre, often minor ones between (5 or 2 mm apart). Their spacing in pixels
gives the scale without the user clicking two marks.

Method (classical, about 10 ms on a 1920x1080 screen on one core), in strips just left and right
of the image area and a little inside its edges (some scanners draw over a dark image margin):
  1. marks: a vertical white top-hat keeps what is bright and only a few px tall (ticks, dots)
     and drops tall things (the ruler's spine, colour bars, text stems); its connected
     components that are flat or round (by their core: a resampled dot gains a faint halo),
     and dark around (not a glyph or a word, not a speckle grain among others), are candidate
     marks at their brightness-weighted centre row; ticks cut in two by the spine are joined
     again where the spine is there between the pieces, and ticks the faint remains of a
     spine join into one blob are taken apart;
  2. rulers: marks that share an x (their left end, right end or centre: ticks grow from a
     common base line, dots sit on one column), or cross a spine drawn there, form a
     candidate ruler;
  3. lattice: its period from the gaps between neighbours that agree most, its phase from the
     positions modulo that period; the marks on that lattice (a run with few empty slots) are
     fitted by least squares, y = y0 + spacing * slot, which gives the spacing to a fraction of
     a pixel and a residual that says how even the marks really are;
  4. levels: bigger marks (longer, thicker or brighter) on every 2nd, 5th or 10th slot along
     the whole ruler (at least three of them) are the majors (1 cm) with 5, 2 or 1 mm minors
     between: mm per px follows. A tick on the image's top or bottom edge may be fainter than
     its level (measured against the brighter side), not shorter.
     With one level the ticks could be 1 cm or 5 mm apart: the spacing is returned and the
     interval is asked for (needs_interval), unless the caller passes it (major_mm);
  5. labels: ... or unless a number (a compact blob of bright strokes, shorter than the
     spacing, centred on the tick's row) sits beside every tick on the side away from the
     image, one size, aligned, and nothing else there: scanners write the depth in cm beside
     their centimetre ticks, so those ticks are 10 mm apart (no OCR: it is where the labels
     are, not what they say). Labels beside every 2nd tick only are still asked about: 5 mm
     ticks labelled each cm look like 1 cm ticks labelled every 2 cm.
A ruler must be even, long enough (a good part of the image's height), alone in its column
(nothing of a tick's weight between its ticks, nothing right beside their ends: the glyphs of
lines of text line up too) and, with one level, have a tick at the image's top edge (its 0:
evenly spaced TGC nodes or menu lines seldom do); with two levels, its minors are drawn in the
majors' colour (not faint ringing) and its majors are more than specks. Anything doubtful (two
rulers that disagree, an implausible depth) gives no scale and a plain reason: a wrong scale
offered as found would be worse than asking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from sonoguide.pipeline.frames import Roi

DEFAULT_MAJOR_MM = 10.0  # scanners put a major tick every centimetre
ASKABLE_MM = (2.0, 5.0, 10.0)  # what ticks all alike may be apart: worth asking the user
MINOR_RATIOS = (2, 5, 10)  # minor intervals per major one: 5, 2 and 1 mm minors
DEPTH_RANGE_MM = (15.0, 300.0)  # plausible depth shown over the image area's height
TOPHAT_SCREEN = 50  # marks are shorter than 1/50 of the screen height (at least 15 px); the
#   ruler's spine, colour bars, text columns' stems are taller
MARK_LEVEL = 28  # grey levels a mark stands above its vertical surround (capture noise is ~10)
QUIET_BAND = 3  # px around a mark that must be mostly dark (not a glyph stroke, not speckle)
QUIET_LEVELS = (12, 20, 32, 48, 64)  # grey levels over the vertical surround that are "not dark"
QUIET_SHARE = 0.35  # ... the highest of them under this share of the mark's mean brightness
QUIET_MAX = 0.3  # share of the ring that may be lit
SPINE_GAP = 3  # px: the widest ruler spine (a rescaled one) between the halves of a tick
ANCHOR_TOL = 2.0  # px: marks of one ruler share an end or centre x to within this
GAP_AGREE = 0.08  # neighbour gaps within this share of each other measure one period
MIN_MARKS = 3  # fewer marks on a lattice are no ruler
MIN_TWO_LEVEL = 5  # ticks of a ruler with minor ticks (2 cm at 5 mm: 0, 5, 10, 15, 20)
MIN_MAJORS = 3  # ... of them majors (0, 1, 2 cm): two bigger marks fit a pattern by chance
MIN_OCCUPANCY = 0.75  # share of lattice slots between the first and last mark that hold one
MAX_RMS_PX = 1.2  # a ruler's marks lie this close to a straight line (drawn at whole pixels)
MIN_SPAN = 0.35  # of the image area's height: a depth ruler runs along the image
SHORT_SPAN = 0.65  # ... and one of only 3 or 4 ticks (2-3.5 cm deep) nearly the whole way
STRAY_SHARE = 0.25  # other marks in the ruler's column between its ends, per tick
STRAY_MASS = 0.3  # ... counting, across its ticks' extent, those this share of a tick's mass
LEVEL_RATIO = 1.5  # a major mark has this much more mass, or length, than a minor one
SPLIT_RATIO = 1.25  # ... and no major has less than this much more mass than any minor
MASS_AGREE = 0.35  # marks of one level have the same mass to within this share
PEAK_SHARE = 0.2  # minor ticks' brightest pixel is at least this share of the majors'
MIN_MAJOR_PX = 3  # major ticks (or dots) are at least this long
TOP_TOL_PX = 5.0  # a major tick this close to the image area's top is the ruler's 0
BORDER_PX = 3.0  # a tick this close to the image area's top or bottom edge is drawn on it
MIN_PERIOD_PX = 4.0  # denser marks cannot be told apart from a line
MAX_GROUPS = 8  # candidate rulers analysed per strip and anchor kind (the brightest)
STAB_REACH = SPINE_GAP  # px: a tick cut by the spine reaches to within this of it
NEXT_GLYPH_PX = 2  # px beyond a mark's end where a word's next letter would be


@dataclass(frozen=True)
class DepthScale:
    """What the depth ruler says, or why it says nothing.

    mm_per_px: the scale (vertical, screen pixels), or None: not found, or the tick interval
      must be asked for (needs_interval). Never set when unsure.
    confidence: 0..1, how clean the ruler is (even spacing, marks in every slot, enough of them);
      informative only: mm_per_px is None whenever the result is not to be used as it is.
    reason: one plain sentence for the user: what was found, or why nothing.
    needs_interval: evenly spaced ticks were found (major_spacing_px) but not what distance they
      mark (one tick level only): ask "how many mm between the ticks?" (10 mm is the usual),
      then use with_interval(mm), or call find_depth_scale again with major_mm.
    ticks_px: every tick's y (screen px, sub-pixel), top to bottom, to show the user what was
      used; major_ticks_px: the major ones among them (all of them with one level).
    column_x: the ruler's x on the screen (the ticks' shared end or centre); None without one.
    major_spacing_px: px between major ticks (from the fit over all ticks).
    minor_per_major: minor ticks between two majors (1: 5 mm, 4: 2 mm, 9: 1 mm); 0 with one
      level; None without a ruler.
    major_mm: mm between major ticks that mm_per_px rests on (assumed 10, or as given); None
      while the interval is to be asked for.
    """

    mm_per_px: float | None
    confidence: float
    reason: str
    needs_interval: bool = False
    ticks_px: tuple[float, ...] = ()
    major_ticks_px: tuple[float, ...] = ()
    column_x: int | None = None
    major_spacing_px: float | None = None
    minor_per_major: int | None = None
    major_mm: float | None = None

    @property
    def found(self) -> bool:
        """A scale to offer the user (to confirm) as it is."""
        return self.mm_per_px is not None and not self.needs_interval

    def with_interval(self, major_mm: float) -> DepthScale:
        """This ruler with the user's answer to "how many mm between the (major) ticks?";
        ValueError (readable) when there is no spacing or the answer gives no plausible scale."""
        if self.major_spacing_px is None:
            raise ValueError("no tick spacing was found: calibrate with two ruler marks instead")
        if not (math.isfinite(major_mm) and major_mm > 0):
            raise ValueError(f"the tick interval must be a positive number of mm, got {major_mm}")
        mm_per_px = major_mm / self.major_spacing_px
        if not valid_spacing(mm_per_px):
            raise ValueError(f"{major_mm:g} mm every {self.major_spacing_px:.1f} px is "
                             f"{mm_per_px:.4g} mm/px: not a plausible scale")
        return replace(self, mm_per_px=mm_per_px, needs_interval=False, major_mm=major_mm,
                       reason=f"ticks every {self.major_spacing_px:.1f} px, {major_mm:g} mm "
                              f"apart as given: {mm_per_px:.4f} mm/px")


def valid_spacing(mm_per_px: float) -> bool:
    """The image area's own plausibility check (imported late: image_area may use this module)."""
    from sonoguide.pipeline.image_area import valid_spacing as plausible

    return plausible(mm_per_px)


def no_scale(reason: str) -> DepthScale:
    return DepthScale(mm_per_px=None, confidence=0.0, reason=reason)


# --- marks ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Marks:
    """Candidate tick marks of one strip, in screen coordinates."""

    y: np.ndarray  # brightness-weighted centre (sub-pixel)
    left: np.ndarray  # first and last column (inclusive)
    right: np.ndarray
    length: np.ndarray  # horizontal extent, px
    thickness: np.ndarray  # vertical extent (of an even bar of its weight's spread), px
    mass: np.ndarray  # brightness summed over the mark: its length x thickness x brightness,
    #   which resampling to another screen size keeps (its peak, thickness or length it does not:
    #   a dot shrunk to a pixel or two is told from a bigger one by its mass)
    peak: np.ndarray  # its brightest pixel over the surround: ticks of both levels are drawn
    #   in one colour, a compressed capture's ringing beside them is faint

    def take(self, idx: np.ndarray) -> _Marks:
        return _Marks(*(a[idx] for a in (self.y, self.left, self.right, self.length,
                                          self.thickness, self.mass, self.peak)))


def _brightness(screen: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    """The strip as grey levels (luminance: the channel a JPEG or MJPG capture keeps sharp;
    a coloured ruler's edges smear by a pixel or two in the colour channels)."""
    part = screen[y0:y1, x0:x1]
    if part.ndim == 3 and part.shape[2] == 1:
        part = part[:, :, 0]
    if part.ndim == 2:
        return np.ascontiguousarray(part)
    return cv2.cvtColor(np.ascontiguousarray(part[:, :, :3]), cv2.COLOR_RGB2GRAY)


def _unbridged(mask: np.ndarray, tophat: np.ndarray, spines: np.ndarray, tall: int,
               max_w: int) -> tuple[int, np.ndarray, np.ndarray]:
    """The mask's connected components (count, labels, stats), ticks a spine joins taken
    apart: a compressed capture's spine varies in brightness along it and the top-hat leaves
    some of it, joining the ticks on it into one tall blob. Such a blob's light rows (under a
    quarter of its heaviest row's weight) between heavy ones, lit only on the spine, are its
    bridge: cut there."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if spines.size == 0:
        return count, labels, stats
    on_spine = np.zeros(mask.shape[1], bool)
    for x in spines:
        on_spine[max(0, x - 1):x + 2] = True
    left, top, width, height = (stats[:, i] for i in range(4))
    across = np.concatenate(([0], np.cumsum(on_spine)))
    touch = across[left + width] > across[left]
    cut = False
    for i in np.flatnonzero((height > width + 1) & (height < tall - 1) & (width <= max_w)
                            & touch):
        rows, cols = slice(top[i], top[i] + height[i]), slice(left[i], left[i] + width[i])
        spine = on_spine[cols]
        own = labels[rows, cols] == i
        weight = np.where(own, tophat[rows, cols], 0).sum(1, dtype=np.int64)
        light = 4 * weight < weight.max()
        heavy = np.flatnonzero(~light)
        light[:heavy[0]] = light[heavy[-1] + 1:] = False  # only between heavy rows
        if not light.any() or own[light][:, ~spine].any():
            continue
        mask[rows, cols][light[:, None] & own] = 0
        cut = True
    if cut:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return count, labels, stats


def _marks(strip: np.ndarray, opened: np.ndarray, x0: int, y0: int, tall: int, max_w: int,
           spines: np.ndarray) -> tuple[_Marks, np.ndarray]:
    """The marks in this strip (its top-left at x0, y0 on the screen): less than `tall` px
    tall, at most max_w px long; and the integral image of its marks mask. opened: the strip
    opened with a `tall` px vertical line (what is left of its tall things); spines: the x of
    the vertical lines in it (_spines)."""
    tophat = cv2.subtract(strip, opened)  # the white top-hat: the short bright things
    mask = cv2.threshold(tophat, MARK_LEVEL - 1, 1, cv2.THRESH_BINARY)[1]
    count, labels, stats = _unbridged(mask, tophat, spines - x0, tall, max_w)
    left, top, width, height, area = (stats[:, i] for i in range(5))
    # a mark cut by the strip's side has lost its length: which level it is cannot be told
    keep = ((height < tall - 1) & (width <= max_w) & (area >= 2) & (left > 0)
            & (left + width < mask.shape[1]))
    keep[0] = False  # the background
    # a resampled dot gains a faint row above and below: its shape is that of its core, the
    # rows at least half as bright as its brightest (a crisp glyph has no such halo)
    core = height.copy()
    for i in np.flatnonzero(keep & (height > width + 1) & (height <= width + 3)):
        box = (slice(top[i], top[i] + height[i]), slice(left[i], left[i] + width[i]))
        rows = np.where(labels[box] == i, tophat[box], 0).max(1)
        lit = np.flatnonzero(2 * rows.astype(np.int64) >= int(rows.max()))
        core[i] = lit[-1] - lit[0] + 1
    # ticks are flat, dots round; a glyph of a depth label is taller than wide, a word of
    # text both tall and wide
    thin = max(4, tall * 3 // 5)  # the thickest tick: 3 px drawn, rescaled or compressed
    keep &= (core <= width + 1) & ((core <= thin) | (2 * width <= 3 * core))
    rows, cols = mask.shape
    q = QUIET_BAND
    r0, r1 = np.clip(top - q, 0, rows), np.clip(top + height + q, 0, rows)
    c0, c1 = np.clip(left - q, 0, cols), np.clip(left + width + q, 0, cols)
    # a tick is alone: the ring of QUIET_BAND px around it (and the rest of its box) is mostly
    # dark. "Dark" is relative to the mark's own brightness (its box's mean, near enough; over
    # its own pixels where it fills little of its box, as a "+" does): a compressed capture
    # rings beside bright ticks, and speckle grains or glyph strokes are surrounded by more of
    # the same
    bright = cv2.integral(tophat)
    b0, b1, b2, b3 = top, top + height, left, left + width
    box_area = np.maximum(width * height, 1)
    own_mean = ((bright[b1, b3] - bright[b0, b3] - bright[b1, b2] + bright[b0, b2])
                / np.where(2 * area < box_area, np.maximum(area, 1), box_area))
    level_of = np.clip(np.searchsorted(QUIET_LEVELS, QUIET_SHARE * own_mean, side="right") - 1,
                       0, len(QUIET_LEVELS) - 1)
    ring_area = np.maximum((r1 - r0) * (c1 - c0) - area, 1)
    quiet = np.zeros(count, bool)
    for i, level in enumerate(QUIET_LEVELS):
        which = np.flatnonzero(keep & (level_of == i))
        if which.size == 0:
            continue
        lit = cv2.integral(cv2.threshold(tophat, level - 1, 1, cv2.THRESH_BINARY)[1])
        a, b, c, d = r0[which], r1[which], c0[which], c1[which]
        inside = lit[b, d] - lit[a, d] - lit[b, c] + lit[a, c]
        # the mark's own pixels are all above MARK_LEVEL >= any quiet level: subtract them
        quiet[which] = (inside - area[which]) <= QUIET_MAX * ring_area[which]
    idx = np.flatnonzero(keep & quiet)
    # brightness-weighted centre rows: sub-pixel, and a 3-px tick is centred on its middle row
    # ... and thickness: that of an even bar with the same spread of weight over its rows (a
    # compressed capture's faint ringing above and below a tick adds little to it)
    y = np.empty(idx.size)
    mass = np.empty(idx.size)
    thickness = np.empty(idx.size)
    peak = np.empty(idx.size)
    for n, i in enumerate(idx):
        box = (slice(top[i], top[i] + height[i]), slice(left[i], left[i] + width[i]))
        own = np.where(labels[box] == i, tophat[box], 0).astype(np.float64)
        peak[n] = own.max()
        w = own.sum(1)
        mass[n] = w.sum()
        centre = float(w @ np.arange(height[i])) / max(mass[n], 1e-6)
        y[n] = top[i] + centre + y0
        spread = float(w @ (np.arange(height[i]) - centre) ** 2) / max(mass[n], 1e-6)
        thickness[n] = max(1.0, math.sqrt(12.0 * spread))
    lo = (left[idx] + x0).astype(np.float64)
    w = width[idx].astype(np.float64)
    return (_joined(_Marks(y, lo, lo + w - 1, w, thickness, mass, peak), strip, x0, y0),
            cv2.integral(mask))


def _joined(marks: _Marks, strip: np.ndarray, x0: int, y0: int) -> _Marks:
    """Ticks cut in two by the ruler's spine (the top-hat takes the tall spine out, and with
    it the tick's pixels on it) made whole again: two marks on one row, a spine's width
    apart, the spine still there between them in the strip (not a speckle grain or glyph
    beside a tick)."""
    n = marks.y.size
    if n < 2:
        return marks
    gap = marks.left[None, :] - marks.right[:, None] - 1  # from mark i's end to mark j's start
    pair = ((gap >= 1) & (gap <= SPINE_GAP) & (np.abs(marks.y[:, None] - marks.y[None, :]) <= 1)
            & (np.abs(marks.thickness[:, None] - marks.thickness[None, :]) <= 1))
    i, j = np.nonzero(pair)
    if i.size == 0:
        return marks
    dark = float(np.median(strip))
    keep = np.ones(n, bool)
    joined = np.zeros(n, bool)
    y, left, right = marks.y.copy(), marks.left.copy(), marks.right.copy()
    thickness, mass, peak = marks.thickness.copy(), marks.mass.copy(), marks.peak.copy()
    for a, b in zip(i, j, strict=True):
        if joined[a] or joined[b]:
            continue  # one join per piece: a third piece in a row is no split tick
        row = strip[int(np.clip(round((y[a] + y[b]) / 2) - y0, 0, strip.shape[0] - 1))]
        pieces = [row[int(lo) - x0:int(hi) - x0 + 1].max() for lo, hi in
                  ((left[a], right[a]), (left[b], right[b]))]
        spine = row[int(right[a]) - x0 + 1:int(left[b]) - x0].min()
        if spine - dark < 0.5 * (min(pieces) - dark):
            continue  # dark between them: two things side by side, not one tick and a spine
        total = mass[a] + mass[b]
        y[a] = (y[a] * mass[a] + y[b] * mass[b]) / total
        right[a], mass[a] = right[b], total
        thickness[a] = max(thickness[a], thickness[b])
        peak[a] = max(peak[a], peak[b])
        keep[b] = False
        joined[a] = joined[b] = True
    return _Marks(y[keep], left[keep], right[keep], (right - left + 1)[keep], thickness[keep],
                  mass[keep], peak[keep])


# --- lattice -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Lattice:
    members: np.ndarray  # indices into the group's marks, by slot
    slots: np.ndarray  # their slot numbers, from 0
    spacing: float  # px per slot (least-squares slope)
    origin: float  # y of slot 0
    rms: float
    occupancy: float


def _tolerance(period: float) -> float:
    """px a mark may lie off its lattice slot: whole-pixel drawing and resampling blur, but
    a small part of a dense period."""
    return min(max(0.2 * period, 1.0), 3.0)


def _on_lattice(y: np.ndarray, origin: float, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the marks within tolerance of origin + k * period (the nearest per slot),
    restricted to the longest run of slots with no two empty slots in a row; and their slots."""
    u = (y - origin) / period
    k = np.rint(u)
    err = np.abs(u - k) * period
    near = np.flatnonzero(err <= _tolerance(period))
    if near.size == 0:
        return near, near
    # one mark per slot: the closest
    order = near[np.lexsort((err[near], k[near]))]
    first = np.ones(order.size, bool)
    first[1:] = k[order][1:] != k[order][:-1]
    chosen = order[first]
    slots = k[chosen].astype(np.int64)
    breaks = np.flatnonzero(np.diff(slots) > 2) + 1
    runs = np.split(np.arange(slots.size), breaks)
    best = max(runs, key=len)
    return chosen[best], slots[best] - slots[best[0]]


def _fit(y: np.ndarray, members: np.ndarray, slots: np.ndarray) -> tuple[float, float, float]:
    """Least-squares y = origin + spacing * slot: (spacing, origin, rms residual)."""
    k = slots.astype(np.float64)
    v = y[members]
    dk = k - k.mean()  # the closed form (np.polyfit costs more than the lattice search)
    spacing = float(dk @ (v - v.mean()) / max(float(dk @ dk), 1e-12))
    origin = float(v.mean() - spacing * k.mean())
    rms = float(np.sqrt(np.mean((v - (origin + spacing * k)) ** 2)))
    return spacing, origin, rms


def _lattice(y: np.ndarray, max_period: float) -> _Lattice | None:
    """The evenly spaced run among these marks (y sorted), if there is one."""
    if y.size < MIN_MARKS:
        return None
    gaps = np.diff(y)
    gaps = gaps[(gaps >= MIN_PERIOD_PX) & (gaps <= max_period)]
    if gaps.size < MIN_MARKS - 1:
        return None
    # period candidates: the gaps that other gaps agree with most. Agreement is loose (a
    # rescaled screen moves whole-pixel ticks by up to half a scanner pixel each), the mean of
    # the agreeing gaps is a first estimate that the fit below makes exact
    near = np.abs(gaps[:, None] - gaps[None, :]) <= np.maximum(1.0, GAP_AGREE * gaps)[:, None]
    support = near.sum(1)
    best: _Lattice | None = None
    tried: list[float] = []
    for i in np.argsort(-support, kind="stable")[:6]:
        period = float(np.mean(gaps[near[i]]))
        if any(abs(period - t) <= _tolerance(t) for t in tried):
            continue
        tried.append(period)
        # phase: the position modulo the period that most marks share
        phase = np.mod(y, period)
        circ = np.abs(phase[:, None] - phase[None, :])
        circ = np.minimum(circ, period - circ)
        tol = _tolerance(period)
        origin = float(y[np.argmax((circ <= tol).sum(1))])
        members, slots = _on_lattice(y, origin, period)
        if members.size < MIN_MARKS:
            continue
        for _ in range(6):  # refine: fit, take the marks on the fitted lattice, until settled
            spacing, origin, _ = _fit(y, members, slots)
            before = members
            members, slots = _on_lattice(y, origin, spacing)
            if members.size < MIN_MARKS or np.array_equal(members, before):
                break
        if members.size < MIN_MARKS:
            continue
        spacing, origin, rms = _fit(y, members, slots)
        occupancy = members.size / (int(slots[-1]) + 1)
        found = _Lattice(members, slots, spacing, origin, rms, occupancy)
        # a few marks must fill every slot: three of four slots is easy to hit by chance
        if occupancy < (MIN_OCCUPANCY if members.size >= 5 else 1.0):
            continue
        if best is None or (members.size, -rms) > (best.members.size, -best.rms):
            best = found
    return best


# --- rulers --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ruler:
    ticks: np.ndarray  # y of every tick on the lattice
    majors: np.ndarray  # y of the major ticks
    minor_spacing: float  # px per lattice slot
    per_major: int  # lattice slots per major tick (1: one level)
    rms: float
    occupancy: float
    column_x: int
    span: float  # px from the first to the last tick
    at_top: bool  # a major tick at the image area's top edge: the ruler's 0, the skin line
    far_x: float = 0.0  # the ticks' end away from the image (where cm labels are written)
    away: int = 1  # +1: the image lies left of the ruler (labels to its right), -1: right

    @property
    def major_spacing(self) -> float:
        return self.minor_spacing * self.per_major

    @property
    def confidence(self) -> float:
        return float(self.occupancy * min(1.0, self.ticks.size / 8)
                     * max(0.0, 1.0 - self.rms / (2 * MAX_RMS_PX)))


def _alike(marks: _Marks, border: np.ndarray | None = None, inner_min: int = 2) -> bool:
    """Marks of one tick level are drawn alike: one length, one thickness, one brightness.
    Speckle grains and glyph strokes that happen to line up are not. border: the marks on the
    image area's top or bottom edge, whose brightness and thickness may differ as long as the
    others agree (one drawn on that edge is measured against the brighter side of it, and
    partly lost there), at least inner_min of them."""
    def share_near(values: np.ndarray, tol: float) -> float:
        return float(np.mean(np.abs(values - np.median(values)) <= tol))

    # loose enough for a JPEG capture (colour smeared by a pixel) and resampling
    length = float(np.median(marks.length))
    inner = marks
    if border is not None and border.any() and (~border).sum() >= inner_min:
        inner = marks.take(np.flatnonzero(~border))
    return (share_near(marks.length, max(3.0, 0.25 * length)) >= 0.8
            and share_near(inner.thickness, 2.0) >= 0.8
            and share_near(inner.mass, MASS_AGREE * float(np.median(inner.mass))) >= 0.8)


def _levels(marks: _Marks, slots: np.ndarray, border: np.ndarray
            ) -> tuple[int, np.ndarray] | None:
    """(slots per major, which marks are major) when bigger marks (longer, thicker or brighter:
    more mass) sit on every 2nd, 5th or 10th slot; None when the marks have one level (or no
    clean two-level pattern). border: the marks on the image area's top or bottom edge."""
    # split by mass, else by length: a major tick on the image's top or bottom border has as
    # little mass as a minor one (measured against the brighter side), but its length
    splits: list[tuple[np.ndarray, float]] = []
    for measure in (marks.mass, marks.length):
        values = np.unique(measure)[::-1]  # the biggest first: (hi, lo) neighbours
        splits += [(measure, float(hi)) for hi, lo in zip(values[:-1], values[1:], strict=True)
                   if hi >= SPLIT_RATIO * lo]
    for measure, hi in splits:
        long = measure >= hi
        if long.all() or not long.any():
            continue
        # the two levels differ clearly in mass (dots, thicker majors) or in length
        mass_ratio = np.median(marks.mass[long]) / np.median(marks.mass[~long])
        long_len, short_len = np.median(marks.length[long]), np.median(marks.length[~long])
        if mass_ratio < LEVEL_RATIO and (long_len < LEVEL_RATIO * short_len
                                         or long_len - short_len < 2):
            continue
        k = slots[long]
        if k.size < 2:
            continue
        step = int(np.median(np.diff(k)))
        if step not in MINOR_RATIOS:
            continue
        phase = np.bincount(k % step, minlength=step)
        on = int(phase.argmax())
        if k.size - phase[on] > max(1, 0.1 * k.size):  # long marks off the majors' lattice
            continue
        # the majors run along the whole ruler: most of its major slots hold one
        k_on = k[k % step == on]
        major_slots = (int(slots[-1]) - on) // step + 1
        if (k_on.size < MIN_MAJORS or slots.size < MIN_TWO_LEVEL
                or k_on.size / major_slots < MIN_OCCUPANCY):
            continue
        major = long & (slots % step == on)
        # minors are drawn in the majors' colour: not a compressed capture's faint ringing;
        # and majors are marks, not specks (speckle grains at the image's edge line up too)
        if (np.median(marks.peak[~long]) < PEAK_SHARE * np.median(marks.peak[major])
                or np.median(marks.length[major]) < MIN_MAJOR_PX):
            continue
        # (the 0 and 2 cm of a 2 cm deep ruler on the edges: the 1 cm alone to compare)
        if not (_alike(marks.take(np.flatnonzero(major)), border[major], inner_min=1)
                and _alike(marks.take(np.flatnonzero(~long)), border[~long])):
            continue
        return step, major
    return None


def _spines(opened: np.ndarray, x0: int) -> np.ndarray:
    """x of the vertical lines in this strip (a ruler's spine, on the screen): columns that
    stay bright when opened with a tall line, narrow (dark a little to either side), along a
    good part of the strip's height."""
    d = SPINE_GAP + 1
    if opened.shape[1] <= 2 * d:
        return np.zeros(0, np.int64)
    o = opened.astype(np.int16)
    line = o[:, d:-d] - np.maximum(o[:, :-2 * d], o[:, 2 * d:]) >= MARK_LEVEL
    columns = np.flatnonzero(line.mean(0) >= MIN_SPAN)
    # one x per line (a rescaled spine is a few columns wide): the middle of each run
    runs = np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1) if columns.size else []
    return np.array([int(r[r.size // 2]) for r in runs], np.int64) + d + x0


def _columns(marks: _Marks, spines: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Groups of marks that may be one ruler's, those sharing a column: (their indices, each
    mark's x on that column). Ticks grow from a common base line (their left or right ends
    agree), centred ones and dots share their centre; and all of them cross one column (the
    base line, or the spine of centred ticks: a minor tick the spine cut in two may have lost
    its half beyond it, and with it its centre)."""
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    for anchor in (marks.left, marks.right, (marks.left + marks.right) / 2):
        # peaks of the histogram: columns that several marks start, end or centre on; the
        # brightest first (ticks outweigh speckle grains that line up in the image's edge)
        base = math.floor(float(anchor.min()))
        bins = np.rint(anchor - base).astype(np.int64)
        window = np.convolve(np.bincount(bins), np.ones(3, np.int64), mode="same")
        weight = np.convolve(np.bincount(bins, weights=marks.mass), np.ones(3), mode="same")
        peaks = np.flatnonzero((window >= MIN_MARKS) & (
            window >= np.maximum(np.roll(window, 1), np.roll(window, -1))))
        for peak in peaks[np.argsort(-weight[peaks], kind="stable")][:MAX_GROUPS]:
            groups.append((np.flatnonzero(np.abs(anchor - (peak + base)) <= ANCHOR_TOL), anchor))
    # marks crossing a spine (or reaching to it): only where one is drawn, as lines of text
    # cross any column too
    for x in spines[:MAX_GROUPS]:
        groups.append((np.flatnonzero((marks.left - STAB_REACH <= x)
                                      & (marks.right + STAB_REACH >= x)),
                       np.full(marks.y.size, float(x))))
    return groups


def _crowded(ticks: _Marks, lit: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Which of these marks have something short and bright right beside an end, on their
    rows (lit: the integral image of the strip's marks mask; x0, y0: its top-left)."""
    rows, cols = lit.shape[0] - 1, lit.shape[1] - 1
    half = ticks.thickness / 2
    r0 = np.clip(np.floor(ticks.y - half).astype(np.int64) - y0, 0, rows)
    r1 = np.clip(np.ceil(ticks.y + half).astype(np.int64) - y0 + 1, 0, rows)
    crowded = np.zeros(ticks.y.size, bool)
    for c0, c1 in ((ticks.right + 1, ticks.right + 1 + NEXT_GLYPH_PX),
                   (ticks.left - NEXT_GLYPH_PX, ticks.left)):
        a = np.clip(c0.astype(np.int64) - x0, 0, cols)
        b = np.clip(c1.astype(np.int64) - x0, 0, cols)
        on = lit[r1, b] - lit[r0, b] - lit[r1, a] + lit[r0, a]
        crowded |= (on >= 2) & (6 * on > (r1 - r0) * (b - a))
    return crowded


def _rulers(marks: _Marks, roi: Roi, spines: np.ndarray, lit: np.ndarray, x0: int, y0: int
            ) -> list[_Ruler]:
    """Every candidate ruler among a strip's marks (lit: the integral image of the strip's
    marks mask; x0, y0: its top-left on the screen)."""
    found: list[_Ruler] = []
    if marks.y.size < MIN_MARKS:
        return found
    seen: set[tuple[int, ...]] = set()
    for near, anchor in _columns(marks, spines):
        near = near[np.argsort(marks.y[near], kind="stable")]
        key = tuple(near.tolist())
        if near.size < MIN_MARKS or key in seen:
            continue
        seen.add(key)
        if marks.y[near[-1]] - marks.y[near[0]] < MIN_SPAN * roi.h:
            continue  # too short for a depth ruler, however even
        lattice = _lattice(marks.y[near], max_period=roi.h / 1.5)
        if lattice is None or lattice.rms > MAX_RMS_PX:
            continue
        members = near[lattice.members]
        ticks = marks.take(members)
        # a ruler's column holds its ticks and little else between its ends: many other
        # marks there (in its column, or across the ticks' extent whatever their ends) mean
        # these few lined up by chance: speckle, a crowded column, the glyphs of evenly spaced
        # lines of text. Not counted: marks much fainter than the ticks (a compressed
        # capture's ringing beside them)
        stray = max(1, STRAY_SHARE * members.size) + members.size - 2
        between = ((marks.y > ticks.y[0]) & (marks.y < ticks.y[-1])
                   & (marks.mass >= STRAY_MASS * np.percentile(ticks.mass, 25)))
        across = (marks.right >= ticks.left.min()) & (marks.left <= ticks.right.max())
        if between[near].sum() > stray or (between & across).sum() > stray:
            continue
        # ... and a tick stands alone on its row: a glyph has the next letter of its word
        # right beside it (a tick's label is written a gap away, its spine is tall)
        if _crowded(ticks, lit, x0, y0).sum() > STRAY_SHARE * members.size:
            continue
        # a short ruler must still run the image's height, as a depth ruler does
        if members.size < MIN_TWO_LEVEL and ticks.y[-1] - ticks.y[0] < SHORT_SPAN * roi.h:
            continue
        border = np.minimum(np.abs(ticks.y - roi.y), np.abs(ticks.y - roi.y - roi.h)) <= BORDER_PX
        levels = _levels(ticks, lattice.slots, border)
        if levels is None:
            # (a few marks all alike: all of them, speckle grains can line up at the edges)
            if not _alike(ticks, border if members.size >= MIN_TWO_LEVEL else None):
                continue
            per_major, major = 1, np.ones(members.size, bool)
        else:
            per_major, major = levels
        majors = ticks.y[major]
        spacing = lattice.spacing * per_major
        off = (roi.y - majors[0]) / spacing
        at_top = abs(off - round(off)) * spacing <= max(TOP_TOL_PX, 0.08 * spacing)
        column = int(round(float(np.median(anchor[members]))))
        away = 1 if column > roi.x + roi.w / 2 else -1
        far_x = float(np.median(ticks.right if away > 0 else ticks.left))
        found.append(_Ruler(ticks.y, majors, lattice.spacing, per_major, lattice.rms,
                            lattice.occupancy, column, float(ticks.y[-1] - ticks.y[0]),
                            bool(at_top), far_x, away))
    return found


# --- cm labels -----------------------------------------------------------------------------

LABEL_BAND_SCREEN = 18  # px beside the ticks' far end searched for labels: 1/18 of the screen
#   height (at least 32): the gap and a two-digit number at the scanner's text size
LABEL_LEVEL = 0.35  # a label's strokes are this share of the ticks' brightness above the dark
LABEL_MIN_PX = 4  # a digit is at least this tall (a small screen's small font)
LABEL_MAX_H = 0.7  # ... and shorter than this share of the tick spacing (it sits beside one)
LABEL_MAX_W = 3.2  # a number of up to three digits: at most this many times as wide as tall
LABEL_CENTRE = 0.25  # its box's middle is this share of its height (at least 1.5 px) off the tick
LABEL_AGREE = 0.25  # labels have one height (and near edge) to within this share of it
LABEL_SHARE = 0.8  # ticks with a label beside them, of all the ruler's ticks
LABEL_FLOOR = 12  # grey levels a label's strokes stand above the band at least ...
LABEL_NOISE = 8  # ... and this many times the band's median deviation (its noise)
LABEL_SPECK = 4  # px: smaller blobs are no glyph (a digit of the smallest font has more)


def _labelled(screen: np.ndarray, ruler: _Ruler) -> np.ndarray | None:
    """Which of this one-level ruler's ticks have a text-like blob (a number) beside them, on
    the side away from the image, centred on the tick's row; None where the band beside the
    ruler holds other things too (a text column, a colour bar): no evidence either way."""
    height, width = screen.shape[:2]
    s = ruler.minor_spacing
    band = max(32, height // LABEL_BAND_SCREEN)
    start = int(round(ruler.far_x)) + ruler.away * 2  # past the tick (its blur, a spine)
    x0, x1 = (start, start + band) if ruler.away > 0 else (start - band + 1, start + 1)
    x0, x1 = max(0, x0), min(width, x1)
    y0 = max(0, int(math.floor(ruler.ticks[0] - s / 2)))
    y1 = min(height, int(math.ceil(ruler.ticks[-1] + s / 2)) + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    c0, c1 = sorted((ruler.column_x, int(round(ruler.far_x))))
    c0, c1 = max(0, c0), min(width, c1 + 1)
    xa, xb = min(x0, c0), max(x1, c1)
    grey = _brightness(screen, xa, xb, y0, y1)
    part = grey[:, x0 - xa:x1 - xa]
    dark = float(np.median(part))
    # the ticks' own brightness: the brightest of each tick's rows, between column and far end
    rows = np.clip(np.rint(ruler.ticks).astype(np.int64) - y0, 0, y1 - y0 - 1)
    tick_level = float(np.median(grey[rows, c0 - xa:max(c1 - xa, c0 - xa + 1)].max(1)))
    # above the band's own noise (a blurred capture's thin strokes stand less than MARK_LEVEL
    # above a quiet UI), and a share of the ticks' brightness
    noise = float(np.median(np.abs(part.astype(np.float64) - dark)))
    floor = float(np.clip(LABEL_NOISE * noise, LABEL_FLOOR, MARK_LEVEL))
    if tick_level - dark < floor:
        return None
    level = dark + max(floor, LABEL_LEVEL * (tick_level - dark))
    mask = (part > level).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    left, top, w, h, area = (stats[1:, i].astype(np.float64) for i in range(5))
    top += y0
    near = left if ruler.away > 0 else (x1 - x0) - (left + w)  # from the band's ruler side
    middle = top + h / 2
    found = np.zeros(ruler.ticks.size, bool)
    boxes = np.full((ruler.ticks.size, 3), np.nan)  # height, near edge, far edge
    # what touches the band's ruler side is the ticks' own (their blur, a spine), not a label
    # (written a gap away); specks of a few px are a compressed capture's ringing
    no_glyph = (near <= 0) | (area < LABEL_SPECK)
    used = no_glyph.copy()
    for i, y in enumerate(ruler.ticks):
        # a number: the blob nearest the ruler centred on the tick's row, and the glyphs that
        # follow it closely on the same rows
        seed = np.flatnonzero((np.abs(middle - y) <= np.maximum(2.0, LABEL_CENTRE * h))
                              & ~no_glyph)
        if seed.size == 0:
            continue
        first = seed[np.argmin(near[seed])]
        rows = (top + h > top[first] - 1) & (top < top[first] + h[first] + 1)
        comps = np.flatnonzero(rows & (near >= near[first]) & (area >= LABEL_SPECK))
        comps = comps[np.argsort(near[comps], kind="stable")]
        group = [first]
        end = near[first] + w[first]
        for c in comps:
            if c == first:
                continue
            if near[c] - end > max(2.0, 0.6 * h[first]):
                break
            group.append(c)
            end = max(end, near[c] + w[c])
        g = np.array(group)
        used[g] = True
        b0, b1 = top[g].min(), (top[g] + h[g]).max()
        bh, bw = b1 - b0, end - near[g].min()
        if (b0 < y - s / 2 or b1 > y + s / 2 or bh < LABEL_MIN_PX or bh > LABEL_MAX_H * s
                or bw > LABEL_MAX_W * bh or area[g].sum() < 6
                or abs((b0 + b1) / 2 - y) > max(1.5, LABEL_CENTRE * bh)):
            continue
        found[i] = True
        boxes[i] = bh, near[g].min(), end
    # anything else beside the ruler, between its ends: a text column, a colour bar
    others = ~used & (middle > ruler.ticks[0]) & (middle < ruler.ticks[-1])
    if others.sum() > max(1, 0.1 * ruler.ticks.size):
        return None  # more than the labels (and a marker or two) beside the ruler
    if found.sum() >= 2:
        bh, lo, hi = boxes[found].T
        size = float(np.median(bh))
        tol = max(2.0, LABEL_AGREE * size)
        one_size = np.abs(bh - size) <= tol
        # left-aligned, right-aligned or centred numbers
        aligned = np.zeros(bh.size, bool)
        for edge in (lo, hi, (lo + hi) / 2):
            aligned |= np.abs(edge - np.median(edge)) <= tol
        found[np.flatnonzero(found)[~(one_size & aligned)]] = False
    return found


def _read_labels(screen: np.ndarray, ruler: _Ruler) -> tuple[bool, str]:
    """(the ticks are cm marks, what the labels say): a label beside every tick (bar one or
    two) means each tick is a labelled centimetre. Labels on every 2nd tick only are the
    centimetres of 5 mm ticks, but equally 2 cm labels on 1 cm ticks: not decided here."""
    labelled = _labelled(screen, ruler)
    if labelled is None or labelled.sum() < MIN_MARKS:
        return False, ""
    if labelled.mean() >= LABEL_SHARE:
        return True, "each labelled (cm)"
    slots = np.rint((ruler.ticks - ruler.ticks[0]) / ruler.minor_spacing).astype(np.int64)
    on = slots[labelled] % 2
    if on.min() == on.max() and labelled.sum() >= LABEL_SHARE * np.sum(slots % 2 == on[0]):
        return False, "labels beside every 2nd tick (so perhaps 5 mm ticks)"
    return False, ""


def _depth_ok(mm_per_px: float, roi: Roi) -> bool:
    depth = mm_per_px * roi.h
    return valid_spacing(mm_per_px) and DEPTH_RANGE_MM[0] <= depth <= DEPTH_RANGE_MM[1]


def _agree(a: float, b: float) -> bool:
    return abs(a - b) <= 0.02 * max(a, b)


def _candidates(screen: np.ndarray, roi: Roi) -> list[_Ruler]:
    """Every candidate ruler in the strips beside the image area (and just inside its edges)
    that runs along a good part of it."""
    height, width = screen.shape[:2]
    pad = max(8, roi.h // 20)  # a detected image area may stop short of the ruler's ends
    y0, y1 = max(0, roi.y - pad), min(height, roi.y + roi.h + pad)
    outside = int(np.clip(max(0.15 * roi.w, 0.06 * width), 48, 240))
    inside = int(np.clip(0.06 * roi.w, 8, 80))
    tall = max(15, height // TOPHAT_SCREEN)  # thick ticks on a large (or upscaled) screen
    max_w = max(48, width // 20)
    strips = ((max(0, roi.x - outside), min(width, roi.x + inside)),
              (max(0, roi.x + roi.w - inside), min(width, roi.x + roi.w + outside)))
    rulers: list[_Ruler] = []
    for x0, x1 in strips:
        if x1 - x0 < 3:
            continue
        strip = _brightness(screen, x0, x1, y0, y1)
        opened = cv2.morphologyEx(strip, cv2.MORPH_OPEN, np.ones((tall, 1), np.uint8))
        spines = _spines(opened, x0)
        marks, lit = _marks(strip, opened, x0, y0, tall, max_w, spines)
        rulers += [r for r in _rulers(marks, roi, spines, lit, x0, y0)
                   if r.span >= MIN_SPAN * roi.h]
    return rulers


def find_depth_scale(screen: np.ndarray, roi: Roi, *, major_mm: float | None = None
                     ) -> DepthScale:
    """mm per pixel from the depth ruler beside the image area `roi` of this screen (uint8,
    grey or RGB, the whole captured screen), or no scale and why.

    major_mm: the distance between major ticks when the user has said it (remembered per
    source); otherwise 10 mm is assumed where the ruler shows which ticks are major (two tick
    levels) or a cm label beside every tick shows they are centimetres, and asked for
    (needs_interval) where it does not.
    """
    if (not isinstance(screen, np.ndarray) or screen.dtype != np.uint8 or screen.ndim not in (2, 3)
            or (screen.ndim == 3 and screen.shape[2] not in (1, 3, 4))):
        raise ValueError("find_depth_scale needs a uint8 (H, W) grey or (H, W, 3) RGB screen")
    if major_mm is not None and not (math.isfinite(major_mm) and major_mm > 0):
        raise ValueError(f"major_mm must be a positive number of mm, got {major_mm}")
    height, width = screen.shape[:2]
    roi = roi.clamp(width, height)
    if roi.h < 32:
        return no_scale("the image area is too small to hold a depth ruler")
    rulers = _candidates(screen, roi)
    if not rulers:
        return no_scale("no evenly spaced tick marks beside the image")
    # ticks all alike are only taken for a depth ruler where one of them is at the image's top
    # edge (its 0, the skin line): evenly spaced TGC nodes or lines of menu text rarely are.
    # Two tick levels in a 2/5/10 pattern are evidence enough (the image area may have been
    # drawn or detected a little taller than the image)
    starting = [r for r in rulers if r.at_top or r.per_major > 1]
    if not starting:
        return no_scale(f"evenly spaced marks beside the image (every "
                        f"{rulers[0].major_spacing:.1f} px), but none at the image's top edge, "
                        "where a depth ruler starts")
    rulers = starting
    # a ruler with two tick levels says which ticks are centimetres; then one starting at the
    # top; then the most ticks
    rulers.sort(key=lambda r: (r.per_major > 1, r.at_top, r.ticks.size * r.occupancy, -r.rms),
                reverse=True)
    best = rulers[0]
    # another ruler that says something else: which one is the depth ruler? One of the same
    # kind about as strong, or (for a two-level ruler off the top edge) one starting there
    for other in rulers[1:]:
        rival = ((other.per_major > 1) == (best.per_major > 1)
                 and other.ticks.size * other.occupancy >= 0.8 * best.ticks.size * best.occupancy)
        rival |= other.at_top and not best.at_top
        if (rival and not _agree(other.major_spacing, best.major_spacing)
                and not _agree(other.minor_spacing, best.minor_spacing)):
            return no_scale(f"two different rows of tick marks beside the image (every "
                            f"{best.major_spacing:.1f} px and every {other.major_spacing:.1f} "
                            "px): cannot tell which is the depth ruler")
    levels = best.per_major > 1
    # one level: a number beside every tick says they are the labelled centimetres. The
    # numbers' own strokes may line up as a second row of marks at the same spacing: the
    # labels are beside the ticks of whichever row of that spacing has them
    cm_labels, labels_say = False, ""
    if not levels and major_mm is None:
        for ruler in [best] + [r for r in rulers[1:] if r.per_major == 1 and r.at_top
                               and _agree(r.major_spacing, best.major_spacing)]:
            cm_labels, said = _read_labels(screen, ruler)
            labels_say = labels_say or said
            if cm_labels:
                best, labels_say = ruler, said
                break
    interval = major_mm if major_mm is not None else DEFAULT_MAJOR_MM
    mm_per_px = interval / best.major_spacing
    ticks = f"ticks every {best.major_spacing:.1f} px"
    if levels:
        ticks += f" (major) with {best.per_major - 1} minor between"
    # one level and no interval given: worth asking about if any usual interval fits
    intervals = (interval,) if levels or cm_labels or major_mm is not None else ASKABLE_MM
    if not any(_depth_ok(mm / best.major_spacing, roi) for mm in intervals):
        return no_scale(f"{ticks}, but {interval:g} mm apart they would make the image "
                        f"{mm_per_px * roi.h / 10:.1f} cm deep: not a plausible depth ruler")
    result = DepthScale(mm_per_px=mm_per_px, confidence=best.confidence, reason="",
                        ticks_px=tuple(float(v) for v in best.ticks),
                        major_ticks_px=tuple(float(v) for v in best.majors),
                        column_x=best.column_x, major_spacing_px=best.major_spacing,
                        minor_per_major=best.per_major - 1, major_mm=interval)
    if major_mm is not None:
        return replace(result, reason=f"{ticks}: {major_mm:g} mm per major tick as given, "
                                      f"{mm_per_px:.4f} mm/px")
    if levels:
        return replace(result, reason=f"{ticks}: {interval:g} mm per major tick assumed, "
                                      f"{mm_per_px:.4f} mm/px")
    if cm_labels:
        return replace(result, reason=f"{ticks}, {labels_say}: {interval:g} mm apart, "
                                      f"{mm_per_px:.4f} mm/px")
    labels_say = f"; {labels_say}" if labels_say else ""
    return replace(result, mm_per_px=None, needs_interval=True, major_mm=None,
                   reason=f"{ticks}, all alike: how many mm apart they are cannot be told "
                          f"(usually {DEFAULT_MAJOR_MM:g} mm{labels_say})")
