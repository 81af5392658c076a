"""The image area sent to the model (draggable pg.RectROI) and the mm-per-pixel scale.

Per source (keyed by source_key): auto-detected on the first frame (phantom: full frame),
user-adjustable, remembered in the RoiStore together with a two-point calibration.
`roi_for()` is read by the inference thread: it only reads one attribute that is replaced whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pyqtgraph as pg
from PySide6 import QtCore

from app.pipeline.frames import Frame, Roi
from app.ui import theme


class RoiEditor:
    def __init__(self, view: pg.ViewBox, *, detect_roi: Callable, store: Any,
                 spacing_from_two_points: Callable | None,
                 say: Callable[[str], None]) -> None:
        self._detect = detect_roi
        self._store = store  # app.pipeline.calibration.RoiStore or None
        self._spacing_from_two_points = spacing_from_two_points
        self._say = say  # short status-bar message
        self.key = ""
        self._roi: Roi | None = None
        self._frame_size = (0, 0)  # w, h of the frames the ROI belongs to
        self._calibrated_mm: dict[str, float] = {}
        self.calibration_points: list[tuple[float, float]] | None = None
        self.item = pg.RectROI((0, 0), (10, 10), pen=pg.mkPen(
            theme.ROI_COLOUR, width=2, style=QtCore.Qt.PenStyle.DashLine))
        self.item.setZValue(20)
        self.item.setVisible(False)
        self.item.sigRegionChangeFinished.connect(self._dragged)
        view.addItem(self.item)

    # --- per source -----------------------------------------------------------------------
    def reset(self, key: str) -> None:
        """A new source: its ROI is set up again on its first frame."""
        self.key, self._roi = key, None

    @property
    def ready(self) -> bool:
        return self._roi is not None

    def setup(self, frame: Frame, full_frame: bool) -> None:
        """First frame of a source: remembered ROI, else detected (full frame for a phantom)."""
        setting = self._store.get(self.key) if self._store is not None else None
        roi = setting.roi if setting is not None else None
        if setting is not None and setting.pixel_spacing_mm:
            self._calibrated_mm[self.key] = setting.pixel_spacing_mm
        if roi is None:
            roi = Roi.full(frame.image) if full_frame else self._detected(frame)
        self._place(roi, frame)

    def redetect(self, frame: Frame, full_frame: bool = False) -> None:
        """Forget the user's adjustment: detect again (phantom: the full frame)."""
        self._place(Roi.full(frame.image) if full_frame else self._detected(frame), frame)
        self._dragged()

    def roi_for(self, frame: Frame) -> Roi:
        roi = self._roi
        return Roi.full(frame.image) if roi is None else roi.clamp(frame.width, frame.height)

    @property
    def top_px(self) -> float:
        return float(self._roi.y) if self._roi is not None else 0.0

    # --- scale ----------------------------------------------------------------------------
    def spacing_mm(self, frame: Frame | None) -> float | None:
        """mm per pixel: from the source when it knows, else the user's calibration."""
        if frame is not None and frame.pixel_spacing_mm:
            return frame.pixel_spacing_mm
        return self._calibrated_mm.get(self.key)

    def add_calibration_point(self, x: float, y: float) -> tuple | None:
        """Collect clicks while calibrating; the second one returns (p1, p2)."""
        if self.calibration_points is None:
            return None
        self.calibration_points.append((x, y))
        if len(self.calibration_points) < 2:
            return None
        p1, p2 = self.calibration_points
        self.calibration_points = None
        return p1, p2

    def calibrate(self, p1: tuple[float, float], p2: tuple[float, float],
                  mm: float) -> float | None:
        try:
            if self._spacing_from_two_points is not None:
                spacing = float(self._spacing_from_two_points(p1, p2, mm))
            else:
                spacing = mm / math.dist(p1, p2)
        except (ValueError, ZeroDivisionError) as exc:
            self._say(f"Calibration refused: {exc}")
            return None
        self._calibrated_mm[self.key] = spacing
        self._remember(pixel_spacing_mm=spacing)  # the next session starts calibrated
        return spacing

    # --- internals ------------------------------------------------------------------------
    def _detected(self, frame: Frame) -> Roi:
        try:
            return self._detect(frame.image)
        except Exception:  # detection is a convenience: the full frame is always usable
            return Roi.full(frame.image)

    def _place(self, roi: Roi, frame: Frame) -> None:
        roi = roi.clamp(frame.width, frame.height)
        self._roi, self._frame_size = roi, (frame.width, frame.height)
        self.item.blockSignals(True)
        self.item.maxBounds = QtCore.QRectF(0, 0, frame.width, frame.height)
        self.item.setPos((roi.x, roi.y), update=False)
        self.item.setSize((roi.w, roi.h))
        self.item.blockSignals(False)
        self.item.setVisible(True)

    def _dragged(self) -> None:
        if self._roi is None:
            return
        (x, y), (w, h) = self.item.pos(), self.item.size()
        roi = Roi(int(round(x)), int(round(y)), int(round(w)), int(round(h)))
        self._roi = roi.clamp(*self._frame_size)
        self._remember(roi=self._roi)

    def _remember(self, **fields: object) -> None:
        if self._store is None:
            return
        try:
            self._store.set(self.key, **fields)
        except (OSError, ValueError) as exc:
            self._say(f"Could not remember the image area / scale: {exc}")
