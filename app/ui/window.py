"""The SonoGuide main window: a view of the live session (sonoguide.pipeline.session).

Threading: Qt objects are touched from the GUI thread only. A ~60 Hz QTimer asks the session
for the newest frame (never blocking; the session hands it to the inference worker) and for
what to draw on it; the worker's listener only emits a queued signal so the overlay repaints
as soon as a result lands. The session decides: the model's result for this frame, or the
last result moved here by measured motion, or nothing ("AI lagging" when the model's newest
answer is too old): a late contour on a moving image is worse than none. Both are drawn alike.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from sonoguide.phantom.scenes import LABELS as SCENE_LABELS
from sonoguide.pipeline.analysis import DEFAULT_MODE
from sonoguide.pipeline.frames import Frame, Roi, Segmentation, most_confident
from sonoguide.pipeline.image_area import ImageArea
from sonoguide.pipeline.models import LoadedModel
from sonoguide.pipeline.session import (
    DEFAULT_BUDGET_S,
    LiveSession,
    OverlayPolicy,
    Shown,
    Worker,
)
from sonoguide.pipeline.timeline import AreaTimeline
from sonoguide.sources.base import FrameSource, SourceState
from sonoguide.ui import theme
from sonoguide.ui.area_chart import AreaChart
from sonoguide.ui.banners import Banners
from sonoguide.ui.controller import (
    MODES,
    PHANTOM_SCENE_FOR_MODE,
    Deps,
    ModelLoader,
    RateMeter,
    median,
)
from sonoguide.ui.overlay import DepthAxis, OverlayItems, target_summary
from sonoguide.ui.panels import FileControls, Legend, ModeSwitch, OverlayControls, PhantomControls
from sonoguide.ui.roi_editor import RoiEditor
from sonoguide.ui.snapshot import SnapshotPaths, save_snapshot
from sonoguide.ui.trainee_panel import TraineeController


def _short_paths(message: str) -> str:
    """/long/path/to/model.onnx -> model.onnx: the banner must stay short."""
    return re.sub(r"(?:[A-Za-z]:)?[\\/]\S*[\\/]([^\\/\s:]+)", r"\1", message)


LAGGING_HOLD_S = 0.5  # keep "AI lagging" up at least this long once shown (no flicker)
SETTINGS_BANNER_S = 20.0  # a settings notice is read once, then it makes room


def _source_key(spec: str) -> str:
    try:
        from sonoguide.sources.factory import source_key

        return source_key(spec)
    except Exception:  # unknown spec or factory missing: the spec itself is a fine key
        return spec


class _ResultBridge(QtCore.QObject):
    """Carries "a result is ready" from the worker thread to the GUI thread (queued)."""

    result_ready = QtCore.Signal()
    frame_ready = QtCore.Signal()
    settings_problem = QtCore.Signal(str)  # a settings file was bad or cannot be saved
    recording_stopped = QtCore.Signal(str)  # the recorder stopped by itself (disk full...)


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, deps: Deps, *, source: str = "phantom", mode: str = DEFAULT_MODE,
                 model_path: str | None = None, budget_s: float = DEFAULT_BUDGET_S,
                 follow: str = "motion", tick_ms: int = 16, autostart: bool = True) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        self.deps = deps
        self.mode = mode
        self._model_path_for = {mode: model_path}  # a --model applies to the starting mode only
        self.setWindowTitle("SonoGuide")
        self.setStyleSheet(theme.STYLE_SHEET)

        # --- live state (GUI thread); the flow itself lives in the session ---
        self.session = LiveSession(
            ImageArea(self.deps.detect_roi, self.deps.roi_store, say=self._say_image_area,
                      find_scale=self.deps.find_scale),
            self.deps.make_worker, policy=OverlayPolicy(budget_s, follow),
            on_result=self._on_result, on_frame=self._bridge_frame)
        self.source_spec = ""
        self.shown: Shown | None = None  # the session's decision for the frame on screen
        self.painted: Segmentation | None = None  # what the overlay shows now
        self.fresh: Segmentation | None = None  # the overlay valid for the shown frame
        self._painted_key: tuple | None = None
        self.model_error = ""
        self.speed_note = ""
        self.last_snapshot: SnapshotPaths | None = None
        self._input_rate = RateMeter()
        self._latencies: list[float] = []
        self._last_result_id: int | None = None
        self._loader = ModelLoader(self.deps.load_model)
        self._bridge = _ResultBridge()
        self._bridge.result_ready.connect(self._refresh_overlay,
                                          QtCore.Qt.ConnectionType.QueuedConnection)
        # a new frame is pulled as soon as the source has it, not at the next timer tick
        self._bridge.frame_ready.connect(self._pull_now,
                                         QtCore.Qt.ConnectionType.QueuedConnection)
        self._bridge.settings_problem.connect(self._show_settings_problem,
                                              QtCore.Qt.ConnectionType.QueuedConnection)
        self._bridge.recording_stopped.connect(self._recording_stopped,
                                               QtCore.Qt.ConnectionType.QueuedConnection)
        self.frame_age_ms: collections.deque[float] = collections.deque(maxlen=2000)
        self._status_due = 0.0
        self._image_shape: tuple | None = None
        self._errors_seen, self._error_until = 0, 0.0
        self._lagging_until = 0.0  # the banner is held briefly so it does not flicker
        self._open_error_until = 0.0
        self._devices: tuple[list, str] = ([], "")  # (found devices, error); replaced whole
        self._device_scan: threading.Thread | None = None

        self._build_view()
        self._build_side_panel()
        self._build_status_bar()
        self._build_menus_and_keys()
        self.resize(1500, 950)

        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(self._tick)
        self._listen_to_settings()
        self.set_mode(mode)
        if source == "phantom":  # no scene named: show the anatomy of the chosen procedure
            source = PHANTOM_SCENE_FOR_MODE[mode]
        self.open_source(source)
        if autostart:
            self._timer.start()

    # ================================================================ the session's state
    @property
    def source(self) -> FrameSource | None:
        return self.session.source

    @property
    def shown_frame(self) -> Frame | None:
        return self.session.current

    @property
    def model(self) -> LoadedModel | None:
        return self.session.model

    @property
    def worker(self) -> Worker | None:
        return self.session.worker

    @property
    def frozen(self) -> bool:
        return self.session.frozen

    @property
    def area_timeline(self) -> AreaTimeline:
        return self.session.area_timeline

    # ================================================================ layout
    def _build_view(self) -> None:
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground(theme.BG)
        # the picture is drawn without antialiasing (faster); outlines and the target marker
        # turn it on for themselves
        self.graphics.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, False)
        self.depth_axis = DepthAxis()
        self.plot = self.graphics.addPlot(axisItems={"left": self.depth_axis})
        self.plot.hideAxis("bottom")
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.view: pg.ViewBox = self.plot.getViewBox()
        self.view.invertY(True)
        self.view.setAspectLocked(True)
        self.view.setMouseEnabled(False, False)  # no accidental pan/zoom with a gloved hand
        self.view.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image_item)
        self.overlay = OverlayItems(self.view)
        self.roi_editor = RoiEditor(self.view, self.session.area,
                                    say=lambda text: self.statusBar().showMessage(text, 6000))
        self.roi_item = self.roi_editor.item
        self.graphics.scene().sigMouseClicked.connect(self._scene_clicked)
        self.banner_box = Banners()
        self.banners = self.banner_box.labels

        self.video = QtWidgets.QWidget()
        grid = QtWidgets.QGridLayout(self.video)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.graphics, 0, 0)
        grid.addWidget(self.banner_box, 0, 0)

    def _build_side_panel(self) -> None:
        """Always in view: procedure, target, legend, area chart. The rest (phantom or clip
        controls, overlay settings, calibration) shares one tab block, so the whole panel
        fits a 1366x768 laptop without scrolling at the large font."""
        self.mode_switch = ModeSwitch(self.mode)
        self.mode_switch.mode_chosen.connect(self.set_mode)
        self.target_label = QtWidgets.QLabel("Target: -")
        self.target_label.setObjectName("target")
        self.overlay_controls = OverlayControls()
        self.overlay_controls.changed.connect(self._refresh_overlay)
        self.legend = Legend()
        self.area_chart = AreaChart(self.area_timeline)
        self.file_controls = FileControls()
        self.file_controls.every_frame_changed.connect(self._set_analyse_every_frame)
        self.phantom_controls = PhantomControls()
        self.calibrate_button = QtWidgets.QPushButton("Calibrate depth (2 clicks)")
        self.calibrate_button.clicked.connect(self.start_calibration)
        self.roi_reset_button = QtWidgets.QPushButton("Re-detect image area")
        self.roi_reset_button.clicked.connect(self.redetect_roi)

        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setDocumentMode(True)
        source_page = QtWidgets.QWidget()
        source_column = QtWidgets.QVBoxLayout(source_page)
        source_column.setContentsMargins(0, 4, 0, 0)
        for controls in (self.phantom_controls, self.file_controls):
            controls.setTitle("")  # the tab names it
            source_column.addWidget(controls)
        source_column.addStretch(1)
        self._source_tab = self.tabs.addTab(source_page, "Phantom")
        overlay_page = QtWidgets.QWidget()
        overlay_column = QtWidgets.QVBoxLayout(overlay_page)
        overlay_column.setContentsMargins(0, 4, 0, 0)
        self.overlay_controls.setTitle("")
        overlay_column.addWidget(self.overlay_controls)
        overlay_column.addStretch(1)
        self._overlay_tab = self.tabs.addTab(overlay_page, "Overlay")
        image_page = QtWidgets.QWidget()
        image_column = QtWidgets.QVBoxLayout(image_page)
        image_column.setContentsMargins(0, 8, 0, 0)
        self.keep_scale_button = QtWidgets.QPushButton("Keep found scale")
        self.keep_scale_button.setToolTip("Keep the mm per pixel read from the scanner's depth "
                                          "ruler (remembered for this scanner)")
        self.keep_scale_button.clicked.connect(lambda _=False: self.keep_found_scale())
        self.keep_scale_button.setEnabled(False)
        scale_row = QtWidgets.QHBoxLayout()  # one row: the panel fits a 1366x768 screen
        scale_row.addWidget(self.calibrate_button)
        scale_row.addWidget(self.keep_scale_button)
        image_column.addLayout(scale_row)
        self.record_button = QtWidgets.QPushButton("Record (R)")
        self.record_button.setCheckable(True)
        self.record_button.setToolTip("Record the image area and its overlay into "
                                      f"{self.deps.snapshot_dir / 'recordings'}")
        self.record_button.clicked.connect(lambda _=False: self.toggle_recording())
        buttons = QtWidgets.QHBoxLayout()  # one row: the panel fits a 1366x768 screen
        buttons.addWidget(self.roi_reset_button)
        buttons.addWidget(self.record_button)
        image_column.addLayout(buttons)
        keys = QtWidgets.QLabel("Space freeze  -  O overlay\nS snapshot  -  R record\n"
                                "F11 full screen  -  1 / 2 procedure")
        keys.setObjectName("muted")
        image_column.addWidget(keys)
        image_column.addStretch(1)
        self._image_tab = self.tabs.addTab(image_page, "Image")
        self.trainee = TraineeController(self)  # practice: questions on the frozen image
        self._trainee_tab = self.tabs.addTab(self.trainee.panel, "Trainee")

        panel = QtWidgets.QWidget()
        panel.setFixedWidth(420)
        column = QtWidgets.QVBoxLayout(panel)
        column.setContentsMargins(0, 0, 4, 0)
        column.setSpacing(4)
        for widget in (self.mode_switch, self.target_label, self.legend, self.area_chart,
                       self.tabs):
            column.addWidget(widget)
        column.addStretch(1)
        # Keys (Space, O, S) must reach the window, not a focused button, slider or tab.
        for child in panel.findChildren(QtWidgets.QWidget):
            child.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)

        central = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(central)
        row.setContentsMargins(6, 6, 6, 6)
        row.addWidget(self.video, 1)
        # Safety net for screens smaller than 1366x768 or a bigger system font; at 1366x768
        # and up the panel fits and no scroll bar shows.
        self.panel_scroll = scroll = QtWidgets.QScrollArea()
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        scroll.setFixedWidth(panel.width() + 16)
        row.addWidget(scroll)
        self.setCentralWidget(central)

    def _show_source_tab(self, phantom: bool, clip: bool) -> None:
        """The first tab holds the source's own controls; it is shown (and brought to the
        front) for a phantom or a clip, hidden for a capture card that has none."""
        self.tabs.setTabText(self._source_tab, "Clip" if clip else "Phantom")
        self.tabs.setTabVisible(self._source_tab, phantom or clip)
        self.tabs.setCurrentIndex(self._source_tab if phantom or clip else self._overlay_tab)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.status_labels: dict[str, QtWidgets.QLabel] = {}
        for key in ("source", "provider", "model", "speed", "input", "ai", "latency", "scale"):
            label = QtWidgets.QLabel("-")
            bar.addPermanentWidget(label)
            self.status_labels[key] = label

    def _build_menus_and_keys(self) -> None:
        menu = self.menuBar()
        source_menu = menu.addMenu("&Source")
        for scene, label in SCENE_LABELS.items():
            source_menu.addAction(f"Phantom: {label}",
                                  lambda s=f"phantom:{scene}": self.open_source(s))
        source_menu.addAction("Open video file...", self._choose_file)
        source_menu.addAction("Open recording...", self._choose_recording)
        self.recorded_findings_action = source_menu.addAction(
            "Recording: show the findings recorded with it")
        self.recorded_findings_action.setCheckable(True)
        self.recorded_findings_action.setEnabled(False)
        self.recorded_findings_action.toggled.connect(lambda _on: self._follow_recorded_findings())
        self.capture_menu = source_menu.addMenu("Capture devices")
        self.capture_menu.aboutToShow.connect(self._fill_capture_menu)

        mode_menu = menu.addMenu("&Mode")
        for index, (key, label) in enumerate(MODES.items(), start=1):
            mode_menu.addAction(label, QtGui.QKeySequence(str(index)),
                                lambda k=key: self.set_mode(k))
        mode_menu.addSeparator()
        mode_menu.addAction("Measure model speed on this computer again",
                            self.recalibrate_speed)
        view_menu = menu.addMenu("&View")
        for label, key, slot in (("Freeze / unfreeze", "Space", self.toggle_freeze),
                                 ("Overlay on / off", "O", self.toggle_overlay),
                                 ("Snapshot", "S", self.snapshot),
                                 ("Snapshot of the whole screen (with the scanner's patient "
                                  "details)", "Shift+S", lambda: self.snapshot(whole_screen=True)),
                                 ("Trainee practice on / off", "T", self.trainee.toggle),
                                 ("Record / stop recording", "R", self.toggle_recording),
                                 ("Full screen", "F11", self.toggle_full_screen)):
            action = view_menu.addAction(label, QtGui.QKeySequence(key), slot)
            action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        leave = QtGui.QShortcut(QtGui.QKeySequence("Esc"), self)
        leave.activated.connect(lambda: self.isFullScreen() and self.showNormal())

    # ================================================================ source
    def open_source(self, spec: str) -> bool:
        """Switch to the source `spec`; on failure keep the current one and say why."""
        try:
            new = self.deps.open_source(spec)
            new.start()
        except Exception as exc:
            self._set_banner("source", f"Cannot open {spec}", str(exc))
            self._open_error_until = time.monotonic() + 8.0
            return False
        old = self.session.set_source(new, _source_key(spec))
        self.source_spec = spec
        if old is not None:  # stopping may wait on a device: never on the GUI thread
            threading.Thread(target=old.stop, name="stop-source", daemon=True).start()
        self._set_banner("source", "")
        self._set_banner("nosignal", "")
        self._clear_overlay()
        self.phantom_controls.attach(getattr(new, "simulator", None))
        is_file = all(hasattr(new, a) for a in ("toggle_pause", "seek", "step"))
        self.file_controls.attach(new if is_file else None)
        self._show_source_tab(self.phantom_controls.simulator_attached, is_file)
        self._follow_recorded_findings()
        self._update_status(force=True)
        return True

    def set_recorded_findings(self, on: bool) -> None:
        """Replaying a recording: show what was shown when it was recorded (on) or analyse
        it afresh with the mode's model (off)."""
        self.recorded_findings_action.setChecked(on)
        self._follow_recorded_findings()

    def _follow_recorded_findings(self) -> None:
        from sonoguide.pipeline.replay import RecordedFindings
        from sonoguide.sources.recording import RecordingSource, recorded_findings

        want = (self.recorded_findings_action.isChecked()
                and isinstance(self.source, RecordingSource))
        self.recorded_findings_action.setEnabled(isinstance(self.source, RecordingSource))
        showing = isinstance(self.model, RecordedFindings)
        if want and (not showing or self.model.manifest is not self.source.manifest):
            self.session.set_model(recorded_findings(self.source))
            self.legend.set_classes(tuple(self.source.classes))
            self._set_banner("model", "")
        elif showing and not want:
            self.set_mode(self.mode)  # the mode's model analyses it afresh

    def _set_analyse_every_frame(self, on: bool) -> None:
        self.session.analyse_every_frame = on

    def _choose_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open ultrasound clip", "",
            "Video or DICOM (*.mp4 *.avi *.mkv *.mov *.m4v *.dcm *.dicom);;All (*)")
        if path:
            self.open_source(path)

    def _choose_recording(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Open a SonoGuide recording", str(self.deps.snapshot_dir / "recordings"))
        if folder:
            self.open_source(folder)

    def _fill_capture_menu(self) -> None:
        """Show the devices found so far and look again in the background: probing a device
        can take seconds, and the live image must not wait for it."""
        self.capture_menu.clear()
        devices, error = self._devices
        for device in devices:  # sonoguide.sources.devices.CaptureDeviceInfo (label, spec)
            index = getattr(device, "index", device)
            spec = str(getattr(device, "spec", f"camera:{index}"))
            label = str(getattr(device, "label", f"Capture device {index}"))
            self.capture_menu.addAction(label, lambda s=spec: self.open_source(s))
        if self._device_scan is not None and self._device_scan.is_alive():
            self.capture_menu.addAction("Searching for devices...").setEnabled(False)
            return
        if not devices:
            self.capture_menu.addAction(error or "No capture device found (searching again)"
                                        ).setEnabled(False)

        def scan() -> None:
            try:
                self._devices = (list(self.deps.list_devices()), "")
            except Exception as exc:  # a driver fault is a message, not a crash
                self._devices = ([], f"Device search failed: {exc}")

        self._device_scan = threading.Thread(target=scan, name="device-scan", daemon=True)
        self._device_scan.start()

    # ================================================================ model
    def set_mode(self, mode: str) -> None:
        """Switch procedure: load that mode's model in the background (video keeps running)."""
        if mode not in MODES:
            return
        switching = mode != self.mode
        self.mode = mode
        self.mode_switch.set_mode(mode)
        if switching and self.source_spec.startswith("phantom"):
            self.open_source(PHANTOM_SCENE_FOR_MODE[mode])  # the phantom shows that anatomy
        self.session.set_model(None)  # no overlay from the other procedure's model meanwhile
        self._clear_overlay()
        self._set_banner("model", "")  # a refusal of the previous mode's model no longer applies
        self._set_banner("loading", f"Loading {MODES[mode]} model...")
        self._loader.request(mode, self._model_path_for.get(mode))

    def recalibrate_speed(self) -> None:
        """Time the shipped model variants here again (menu); the video keeps running."""
        self._set_banner("loading", f"Measuring {MODES[self.mode]} model speed...")
        self._loader.request(self.mode, self._model_path_for.get(self.mode), recalibrate=True)

    def _apply_loaded_model(self, mode: str, model: LoadedModel | None, error: str) -> None:
        self._set_banner("loading", "")
        if mode != self.mode:
            return
        if model is None:
            self.model_error = error
            missing = "not installed" in error or "not found" in error
            self._set_banner("model", "No model" if missing else "Model refused",
                             f"{_short_paths(error)}  -  video only")
            self.legend.set_classes(())
            self._update_status(force=True)
            return
        self.model_error = ""
        self._set_banner("model", "")
        if getattr(model, "settings_problem", ""):
            self._show_settings_problem(model.settings_problem)
        self.session.set_model(model)
        self._errors_seen = int(getattr(self.worker, "error_count", 0) or 0)
        self.speed_note = getattr(model, "speed_note", "")
        note = getattr(model.segmenter, "provider_note", "")
        if note:  # e.g. GPU requested but not usable: say so once, quietly
            self.statusBar().showMessage(note, 10000)
        classes = getattr(model.segmenter, "classes", None) or getattr(
            getattr(model.segmenter, "contract", None), "classes", ())
        self.legend.set_classes(tuple(classes))
        self._follow_recorded_findings()  # a recording's own findings stay if asked for
        self._update_status(force=True)

    def _bridge_frame(self) -> None:
        """Source thread: only a queued signal crosses over."""
        self._bridge.frame_ready.emit()

    def _pull_now(self) -> None:
        if not self._timer.isActive():
            return  # not started (tests drive the tick themselves) or shutting down
        frame = self.session.pull()
        if frame is not None:
            self._present(frame)

    def _present(self, frame: Frame) -> None:
        """Put a new frame on screen with its overlay decided; note how old it is by then."""
        self._show_frame(frame)
        self._refresh_overlay()
        self.frame_age_ms.append(1000.0 * (time.monotonic() - frame.t_capture))

    def _on_result(self, _result: Segmentation) -> None:
        """Worker thread: only a queued signal crosses over; painting stays on the GUI thread."""
        self._bridge.result_ready.emit()

    def roi_for(self, frame: Frame) -> Roi:
        """The ROI the model sees on the next frames like `frame` (the session stamps it)."""
        roi = self.session.area.roi or frame.roi
        return roi if roi is not None else Roi.full(frame.image)

    # ================================================================ the tick
    def _tick(self) -> None:
        loaded = self._loader.poll()
        if loaded is not None:
            self._apply_loaded_model(*loaded)
        self._follow_source_state()
        frame = self.session.pull()  # newest frame, already handed to the model
        if frame is not None:
            self._present(frame)
        else:
            self._refresh_overlay()
        self.area_chart.refresh()
        if self.file_controls.isVisible():
            self.file_controls.refresh()
        self._update_status()

    def _show_frame(self, frame: Frame) -> None:
        first = self._image_shape != frame.image.shape
        self._image_shape = frame.image.shape
        self.image_item.setImage(frame.image, autoLevels=False, levels=(0, 255))
        self._input_rate.tick(time.monotonic())
        if first:
            self.view.autoRange(padding=0.0)
            self._update_status(force=True)
        self.roi_editor.follow(frame)
        self.depth_axis.set_scale(self.roi_editor.top_px, frame.pixel_spacing_mm)

    def _follow_source_state(self) -> None:
        if self.source is None:
            return
        status = self.source.status
        if status.state is SourceState.NO_SIGNAL:
            # say what the user sees: the image on screen is the last one, not live
            detail = status.message if status.message.lower() not in ("", "no signal") else ""
            self._set_banner("nosignal", "NO SIGNAL", f"{detail + ' - ' if detail else ''}"
                                                      "last image held, reconnecting...")
        else:
            self._set_banner("nosignal", "")
        if status.state is SourceState.ERROR:
            self._set_banner("source", "Source error", status.message)
        elif status.state is SourceState.ENDED and status.info.get("still"):
            self._set_banner("source", "")  # a still image: the picture is all there is
        elif status.state is SourceState.ENDED:
            self._set_banner("source", "End of clip", status.info.get("warning") or "")
        elif self.banner_text("source").startswith(("Source error", "End of clip")) or (
                self._open_error_until and time.monotonic() > self._open_error_until):
            self._open_error_until = 0.0
            self._set_banner("source", "")
        self._follow_worker_errors()

    def _follow_worker_errors(self) -> None:
        """Per-frame inference failures: show the newest while they keep coming."""
        count = int(getattr(self.worker, "error_count", 0) or 0)
        now = time.monotonic()
        if count > self._errors_seen:
            self._errors_seen = count
            self._error_until = now + 2.0
            errors = getattr(self.worker, "errors", None) or ["inference failed"]
            self._set_banner("model", "Model error", _short_paths(errors[-1]))
        elif self._error_until and now > self._error_until and self.model is not None:
            self._error_until = 0.0
            self._set_banner("model", "")

    def _refresh_overlay(self) -> None:
        shown = self.session.show()
        result = self.session.latest_result()
        if result is not None and result.frame_id != self._last_result_id:
            self._last_result_id = result.frame_id
            self._latencies = (self._latencies + [result.latency_s])[-30:]
        now = time.monotonic()
        if shown is not None and shown.lagging:
            self._lagging_until = now + LAGGING_HOLD_S
        paint = shown.overlay if shown is not None else None
        lagging = (shown is not None and shown.lagging) or (
            paint is None and now < self._lagging_until)
        self._set_banner("lagging", "AI lagging" if lagging else "", "overlay hidden")
        controls = self.overlay_controls
        self.shown = shown
        self.fresh = paint  # valid for the frame on screen (snapshots use it)
        self.painted = paint if controls.enabled else None
        if self.painted is None:
            if self.overlay.visible:
                self.overlay.hide()
            self._painted_key = None
        else:
            key = (id(self.painted), controls.opacity_value, controls.fill)
            if key != self._painted_key:  # repaint only when something changed
                # fresh and motion-followed results are drawn alike: one style to learn
                self.overlay.show(self.painted, opacity=controls.opacity_value,
                                  fill=controls.fill)
                self._painted_key = key
        self._show_found(paint)
        self._show_warnings(self.painted)

    def _clear_overlay(self) -> None:
        self.overlay.hide()
        self.painted = self.fresh = None
        self._painted_key = None
        self._show_warnings(None)

    def _show_warnings(self, seg: Segmentation | None) -> None:
        """Needle warnings of the result drawn now, and only while it is drawn: a hidden or
        stale overlay takes its warnings with it."""
        self.banner_box.show_warnings(
            () if seg is None or seg.guidance is None else seg.guidance.warnings)

    def _show_found(self, seg: Segmentation | None) -> None:
        """Target line and per-class confidence in the side panel."""
        self._show_target_text(seg)
        if seg is None:
            self.legend.set_confidence(None)
            return
        self.legend.set_confidence({name: (s.confidence, s.unsure)
                                    for name, s in most_confident(seg.structures).items()})

    def _show_target_text(self, seg: Segmentation | None) -> None:
        if seg is None or seg.target is None:
            text = ("Target: no model" if self.model is None else "Target: -") if seg is None \
                else "Target: not found"
        else:
            text = target_summary(seg.target)
        if self.target_label.text() != text:
            self.target_label.setText(text)
            unsure = seg is not None and seg.target is not None and seg.target.unsure
            # Always one line (the panel must not jump): a rare long text (deep target,
            # unsure) gets a slightly smaller font rather than a second line.
            font = QtGui.QFont(self.target_label.font())
            width = self.target_label.contentsRect().width()
            width = width if width > 100 else 410
            size = theme.TARGET_FONT_PT
            while size > theme.BASE_FONT_PT:
                font.setPointSize(size)
                if QtGui.QFontMetrics(font).horizontalAdvance(text) <= width:
                    break
                size -= 1
            self.target_label.setStyleSheet(f"color: {theme.WARN if unsure else theme.TEXT};"
                                            f" font-size: {size}pt;")

    # ================================================================ ROI + calibration
    def redetect_roi(self) -> None:
        if self.shown_frame is not None:
            self.session.area.redetect(self.shown_frame)

    @property
    def spacing_mm(self) -> float | None:
        """mm per pixel of the picture: the source's own, else the user's calibration."""
        return self.session.area.spacing_mm(self.shown_frame)

    def start_calibration(self) -> None:
        self.roi_editor.calibration_points = []
        self._set_banner("calibrate", "Calibrate depth", "click two marks on the depth ruler")

    def _scene_clicked(self, event) -> None:
        point = self.view.mapSceneToView(event.scenePos())
        if self.trainee.take_click(point.x(), point.y()):
            return  # a practice answer, judged before any other use of the click
        pair = self.roi_editor.add_calibration_point(point.x(), point.y())
        if pair is None:
            return
        self._set_banner("calibrate", "")
        mm, ok = QtWidgets.QInputDialog.getDouble(self, "Calibrate depth",
                                                  "Distance between the two marks (mm):",
                                                  10.0, 0.1, 500.0, 1)
        if ok:
            self.set_calibration(*pair, mm)

    def set_calibration(self, p1: tuple[float, float], p2: tuple[float, float],
                        mm: float) -> float | None:
        spacing = self.roi_editor.calibrate(p1, p2, mm)
        self._follow_found_scale()
        self._update_status(force=True)
        return spacing

    def _say_image_area(self, text: str) -> None:
        """The image area's news (GUI thread: it runs as a frame is pulled)."""
        self.statusBar().showMessage(text, 8000)
        self._follow_found_scale()

    def _follow_found_scale(self) -> None:
        """A scale read from the depth ruler waits for the user: said in a banner until kept
        or replaced by a hand calibration."""
        found = self.session.area.found_scale
        self.keep_scale_button.setEnabled(found is not None)
        if found is None:
            if self.banner_text("calibrate").startswith("Depth scale"):
                self._set_banner("calibrate", "")
        elif found.mm_per_px is not None:
            self._set_banner("calibrate", "Depth scale read from the ruler",
                             f"{found.mm_per_px:.3f} mm/px - check it: Keep found scale, or "
                             "Calibrate depth")
        else:
            self._set_banner("calibrate", "Depth scale: tick interval?",
                             f"{found.reason} - Keep found scale asks it, or Calibrate depth")

    def keep_found_scale(self, major_mm: float | None = None) -> float | None:
        """Keep the scale read from the ruler; asks for the tick interval when it could not
        be told (major_mm answers it without asking)."""
        found = self.session.area.found_scale
        if found is None:
            return None
        if found.mm_per_px is None and major_mm is None:
            major_mm, ok = QtWidgets.QInputDialog.getDouble(
                self, "Depth ruler", "mm between the ruler's ticks:", 10.0, 0.5, 100.0, 1)
            if not ok:
                return None
        try:
            spacing = self.session.area.confirm_scale(major_mm)
        except ValueError as exc:
            self.statusBar().showMessage(str(exc), 8000)
            return None
        self._follow_found_scale()
        self._update_status(force=True)
        return spacing

    # ================================================================ user actions
    def toggle_freeze(self) -> None:
        self.session.frozen = not self.session.frozen
        self._set_banner("frozen", "FROZEN" if self.frozen else "", "Space to resume")

    def toggle_overlay(self) -> None:
        self.overlay_controls.show_box.toggle()

    def toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    def snapshot(self, whole_screen: bool = False) -> SnapshotPaths | None:
        """Save raw PNG, overlay PNG and JSON of the frame on screen; say where. The pictures
        hold the image area only unless the whole screen is asked for (it may show the
        scanner's patient name and ID)."""
        frame = self.shown_frame
        if frame is None:
            self.statusBar().showMessage("Snapshot: no image yet", 5000)
            return None
        controls = self.overlay_controls
        info = {"mode": self.mode, "model_version": self.model.version if self.model else None,
                "provider": self.model.provider if self.model else None,
                "source_spec": self.source_spec, "overlay_shown": self.overlay.visible,
                "overlay_kind": self.shown.kind if self.shown is not None else None}
        try:
            paths = save_snapshot(self.deps.snapshot_dir, frame, self.fresh,
                                  opacity=controls.opacity_value, fill=controls.fill,
                                  spacing_mm=frame.pixel_spacing_mm, info=info,
                                  image_area_only=not whole_screen)
        except OSError as exc:
            self.statusBar().showMessage(f"Snapshot failed: {exc}", 8000)
            return None
        self.last_snapshot = paths
        self.banner_box.flash("info", "Snapshot saved",
                              f"{paths.json.stem}  in  {paths.json.parent}")
        self.statusBar().showMessage(f"Snapshot saved: {paths.raw_png.parent}/"
                                     f"{paths.json.stem}_*.png + .json", 10000)
        return paths

    # ================================================================ recording
    @property
    def recording(self) -> bool:
        return self.session.recorder is not None

    def toggle_recording(self) -> Path | None:
        """Start recording into a new folder beside the snapshots, or stop; returns the
        folder (None when it could not start or was stopped)."""
        if self.recording:
            status = self.session.stop_recording()
            self._set_banner("recording", "")
            self.record_button.setChecked(False)
            self.banner_box.flash("info", "Recording saved",
                                  f"{status.frames} frames, {status.seconds:.0f} s  in  "
                                  f"{status.folder}")
            return None
        from sonoguide.pipeline.recording import Recorder

        folder = self.deps.snapshot_dir / "recordings" / time.strftime("%Y%m%d_%H%M%S")
        segmenter = self.model.segmenter if self.model is not None else None
        info = {"source": self.source_spec, "mode": self.mode,
                "model": None if segmenter is None else {
                    "name": getattr(segmenter, "name", None), "version": self.model.version}}
        try:
            recorder = Recorder(folder, info=info,
                                fps=getattr(self.source, "nominal_fps", None) or 30.0,
                                on_stop=self._bridge.recording_stopped.emit)
        except (OSError, ValueError) as exc:
            self.record_button.setChecked(False)
            self.banner_box.flash("info", "Cannot record", str(exc), 8.0)
            return None
        self.session.start_recording(recorder)
        self.record_button.setChecked(True)
        self._update_recording_banner()
        return folder

    def _recording_stopped(self, reason: str) -> None:
        """The recorder stopped by itself: what it wrote is kept; say why."""
        if self.session.recorder is not None and not self.session.recorder.recording:
            self.session.stop_recording()
        self.record_button.setChecked(False)
        self._set_banner("recording", "Recording stopped", _short_paths(reason))

    def _update_recording_banner(self) -> None:
        recorder = self.session.recorder
        if recorder is None:
            return
        status = recorder.status()
        free = "" if status.free_bytes is None else f"  -  {status.free_bytes / 2**30:.1f} GB free"
        dropped = f"  -  {status.dropped} frames dropped" if status.dropped else ""
        minutes, seconds = divmod(int(status.seconds), 60)
        self._set_banner("recording", f"REC {minutes:02d}:{seconds:02d}",
                         f"{status.folder.name}{free}{dropped}")

    # ================================================================ status + banners
    def _set_banner(self, name: str, headline: str, detail: str = "") -> None:
        self.banner_box.set(name, headline, detail)

    def banner_text(self, name: str) -> str:
        """Plain text of a banner ("headline: detail") if shown, else ""."""
        return self.banner_box.text(name)

    def _update_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._status_due:
            return
        self._status_due = now + 0.25
        labels = self.status_labels
        state = self.source.status.state.value if self.source is not None else "none"
        name = self.source.name if self.source is not None else "-"
        info = self.source.status.info if self.source is not None else {}
        cut = ", cut off" if info.get("warning") else ""  # a truncated clip loops its readable part
        labels["source"].setText(f"{name} ({state}{cut})")
        labels["source"].setToolTip(str(info.get("warning", "")))
        labels["provider"].setText(f"ORT {self.model.provider}" if self.model else "ORT -")
        labels["model"].setText(f"model {self.model.version}" if self.model else (
            "model refused" if self.model_error else "model loading"))
        labels["speed"].setText(self.speed_note.split(" (")[0] if self.model else "")
        labels["speed"].setToolTip(f"Model variant and threads chosen on this computer: "
                                   f"{self.speed_note}" if self.speed_note else "")
        labels["input"].setText(f"in {self._input_rate.rate(now):.0f} fps")
        # the model's own rate: between its results the overlay follows the image motion
        labels["ai"].setText(f"AI {self.session.model_rate():.0f}/s")
        labels["ai"].setToolTip(self.speed_note or "results of the model per second")
        latency = median(self._latencies)
        labels["latency"].setText("lat -" if latency is None else f"lat {latency * 1000:.0f} ms")
        spacing = self.spacing_mm
        labels["scale"].setText("scale ?" if not spacing else f"{spacing:.3f} mm/px")
        self._update_recording_banner()

    # ================================================================ shutdown
    # ================================================================ settings files
    def _listen_to_settings(self) -> None:
        """Problems with the settings files (moved aside, cannot be saved) reach the window:
        those met while loading, before the window existed, and any later one."""
        store = self.deps.roi_store
        if store is None or not hasattr(store, "problems"):
            return
        for problem in store.problems:
            self._show_settings_problem(problem)
        store.say = self._bridge.settings_problem.emit  # any thread: queued to this one

    def _show_settings_problem(self, text: str) -> None:
        self.banner_box.flash("settings", "Settings", _short_paths(text), SETTINGS_BANNER_S)

    def shutdown(self) -> None:
        store = self.deps.roi_store
        if store is not None and hasattr(store, "say"):
            store.say = None  # nothing emitted into a window being torn down
        self._timer.stop()
        self.session.on_result = None  # no Qt signal emitted into a window being torn down
        self.session.stop()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt API name)
        self.shutdown()
        super().closeEvent(event)
