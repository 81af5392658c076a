"""Where the B-mode image is on the scanner screen, and how model coordinates map back to it.

A capture card delivers the whole scanner screen (menus, patient name, depth ruler). The ultrasound
image is the one large area that is grey (no colour) and speckled; where it is smooth or deep
down where the echo dies out, it stays a shade off the screen background. So: the largest
speckled area (after a morphological opening has removed thin text, ruler ticks and icons;
coloured panels are rejected by their colour), grown line by line over adjoining image that is
smooth or dark, until screen background or a flat UI panel stops it.

Coordinate mapping between model input, ROI and full frame lives here and nowhere else.
The per-source ROI/spacing store and the ruler calibration live in calibration.py and are
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.pipeline.calibration import (  # noqa: F401 (re-exported: one import for the ROI stage)
    RoiSetting,
    RoiStore,
    default_config_dir,
    spacing_from_two_points,
)
from app.pipeline.frames import Roi

STD_WINDOW = 5  # local standard deviation window (px, odd)
TEXTURE_STD = 2.0  # grey levels: speckle is above, flat screen areas are below
MAX_CHROMA = 24  # max-min over R,G,B above this is a coloured UI element, not B-mode
DARK_DELTA = (2, 25)  # flat pixels this much off the background still count (deep dark tissue)
MIN_AREA_FRACTION = 0.02  # a smaller winner is not an image: fall back to the full frame
DETECT_SIDE = 640  # larger frames are searched at about this size; edges placed at full size


def _gray_and_grey_mask(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey image as float32 and where the pixel has no colour (B-mode is achromatic)."""
    if image.ndim == 2:
        return image.astype(np.float32), np.ones(image.shape, bool)
    rgb = np.ascontiguousarray(image[:, :, :3])
    r, g, b = cv2.split(rgb)  # cv2 per-channel ops are ~20x faster than numpy axis reductions
    chroma = cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return gray, chroma <= MAX_CHROMA


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
    gray: np.ndarray  # float32
    achromatic: np.ndarray  # bool
    background: int  # the screen's background grey


def _core_box(image: np.ndarray) -> tuple[tuple[int, int, int, int], int] | None:
    """(x, y, w, h) of the grey, non-background area with the most speckle, and the
    background grey; None when nothing image-sized is there."""
    height, width = image.shape[:2]
    gray, achromatic = _gray_and_grey_mask(image)
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


def _grow(cues: _Cues, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
    """Grow the box over adjoining smooth or dark image lines, until a line of screen
    background or a UI panel stops it on each side."""
    height, width = cues.gray.shape
    for _ in range(4):  # a side that grew lengthens the others' lines: a few rounds settle it
        before = (x0, y0, x1, y1)
        while y1 < height and _row_is_image(cues, y1, x0, x1):
            y1 += 1
        while y0 > 0 and _row_is_image(cues, y0 - 1, x0, x1):
            y0 -= 1
        while x1 < width and _col_is_image(cues, x1, y0, y1):
            x1 += 1
        while x0 > 0 and _col_is_image(cues, x0 - 1, y0, y1):
            x0 -= 1
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
    cues = _Cues(gray, achromatic, bg)
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
