"""The image area sent to the model as a draggable pg.RectROI, and the two-click calibration.

A view of sonoguide.pipeline.image_area.ImageArea, which owns the ROI and the scale (detected,
remembered per source and frame size, validated): this only draws the rectangle, hands the
user's drag and ruler clicks to it, and follows its changes.
"""

from __future__ import annotations

from collections.abc import Callable

import pyqtgraph as pg
from PySide6 import QtCore

from sonoguide.pipeline.frames import Frame, Roi
from sonoguide.pipeline.image_area import ImageArea
from sonoguide.ui import theme


class RoiEditor:
    def __init__(self, view: pg.ViewBox, area: ImageArea, *,
                 say: Callable[[str], None]) -> None:
        self.area = area
        self._say = say  # short status-bar message
        self._version = -1  # area.version last drawn
        self.calibration_points: list[tuple[float, float]] | None = None
        self.item = pg.RectROI((0, 0), (10, 10), pen=pg.mkPen(
            theme.ROI_COLOUR, width=2, style=QtCore.Qt.PenStyle.DashLine))
        self.item.setZValue(20)
        self.item.setVisible(False)
        self.item.sigRegionChangeFinished.connect(self._dragged)
        view.addItem(self.item)

    def follow(self, frame: Frame) -> None:
        """Re-place the rectangle when the area changed (new source, size, re-detection)."""
        if self.area.version == self._version:
            return
        self._version = self.area.version
        roi = frame.roi or self.area.roi
        if roi is None:
            self.item.setVisible(False)
            return
        self.item.blockSignals(True)
        self.item.maxBounds = QtCore.QRectF(0, 0, frame.width, frame.height)
        self.item.setPos((roi.x, roi.y), update=False)
        self.item.setSize((roi.w, roi.h))
        self.item.blockSignals(False)
        self.item.setVisible(True)

    @property
    def top_px(self) -> float:
        """Skin line: the top of the image area, where depth 0 is."""
        roi = self.area.roi
        return float(roi.y) if roi is not None else 0.0

    # --- calibration clicks -----------------------------------------------------------------
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
            return self.area.calibrate(p1, p2, mm)
        except ValueError as exc:
            self._say(f"Calibration refused: {exc}")
            return None

    # --- internals ------------------------------------------------------------------------
    def _dragged(self) -> None:
        (x, y), (w, h) = self.item.pos(), self.item.size()
        if self.area.set_roi(Roi(int(round(x)), int(round(y)), int(round(w)),
                                 int(round(h)))) is None:
            self._version = -1  # refused: put the rectangle back where the area is
