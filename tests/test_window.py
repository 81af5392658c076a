"""The real main window, driven with fake sources and real tiny ONNX models (tests/model_factory).

Fake frames: mid-grey background, one bright disc (model class 1: nerve / vein) and one dark
disc (class 2: vessel / artery), moving a little every frame so every frame is new.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore  # noqa: E402

from sonoguide.pipeline.frames import Roi  # noqa: E402
from sonoguide.sources.base import FrameSource, SourceState  # noqa: E402
from tests.model_factory import JUGULAR, PLEXUS, GatedSegmenter, make_model  # noqa: E402
from tests.waiting import WAIT_MS, wait_value  # noqa: E402

pytestmark = pytest.mark.gui

SIZE = (120, 160)  # h, w


def fake_image(i: int) -> np.ndarray:
    h, w = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.full(SIZE, 128, np.uint8)
    cx = 50 + (i % 20)
    image[(xx - cx) ** 2 + (yy - 60) ** 2 < 18 ** 2] = 250
    image[(xx - 115) ** 2 + (yy - 70) ** 2 < 14 ** 2] = 5
    return image


class FakeSource(FrameSource):
    """Publishes frames at `fps`; after `lose_after` frames it reports NO SIGNAL and goes quiet,
    like an unplugged capture card."""

    def __init__(self, name: str = "fake", fps: float = 30.0, lose_after: int | None = None,
                 spacing: float | None = 0.1, image: np.ndarray | None = None) -> None:
        super().__init__(name, fps)
        self.lose_after = lose_after
        self.spacing = spacing
        self.image = image  # a fixed picture (e.g. a whole scanner screen) instead of discs
        self.last_image: np.ndarray | None = None

    def _run(self) -> None:
        self._set_status(SourceState.LIVE)
        t, i = time.monotonic(), 0
        while not self._stop_event.is_set():
            if self.lose_after is not None and i >= self.lose_after:
                self._set_status(SourceState.NO_SIGNAL, "capture lost")
                self._stop_event.wait(0.05)
                continue
            self.last_image = fake_image(i) if self.image is None else self.image
            self._publish(self.last_image, pixel_spacing_mm=self.spacing)
            i += 1
            t += 1.0 / self.nominal_fps
            if not self._sleep_until(t):
                return


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "plexus": make_model(folder / "plexus.onnx", PLEXUS, version="plexus-t"),
        "jugular": make_model(folder / "jugular.onnx", JUGULAR, version="jugular-t"),
        "bad": make_model(folder / "bad.onnx", PLEXUS, kind="wrong_shape"),
    }


class Harness:
    def __init__(self, qtbot, models: dict[str, Path], tmp_path: Path) -> None:
        from sonoguide.ui.app import real_deps

        self.sources: list[FakeSource] = []
        self.loaded: list[tuple[str, str | None]] = []
        self.gates: list[GatedSegmenter] = []  # opened when the test ends
        self.gate: dict | None = None  # GatedSegmenter options: each model loaded goes behind one
        self.source_kwargs: dict = {}
        self.deps = real_deps("cpu", 1, open_source=self._open, default_path=models.__getitem__,
                              snapshot_dir=tmp_path / "snaps")
        real_load = self.deps.load_model

        def load(mode: str, path: str | None):
            self.loaded.append((mode, path))
            loaded = real_load(mode, path)
            if self.gate is None:
                return loaded
            self.gates.append(GatedSegmenter(loaded.segmenter, **self.gate))
            return dataclasses.replace(loaded, segmenter=self.gates[-1])

        self.deps.load_model = load
        self.deps.roi_store = None
        self.deps.detect_roi = Roi.full
        self.qtbot = qtbot

    def _open(self, spec: str) -> FakeSource:
        if spec.startswith("camera:9"):
            raise ValueError("capture device 9 did not open")
        source = FakeSource(spec, **self.source_kwargs)
        self.sources.append(source)
        return source

    def window(self, **kwargs):
        from sonoguide.ui.window import MainWindow

        window = MainWindow(self.deps, source=kwargs.pop("source", "fake"), **kwargs)
        self.qtbot.addWidget(window, before_close_func=lambda w: w.shutdown())
        window.show()
        self.qtbot.waitExposed(window)
        window.activateWindow()
        return window


@pytest.fixture
def harness(qtbot, models, tmp_path):
    harness = Harness(qtbot, models, tmp_path)
    yield harness
    for gate in harness.gates:  # before qtbot closes the window: its worker can stop
        gate.open()


def wait_model(qtbot, window, timeout: int = WAIT_MS) -> None:
    qtbot.waitUntil(lambda: window.model is not None, timeout=timeout)


def test_frames_are_shown_and_fresh_overlay_painted(qtbot, harness):
    window = harness.window(mode="plexus")
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    first_id = window.shown_frame.frame_id
    qtbot.waitUntil(lambda: window.shown_frame.frame_id >= first_id + 5, timeout=WAIT_MS)
    np.testing.assert_array_equal(window.image_item.image, window.shown_frame.image)
    # Aspect ratio locked: the 160x120 frame is never stretched to the view's shape.
    assert window.view.state["aspectLocked"] == 1.0
    wait_model(qtbot, window)
    qtbot.waitUntil(lambda: window.overlay.visible, timeout=WAIT_MS)
    assert len(window.overlay.visible_contours()) >= 2  # nerve disc + vessel disc
    assert "nerve" in window.overlay.label_text and "mm" in window.overlay.label_text
    assert window.legend.names() == ["nerve", "vessel"]
    assert all(text.endswith("%") for text in window.legend.confidence_texts())
    assert not window.banner_text("lagging")
    # A capture card has no phantom or clip knobs: no empty tab, the overlay settings show.
    tabs = window.tabs
    assert not tabs.isTabVisible(0) and tabs.tabText(tabs.currentIndex()) == "Overlay"


def test_area_chart_fills_with_one_line_per_class_when_results_come(qtbot, harness):
    from sonoguide.ui import theme

    window = harness.window(mode="jugular")
    chart = window.area_chart
    wait_model(qtbot, window)
    qtbot.waitUntil(lambda: len(window.area_timeline) >= 5 and chart.redraws >= 2, timeout=WAIT_MS)
    assert set(chart.curves) == {"vein", "artery"}
    curves = dict(chart.curves)
    for name, curve in curves.items():
        assert curve.opts["pen"].color().name().lower() == theme.class_colour(name).lower()
        x, y = curve.getData()
        assert len(x) >= 2 and np.all(x <= 0.5) and np.all(x >= -10.5)
        # Each line is % of its own recent high: the fake discs keep their size, so ~100 %.
        assert np.nanmedian(y) == pytest.approx(100.0, abs=15.0)
    # The absolute areas are written out: bright disc (vein, r 18 px) and dark disc
    # (artery, r 14 px) at 0.1 mm/px.
    text = chart.values_text()
    assert text.endswith("mm²")
    shown = {name: float(value) for name, value in
             (part.split() for part in text.removesuffix("mm²").split("  "))}
    assert shown["vein"] == pytest.approx(np.pi * 18 ** 2 * 0.01, rel=0.3)
    assert shown["artery"] == pytest.approx(np.pi * 14 ** 2 * 0.01, rel=0.3)
    assert "vein" in chart.unit_label.text() and "mm²" in chart.unit_label.text()
    redraws = chart.redraws
    qtbot.waitUntil(lambda: chart.redraws > redraws + 2, timeout=WAIT_MS)
    assert chart.curves == curves  # the same line items, new data: nothing rebuilt per frame
    window.set_mode("plexus")  # another model: the chart starts over with its classes
    qtbot.waitUntil(lambda: set(chart.curves) == {"nerve", "vessel"}, timeout=WAIT_MS)


def test_area_chart_shows_each_class_relative_to_its_own_high(qtbot):
    """A 40 mm² artery pulsing by 5 mm² beside a 150 mm² vein: on one absolute axis the
    artery is flat; relative to its own high it swings over 10 points, and a vein pressed
    to 40 mm² reads about a quarter of its high."""
    from sonoguide.pipeline.frames import Roi, Segmentation, Structure
    from sonoguide.pipeline.timeline import AreaTimeline
    from sonoguide.ui.area_chart import AreaChart

    def seg(i: int, vein: float, artery: float) -> Segmentation:
        structures = tuple(Structure(name, np.zeros((3, 2), np.float32), area, (0.0, 0.0), 0.9,
                                     area_mm2=area)
                           for name, area in (("vein", vein), ("artery", artery)))
        return Segmentation(i, i / 30, i / 30 + 0.02, JUGULAR, Roi(0, 0, 10, 10),
                            np.zeros((10, 10), np.uint8), structures, None)

    timeline = AreaTimeline(window_s=10.0)
    chart = AreaChart(timeline)
    qtbot.addWidget(chart)
    for i in range(240):  # 8 s at 30 fps: pulse 1.25 Hz, vein pressed during 3-5 s
        vein = 40.0 if 90 <= i < 150 else 150.0
        timeline.add(seg(i, vein, 40.5 + 2.5 * np.sin(2 * np.pi * 1.25 * i / 30)))
    chart.refresh(now=239 / 30, force=True)
    _, artery = chart.curves["artery"].getData()
    _, vein = chart.curves["vein"].getData()
    assert artery.max() - artery.min() > 10.0  # the pulsation is plain to see
    assert np.max(vein) == pytest.approx(100.0, abs=1.0)
    assert np.min(vein) == pytest.approx(100.0 * 40 / 150, abs=3.0)
    assert vein[-1] == pytest.approx(100.0, abs=1.0)
    artery_now = 40.5 + 2.5 * np.sin(2 * np.pi * 1.25 * 239 / 30)
    assert chart.values_text() == f"vein 150  artery {artery_now:.0f} mm²"  # absolute, as text


# 1366x698: a window maximised on a 1366x768 laptop under a 30 px title bar and a 40 px taskbar.
@pytest.mark.parametrize("size", [(1366, 698), (1366, 768), (1920, 1080)])
def test_whole_side_panel_fits_common_laptop_screens_without_scrolling(qtbot, harness, size):
    use_recording_phantom(harness)
    window = harness.window(source="phantom", mode="jugular")
    window.resize(*size)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == size, timeout=WAIT_MS)
    wait_model(qtbot, window)
    qtbot.waitUntil(lambda: window.legend.names() == ["vein", "artery"], timeout=WAIT_MS)
    scroll = window.panel_scroll
    viewport = scroll.viewport()
    tabs = window.tabs
    controls = {0: [window.phantom_controls.gain, window.phantom_controls.depth,
                    window.phantom_controls.pressure],
                1: [window.overlay_controls.opacity, window.overlay_controls.show_box],
                2: [window.calibrate_button, window.roi_reset_button, window.record_button],
                3: [window.trainee.panel]}
    always = [window.mode_switch, window.target_label, window.legend, window.area_chart.plot]
    for index, widgets in controls.items():
        tabs.setCurrentIndex(index)
        qtbot.waitUntil(lambda w=widgets: all(x.isVisible() for x in w), timeout=WAIT_MS)
        assert scroll.verticalScrollBar().maximum() == 0, tabs.tabText(index)
        for widget in always + widgets:  # wholly inside the visible panel
            top_left = widget.mapTo(viewport, widget.rect().topLeft())
            bottom_right = widget.mapTo(viewport, widget.rect().bottomRight())
            assert viewport.rect().contains(top_left) and viewport.rect().contains(
                bottom_right), (tabs.tabText(index), type(widget).__name__)
    # The image keeps most of the width.
    assert window.video.width() > 0.6 * window.centralWidget().width()


def test_mode_switch_loads_the_other_model(qtbot, harness):
    window = harness.window(mode="plexus")
    wait_model(qtbot, window)
    assert window.model.version == "plexus-t"
    window.mode_switch.buttons["jugular"].click()
    qtbot.waitUntil(lambda: window.model is not None and window.model.version == "jugular-t",
                    timeout=WAIT_MS)
    assert harness.loaded[-1] == ("jugular", None)
    assert window.legend.names() == ["vein", "artery"]
    assert window.status_labels["model"].text() == "model jugular-t"
    qtbot.waitUntil(lambda: window.overlay.visible, timeout=WAIT_MS)
    assert window.painted.classes == JUGULAR
    assert window.painted.target is not None and window.painted.target.class_name == "vein"


def test_slow_model_overlay_hidden_as_stale(qtbot, harness):
    # The model answers once, then stays busy: its answer ages past the 50 ms budget.
    harness.gate = {}
    window = harness.window(mode="plexus", budget_s=0.05)
    wait_model(qtbot, window)
    harness.gates[-1].release()
    qtbot.waitUntil(lambda: bool(window.banner_text("lagging")), timeout=WAIT_MS)
    assert "AI lagging" in window.banner_text("lagging")
    # Decided in the same GUI step as the banner: no old contour on the newer frame.
    assert not window.overlay.visible
    assert window.painted is None
    # The live image keeps moving meanwhile.
    shown = window.shown_frame.frame_id
    qtbot.waitUntil(lambda: window.shown_frame.frame_id > shown + 3, timeout=WAIT_MS)


def test_lost_capture_shows_no_signal_and_keeps_last_frame(qtbot, harness):
    harness.source_kwargs = {"lose_after": 8}
    window = harness.window(mode="plexus")
    qtbot.waitUntil(lambda: bool(window.banner_text("nosignal")), timeout=WAIT_MS)
    assert "NO SIGNAL" in window.banner_text("nosignal")
    assert "last image held" in window.banner_text("nosignal")
    source = harness.sources[-1]
    qtbot.waitUntil(lambda: window.shown_frame.frame_id == 7, timeout=WAIT_MS)
    np.testing.assert_array_equal(window.image_item.image, source.last_image)
    # Still responsive: the overlay toggle and freeze work while the signal is gone.
    window.toggle_overlay()
    assert not window.overlay_controls.enabled
    window.toggle_freeze()
    assert window.banner_text("frozen")


def test_bad_model_refused_while_video_keeps_running(qtbot, harness, models):
    window = harness.window(mode="plexus", model_path=str(models["bad"]))
    qtbot.waitUntil(lambda: bool(window.banner_text("model")), timeout=WAIT_MS)
    text = window.banner_text("model")
    assert text.startswith("Model refused:") and "bad.onnx" in text and "channels" in text
    assert window.model is None and not window.overlay.visible
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    seen = window.shown_frame.frame_id
    qtbot.waitUntil(lambda: window.shown_frame.frame_id > seen + 5, timeout=WAIT_MS)
    # Switching to a good model recovers.
    window.set_mode("jugular")
    wait_model(qtbot, window)
    assert not window.banner_text("model")


def test_snapshot_writes_pngs_and_json(qtbot, harness, tmp_path):
    window = harness.window(mode="plexus")
    wait_model(qtbot, window)
    qtbot.waitUntil(lambda: window.overlay.visible, timeout=WAIT_MS)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_S)
    qtbot.waitUntil(lambda: window.last_snapshot is not None, timeout=WAIT_MS)
    paths = window.last_snapshot
    assert paths.raw_png.is_file() and paths.overlay_png.is_file()
    assert paths.raw_png.parent == tmp_path / "snaps"
    record = json.loads(paths.json.read_text())
    assert record["mode"] == "plexus" and record["model_version"] == "plexus-t"
    classes = {s["class"] for s in record["overlay"]["structures"]}
    assert classes == {"nerve", "vessel"}
    assert record["overlay"]["target"]["depth_mm"] > 0
    assert paths.json.stem in window.statusBar().currentMessage()
    assert window.banner_text("info").startswith(f"Snapshot saved: {paths.json.stem}")
    import cv2

    raw, over = cv2.imread(str(paths.raw_png)), cv2.imread(str(paths.overlay_png))
    assert raw.shape == over.shape == (*SIZE, 3)
    assert np.abs(raw.astype(int) - over.astype(int)).sum() > 0  # the overlay is drawn

    # Overlay hidden by the user: the record still says what was found, and that it was hidden.
    qtbot.keyClick(window, QtCore.Qt.Key.Key_O)
    qtbot.waitUntil(lambda: window.fresh is not None and not window.overlay.visible,
                    timeout=WAIT_MS)
    hidden = window.snapshot()
    record = json.loads(hidden.json.read_text())
    assert record["overlay_shown"] is False and record["overlay"]["structures"]


def test_keyboard_space_freezes_and_o_toggles_overlay(qtbot, harness):
    window = harness.window(mode="plexus")
    wait_model(qtbot, window)
    qtbot.waitUntil(lambda: window.overlay.visible, timeout=WAIT_MS)

    qtbot.keyClick(window, QtCore.Qt.Key.Key_O)
    assert not window.overlay_controls.enabled
    qtbot.waitUntil(lambda: not window.overlay.visible, timeout=WAIT_MS)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_O)
    qtbot.waitUntil(lambda: window.overlay.visible, timeout=WAIT_MS)

    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    assert window.frozen and window.banner_text("frozen")
    frozen_id = window.shown_frame.frame_id
    source = harness.sources[-1]
    published = source.frames_published
    qtbot.waitUntil(lambda: source.frames_published > published + 5, timeout=WAIT_MS)
    assert window.shown_frame.frame_id == frozen_id
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.shown_frame.frame_id > frozen_id, timeout=WAIT_MS)
    assert not window.banner_text("frozen")


def test_roi_drag_limits_what_the_model_sees(qtbot, harness):
    window = harness.window(mode="plexus")
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    assert window.roi_for(window.shown_frame) == Roi(0, 0, 160, 120)
    window.roi_item.setPos((10, 20))
    window.roi_item.setSize((80, 70))  # emits sigRegionChangeFinished
    qtbot.waitUntil(lambda: window.roi_for(window.shown_frame) == Roi(10, 20, 80, 70),
                    timeout=WAIT_MS)
    wait_model(qtbot, window)
    qtbot.waitUntil(lambda: window.painted is not None and window.painted.roi == Roi(10, 20, 80,
                                                                                      70),
                    timeout=WAIT_MS)
    # A box too small to hold an ultrasound image is refused, and the rectangle goes back.
    window.roi_item.setSize((30, 20))
    qtbot.waitUntil(lambda: tuple(window.roi_item.size()) == (80, 70), timeout=WAIT_MS)
    assert window.roi_for(window.shown_frame) == Roi(10, 20, 80, 70)
    assert "refused" in window.statusBar().currentMessage()
    window.roi_reset_button.click()  # back to the detected area (here: the full frame)
    assert window.roi_for(window.shown_frame) == Roi(0, 0, 160, 120)


def test_calibration_gives_depth_without_source_spacing(qtbot, harness):
    harness.source_kwargs = {"spacing": None}
    window = harness.window(mode="plexus")
    wait_model(qtbot, window)
    qtbot.waitUntil(lambda: window.overlay.visible, timeout=WAIT_MS)
    assert "calibrate" in window.overlay.label_text
    assert window.set_calibration((5.0, 5.0), (5.0, 5.0), 20.0) is None  # same point twice
    assert window.statusBar().currentMessage().startswith("Calibration refused")
    assert window.set_calibration((0.0, 0.0), (0.0, 100.0), 20.0) == pytest.approx(0.2)
    qtbot.waitUntil(lambda: "mm" in window.overlay.label_text, timeout=WAIT_MS)


def test_worker_listener_runs_off_the_gui_thread_safely(qtbot, harness):
    """The worker thread only emits a queued signal; repaint happens on the GUI thread."""
    window = harness.window(mode="plexus")
    wait_model(qtbot, window)
    painted_threads: list[threading.Thread] = []
    original = window.overlay.show

    def spy(*args, **kwargs):
        painted_threads.append(threading.current_thread())
        return original(*args, **kwargs)

    window.overlay.show = spy
    qtbot.waitUntil(lambda: len(painted_threads) >= 3, timeout=WAIT_MS)
    assert all(t is threading.main_thread() for t in painted_threads)


def test_file_source_gets_clip_controls_and_detected_roi(qtbot, harness, tmp_path):
    from sonoguide.sources.factory import open_source
    from tests.clips import write_clip

    clip = write_clip(tmp_path / "clip.avi", n_frames=90)
    harness.deps.open_source = open_source
    harness.deps.detect_roi = lambda image: Roi(8, 16, 100, 80)
    window = harness.window(source=str(clip))
    assert window.file_controls.isVisible() and not window.phantom_controls.isVisible()
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Clip"  # brought to the front
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    assert window.roi_for(window.shown_frame) == Roi(8, 16, 100, 80)  # auto-detected
    window.file_controls.play.click()
    qtbot.waitUntil(lambda: window.source.paused, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.file_controls.play.text() == "Play", timeout=WAIT_MS)


def test_source_that_cannot_open_says_why_and_keeps_the_old_one(qtbot, harness):
    window = harness.window(mode="plexus")
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    old = window.source
    assert window.open_source("camera:9") is False
    assert window.banner_text("source") == "Cannot open camera:9: capture device 9 did not open"
    assert window.source is old
    seen = window.shown_frame.frame_id
    qtbot.waitUntil(lambda: window.shown_frame.frame_id > seen + 3, timeout=WAIT_MS)
    assert window.open_source("fake-2") and not window.banner_text("source")
    qtbot.waitUntil(lambda: window.shown_frame is not None
                    and window.shown_frame.source == "fake-2", timeout=WAIT_MS)


class RecordingSimulator:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        if not name.startswith("set_"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, *args))


def use_recording_phantom(harness) -> RecordingSimulator:
    """Make the harness's sources carry a simulator that records the control calls."""
    simulator = RecordingSimulator()
    original_open = harness._open

    def open_phantom(spec: str) -> FakeSource:
        source = original_open(spec)
        source.simulator = simulator
        return source

    harness.deps.open_source = open_phantom
    return simulator


def test_phantom_source_gets_trainee_controls(qtbot, harness):
    simulator = use_recording_phantom(harness)
    window = harness.window(source="phantom", mode="plexus")
    assert window.source_spec == "phantom:plexus"  # the scene follows the procedure
    assert window.phantom_controls.isVisible() and not window.file_controls.isVisible()
    window.phantom_controls.pressure.setValue(60)
    window.phantom_controls.needle.setValue(25)
    window.phantom_controls.needle.setValue(0)
    assert ("set_pressure", 0.6) in simulator.calls
    assert ("set_needle", 25.0) in simulator.calls and simulator.calls[-1] == ("set_needle", None)
    assert window.phantom_controls.values["set_needle"].text() == "off"


def test_roi_and_calibration_are_remembered_per_source(qtbot, harness, tmp_path):
    from sonoguide.pipeline.calibration import RoiStore

    harness.deps.roi_store = RoiStore(tmp_path / "rois.json")
    harness.source_kwargs = {"spacing": None}  # like a capture card: no scale of its own
    window = harness.window(source="fake-scanner")
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    window.roi_item.setPos((12, 14))
    window.roi_item.setSize((90, 70))
    window.set_calibration((0.0, 0.0), (0.0, 50.0), 10.0)
    window.shutdown()

    harness.deps.roi_store = RoiStore(tmp_path / "rois.json")  # a new session reads the file
    again = harness.window(source="fake-scanner")
    qtbot.waitUntil(lambda: again.shown_frame is not None, timeout=WAIT_MS)
    assert again.roi_for(again.shown_frame) == Roi(12, 14, 90, 70)
    assert again.spacing_mm == pytest.approx(0.2)
    assert again.status_labels["scale"].text() == "0.200 mm/px"


def test_capture_menu_lists_devices_found_in_the_background(qtbot, harness):
    class Device:
        index, label, spec = 3, "3: USB capture (1920x1080)", "camera:3"

    harness.deps.list_devices = lambda: [Device()]
    window = harness.window(mode="plexus")
    window.capture_menu.aboutToShow.emit()
    qtbot.waitUntil(lambda: not window._device_scan.is_alive(), timeout=WAIT_MS)
    window.capture_menu.aboutToShow.emit()
    actions = {action.text(): action for action in window.capture_menu.actions()}
    actions["3: USB capture (1920x1080)"].trigger()
    assert window.source_spec == "camera:3"
    qtbot.waitUntil(lambda: window.shown_frame is not None
                    and window.shown_frame.source == "camera:3", timeout=WAIT_MS)


RUN_GUI_SCRIPT = """
import argparse, sys
from PySide6 import QtCore, QtWidgets
from sonoguide.ui.app import run_gui
from sonoguide.ui.window import MainWindow

def check_then_close():
    windows = [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
    window = windows[0] if windows else None
    if window is None or window.shown_frame is None or window.model is None:
        QtCore.QTimer.singleShot(100, check_then_close)
        return
    print("seen", window.shown_frame.frame_id, window.model.version, flush=True)
    window.close()

app = QtWidgets.QApplication(sys.argv[:1])  # run_gui reuses it
QtCore.QTimer.singleShot(200, check_then_close)
args = argparse.Namespace(source=sys.argv[1], mode="plexus", model=sys.argv[2], provider="cpu",
                          threads=1)
sys.exit(run_gui(args))
"""


def test_run_gui_opens_the_window_on_a_clip_and_exits_cleanly(models, tmp_path):
    """The entry point the CLI calls, in its own process (an ended Qt event loop cannot be
    restarted in this one): real deps, a video file, the mode's model, exit code 0."""
    import os
    import subprocess
    import sys

    from tests.clips import write_clip

    clip = write_clip(tmp_path / "clip.avi", n_frames=60)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    done = subprocess.run([sys.executable, "-c", RUN_GUI_SCRIPT, str(clip), str(models["plexus"])],
                          cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "seen" in done.stdout and "plexus-t" in done.stdout


def test_missing_model_says_so_and_video_runs(qtbot, harness, tmp_path):
    window = harness.window(mode="plexus", model_path=str(tmp_path / "gone.onnx"))
    qtbot.waitUntil(lambda: bool(window.banner_text("model")), timeout=WAIT_MS)
    assert window.banner_text("model").startswith("No model: gone.onnx")
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    assert window.target_label.text() == "Target: no model"


def test_quick_mode_switches_end_on_the_last_chosen_model():
    """Plexus loads slowly, the user already picked IJ: the late plexus model is never used."""
    from sonoguide.ui.controller import LoadedModel, ModelLoader

    release_plexus = threading.Event()

    def load(mode: str, path: str | None) -> LoadedModel:
        if mode == "plexus":
            release_plexus.wait(5)
        return LoadedModel(segmenter=mode, analyzer=None)

    loader = ModelLoader(load)
    loader.request("plexus", None)
    loader.request("jugular", None)
    done = wait_value(loader.poll)
    assert done is not None and done[0] == "jugular" and done[1].segmenter == "jugular"
    release_plexus.set()
    for thread in threading.enumerate():
        if thread.name == "load-model:plexus":
            thread.join(5)  # the late load has finished...
    assert loader.poll() is None  # ...and is dropped


def test_legend_marks_the_class_the_model_is_unsure_of_not_the_least_confident(qtbot):
    """The legend follows the model's calibrated doubt: a 90 % vessel can be unsure while an
    85 % nerve is not (each class has its own level)."""
    from sonoguide.ui.panels import Legend

    legend = Legend()
    qtbot.addWidget(legend)
    legend.set_classes(PLEXUS)
    legend.set_confidence({"nerve": (0.85, False), "vessel": (0.90, True)})
    assert legend.confidence_texts() == ["85%", "90% ?"]
    legend.set_confidence({"nerve": (0.85, False)})
    assert legend.confidence_texts() == ["85%", "not seen"]


def test_clip_replay_waits_for_a_slow_model_on_every_frame(qtbot, harness, models, tmp_path):
    """A recorded clip is analysed frame by frame: with a model far slower than the clip, every
    frame still gets its own overlay, in order, and the panel says how fast it really plays."""
    from sonoguide.sources.factory import open_source
    from tests.clips import frame_index_of, write_clip

    clip = write_clip(tmp_path / "clip.avi", n_frames=10)
    harness.deps.open_source = open_source
    harness.gate = {"gated": False, "at_least_s": 0.1}  # three frame periods, on any machine
    window = harness.window(source=str(clip), mode="plexus")
    wait_model(qtbot, window)
    source = window.source
    source.loop = False
    qtbot.waitUntil(lambda: source.analyse_every_frame, timeout=WAIT_MS)
    shown: list[int] = []
    show = window._show_frame
    window._show_frame = lambda frame: (shown.append(frame_index_of(frame.image)), show(frame))
    rates: list[str] = []  # what the panel says at each refresh while the clip plays
    controls = window.file_controls
    refresh = controls.refresh
    controls.refresh = lambda: (refresh(), rates.append(controls.rate.text()))
    source.seek(0.0)
    qtbot.waitUntil(lambda: bool(shown) and shown[-1] == 0, timeout=WAIT_MS)
    window.session.reset_counts()
    qtbot.waitUntil(lambda: source.status.state is SourceState.ENDED, timeout=30000)
    qtbot.waitUntil(lambda: window.shown is not None and window.shown.kind == "fresh",
                    timeout=WAIT_MS)
    start = shown.index(0)
    assert shown[start:] == list(range(10))  # no frame skipped, none shown twice
    counts = window.session.display_counts()
    assert counts.frames >= 9 and counts.fresh == counts.frames  # each had its own result
    assert any(text.endswith("% speed") for text in rates)  # slower than real time, and says so
    # Off: real-time playback as live (the source no longer waits for the model).
    window.file_controls.every_frame.setChecked(False)
    assert not source.analyse_every_frame


def test_headless_and_window_give_the_same_roi_scale_and_areas(qtbot, harness, models,
                                                                tmp_path, capsys):
    """The same clip with a remembered image area and depth calibration: `--headless` and the
    window (one live session, two drivers) analyse the same area at the same mm per pixel and
    measure the same areas."""
    import cv2

    from sonoguide import cli
    from sonoguide.pipeline.calibration import RoiStore
    from sonoguide.sources.factory import open_source, source_key

    path = tmp_path / "disc.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (160, 120))
    image = np.full((120, 160, 3), 128, np.uint8)
    cv2.circle(image, (70, 60), 25, (250, 250, 250), -1)
    for _ in range(20):
        writer.write(image)
    writer.release()
    roi = Roi(60, 20, 100, 90)  # cuts the disc's left part off, 10 px left of its centre
    RoiStore().set(f"{source_key(str(path))}@160x120", roi=roi, pixel_spacing_mm=0.2)

    report_path = tmp_path / "r.json"
    code = cli.main(["--headless", "--source", str(path), "--mode", "plexus", "--model",
                     str(models["plexus"]), "--provider", "cpu", "--report", str(report_path)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())

    harness.deps.open_source = open_source
    harness.deps.roi_store = RoiStore()
    window = harness.window(source=str(path), mode="plexus")
    wait_model(qtbot, window)
    qtbot.waitUntil(lambda: len(window.area_timeline) >= 3, timeout=WAIT_MS)
    assert report["roi"] == [60, 20, 100, 90] and window.roi_for(window.shown_frame) == roi
    assert report["pixel_spacing_mm"] == window.spacing_mm == pytest.approx(0.2)
    headless_nerve = report["areas"]["classes"]["nerve"]["median"]
    window_nerve = float(np.median([s.areas["nerve"] for s in window.area_timeline.samples()]))
    assert report["areas"]["unit"] == "mm2" and window.area_timeline.unit == "mm2"
    assert window_nerve == pytest.approx(headless_nerve, rel=0.02)
    # and it is the disc's part inside the area, in mm2 (the whole disc would be 78.5 mm2)
    cap = 25 ** 2 * np.arccos(10 / 25) - 10 * np.sqrt(25 ** 2 - 10 ** 2)  # px left of x=60
    assert headless_nerve == pytest.approx((np.pi * 25 ** 2 - cap) * 0.2 ** 2, rel=0.15)


def test_a_bad_settings_file_and_a_failing_save_are_told_in_the_window(qtbot, harness,
                                                                       tmp_path):
    from sonoguide.pipeline.calibration import RoiStore

    bad = tmp_path / "rois.json"
    bad.write_text("[" * 100_000)  # once a RecursionError that stopped the app starting
    harness.deps.roi_store = RoiStore(bad)  # loaded before the window exists
    window = harness.window(source="fake-scanner")
    qtbot.waitUntil(lambda: "moved aside" in window.banner_text("settings"), timeout=WAIT_MS)
    assert "rois.json" in window.banner_text("settings")

    window.banner_box.set("settings", "")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the settings folder should be")
    harness.deps.roi_store.path = blocked / "rois.json"  # every save fails from now on
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    window.set_calibration((0.0, 0.0), (0.0, 50.0), 10.0)
    spacing = window.spacing_mm
    qtbot.waitUntil(lambda: "session only" in window.banner_text("settings"), timeout=WAIT_MS)
    assert spacing is not None and window.spacing_mm == spacing  # held for this session


def test_r_records_the_image_area_and_stops_with_the_folder_kept(qtbot, harness, tmp_path):
    from sonoguide.sources.recording import RecordingSource

    window = harness.window(mode="plexus")
    wait_model(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_R)
    assert window.recording and window.banner_text("recording").startswith("REC")
    first = window.shown_frame.frame_id
    qtbot.waitUntil(lambda: window.shown_frame.frame_id >= first + 20, timeout=WAIT_MS)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_R)
    assert not window.recording and not window.banner_text("recording")
    folders = list((tmp_path / "snaps" / "recordings").iterdir())
    assert len(folders) == 1 and "Recording saved" in window.banner_text("info")
    source = RecordingSource(folders[0])
    assert source.status.state is not SourceState.ERROR
    assert source.duration_s is not None and source.duration_s > 0.3


def test_a_recording_that_stops_by_itself_says_why(qtbot, harness, tmp_path, monkeypatch):
    from sonoguide.pipeline import recording

    monkeypatch.setattr(recording, "MIN_FREE_BYTES", 2**62)  # "the disk is nearly full"
    window = harness.window(mode="plexus")
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    window.toggle_recording()
    qtbot.waitUntil(lambda: "nearly full" in window.banner_text("recording"), timeout=WAIT_MS)
    assert not window.recording and not window.record_button.isChecked()


def test_a_recording_replays_in_the_window_with_its_recorded_findings(qtbot, harness, tmp_path):
    from sonoguide.pipeline.replay import RecordedFindings
    from sonoguide.sources.factory import open_source

    window = harness.window(mode="plexus")
    wait_model(qtbot, window)
    window.toggle_recording()
    first = window.shown_frame.frame_id
    qtbot.waitUntil(lambda: window.shown_frame.frame_id >= first + 15, timeout=WAIT_MS)
    folder = window.session.recorder.folder
    window.toggle_recording()

    harness.deps.open_source = open_source  # the real factory opens the recording folder
    assert window.open_source(str(folder))
    assert window.recorded_findings_action.isEnabled()
    window.set_recorded_findings(True)
    assert isinstance(window.model, RecordedFindings)
    qtbot.waitUntil(lambda: window.painted is not None, timeout=WAIT_MS)
    assert window.model.provider == "recorded"
    window.set_recorded_findings(False)  # analyse it afresh with the mode's model
    wait_model(qtbot, window)
    assert not isinstance(window.model, RecordedFindings)


def test_snapshots_hold_the_image_area_unless_the_whole_screen_is_asked_for(qtbot, harness):
    import cv2

    harness.deps.detect_roi = lambda image: Roi(10, 8, 100, 80)  # a scanner screen around it
    window = harness.window(source="fake-scanner")
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    area = window.snapshot()
    assert cv2.imread(str(area.raw_png)).shape[:2] == (80, 100)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_S, QtCore.Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: window.last_snapshot != area, timeout=WAIT_MS)
    whole = window.last_snapshot
    assert cv2.imread(str(whole.raw_png)).shape[:2] == SIZE
    assert json.loads(whole.json.read_text())["pictures_cropped_to"] is None


def test_a_scale_read_from_the_depth_ruler_is_shown_and_kept_on_the_users_word(qtbot, harness,
                                                                              tmp_path):
    from sonoguide.pipeline.calibration import RoiStore
    from sonoguide.pipeline.depth_scale import find_depth_scale
    from tests.scanner_screens import draw_screen

    screen = draw_screen((1280, 720), 60.0)
    harness.deps.roi_store = RoiStore(tmp_path / "rois.json")
    harness.deps.detect_roi = lambda image: screen.roi
    harness.deps.find_scale = find_depth_scale
    harness.source_kwargs = {"spacing": None, "image": screen.image}  # a capture card
    window = harness.window(source="fake-card")
    qtbot.waitUntil(lambda: window.shown_frame is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "read from the ruler" in window.banner_text("calibrate"),
                    timeout=WAIT_MS)
    assert window.spacing_mm == pytest.approx(screen.mm_per_px, rel=0.02)
    assert window.keep_scale_button.isEnabled()
    window.keep_scale_button.click()
    assert not window.keep_scale_button.isEnabled() and not window.banner_text("calibrate")
    key = window.session.area.store_key
    assert harness.deps.roi_store.get(key).pixel_spacing_mm == pytest.approx(window.spacing_mm)
