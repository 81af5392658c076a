"""Trainee mode in the window: the practice loop (ask, click, score, reveal, export) and the
scanning task, driven with real clicks on a picture with its truth."""

from __future__ import annotations

import csv
import io
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

from PySide6 import QtCore, QtWidgets  # noqa: E402

from sonoguide.phantom.labels import ARTERY, VEIN  # noqa: E402
from sonoguide.pipeline.trainee import TRUTH  # noqa: E402
from sonoguide.sources.base import FrameSource, SourceState  # noqa: E402
from tests.test_window import (  # noqa: E402, F401
    Harness,
    models,
    use_recording_phantom,
    wait_model,
)
from tests.waiting import WAIT_MS  # noqa: E402

W_SIZE = (120, 160)
VEIN_AT, ARTERY_AT = (60, 60), (115, 70)


class TruthSource(FrameSource):
    """A still picture with its truth, like the phantom: bright disc = vein (the jugular test
    model's class 1), dark disc = artery (class 2), 0.1 mm per pixel."""

    def __init__(self, name: str) -> None:
        super().__init__(name, 30.0)
        h, w = W_SIZE
        yy, xx = np.mgrid[0:h, 0:w]
        vein = (xx - VEIN_AT[0]) ** 2 + (yy - VEIN_AT[1]) ** 2 < 18 ** 2
        artery = (xx - ARTERY_AT[0]) ** 2 + (yy - ARTERY_AT[1]) ** 2 < 14 ** 2
        self.image = np.full(W_SIZE, 128, np.uint8)
        self.image[vein], self.image[artery] = 250, 5
        self.truth = np.zeros(W_SIZE, np.uint8)
        self.truth[vein], self.truth[artery] = VEIN, ARTERY

    def _run(self) -> None:
        self._set_status(SourceState.LIVE)
        t = time.monotonic()
        while not self._stop_event.is_set():
            self._publish(self.image, pixel_spacing_mm=0.1, truth=self.truth)
            t += 1.0 / self.nominal_fps
            if not self._sleep_until(t):
                return


def click_pixel(qtbot, window, x: int, y: int) -> None:
    """A real mouse click on the view over image pixel (x, y)."""
    scene = window.view.mapViewToScene(QtCore.QPointF(x + 0.5, y + 0.5))
    pos = window.graphics.mapFromScene(scene)
    qtbot.mouseClick(window.graphics.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=pos)


def test_practice_in_the_window_click_score_reveal_and_export(qtbot, models, tmp_path,  # noqa: F811
                                                              monkeypatch):
    harness = Harness(qtbot, models, tmp_path)
    harness.deps.open_source = TruthSource
    window = harness.window(mode="jugular")
    wait_model(qtbot, window)
    qtbot.waitUntil(lambda: window.overlay.visible, timeout=WAIT_MS)
    trainee, panel = window.trainee, window.trainee.panel
    trainee._next.setInterval(60_000)  # the verdict stays until Next
    trainee._ask.setInterval(0)
    assert window.tabs.tabText(window._trainee_tab) == "Trainee"

    qtbot.keyClick(window, QtCore.Qt.Key.Key_T)
    assert trainee.active and window.frozen and panel.start_button.isChecked()
    question = trainee.question
    assert question.structure == "vein" and panel.question.text() == "Click the vein"
    qtbot.waitUntil(lambda: not window.overlay.visible, timeout=WAIT_MS)
    asked_id = window.shown_frame.frame_id
    published = window.source.frames_published
    qtbot.waitUntil(lambda: window.source.frames_published > published + 3, timeout=WAIT_MS)
    assert window.shown_frame.frame_id == asked_id  # frozen on the asked image
    window.toggle_overlay()  # O would give the answer away: it stays hidden
    assert not window.overlay_controls.enabled
    assert window.target_label.isHidden()  # "Target: vein 24.9 mm" would too

    click_pixel(qtbot, window, *VEIN_AT)
    qtbot.waitUntil(lambda: trainee.verdict is not None, timeout=WAIT_MS)
    verdict = trainee.verdict
    assert verdict.hit and verdict.against == TRUTH and verdict.unit == "mm"
    assert verdict.distance == pytest.approx(0.0, abs=0.15)  # the disc's centre, +- a pixel
    assert panel.verdict.text().startswith("Hit") and panel.question.text() == "Hit"
    qtbot.waitUntil(lambda: window.overlay.visible, timeout=WAIT_MS)
    assert not window.target_label.isHidden()  # revealed
    assert trainee.click_mark.isVisible() and trainee.outline_item.isVisible()
    assert trainee.click_mark.points()[0].brush().color().name() == "#009e73"  # green
    table = [[panel.table.item(r, c).text() for c in range(4)]
             for r in range(panel.table.rowCount())]
    assert table == [["vein", "1", "1", "0.0 mm"]]

    panel.next_button.click()
    qtbot.waitUntil(lambda: trainee.question is not None, timeout=WAIT_MS)
    assert trainee.question.structure == "artery" and window.frozen
    assert not trainee.click_mark.isVisible()
    click_pixel(qtbot, window, *VEIN_AT)  # the vein, when asked for the artery
    qtbot.waitUntil(lambda: trainee.verdict is not None, timeout=WAIT_MS)
    assert not trainee.verdict.hit and "you clicked the vein" in trainee.verdict.message
    assert trainee.click_mark.points()[0].brush().color().name() == "#d55e00"  # red
    assert panel.table.item(1, 0).text() == "artery" and panel.table.item(1, 2).text() == "0"

    target = tmp_path / "scores.csv"
    monkeypatch.setattr(QtWidgets.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "")))
    panel.export_button.click()
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [(r["structure"], r["asked"], r["hits"]) for r in rows] == [("vein", "1", "1"),
                                                                      ("artery", "1", "0")]

    # The scanning task is offered (frames with truth) and finds the good view.
    qtbot.waitUntil(lambda: panel.scan_button.isVisible(), timeout=WAIT_MS)
    panel.scan_button.setChecked(True)
    qtbot.waitUntil(lambda: panel.scan_hint.text().startswith("Found in"), timeout=WAIT_MS)

    qtbot.keyClick(window, QtCore.Qt.Key.Key_T)  # stop: live again, overlay back as it was
    assert not trainee.active and not window.frozen and window.overlay_controls.enabled
    seen = window.shown_frame.frame_id
    qtbot.waitUntil(lambda: window.shown_frame.frame_id > seen, timeout=WAIT_MS)

