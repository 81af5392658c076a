"""Where the B-mode image is on the scanner screen, and how model coordinates map back to it.

A capture card delivers the whole scanner screen (menus, patient name, depth ruler). The ultrasound
image is the one large area that is grey (no colour) and speckled; where it is smooth it stays a
shade off the screen background, and deep down where the echo dies out it may sink to the
background's level, with only faint, sparse speckle left. So: the largest speckled area (after
a morphological opening has removed thin text, ruler ticks and icons; coloured panels are
rejected by their colour), grown over adjoining lines that are smooth or dark image or hold
faint echoes, until UI (colour, a flat grey panel, bright text or ticks) or a gap of plain
screen background stops it. Where only dark lines without UI lie between the image and the
frame edge, the image goes on to the last faint echo among them, and to the frame edge when
what is left is a thin margin: cutting dark image can hide an anechoic vessel, a little extra
black costs nothing.

Coordinate mapping between model input, ROI and full frame lives here and nowhere else.
The per-source ROI/spacing store and the ruler calibration live in calibration.py and are
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sonoguide.pipeline.calibration import (  # noqa: F401 (re-exported: one import for the ROI stage)
    RoiSetting,
    RoiStore,
    default_config_dir,
    spacing_from_two_points,
)
from sonoguide.pipeline.frames import Roi

STD_WINDOW = 5  # local standard deviation window (px, odd)
TEXTURE_STD = 2.0  # grey levels: speckle is above, flat screen areas are below
MAX_CHROMA = 24  # max-min over R,G,B above this is a coloured UI element, not B-mode
DARK_DELTA = (2, 25)  # flat pixels this much off the background still count (deep dark tissue)
FAINT_MAX = 64  # grey levels above the background: fainter may be a deep echo, brighter text
FAINT_FRACTION = 0.01  # faint echoes in this share of a line (or band of lines): deep image
RIM = 15  # px around bright marks whose faint pixels are anti-aliasing or JPEG ringing, not echo
MARGIN_FRACTION = 0.25  # an empty dark margin to the frame edge up to this x the image is kept
MIN_AREA_FRACTION = 0.02  # a smaller winner is not an image: fall back to the full frame
DETECT_SIDE = 640  # larger frames are searched at about this size; edges placed at full size


def _gray_and_grey_mask(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey image (uint8) and where the pixel has no colour (B-mode is achromatic)."""
    if image.ndim == 2:
        return np.ascontiguousarray(image), np.ones(image.shape, bool)
    rgb = np.ascontiguousarray(image[:, :, :3])
    r, g, b = cv2.split(rgb)  # cv2 per-channel ops are ~20x faster than numpy axis reductions
    chroma = cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), chroma <= MAX_CHROMA


def _local_std(gray: np.ndarray, window: int) -> np.ndarray:
    mean = cv2.blur(gray, (window, window))
    mean_sq = cv2.blur(gray * gray, (window, window))
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def _background_level(gray: np.ndarray, flat: np.ndarray) -> int:
    """The screen's background grey: the commonest value among flat pixels."""
    values = gray[flat]
    if values.size == 0:
        return 0
    return int(np.argmax(np.bincount(np.clip(values, 0, 255).astype(np.uint8).ravel(),
                                     minlength=256)))


@dataclass(frozen=True)
class _Cues:
    gray: np.ndarray  # uint8
    achromatic: np.ndarray  # bool
    background: int  # the screen's background grey
    # per pixel, uint8 0/1: achromatic; at least DARK_DELTA[0] off the background; dim (grey,
    # DARK_DELTA[0]..FAINT_MAX above the background, in a grain); a faint echo (dim and not on
    # the anti-aliased rim of a bright mark); bright (more than FAINT_MAX above the background:
    # text, ticks or a strong echo)
    flags: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]

    @classmethod
    def of(cls, gray: np.ndarray, achromatic: np.ndarray, background: int) -> _Cues:
        # 0/1 maps, written in place where they can be: fresh full-frame buffers cost page
        # faults that outweigh these cv2 calls
        def threshold(image: np.ndarray, level: int, kind: int,
                      dst: np.ndarray | None = None) -> np.ndarray:
            return cv2.threshold(image, level, 1, kind, dst=dst)[1]

        above, at_most = cv2.THRESH_BINARY, cv2.THRESH_BINARY_INV
        achromatic8 = achromatic.view(np.uint8)
        dim = threshold(gray, background + DARK_DELTA[0] - 1, above)
        off = cv2.bitwise_or(dim, threshold(gray, background - DARK_DELTA[0], at_most))
        # echoes come in speckle grains of a few pixels; lone noise pixels average away
        grain = threshold(cv2.blur(gray, (3, 3)), background, above)
        faint = threshold(gray, background + FAINT_MAX, at_most)
        for mask in (faint, grain, achromatic8):
            cv2.bitwise_and(dim, mask, dst=dim)
        bright = threshold(gray, background + FAINT_MAX, above, dst=grain)
        # the anti-aliased or compression-rung rim of a bright mark is no faint echo
        rim = cv2.dilate(bright, np.ones((RIM, RIM), np.uint8))
        cv2.bitwise_and(dim, threshold(rim, 0, at_most, dst=rim), dst=faint)
        return cls(gray, achromatic, background, (achromatic8, off, dim, faint, bright))


def _core_box(image: np.ndarray) -> tuple[tuple[int, int, int, int], int] | None:
    """(x, y, w, h) of the grey, non-background area with the most speckle, and the
    background grey; None when nothing image-sized is there."""
    height, width = image.shape[:2]
    gray8, achromatic = _gray_and_grey_mask(image)
    gray = gray8.astype(np.float32)
    std = _local_std(gray, STD_WINDOW)
    textured = (std > TEXTURE_STD).astype(np.uint8)
    # the std window reaches r px past every edge; erode so the mask ends where the image does
    textured = cv2.erode(textured, np.ones((STD_WINDOW, STD_WINDOW), np.uint8))
    textured &= achromatic.view(np.uint8)
    bg = _background_level(gray, (std <= TEXTURE_STD / 2) & achromatic)
    # candidate image pixels: grey and not screen background (smooth or dark tissue included);
    # the opening removes text, ruler ticks and icons: anything thinner than ~1/60 of the screen
    off = (np.abs(gray - bg) >= DARK_DELTA[0]) & achromatic
    k = max(5, (min(height, width) // 60) | 1)
    mask = cv2.morphologyEx(off.view(np.uint8) | textured, cv2.MORPH_OPEN,
                            cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return None
    # the image is the component with the most speckle; grey panels are flat
    speckle = np.bincount(labels[textured.view(bool)], minlength=count)
    best = 1 + int(np.argmax(speckle[1:]))
    x, y, w, h, area = (int(v) for v in stats[best])
    if area < MIN_AREA_FRACTION * height * width:
        return None
    return (x, y, w, h), bg


def _is_image_line(cues: _Cues, values: np.ndarray, achromatic: np.ndarray) -> bool:
    """Is this row/column segment more B-mode image (not screen background, not a UI panel)?

    Smooth or deep, echo-poor tissue has little speckle but stays a shade off the screen
    background; a flat line far from the background is a grey UI panel.
    """
    if values.size == 0 or achromatic.mean() < 0.9:
        return False
    values = values.astype(np.float32)
    if (np.abs(values - cues.background) >= DARK_DELTA[0]).mean() < 0.5:
        return False
    flat = values.std() < TEXTURE_STD
    return not (flat and abs(float(values.mean()) - cues.background) > DARK_DELTA[1])


def _row_is_image(cues: _Cues, y: int, x0: int, x1: int) -> bool:
    return _is_image_line(cues, cues.gray[y, x0:x1], cues.achromatic[y, x0:x1])


def _col_is_image(cues: _Cues, x: int, y0: int, y1: int) -> bool:
    return _is_image_line(cues, cues.gray[y0:y1, x], cues.achromatic[y0:y1, x])


def _shrink(cues: _Cues, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
    """Drop border lines of the box (x1, y1 exclusive) that are not image, e.g. a label
    touching the image edge that the opening could not cut off; at most a quarter per side."""
    y_lo, y_hi = y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4
    x_lo, x_hi = x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4
    while y1 > y_hi and not _row_is_image(cues, y1 - 1, x0, x1):
        y1 -= 1
    while y0 < y_lo and not _row_is_image(cues, y0, x0, x1):
        y0 += 1
    while x1 > x_hi and not _col_is_image(cues, x1 - 1, y0, y1):
        x1 -= 1
    while x0 < x_lo and not _col_is_image(cues, x0, y0, y1):
        x0 += 1
    return x0, y0, x1, y1


def _side_lines(cues: _Cues, side: str, box: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    """Per-line counts over the lines beyond one side of the box, out to the frame edge,
    nearest line first; each line spans the box's extent along that side."""
    x0, y0, x1, y1 = box
    height, width = cues.gray.shape
    rows, cols, along = {"bottom": ((y1, height), (x0, x1), 1), "top": ((0, y0), (x0, x1), 1),
                         "right": ((y0, y1), (x1, width), 0), "left": ((y0, y1), (0, x0), 0)}[side]
    (r0, r1), (c0, c1) = rows, cols
    n, length = (r1 - r0, c1 - c0) if along == 1 else (c1 - c0, r1 - r0)
    if n <= 0 or length <= 0:
        return {"length": np.zeros(0, np.int64)}
    sl = (slice(*rows), slice(*cols))
    order = slice(None, None, -1) if side in ("top", "left") else slice(None)  # nearest first

    def sums(image: np.ndarray) -> np.ndarray:  # cv2.reduce: far faster than numpy on views
        exact = cv2.CV_32S if image.dtype == np.uint8 else cv2.CV_64F  # the fast, exact ones
        return cv2.reduce(image, along, cv2.REDUCE_SUM, dtype=exact).reshape(-1)

    achromatic, off, dim, faint, bright = (sums(flag[sl])[order] for flag in cues.flags)
    strip = cues.gray[sl]
    mean = sums(strip)[order] / length
    # the std only matters for grey lines that are far from the background (a flat panel?) or
    # dense (a flat dark margin?); elsewhere it stays inf. Squares only over those lines
    std = np.full(n, np.inf)
    needed = np.flatnonzero((achromatic >= 0.9 * length)
                            & ((np.abs(mean - cues.background) > DARK_DELTA[1])
                               | (off >= 0.5 * length)))
    if needed.size:
        first, last = int(needed[0]), int(needed[-1]) + 1
        lo, hi = (first, last) if order.step is None else (n - last, n - first)
        part = strip[lo:hi] if along == 1 else strip[:, lo:hi]
        sum_sq = sums(cv2.multiply(part, part, dtype=cv2.CV_32F))[order]
        m = mean[first:last]
        std[first:last] = np.sqrt(np.maximum(sum_sq / length - m * m, 0.0))
    return {"length": np.full(n, length, np.int64), "achromatic": achromatic, "off": off,
            "dim": dim, "faint": faint, "bright": bright, "mean": mean, "std": std}


def _reach(cues: _Cues, lines: dict[str, np.ndarray], band: int, extent: int) -> int:
    """How many of these lines (nearest first) still belong to the image.

    A line is image when it is mostly off the background (smooth or dark tissue) or, deep down
    where the echo dies out and the image sinks to the background's level, when faint echoes
    (speckle grains a little above the background, away from bright marks) fill FAINT_FRACTION
    of it or of the band of lines starting at it (echo-free lines between faint ones). The walk
    stops at the first other line; UI lines (coloured, a flat grey panel, bright marks with no
    faint echoes: text, ruler ticks) are never image. When nothing but dark lines without UI
    lies between there and the frame edge, the image goes on to the last faint echo among
    them, and to the frame edge if what is left is a thin margin (a letterbox, or image
    whose echo died out): cutting it could cut anatomy, keeping it costs a little black.
    """
    n = lines["length"].size
    if n == 0:
        return 0
    length = lines["length"].astype(np.float64)
    mean, std = lines["mean"], lines["std"]
    panel = (std < TEXTURE_STD) & (np.abs(mean - cues.background) > DARK_DELTA[1])
    dense = lines["off"] >= 0.5 * length
    marks = (lines["bright"] > 0.002 * length) & (lines["faint"] < FAINT_FRACTION * length)
    stop = (lines["achromatic"] < 0.9 * length) | panel | (marks & ~dense)
    # faint echoes are counted up to the next stop or dense line only: signal past a UI mark or
    # a panel must not pull the empty gap before it into the image
    barrier = stop | dense
    dim = np.where(barrier, 0, lines["faint"]).astype(np.float64)
    cumulative = np.concatenate(([0.0], np.cumsum(dim)))
    idx = np.arange(n)
    next_barrier = np.where(barrier, idx, n)
    next_barrier = np.minimum.accumulate(next_barrier[::-1])[::-1]
    # a barrier line's own window is empty; the band of a quiet line ends before the next barrier
    window_end = np.minimum(idx + band, np.where(barrier, idx + 1, next_barrier))
    faint = ((dim >= FAINT_FRACTION * length)
             | ((cumulative[window_end] - cumulative[idx])
                >= FAINT_FRACTION * length * np.maximum(window_end - idx, 1)))
    image = ~stop & (dense | faint)
    not_image = np.flatnonzero(~image)
    reach = int(not_image[0]) if not_image.size else n
    # dark lines without UI: faint echoes at most, or flat at a dark level near the background
    blank = ~stop & (~dense | (std < TEXTURE_STD))
    if reach == n or not blank[reach:].all():
        return reach
    # nothing but dark lines up to the frame edge: where the echo died out and came back
    # faintly further down, the gap is image too; a thin dark margin is kept whole
    echoes = np.flatnonzero(lines["faint"][reach:] >= FAINT_FRACTION * length[reach:])
    if echoes.size:
        reach += int(echoes[-1]) + 1
    return n if n - reach <= MARGIN_FRACTION * extent else reach


def _grow(cues: _Cues, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
    """Grow the box over adjoining image lines (see _reach) until UI, a gap of screen
    background, or the frame edge stops it on each side."""
    band = max(3, min(cues.gray.shape) // 48)
    walked: dict[str, tuple[int, int, int]] = {}  # side -> its lines' span and box extent
    for _ in range(4):  # a side that grew lengthens the others' lines: a few rounds settle it
        before = (x0, y0, x1, y1)
        for side in ("bottom", "top", "right", "left"):
            span, extent = (((x0, x1), y1 - y0) if side in ("bottom", "top")
                            else ((y0, y1), x1 - x0))
            if walked.get(side) == (*span, extent):
                continue  # the same walk as last time, which already ended here
            walked[side] = (*span, extent)
            step = _reach(cues, _side_lines(cues, side, (x0, y0, x1, y1)), band, extent)
            if side == "bottom":
                y1 += step
            elif side == "top":
                y0 -= step
            elif side == "right":
                x1 += step
            else:
                x0 -= step
        if (x0, y0, x1, y1) == before:
            break
    return x0, y0, x1, y1


def detect_roi(image: np.ndarray) -> Roi:
    """Bounding box of the B-mode image on a scanner screen; the full frame if none is found."""
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]  # a single-channel frame is a grey frame
    if (not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0
            or (image.ndim == 3 and image.shape[2] not in (3, 4))):
        raise ValueError(f"detect_roi needs an (H, W) or (H, W, 3) image, got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    if image.dtype != np.uint8:
        raise ValueError(f"detect_roi needs a uint8 image, got {image.dtype}")
    if image.shape[0] < 16 or image.shape[1] < 16:
        return Roi.full(image)
    height, width = image.shape[:2]
    # find the image on a reduced copy (speed), then place its edges on the full frame
    f = max(1, round(max(height, width) / DETECT_SIDE))
    small = image if f == 1 else cv2.resize(image, (width // f, height // f),
                                            interpolation=cv2.INTER_AREA)
    found = _core_box(small)
    if found is None:
        return Roi.full(image)
    (x, y, w, h), bg = found
    gray, achromatic = _gray_and_grey_mask(image)
    cues = _Cues.of(gray, achromatic, bg)
    box = (x * f, y * f, min(width, (x + w) * f), min(height, (y + h) * f))
    x0, y0, x1, y1 = _grow(cues, *_shrink(cues, *box))
    # every edge walk above is bounded by the frame; the clamp keeps that a promise to callers
    return Roi(x0, y0, x1 - x0, y1 - y0).clamp(width, height)


# --- coordinate mapping (the one place) ----------------------------------------------------

def map_model_to_full(points_xy: np.ndarray, roi: Roi, model_hw: tuple[int, int]) -> np.ndarray:
    """Model-input pixel coordinates (x, y) -> full-frame pixel coordinates.

    The model sees the whole ROI resized to model_hw = (height, width); pixel centres map onto
    pixel centres, the convention of cv2.resize: x_full = roi.x + (x + 0.5) * roi.w / W - 0.5.
    """
    pts = np.asarray(points_xy, dtype=np.float32).reshape(-1, 2)
    mh, mw = model_hw
    sx, sy = roi.w / mw, roi.h / mh
    out = np.empty_like(pts)
    out[:, 0] = roi.x + (pts[:, 0] + 0.5) * sx - 0.5
    out[:, 1] = roi.y + (pts[:, 1] + 0.5) * sy - 0.5
    return out


def map_full_to_model(points_xy: np.ndarray, roi: Roi, model_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of map_model_to_full (e.g. a click on the screen -> model input pixel)."""
    pts = np.asarray(points_xy, dtype=np.float32).reshape(-1, 2)
    mh, mw = model_hw
    out = np.empty_like(pts)
    out[:, 0] = (pts[:, 0] - roi.x + 0.5) * mw / roi.w - 0.5
    out[:, 1] = (pts[:, 1] - roi.y + 0.5) * mh / roi.h - 0.5
    return out


def map_roi_to_full(points_xy: np.ndarray, roi: Roi) -> np.ndarray:
    """ROI pixel coordinates (e.g. contours of Segmentation.labels) -> full-frame pixels."""
    pts = np.asarray(points_xy, dtype=np.float32).reshape(-1, 2)
    return pts + np.array([roi.x, roi.y], np.float32)


def depth_mm(y_full: float, roi: Roi, pixel_spacing_mm: float | None) -> float | None:
    """Depth below the top of the ROI (the skin line) in mm; None without a pixel spacing."""
    if pixel_spacing_mm is None:
        return None
    return max(0.0, (y_full - roi.y) * pixel_spacing_mm)
