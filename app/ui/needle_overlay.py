"""The needle drawn over the image: its shaft, a ring at the tip with its depth, and the
projected path (dashed) with the angle of approach and the distance to the target.

Items are made once and reused; `needle_text` is a plain function the snapshot shares.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from sonoguide.pipeline.guidance import Guidance, NeedlePath, path_text
from sonoguide.pipeline.needle import OUT_OF_PLANE, NeedleFinding
from sonoguide.ui import theme
from sonoguide.ui.text_items import text_item


def needle_text(needle: NeedleFinding, path: NeedlePath | None = None) -> str:
    """One label at the tip (two would overlap where the path is short): the tip's depth, for
    an out-of-plane dot that it may be the shaft, then the path's angle and target distance."""
    depth = "" if needle.tip_depth_mm is None else f" {needle.tip_depth_mm:.1f} mm"
    if needle.kind == OUT_OF_PLANE:
        return f"tip or shaft?{depth}"
    if not needle.tip_in_view:
        return "tip beyond the image"
    return f"tip{depth}" + (f" · {path_text(path)}" if path is not None else "")


class NeedleItems:
    Z = 12  # above the outlines, under the target label

    def __init__(self, view: pg.ViewBox) -> None:
        colour = QtGui.QColor(theme.NEEDLE_COLOUR)
        colour.setAlphaF(0.7)  # the scanner's own needle echo stays visible under the line
        self.shaft = QtWidgets.QGraphicsLineItem()
        self.path = QtWidgets.QGraphicsLineItem()
        for item, style in ((self.shaft, QtCore.Qt.PenStyle.SolidLine),
                            (self.path, QtCore.Qt.PenStyle.DashLine)):
            pen = QtGui.QPen(colour)
            pen.setCosmetic(True)
            pen.setWidthF(2.0)
            pen.setStyle(style)
            item.setPen(pen)
            item.setZValue(self.Z)
            view.addItem(item)
        self.tip = pg.ScatterPlotItem(pxMode=True, antialias=True, symbol="o", size=22,
                                      pen=pg.mkPen(colour, width=3), brush=None)
        self.tip.setZValue(self.Z + 1)
        view.addItem(self.tip)
        self.label = text_item(theme.NEEDLE_COLOUR, theme.LABEL_FONT_PT, bold=True)
        self.label.setZValue(self.Z + 2)
        view.addItem(self.label)
        self.hide()

    @property
    def text(self) -> str:
        """What the needle's labels say ("" when no needle is drawn): for tests and the log."""
        return self.label.textItem.toPlainText() if self.label.isVisible() else ""

    def show(self, guidance: Guidance | None) -> None:
        needle = None if guidance is None else guidance.needle
        if needle is None:
            self.hide()
            return
        tx, ty = needle.tip
        if needle.shaft_start is not None:
            sx, sy = needle.shaft_start
            self.shaft.setLine(sx, sy, tx, ty)
        self.shaft.setVisible(needle.shaft_start is not None)
        self.tip.setData([tx], [ty])
        self.tip.setVisible(needle.tip_in_view)  # no ring where the tip is not seen
        path = guidance.path
        self.label.setText(needle_text(needle, path))
        # below the tip, on the side the needle came from: neither on the shaft (above that
        # side) nor on the path (below the other side)
        self.label.setAnchor((-0.1, -0.2) if needle.from_left is False else (1.1, -0.2))
        self.label.setPos(tx, ty)
        self.label.setVisible(True)
        if path is not None:
            (px, py), (ex, ey) = path.start, path.end
            self.path.setLine(px, py, ex, ey)
        self.path.setVisible(path is not None)

    def hide(self) -> None:
        for item in (self.shaft, self.path, self.tip, self.label):
            item.setVisible(False)
