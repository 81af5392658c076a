"""Side-panel strip chart: each class's area over the last ~10 s as % of its own recent high.

A vein flattens under probe pressure, an artery pulses with the heart. On one shared absolute
axis a 40 mm^2 artery pulsing by 5 mm^2 is a flat line beside a 150 mm^2 vein, so every class
is drawn relative to its own reference (the 95th percentile of its last 10 s = 100 %) and the
absolute current areas are written under the chart. The line items are made once per class set
and only get new data, at most REDRAW_HZ times a second; the y range is fixed (no autorange).
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from sonoguide.pipeline.timeline import MM2, AreaTimeline
from sonoguide.ui import theme

REDRAW_HZ = 10.0
REFERENCE_PERCENTILE = 95.0  # not the max: one glitchy frame must not squash 10 s of line
Y_MAX_PCT = 120.0  # fixed range: a line above its reference stays on the chart up to here
CHART_HEIGHT_PX = 96  # modest and fixed: the side panel must fit a 1366x768 laptop


def relative_areas(areas: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray],
                                                          dict[str, float]]:
    """Per class: area as % of its reference (95th percentile of the given history), and the
    reference. A class never seen (reference 0) gets NaN: no line rather than a false 0 %."""
    percent: dict[str, np.ndarray] = {}
    refs: dict[str, float] = {}
    for name, values in areas.items():
        ref = float(np.percentile(values, REFERENCE_PERCENTILE)) if len(values) else 0.0
        refs[name] = ref
        percent[name] = (np.minimum(values / ref * 100.0, Y_MAX_PCT + 5.0) if ref > 0
                         else np.full(len(values), np.nan))
    return percent, refs


class AreaChart(QtWidgets.QGroupBox):
    def __init__(self, timeline: AreaTimeline) -> None:
        super().__init__(f"Area, % of own {timeline.window_s:.0f} s high")
        self.timeline = timeline
        self.plot = pg.PlotWidget(background=theme.PANEL)
        self.plot.setFixedHeight(CHART_HEIGHT_PX)
        self.plot.setMouseEnabled(False, False)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setXRange(-timeline.window_s, 0.0, padding=0.0)
        self.plot.setYRange(0.0, Y_MAX_PCT, padding=0.0)
        self.plot.disableAutoRange()
        font = QtGui.QFont()
        font.setPointSize(theme.BASE_FONT_PT - 4)  # ticks are secondary; the values text is not
        window_s = timeline.window_s
        # Edge labels would be clipped by the plot: ticks inside the window only, in seconds.
        step = window_s / 5
        seconds = [(-step * k, f"-{step * k:.0f}" + (" s" if k == 4 else "")) for k in (4, 3, 2, 1)]
        ticks = {"left": [[(0.0, "0"), (50.0, "50"), (100.0, "100%")]], "bottom": [seconds]}
        for side, tick in ticks.items():
            axis = self.plot.getAxis(side)
            axis.setTextPen(theme.MUTED)
            axis.setPen(theme.MUTED)
            axis.setStyle(tickFont=font)
            axis.setTicks(tick)
        self.plot.getAxis("left").setWidth(52)
        # 100 % = each class's own recent high: a vein at 30 % is compressed to a third.
        self.reference_line = pg.InfiniteLine(
            pos=100.0, angle=0, pen=pg.mkPen(theme.MUTED, width=1,
                                             style=QtCore.Qt.PenStyle.DashLine))
        self.plot.addItem(self.reference_line)
        self.unit_label = QtWidgets.QLabel("")  # current absolute areas, in class colours
        self.unit_label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(2)
        layout.addWidget(self.plot)
        layout.addWidget(self.unit_label)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._classes: tuple[str, ...] = ()
        self._due = 0.0
        self._values_text = ""
        self.redraws = 0  # for tests and the bench: how often data was pushed to the lines

    def refresh(self, now: float | None = None, *, force: bool = False) -> None:
        """Redraw if due (at most REDRAW_HZ, unless `force`); the x axis is time before `now`
        (monotonic s), so lines slide out when results stop coming."""
        wall = time.monotonic()
        if wall < self._due and not force:
            return
        self._due = wall + 1.0 / REDRAW_HZ
        t, areas = self.timeline.series(now=wall if now is None else now)
        if tuple(areas) != self._classes:
            self._set_classes(tuple(areas))
        if not len(t) and not self.redraws:
            return
        percent, _ = relative_areas(areas)
        for name, curve in self.curves.items():
            curve.setData(t, percent.get(name, t * np.nan), connect="finite")
        self.redraws += 1
        self._show_values({n: float(a[-1]) for n, a in areas.items() if len(a)})

    def _show_values(self, current: dict[str, float]) -> None:
        unit = "mm²" if self.timeline.unit == MM2 else "px"
        plain = "  ".join(f"{n} {v:.0f}" for n, v in current.items())
        plain = f"{plain} {unit}" if plain else ""
        if plain == self._values_text:
            return
        self._values_text = plain
        spans = "&nbsp;&nbsp;".join(
            f'<span style="color:{theme.class_colour(n, i)}; font-weight:bold">{n} {v:.0f}</span>'
            for i, (n, v) in enumerate(current.items(), start=1))
        note = unit if unit == "mm²" else "px (no scale)"
        self.unit_label.setText(f'{spans}&nbsp;&nbsp;<span style="color:{theme.MUTED}">'
                                f'{note}</span>' if spans else "")

    def values_text(self) -> str:
        """The current absolute areas as plain text, e.g. 'vein 152  artery 38 mm²'."""
        return self._values_text

    def _set_classes(self, classes: tuple[str, ...]) -> None:
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves = {}
        for index, name in enumerate(classes, start=1):
            pen = pg.mkPen(theme.class_colour(name, index), width=3)
            self.curves[name] = self.plot.plot([], [], pen=pen, name=name)
        self._classes = classes
        self._values_text = ""
        self.unit_label.setText("")
