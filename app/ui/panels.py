"""Side-panel widgets: mode switch, overlay controls, legend, file and phantom controls."""

from __future__ import annotations

from collections.abc import Callable

from PySide6 import QtCore, QtWidgets

from sonoguide.ui import theme
from sonoguide.ui.controller import MODES


def _slider(lo: int, hi: int, value: int) -> QtWidgets.QSlider:
    slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
    slider.setRange(lo, hi)
    slider.setValue(value)
    slider.setMinimumHeight(28)
    return slider


class ModeSwitch(QtWidgets.QFrame):
    """Two big exclusive buttons: Nerve block / IJ cannulation (they name themselves: no
    group title, which would cost a line of the panel's height)."""

    mode_chosen = QtCore.Signal(str)

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.setObjectName("panel")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        group = QtWidgets.QButtonGroup(self)
        group.setExclusive(True)
        for key, label in MODES.items():
            button = QtWidgets.QPushButton(label)
            button.setCheckable(True)
            button.setMinimumHeight(44)
            button.clicked.connect(lambda _=False, k=key: self.mode_chosen.emit(k))
            group.addButton(button)
            layout.addWidget(button)
            self.buttons[key] = button
        self.set_mode(mode)

    def set_mode(self, mode: str) -> None:
        if mode in self.buttons:
            self.buttons[mode].setChecked(True)


class OverlayControls(QtWidgets.QGroupBox):
    """Overlay on/off, fill on/off, opacity; the window reads the values at paint time."""

    changed = QtCore.Signal()

    def __init__(self) -> None:
        super().__init__("Overlay")
        layout = QtWidgets.QGridLayout(self)
        self.show_box = QtWidgets.QCheckBox("Show (O)")
        self.show_box.setChecked(True)
        self.fill_box = QtWidgets.QCheckBox("Fill")
        self.fill_box.setChecked(True)
        self.opacity = _slider(10, 100, 85)
        layout.addWidget(self.show_box, 0, 0)
        layout.addWidget(self.fill_box, 0, 1)
        layout.addWidget(QtWidgets.QLabel("Opacity"), 1, 0)
        layout.addWidget(self.opacity, 1, 1)
        for signal in (self.show_box.toggled, self.fill_box.toggled, self.opacity.valueChanged):
            signal.connect(lambda *_: self.changed.emit())

    @property
    def enabled(self) -> bool:
        return self.show_box.isChecked()

    @property
    def fill(self) -> bool:
        return self.fill_box.isChecked()

    @property
    def opacity_value(self) -> float:
        return self.opacity.value() / 100.0


class Legend(QtWidgets.QGroupBox):
    """Colour key for the current model's classes with how sure the model is about each one
    right now, plus how doubt is drawn."""

    def __init__(self) -> None:
        super().__init__("Legend: AI confidence")
        self._layout = QtWidgets.QGridLayout(self)
        self._layout.setContentsMargins(8, 2, 8, 2)
        self._layout.setVerticalSpacing(0)
        self._classes: tuple[str, ...] = ()
        self._rows: list[tuple[QtWidgets.QLabel, QtWidgets.QLabel]] = []
        self._note = QtWidgets.QLabel("- - -  dashed / faint = unsure")
        self._note.setObjectName("muted")
        self._note.setToolTip(
            "Dashed and faint: the model is less sure of this outline than of nine in ten of "
            "its correct outlines on held-out images (a level calibrated for each model and "
            "structure; 60 % for a model without one). Solid is no guarantee.")
        self._layout.addWidget(self._note, 99, 0, 1, 2)

    def set_classes(self, classes: tuple[str, ...]) -> None:
        for name_label, value_label in self._rows:
            name_label.deleteLater()
            value_label.deleteLater()
        self._rows = []
        self._classes = tuple(c for c in classes[1:])  # background is never drawn
        for row, name in enumerate(self._classes):
            colour = theme.class_colour(name, row + 1)
            name_label = QtWidgets.QLabel(
                f'<span style="color:{colour}; font-size:18pt">&#9632;</span>&nbsp;&nbsp;{name}')
            value_label = QtWidgets.QLabel("")
            value_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight
                                     | QtCore.Qt.AlignmentFlag.AlignVCenter)
            self._layout.addWidget(name_label, row, 0)
            self._layout.addWidget(value_label, row, 1)
            self._rows.append((name_label, value_label))

    def set_confidence(self, confidence: dict[str, tuple[float, bool]] | None) -> None:
        """(confidence, unsure) of each class's most confident structure on screen now;
        None = no overlay (blank)."""
        for name, (_, value_label) in zip(self._classes, self._rows, strict=True):
            if confidence is None:
                text, colour = "", theme.MUTED
            elif name not in confidence:
                text, colour = "not seen", theme.MUTED
            else:
                value, unsure = confidence[name]
                text = f"{value * 100:.0f}%" + (" ?" if unsure else "")
                colour = theme.WARN if unsure else theme.TEXT
            if value_label.text() != text:
                value_label.setText(text)
                value_label.setStyleSheet(f"color: {colour};")

    def names(self) -> list[str]:
        return list(self._classes)

    def confidence_texts(self) -> list[str]:
        return [value_label.text() for _, value_label in self._rows]


class FileControls(QtWidgets.QGroupBox):
    """Pause, seek, step and loop for a file source (FileSource API, duck-typed), and whether
    playback waits for the model on every frame (the live session applies that choice)."""

    every_frame_changed = QtCore.Signal(bool)

    def __init__(self) -> None:
        super().__init__("Clip")
        self._source = None
        layout = QtWidgets.QGridLayout(self)
        self.play = QtWidgets.QPushButton("Pause")
        self.back = QtWidgets.QPushButton("<  Step")
        self.forward = QtWidgets.QPushButton("Step  >")
        self.loop = QtWidgets.QCheckBox("Loop")
        self.seek = _slider(0, 1000, 0)
        self.position = QtWidgets.QLabel("0.0 / 0.0 s")
        self.every_frame = QtWidgets.QCheckBox("Analyse every frame")
        self.every_frame.setChecked(True)
        self.every_frame.setToolTip("On: playback waits for the model, so every frame of the "
                                    "clip gets its own overlay (slower than real time on a "
                                    "slow computer). Off: real-time playback, as live.")
        self.rate = QtWidgets.QLabel("")
        self.rate.setObjectName("muted")
        layout.addWidget(self.play, 0, 0)
        layout.addWidget(self.back, 0, 1)
        layout.addWidget(self.forward, 0, 2)
        layout.addWidget(self.seek, 1, 0, 1, 3)
        layout.addWidget(self.position, 2, 0, 1, 2)
        layout.addWidget(self.loop, 2, 2)
        layout.addWidget(self.every_frame, 3, 0, 1, 2)
        layout.addWidget(self.rate, 3, 2)
        self.every_frame.toggled.connect(self.every_frame_changed.emit)
        self.play.clicked.connect(self._toggle)
        self.back.clicked.connect(lambda: self._call("step", -1))
        self.forward.clicked.connect(lambda: self._call("step", 1))
        self.seek.sliderReleased.connect(self._seek)
        self.loop.toggled.connect(self._set_loop)

    def attach(self, source: object | None) -> None:
        self._source = source
        self.setVisible(source is not None)
        if source is not None:
            self.loop.setChecked(bool(getattr(source, "loop", True)))
            self.refresh()

    def _call(self, name: str, *args: object) -> None:
        method: Callable | None = getattr(self._source, name, None)
        if method is not None:
            method(*args)
        self.refresh()

    def _toggle(self) -> None:
        self._call("toggle_pause")

    def _seek(self) -> None:
        duration = float(getattr(self._source, "duration_s", 0.0) or 0.0)
        self._call("seek", duration * self.seek.value() / 1000.0)

    def _set_loop(self, on: bool) -> None:
        if self._source is not None and hasattr(self._source, "loop"):
            self._source.loop = on

    def refresh(self) -> None:
        """Called by the window's timer: follow the clip position unless the user drags."""
        if self._source is None:
            return
        paused = bool(getattr(self._source, "paused", False))
        self.play.setText("Play" if paused else "Pause")
        position = float(getattr(self._source, "position_s", 0.0) or 0.0)
        duration = float(getattr(self._source, "duration_s", 0.0) or 0.0)
        self.position.setText(f"{position:.1f} / {duration:.1f} s")
        waits = bool(getattr(self._source, "analyse_every_frame", False))
        rate = float(getattr(self._source, "playback_rate", 0.0) or 0.0)
        # the achieved speed, so nobody mistakes a held-back replay for a frozen one
        self.rate.setText(f"{100 * rate:.0f} % speed" if waits and not paused and rate > 0
                          else "")
        if duration > 0 and not self.seek.isSliderDown():
            self.seek.blockSignals(True)
            self.seek.setValue(int(1000 * position / duration))
            self.seek.blockSignals(False)


class PhantomControls(QtWidgets.QGroupBox):
    """Trainee knobs for the phantom simulator (PhantomSource.simulator, duck-typed)."""

    def __init__(self) -> None:
        super().__init__("Phantom")
        self._sim = None
        layout = QtWidgets.QGridLayout(self)
        layout.setVerticalSpacing(2)  # five rows must fit a 768-pixel-high screen
        self.pressure = _slider(0, 100, 0)
        self.slide = _slider(-15, 15, 0)
        self.needle = _slider(0, 50, 0)
        self.gain = _slider(-12, 12, 0)
        self.depth = _slider(20, 60, 40)
        self.values: dict[str, QtWidgets.QLabel] = {}
        rows = (("Pressure", self.pressure, "set_pressure", lambda v: v / 100.0, "{}%"),
                ("Probe slide", self.slide, "set_probe_offset", float, "{} mm"),
                ("Needle tip", self.needle, "set_needle", lambda v: float(v) if v else None,
                 "{} mm"),
                ("Gain", self.gain, "set_gain", float, "{} dB"),
                ("Depth", self.depth, "set_depth", float, "{} mm"))
        for row, (label, slider, method, convert, fmt) in enumerate(rows):
            value = QtWidgets.QLabel()
            value.setMinimumWidth(70)
            layout.addWidget(QtWidgets.QLabel(label), row, 0)
            layout.addWidget(slider, row, 1)
            layout.addWidget(value, row, 2)
            self.values[method] = value

            def changed(v: int, method=method, convert=convert, fmt=fmt, value=value) -> None:
                value.setText("off" if method == "set_needle" and not v else fmt.format(v))
                self._call(method, convert(v))

            slider.valueChanged.connect(changed)
            changed(slider.value())

    @property
    def simulator_attached(self) -> bool:
        return self._sim is not None

    def attach(self, simulator: object | None) -> None:
        self._sim = simulator
        self.setVisible(simulator is not None)
        if simulator is not None:  # a new phantom starts from the knobs' current settings
            for slider in (self.pressure, self.slide, self.needle, self.gain, self.depth):
                slider.valueChanged.emit(slider.value())

    def _call(self, name: str, *args: object) -> None:
        method = getattr(self._sim, name, None)
        if method is not None:
            try:
                method(*args)
            except Exception as exc:  # a simulator hiccup must not take the view down
                self.window().statusBar().showMessage(f"Phantom: {exc}", 4000)
