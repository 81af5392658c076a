"""Trainee mode in the window: the "Trainee" side-panel tab and the controller that asks.

A question freezes the live image and hides the overlay; one click on the image answers it; the
verdict comes with the overlay revealed, a green (hit) or red (miss) mark at the click and the
outline that was scored against; then the image runs again and the next question follows.
The logic (what to ask, scoring, the scanning task) is Qt-free in sonoguide.pipeline.trainee.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from sonoguide.pipeline.trainee import SCAN_KEY, Question, TraineeSession, Verdict
from sonoguide.ui import theme

HIT_COLOUR = "#009E73"  # Okabe-Ito green
MISS_COLOUR = theme.ALARM
MARK_Z = 30  # above the overlay and the image-area rectangle


class TraineePanel(QtWidgets.QWidget):
    """Start/stop, the question in big letters, the verdict, the score table, export, and
    the phantom's scanning task. Compact: the side panel must fit a 1366x768 screen."""

    def __init__(self) -> None:
        super().__init__()
        column = QtWidgets.QVBoxLayout(self)
        column.setContentsMargins(4, 4, 4, 0)
        column.setSpacing(2)
        buttons = QtWidgets.QHBoxLayout()
        self.start_button = QtWidgets.QPushButton("Start (T)")
        self.start_button.setCheckable(True)
        self.start_button.toggled.connect(
            lambda on: self.start_button.setText("Stop (T)" if on else "Start (T)"))
        self.next_button = QtWidgets.QPushButton("Next")
        self.next_button.setEnabled(False)
        self.export_button = QtWidgets.QPushButton("CSV")
        self.export_button.setToolTip("Export the session score as CSV")
        # a toggle in the button row rather than a line of its own: the page stays short
        self.scan_button = QtWidgets.QPushButton("Scan")
        self.scan_button.setCheckable(True)
        self.scan_button.setToolTip("Scanning task (phantom): find a view where the vein and the "
                                 "artery are both visible, held 1 s; the hint comes from the "
                                 "phantom's truth.")
        for button in (self.start_button, self.next_button, self.export_button, self.scan_button):
            button.setStyleSheet("padding: 4px 6px;")
            buttons.addWidget(button)
        column.addLayout(buttons)
        self.question = QtWidgets.QLabel("Press T to practise")
        self.question.setStyleSheet(f"font-size: {theme.TARGET_FONT_PT}pt; font-weight: bold;")
        column.addWidget(self.question)
        small = theme.BASE_FONT_PT - 3
        self.verdict = _fixed_lines(3, small)
        column.addWidget(self.verdict)
        self.table = QtWidgets.QTableWidget(0, 4)
        self.table.setStyleSheet(f"font-size: {small}pt;")
        self.table.setHorizontalHeaderLabels(["Structure", "Asked", "Hits", "Median"])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(QtGui.QFontMetrics(
            _font(small)).height() + 4)
        self.table.horizontalHeader().setSectionResizeMode(
            QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(40)  # the page no taller than the Image tab's
        self.table.setMaximumHeight(150)
        column.addWidget(self.table)
        self.scan_hint = _fixed_lines(2, small)
        column.addWidget(self.scan_hint)
        column.addStretch(1)

    def set_verdict(self, text: str, colour: str = theme.TEXT) -> None:
        self.verdict.setText(text)
        self.verdict.setStyleSheet(f"color: {colour}; font-size: {theme.BASE_FONT_PT - 3}pt;")

    def show_scores(self, session: TraineeSession) -> None:
        rows = session.scores()
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            if row.key == SCAN_KEY:
                median = "" if row.median_time_s is None else f"{row.median_time_s:.1f} s"
            elif row.median_mm is not None:
                median = f"{row.median_mm:.1f} mm"
            else:
                median = "" if row.median_px is None else f"{row.median_px:.0f} px"
            name = "scan" if row.key == SCAN_KEY else row.key
            for j, text in enumerate((name, str(row.asked), str(row.hits), median)):
                self.table.setItem(i, j, QtWidgets.QTableWidgetItem(text))


class TraineeController(QtCore.QObject):
    """Drives trainee mode on a MainWindow (duck-typed: session, shown_frame, fresh, view,
    overlay_controls, mode, model, source, deps, statusBar).

    reveal_ms: how long a verdict stays before the next question (Next skips the wait).
    live_ms: how long the image runs between questions, so the next one is on a new view.
    """

    def __init__(self, window: Any, *, reveal_ms: int = 4000, live_ms: int = 800) -> None:
        super().__init__(window)
        self.window = window
        self.session = TraineeSession(window.mode)
        self.panel = TraineePanel()
        self.question: Question | None = None  # open: waiting for the click
        self.verdict: Verdict | None = None
        self.active = False
        self._restore: tuple[bool, bool] = (False, True)  # frozen, overlay shown before
        self._next = _single_shot(self, reveal_ms, self.next_question)
        self._ask = _single_shot(self, live_ms, self.ask)
        self._poll = QtCore.QTimer(self)
        self._poll.setInterval(250)
        self._poll.timeout.connect(self._follow)
        self._poll.start()
        self._build_marks(window.view)
        panel = self.panel
        panel.start_button.toggled.connect(lambda on: self.start() if on else self.stop())
        panel.next_button.clicked.connect(self.next_question)
        panel.export_button.clicked.connect(self._export_clicked)
        panel.scan_button.toggled.connect(self._scan_toggled)
        panel.scan_button.setVisible(False)
        window.overlay_controls.show_box.toggled.connect(self._overlay_toggled)
        policy = window.target_label.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # hidden while asking: the panel must not jump
        window.target_label.setSizePolicy(policy)

    def _build_marks(self, view: pg.ViewBox) -> None:
        self.click_mark = pg.ScatterPlotItem(pxMode=True, antialias=True)
        self.centre_mark = pg.ScatterPlotItem(pxMode=True, antialias=True)
        pen = QtGui.QPen(QtGui.QColor(theme.TARGET_COLOUR))
        pen.setCosmetic(True)
        pen.setWidthF(2.0)
        pen.setStyle(QtCore.Qt.PenStyle.DotLine)
        self.outline_item = QtWidgets.QGraphicsPathItem()
        self.outline_item.setPen(pen)
        # at the foot of the image: the top holds the banners (REC, NO SIGNAL)
        self.prompt = pg.TextItem("", color=theme.TEXT, anchor=(0.5, 1.0),
                                  fill=pg.mkBrush(0, 0, 0, 190))
        font = QtGui.QFont()
        font.setPointSize(theme.TARGET_FONT_PT)
        font.setBold(True)
        self.prompt.setFont(font)
        for z, item in enumerate((self.outline_item, self.centre_mark, self.click_mark,
                                  self.prompt)):
            item.setZValue(MARK_Z + z)
            item.setVisible(False)
            view.addItem(item)

    # --- practice ---------------------------------------------------------------------------
    def toggle(self) -> None:
        self.panel.start_button.toggle()  # its toggled signal starts or stops

    def start(self) -> None:
        if self.active:
            return
        window = self.window
        self.active = True
        self._restore = (window.session.frozen, window.overlay_controls.enabled)
        self.panel.start_button.setChecked(True)
        tabs = getattr(window, "tabs", None)
        if tabs is not None:  # the question and score in view
            tabs.setCurrentWidget(self.panel)
        self.ask()

    def stop(self) -> None:
        if not self.active:
            return
        self.active = False
        self._next.stop()
        self._ask.stop()
        if self.question is not None:
            self.session.withdraw(self.question)
        self.question = None
        self._hide_marks()
        frozen, shown = self._restore
        self.window.session.frozen = frozen
        self.window.overlay_controls.show_box.setChecked(shown)
        self._show_answers(True)
        self.panel.start_button.setChecked(False)
        self.panel.next_button.setEnabled(False)
        self.panel.question.setText("Press T to practise")
        self.panel.show_scores(self.session)

    def ask(self) -> None:
        """Freeze the image on screen and ask about it (retried until there is one)."""
        if not self.active:
            return
        window = self.window
        frame = window.shown_frame
        if frame is None:  # nothing on screen yet: look again shortly
            QtCore.QTimer.singleShot(100, self.ask)
            return
        window.session.frozen = True  # the click is judged on this very image
        window.overlay_controls.show_box.setChecked(False)
        self._show_answers(False)
        model = window.model
        classes = getattr(getattr(model, "segmenter", None), "classes", None)
        self.session.set_mode(window.mode, classes)
        self.verdict = None
        self.question = self.session.ask(frame, window.fresh)
        self._hide_marks()
        self._show_prompt(self.question.text, theme.TEXT)
        self.panel.question.setText(self.question.text)
        self.panel.set_verdict("Click it on the image (frozen).", theme.MUTED)
        self.panel.next_button.setEnabled(False)
        self.panel.show_scores(self.session)

    def take_click(self, x: float, y: float) -> bool:
        """A click on the image at view coordinates (x, y). True: it answered (or belonged to)
        practice, so no other click handler should take it."""
        if not self.active:
            return False
        question = self.question
        if question is None:
            return True  # between questions: a stray click must not calibrate anything
        window = self.window
        shown = window.shown_frame
        if shown is not None and shown.frame_id != question.frame.frame_id:
            # the image moved on under the question (Space): ask again on what is on screen
            self.session.withdraw(question)
            self.question = None
            self.ask()
            return True
        # pixel (c, r) is drawn over [c, c + 1): its centre, where scoring puts it, is c + 0.5
        verdict = self.session.answer(question, x - 0.5, y - 0.5, window.fresh)
        self.question = None
        self.verdict = verdict
        self._reveal(verdict)
        return True

    def next_question(self) -> None:
        if not self.active:
            return
        self._next.stop()
        self._hide_marks()
        self.window.session.frozen = False
        self.panel.next_button.setEnabled(False)
        self.panel.question.setText("...")
        self._ask.start()

    def _reveal(self, verdict: Verdict) -> None:
        self.window.overlay_controls.show_box.setChecked(True)
        self._show_answers(True)
        if not verdict.scored:
            colour, headline = theme.WARN, "Not scored"
        elif verdict.hit:
            colour, headline = HIT_COLOUR, "Hit"
        else:
            colour, headline = MISS_COLOUR, "Miss"
        x, y = verdict.click
        self.click_mark.setData([{"pos": (x + 0.5, y + 0.5), "size": 22, "symbol": "o",
                                  "pen": pg.mkPen("#000000", width=2),
                                  "brush": pg.mkBrush(colour)}])
        self.click_mark.setVisible(True)
        if verdict.outline is not None and verdict.centre is not None:
            self.outline_item.setPath(outline_path(verdict.outline))
            self.outline_item.setVisible(True)
            cx, cy = verdict.centre
            self.centre_mark.setData([{"pos": (cx + 0.5, cy + 0.5), "size": 18, "symbol": "+",
                                       "pen": pg.mkPen(theme.TARGET_COLOUR, width=2)}])
            self.centre_mark.setVisible(True)
        self._show_prompt(headline, colour)
        self.panel.question.setText(headline)
        self.panel.set_verdict(verdict.message, colour)
        self.panel.next_button.setEnabled(True)
        self.panel.show_scores(self.session)
        self._next.start()

    def _show_answers(self, on: bool) -> None:
        """The side panel's target line gives the vein's depth away: hidden while asking."""
        self.window.target_label.setVisible(on)

    def _show_prompt(self, text: str, colour: str) -> None:
        frame = self.window.shown_frame
        roi = getattr(frame, "roi", None)
        if frame is None:
            return
        x = roi.x + roi.w / 2 if roi is not None else frame.width / 2
        y = roi.y + roi.h if roi is not None else frame.height
        self.prompt.setText(text, color=colour)
        self.prompt.setPos(x, y)
        self.prompt.setVisible(True)

    def _hide_marks(self) -> None:
        for item in (self.click_mark, self.centre_mark, self.outline_item, self.prompt):
            item.setVisible(False)

    def _overlay_toggled(self, on: bool) -> None:
        """O during a question would give the answer away: the overlay stays hidden."""
        if on and self.active and self.question is not None:
            self.window.overlay_controls.show_box.setChecked(False)
            self.window.statusBar().showMessage("Overlay hidden until you answer", 3000)

    # --- export -----------------------------------------------------------------------------
    def export_csv(self, path: str | Path) -> Path | None:
        try:
            written = self.session.export_csv(path)
        except OSError as exc:
            self.window.statusBar().showMessage(f"Export failed: {exc}", 8000)
            return None
        self.window.statusBar().showMessage(f"Trainee scores saved: {written}", 10000)
        return written

    def _export_clicked(self) -> None:
        folder = Path(getattr(self.window.deps, "snapshot_dir", Path.home()))
        name = time.strftime("trainee-%Y%m%d-%H%M%S.csv")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.window, "Export trainee scores",
                                                        str(folder / name), "CSV (*.csv)")
        if path:
            self.export_csv(path)

    # --- scanning task ----------------------------------------------------------------------
    def _scan_toggled(self, on: bool) -> None:
        if on:
            self.session.scan_start(time.monotonic())
            self.panel.scan_hint.setText("Find a view with the vein and the artery.")
        else:
            self.session.scan_stop()
            self.panel.scan_hint.setText("")
        self.panel.show_scores(self.session)

    def _follow(self) -> None:
        """Poll: the scanning task follows the live image; it is offered on the phantom only
        (a source with a simulator, or frames with truth)."""
        window = self.window
        frame = window.shown_frame
        simulator = getattr(window.source, "simulator", None)
        phantom = simulator is not None or (frame is not None and frame.truth is not None)
        if self.panel.scan_button.isVisibleTo(self.panel) != phantom:
            if not phantom:
                self.panel.scan_button.setChecked(False)
            self.panel.scan_button.setVisible(phantom)
            self.panel.scan_hint.setVisible(phantom)
        if self.active and self.question is not None and not window.session.frozen:
            window.session.frozen = True  # keep the asked image still until the click
        if not self.session.scanning or frame is None:
            return
        found_before = self.session.scan_found_after
        check = self.session.scan_update(frame, time.monotonic(), simulator)
        self.panel.scan_hint.setText(check.hint)
        self.panel.scan_hint.setStyleSheet(f"color: {HIT_COLOUR if check.ok else theme.WARN};"
                                           f" font-size: {theme.BASE_FONT_PT - 3}pt;")
        if found_before is None and self.session.scan_found_after is not None:
            self.panel.show_scores(self.session)


def _font(point_size: int) -> QtGui.QFont:
    font = QtGui.QFont()
    font.setPointSize(point_size)
    return font


def _fixed_lines(lines: int, point_size: int) -> QtWidgets.QLabel:
    """A wrapping label of a fixed number of lines: a long verdict or hint must not make the
    side panel taller (it would scroll on a laptop screen)."""
    label = QtWidgets.QLabel("")
    label.setWordWrap(True)
    label.setStyleSheet(f"font-size: {point_size}pt;")
    label.setAlignment(QtCore.Qt.AlignmentFlag.AlignLeft | QtCore.Qt.AlignmentFlag.AlignTop)
    label.setFixedHeight(QtGui.QFontMetrics(_font(point_size)).lineSpacing() * lines + 4)
    return label


def _single_shot(parent: QtCore.QObject, ms: int, slot) -> QtCore.QTimer:
    timer = QtCore.QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(int(ms))
    timer.timeout.connect(slot)
    return timer


def outline_path(outline: np.ndarray) -> QtGui.QPainterPath:
    """A verdict's outline (pixel-centre coordinates) as a closed path in view coordinates."""
    path = QtGui.QPainterPath()
    path.addPolygon(QtGui.QPolygonF([QtCore.QPointF(float(x) + 0.5, float(y) + 0.5)
                                     for x, y in outline]))
    path.closeSubpath()
    return path
