"""Where the ultrasound image is on the screen, and how many mm a pixel is: one owner.

A capture card hands over the whole scanner screen (menus, patient name, depth ruler). The
model must see only the image area (ROI), and depths and areas need mm per pixel. Both are
found once per source and frame size (detected, or remembered from an earlier session in the
RoiStore), may be corrected by the user (drag, two-point calibration), and are stamped onto
every frame by `prepare()`, so the worker, the analyzer and the view all read them from the
frame they belong to. Qt-free: the window's RoiEditor is only a view of this object.

Thread use: the GUI or headless loop calls everything here; the inference thread only reads
frames that were already prepared.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sonoguide.pipeline.frames import Frame, Roi

log = logging.getLogger(__name__)

MIN_ROI_PX = 64  # smaller than this is not an ultrasound image but a stray box or a margin
SPACING_RANGE_MM = (0.01, 1.0)  # plausible mm per pixel for a scanner screen


def valid_roi(roi: Roi | None, width: int, height: int) -> bool:
    """Inside the frame and big enough to hold an ultrasound image."""
    return (roi is not None and roi.x >= 0 and roi.y >= 0 and roi.w >= min(MIN_ROI_PX, width)
            and roi.h >= min(MIN_ROI_PX, height) and roi.x + roi.w <= width
            and roi.y + roi.h <= height)


def valid_spacing(spacing: float | None) -> bool:
    return (spacing is not None and math.isfinite(spacing)
            and SPACING_RANGE_MM[0] <= spacing <= SPACING_RANGE_MM[1])


class ImageArea:
    """ROI and pixel spacing of the current source.

    detect_roi: image -> Roi (sonoguide.pipeline.roi.detect_roi); a failure falls back to the full
      frame, which is always usable.
    store: sonoguide.pipeline.calibration.RoiStore (get(key) -> setting, set(key, roi=, pixel_
      spacing_mm=)) or None. Entries are keyed by source *and* frame size: a capture card that
      switches resolution is another screen layout.
    say: short user-facing message (status bar / report), e.g. why a stored area was refused.
    find_scale: (screen, roi) -> sonoguide.pipeline.depth_scale.DepthScale, or None: a screen whose
      source gives no scale and that has no remembered calibration gets its mm per pixel read
      from the scanner's depth ruler; used at once (the status says so) and remembered only
      when the user keeps it (confirm_scale), or corrected by a two-point calibration.
    """

    def __init__(self, detect_roi: Callable[[np.ndarray], Roi] = Roi.full, store: Any = None,
                 say: Callable[[str], None] | None = None,
                 find_scale: Callable[[np.ndarray, Roi], Any] | None = None) -> None:
        self._detect = detect_roi
        self._find_scale = find_scale
        self.found_scale: Any = None  # a DepthScale read from the screen, not yet kept
        self.store = store
        self._say = say or (lambda text: log.info("%s", text))
        self.source_key = ""
        self.full_frame = False
        self._size: tuple[int, int] | None = None  # (w, h) the ROI belongs to
        self._roi: Roi | None = None
        self._calibrated: float | None = None
        self.version = 0  # rises whenever the ROI or scale changes: views re-place on change

    # --- per source ---------------------------------------------------------------------
    def reset(self, source_key: str, *, full_frame: bool = False) -> None:
        """A new source: its ROI and scale are set up on its first frame. full_frame: the
        source is the image itself (the phantom), no screen around it."""
        self.source_key, self.full_frame = source_key, full_frame
        self._size, self._roi, self._calibrated = None, None, None
        self.version += 1

    @property
    def roi(self) -> Roi | None:
        return self._roi

    @property
    def store_key(self) -> str:
        w, h = self._size or (0, 0)
        return f"{self.source_key}@{w}x{h}"

    def prepare(self, frame: Frame) -> Frame:
        """The frame with its ROI and pixel spacing filled in (set up on the first frame of a
        source and again on any change of frame size)."""
        if self._size != (frame.width, frame.height):
            self._setup(frame)
        return dataclasses.replace(frame, roi=self._roi, pixel_spacing_mm=self.spacing_mm(frame))

    def spacing_mm(self, frame: Frame | None = None) -> float | None:
        """mm per pixel: the source's own when it knows it, else the user's calibration."""
        if frame is not None and frame.pixel_spacing_mm:
            return frame.pixel_spacing_mm  # the source's, or a prepared frame's
        return self._calibrated

    # --- user actions -------------------------------------------------------------------
    def set_roi(self, roi: Roi) -> Roi | None:
        """The user moved the ROI: clamp, keep and remember it; None if refused."""
        if self._size is None:
            return None
        w, h = self._size
        roi = roi.clamp(w, h)
        if not valid_roi(roi, w, h):
            self._say(f"Image area refused: at least {MIN_ROI_PX}x{MIN_ROI_PX} px inside the "
                      "frame")
            return None
        if roi != self._roi:
            self._roi = roi
            self.version += 1
            self._remember(roi=roi)
        return roi

    def redetect(self, frame: Frame) -> Roi:
        """Forget the user's adjustment: detect again (phantom: the full frame)."""
        self._size = (frame.width, frame.height)
        self._roi = self._detected(frame)
        self.version += 1
        self._remember(roi=self._roi)
        return self._roi

    def calibrate(self, p1: tuple[float, float], p2: tuple[float, float], mm: float) -> float:
        """mm per pixel from two ruler marks `mm` apart; ValueError (readable) if implausible.
        Remembered, so the next session with this scanner starts calibrated."""
        from sonoguide.pipeline.calibration import spacing_from_two_points

        spacing = spacing_from_two_points(p1, p2, mm)
        if not valid_spacing(spacing):
            lo, hi = SPACING_RANGE_MM
            raise ValueError(f"{spacing:.4g} mm per pixel is outside {lo}-{hi} mm/px; "
                             "check the two marks and the distance")
        self._calibrated = spacing
        self.found_scale = None  # the user's own measurement replaces what was read
        self.version += 1
        self._remember(pixel_spacing_mm=spacing)
        return spacing

    # --- internals ----------------------------------------------------------------------
    def _setup(self, frame: Frame) -> None:
        w, h = frame.width, frame.height
        resized = self._size is not None
        self._size = (w, h)
        self._calibrated = None
        setting = self._stored()
        roi = None
        if setting is not None:
            if setting.roi is not None:
                if valid_roi(setting.roi, w, h):
                    roi = setting.roi
                else:
                    self._say(f"Remembered image area {list(dataclasses.astuple(setting.roi))} "
                              f"does not fit this {w}x{h} picture: detected again")
            if setting.pixel_spacing_mm is not None:
                if valid_spacing(setting.pixel_spacing_mm):
                    self._calibrated = setting.pixel_spacing_mm
                else:
                    self._say(f"Remembered scale {setting.pixel_spacing_mm} mm/px is not "
                              "plausible: calibrate again")
        if roi is None:
            roi = self._detected(frame)
        if resized:
            self._say(f"Picture size changed to {w}x{h}: image area found again")
        self._roi = roi
        self.found_scale = None
        if (self._calibrated is None and not self.full_frame and not frame.pixel_spacing_mm
                and self._find_scale is not None):
            self._read_scale(frame, roi)
        self.version += 1

    def _read_scale(self, frame: Frame, roi: Roi) -> None:
        """mm per pixel from the depth ruler on the screen, if it can be told for sure."""
        try:
            found = self._find_scale(frame.image, roi)
        except Exception as exc:  # a convenience: two clicks always work
            log.warning("depth scale: %s: %s", type(exc).__name__, exc)
            return
        if found.mm_per_px is not None and valid_spacing(found.mm_per_px):
            self.found_scale = found
            self._calibrated = found.mm_per_px
            self._say(f"Depth scale read from the ruler: {found.mm_per_px:.3f} mm/px "
                      f"({found.reason}). Check it, then keep it or calibrate by hand")
        elif getattr(found, "needs_interval", False):
            self.found_scale = found
            self._say(f"Depth ruler found ({found.reason}); say how many mm lie between its "
                      "ticks, or calibrate by hand")

    def confirm_scale(self, major_mm: float | None = None) -> float | None:
        """The user keeps the scale read from the ruler (with the tick interval they gave when
        it could not be told): used and remembered. None if there is nothing usable to keep."""
        found = self.found_scale
        if found is None:
            return None
        if major_mm is not None:
            found = found.with_interval(major_mm)
        if found.mm_per_px is None or not valid_spacing(found.mm_per_px):
            return None
        self._calibrated, self.found_scale = found.mm_per_px, None
        self.version += 1
        self._remember(pixel_spacing_mm=found.mm_per_px)
        return found.mm_per_px

    def _stored(self) -> Any:
        if self.store is None:
            return None
        try:
            return self.store.get(self.store_key) or self.store.get(self.source_key)
        except Exception as exc:  # a settings fault must never stop the picture
            log.warning("ROI store: %s", exc)
            return None

    def _detected(self, frame: Frame) -> Roi:
        if self.full_frame:
            return Roi.full(frame.image)
        region = frame.meta.get("roi") if frame.meta else None
        if isinstance(region, Roi) and valid_roi(region, frame.width, frame.height):
            return region  # the source knows where its image is (a DICOM's calibrated region)
        try:
            roi = self._detect(frame.image).clamp(frame.width, frame.height)
        except Exception as exc:  # detection is a convenience: the full frame always works
            self._say(f"Image area detection failed ({type(exc).__name__}); using the whole "
                      "picture")
            return Roi.full(frame.image)
        return roi if valid_roi(roi, frame.width, frame.height) else Roi.full(frame.image)

    def _remember(self, **fields: object) -> None:
        if self.store is None or self._size is None:
            return
        try:
            self.store.set(self.store_key, **fields)
        except (OSError, ValueError) as exc:
            self._say(f"Could not remember the image area / scale: {exc}")
