"""Segmentation overlay drawn into the pyqtgraph view: contours, optional fill, target marker.

Graphics items are pooled and reused between frames (no per-frame item churn); a structure the
model is unsure about is drawn dashed and fainter so the doctor sees the doubt.
The style rules (`contour_style`, `target_text`) are plain functions shared with the snapshot
renderer, so the PNG looks like the screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from sonoguide.pipeline.frames import Roi, Segmentation, Structure, Target
from sonoguide.pipeline.vessel_behaviour import VESSEL_CLASSES
from sonoguide.ui import theme
from sonoguide.ui.needle_overlay import NeedleItems
from sonoguide.ui.text_items import text_item

FILL_ALPHA = 0.28  # fill opacity at full overlay opacity: the image under it must stay readable
UNSURE_FADE = 0.7  # unsure structures are drawn at this fraction of the normal opacity


@dataclass(frozen=True)
class ContourStyle:
    colour: str  # "#RRGGBB"
    line_alpha: float  # 0..1
    fill_alpha: float  # 0..1, 0 = no fill
    dashed: bool  # the model is unsure about this structure


def contour_style(structure: Structure, classes: tuple[str, ...], opacity: float,
                  fill: bool) -> ContourStyle:
    index = classes.index(structure.class_name) if structure.class_name in classes else 0
    unsure = structure.unsure
    fade = UNSURE_FADE if unsure else 1.0
    opacity = min(max(opacity, 0.0), 1.0)
    return ContourStyle(
        colour=theme.class_colour(structure.class_name, index),
        line_alpha=opacity * fade,
        fill_alpha=FILL_ALPHA * opacity * fade if fill else 0.0,
        dashed=unsure,
    )


def target_text(target: Target) -> str:
    """Label beside the marker. Depth is the analyzer's (mm from the frame's scale), never
    worked out again here."""
    depth = target.depth_mm
    text = f"{target.class_name}  {depth:.1f} mm" if depth is not None else (
        f"{target.class_name}  (depth: calibrate)")
    if target.unsure:
        text += "  ?"  # the marker itself is also drawn dashed/faint
    return text


def target_summary(target: Target) -> str:
    """One short line for the side panel: what, how deep (or that depth needs a calibration),
    and "unsure" when the model is (the panel colours it too). Kept to one line so the panel
    fits a 1366x768 screen."""
    depth = target.depth_mm
    line = f"{depth:.1f} mm" if depth is not None else "depth: calibrate"
    if target.unsure:
        line += " (unsure)"
    return f"Target: {target.class_name} {line}"


def vessel_tags(seg: Segmentation) -> list[tuple[float, float, str]]:
    """(x, y, words) under each drawn vessel whose behaviour is measured: "compresses",
    "does not compress", "pulses 72/min". Shared with the snapshot."""
    report = None if seg.guidance is None else seg.guidance.vessels
    if report is None:
        return []
    placed = []
    for s in seg.structures:
        v = report.for_structure(s) if s.class_name in VESSEL_CLASSES else None
        if v is None or not v.tags:
            continue
        words = [f"pulses {v.heart_rate_bpm:.0f}/min" if tag == "pulses" and v.heart_rate_bpm
                 else tag for tag in v.tags]
        placed.append((float(s.centroid[0]), float(np.max(s.contour[:, 1])), " · ".join(words)))
    return placed


def _qcolor(hex_colour: str, alpha: float) -> QtGui.QColor:
    colour = QtGui.QColor(hex_colour)
    colour.setAlphaF(min(max(alpha, 0.0), 1.0))
    return colour


def _polygon_path(contour: np.ndarray) -> QtGui.QPainterPath:
    path = QtGui.QPainterPath()
    if len(contour) >= 2:
        path.addPolygon(QtGui.QPolygonF([QtCore.QPointF(float(x), float(y)) for x, y in contour]))
        path.closeSubpath()
    return path


class _SmoothPath(QtWidgets.QGraphicsPathItem):
    """A contour drawn antialiased on a view that is not: the picture itself is drawn faster
    without the hint (5.4 vs 7.3 ms per repaint of the 512 px phantom at 1600x1000, offscreen),
    the outlines stay smooth."""

    def paint(self, painter, option, widget=None) -> None:  # noqa: D401 (Qt API)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        super().paint(painter, option, widget)


class OverlayItems:
    """All overlay graphics for one ViewBox; `show()` repaints, `hide()` hides, nothing is
    created per frame beyond growing the contour pool to the most structures seen."""

    Z = 10  # above the image item

    def __init__(self, view: pg.ViewBox) -> None:
        self._view = view
        self._paths: list[QtWidgets.QGraphicsPathItem] = []
        self._marker = pg.ScatterPlotItem(pxMode=True, antialias=True)
        self._marker.setZValue(self.Z + 2)
        self._label = text_item(theme.TARGET_COLOUR, theme.TARGET_FONT_PT, bold=True,
                                anchor=(-0.08, 1.15))
        self._label.setZValue(self.Z + 3)
        self._marker_style: tuple | None = None
        view.addItem(self._marker)
        view.addItem(self._label)
        self.needle = NeedleItems(view)
        self._tags: list[pg.TextItem] = []  # "compresses", "pulses" under each vessel
        self._visible = False
        self.shown_frame_id: int | None = None
        self.hide()

    # --- state a test or the window can read ---------------------------------------------
    @property
    def visible(self) -> bool:
        return self._visible

    def visible_contours(self) -> list[QtWidgets.QGraphicsPathItem]:
        return [item for item in self._paths if item.isVisible()]

    def tag_texts(self) -> list[str]:
        """The behaviour words shown under the vessels now (for tests and the log)."""
        return [item.textItem.toPlainText() for item in self._tags if item.isVisible()]

    @property
    def label_text(self) -> str:
        return self._label.textItem.toPlainText() if self._label.isVisible() else ""

    # --- drawing --------------------------------------------------------------------------
    def show(self, seg: Segmentation, *, opacity: float, fill: bool) -> None:
        structures = seg.structures
        while len(self._paths) < len(structures):
            item = _SmoothPath()
            item.setZValue(self.Z)
            self._view.addItem(item)
            self._paths.append(item)
        for item, structure in zip(self._paths, structures, strict=False):
            style = contour_style(structure, seg.classes, opacity, fill)
            pen = QtGui.QPen(_qcolor(style.colour, style.line_alpha))
            pen.setCosmetic(True)  # constant on-screen width whatever the zoom
            pen.setWidthF(3.0)
            if style.dashed:
                pen.setStyle(QtCore.Qt.PenStyle.DashLine)
            item.setPen(pen)
            item.setBrush(QtGui.QBrush(_qcolor(style.colour, style.fill_alpha))
                          if style.fill_alpha > 0 else QtGui.QBrush(QtCore.Qt.BrushStyle.NoBrush))
            item.setPath(_polygon_path(structure.contour))
            item.setVisible(True)
        for item in self._paths[len(structures):]:
            item.setVisible(False)
        self._show_target(seg.target, seg.roi, opacity)
        self.needle.show(seg.guidance)
        self._show_tags(seg)
        self._visible = True
        self.shown_frame_id = seg.frame_id

    def _show_target(self, target: Target | None, roi: Roi, opacity: float) -> None:
        if target is None:
            self._marker.setVisible(False)
            self._label.setVisible(False)
            return
        unsure = target.unsure
        alpha = max(opacity, 0.5) * (UNSURE_FADE if unsure else 1.0)
        style = (unsure, round(alpha, 3))
        if style != self._marker_style:  # rebuilding the symbols costs ms: only on a change
            self._marker_style = style
            dash = QtCore.Qt.PenStyle.DashLine if unsure else QtCore.Qt.PenStyle.SolidLine
            light = pg.mkPen(_qcolor(theme.TARGET_COLOUR, alpha), width=3, style=dash)
            dark = pg.mkPen(_qcolor("#000000", alpha * 0.8), width=6)  # seen on a bright fill
            self._marker.setData([
                {"pos": (0, 0), "size": 38, "symbol": "o", "pen": dark, "brush": None},
                {"pos": (0, 0), "size": 38, "symbol": "o", "pen": light, "brush": None},
                {"pos": (0, 0), "size": 16, "symbol": "+", "pen": dark, "brush": None},
                {"pos": (0, 0), "size": 16, "symbol": "+", "pen": light, "brush": None}])
        self._marker.setPos(target.x, target.y)  # a moved target only moves the item
        self._marker.setVisible(True)
        self._label.setText(target_text(target))
        # Right of the marker in the left half of the image area, left of it in the right
        # half: the label must not run off the image edge (it did for a vein near the edge).
        right_half = target.x > roi.x + roi.w / 2
        self._label.setAnchor((1.08, 1.15) if right_half else (-0.08, 1.15))
        self._label.setPos(target.x, target.y)
        self._label.setVisible(True)

    def _show_tags(self, seg: Segmentation) -> None:
        """Each vessel's behaviour, once measured, in small words under its outline."""
        placed = vessel_tags(seg)
        while len(self._tags) < len(placed):
            item = text_item(theme.TEXT, theme.LABEL_FONT_PT, anchor=(0.5, -0.15), fill_alpha=150)
            item.setZValue(self.Z + 3)
            self._view.addItem(item)
            self._tags.append(item)
        for item, (x, y, text) in zip(self._tags, placed, strict=False):
            item.setText(text)
            item.setPos(x, y)
            item.setVisible(True)
        for item in self._tags[len(placed):]:
            item.setVisible(False)

    def hide(self) -> None:
        for item in self._tags:
            item.setVisible(False)
        for item in self._paths:
            item.setVisible(False)
        self._marker.setVisible(False)
        self._label.setVisible(False)
        self.needle.hide()
        self._visible = False
        self.shown_frame_id = None


class DepthAxis(pg.AxisItem):
    """Left ruler in mm below the skin line (the ROI top), like the scanner's depth scale.

    Blank until the pixel spacing is known (from the source or a two-point calibration).
    """

    def __init__(self) -> None:
        super().__init__("left")
        self.origin_px = 0.0
        self.spacing_mm: float | None = None
        self._major_mm = 10.0
        font = QtGui.QFont()
        font.setPointSize(theme.BASE_FONT_PT - 1)
        self.setStyle(tickFont=font, tickLength=-12)
        self.setTextPen(theme.TEXT)
        self.setPen(theme.MUTED)
        self.setLabel("depth (mm)", color=theme.MUTED, **{"font-size": f"{theme.BASE_FONT_PT}pt"})
        self.setWidth(90)

    def set_scale(self, origin_px: float, spacing_mm: float | None) -> None:
        if (origin_px, spacing_mm) != (self.origin_px, self.spacing_mm):
            self.origin_px, self.spacing_mm = float(origin_px), spacing_mm
            self.picture = None  # pyqtgraph's cached drawing
            self.update()

    def tickValues(self, minVal: float, maxVal: float, size: float):  # noqa: N802 (pg API)
        if not self.spacing_mm:
            return []
        lo_px, hi_px = sorted((minVal, maxVal))
        hi_mm = (hi_px - self.origin_px) * self.spacing_mm
        major = self._major_mm = 10.0 if hi_mm > 25 else 5.0
        depths = np.arange(0.0, hi_mm + 1e-6, major / 2)
        pixels = self.origin_px + depths / self.spacing_mm
        keep = pixels >= lo_px
        majors = [float(p) for p, d in zip(pixels[keep], depths[keep], strict=True)
                  if d % major == 0]
        minors = [float(p) for p, d in zip(pixels[keep], depths[keep], strict=True)
                  if d % major != 0]
        return [(major / self.spacing_mm, majors), (major / 2 / self.spacing_mm, minors)]

    def tickStrings(self, values, scale, spacing):  # noqa: N802 (pg API)
        # Only the major level is labelled: minor ticks stay bare so the ruler reads at a glance.
        if not self.spacing_mm or abs(spacing * self.spacing_mm - self._major_mm) > 1e-3:
            return ["" for _ in values]
        return [f"{(v - self.origin_px) * self.spacing_mm:.0f}" for v in values]
