"""Side-panel strip chart: total area per class over the last ~10 s (app.pipeline.timeline).

A vein flattens under probe pressure, an artery pulses with the heart: the chart shows both
at a glance. One line per class in the overlay's colours; the line items are made once per
class set and only get new data, at most REDRAW_HZ times a second.
"""

from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6 import QtWidgets

from app.pipeline.timeline import MM2, AreaTimeline
from app.ui import theme

REDRAW_HZ = 10.0


class AreaChart(QtWidgets.QGroupBox):
    def __init__(self, timeline: AreaTimeline) -> None:
        super().__init__(f"Area, last {timeline.window_s:.0f} s (x: seconds ago)")
        self.timeline = timeline
        self.plot = pg.PlotWidget(background=theme.PANEL)
        self.plot.setFixedHeight(120)
        self.plot.setMouseEnabled(False, False)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setXRange(-timeline.window_s, 0.0, padding=0.0)
        self.plot.enableAutoRange(x=False, y=True)
        self.plot.setLimits(yMin=0.0)
        for side in ("left", "bottom"):
            axis = self.plot.getAxis(side)
            axis.setTextPen(theme.MUTED)
            axis.setPen(theme.MUTED)
        self.unit_label = QtWidgets.QLabel("")
        self.unit_label.setObjectName("muted")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.plot)
        layout.addWidget(self.unit_label)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._classes: tuple[str, ...] = ()
        self._due = 0.0
        self.redraws = 0  # for tests and the bench: how often data was pushed to the lines

    def refresh(self, now: float | None = None) -> None:
        """Redraw if due (at most REDRAW_HZ); the x axis is time before `now` (monotonic s),
        so lines slide out when results stop coming."""
        wall = time.monotonic()
        if wall < self._due:
            return
        self._due = wall + 1.0 / REDRAW_HZ
        t, areas = self.timeline.series(now=wall if now is None else now)
        if tuple(areas) != self._classes:
            self._set_classes(tuple(areas))
        if not len(t) and not self.redraws:
            return
        for name, curve in self.curves.items():
            curve.setData(t, areas.get(name, t * 0.0))
        self.redraws += 1
        unit = "mm²" if self.timeline.unit == MM2 else "px (no scale)"
        text = " - ".join(f"{n} {a[-1]:.0f}" for n, a in areas.items() if len(a))
        self.unit_label.setText(f"{unit}{':  ' + text if text else ''}")

    def _set_classes(self, classes: tuple[str, ...]) -> None:
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves = {}
        for index, name in enumerate(classes, start=1):
            pen = pg.mkPen(theme.class_colour(name, index), width=2)
            self.curves[name] = self.plot.plot([], [], pen=pen, name=name)
        self._classes = classes
