"""Banners floating over the top of the image: a big headline readable from two metres and a
smaller detail line. Each kind has its own row so several can show at once."""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable

from PySide6 import QtCore, QtWidgets

from sonoguide.pipeline.guidance import CAUTION, DANGER, Warning
from sonoguide.ui import theme

log = logging.getLogger(__name__)

COLOURS = {  # banner name -> background; order = stacking order on screen
    DANGER: theme.ALARM,  # needle guidance: the tip in the artery or a nerve
    CAUTION: theme.WARN,  # needle guidance: the path crosses a vessel; a vessel's behaviour
    "recording": theme.ALARM,  # REC and its time: never forgotten running
    "nosignal": theme.ALARM,
    "source": theme.ALARM,
    "model": theme.ALARM,
    "lagging": theme.WARN,
    "loading": theme.ACCENT,
    "frozen": theme.ACCENT,
    "calibrate": theme.ACCENT,
    "settings": theme.WARN,  # a settings file moved aside, or settings that cannot be saved
    "info": theme.ACCENT,  # short-lived confirmations (snapshot saved)
}


class Banners(QtWidgets.QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setStyleSheet("background: transparent;")
        column = QtWidgets.QVBoxLayout(self)
        column.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignHCenter)
        self.labels: dict[str, QtWidgets.QLabel] = {}
        for name, colour in COLOURS.items():
            label = QtWidgets.QLabel()
            label.setObjectName("banner")
            r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
            label.setStyleSheet(f"background: rgba({r}, {g}, {b}, 225);")  # image shows through
            label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
            label.setWordWrap(True)
            label.setVisible(False)
            column.addWidget(label, 0, QtCore.Qt.AlignmentFlag.AlignHCenter)
            self.labels[name] = label
        self._expiry: dict[str, QtCore.QTimer] = {}

    def set(self, name: str, headline: str, detail: str = "") -> None:
        """Show `headline` (+ `detail`) in banner `name`; an empty headline hides it."""
        label = self.labels[name]
        text = f"{headline}: {detail}" if headline and detail else headline
        if label.property("plain") != text:
            if text:  # every banner shown is in the log: what the user was told, and when
                log.info("banner %s: %s", name, text)
            label.setProperty("plain", text)
            label.setText(f"{html.escape(headline)}<br><span style='font-size:{theme.BASE_FONT_PT}"
                          f"pt; font-weight:normal'>{html.escape(detail)}</span>"
                          if detail else html.escape(headline))
        if label.isHidden() == bool(text):
            label.setVisible(bool(text))

    def flash(self, name: str, headline: str, detail: str = "", seconds: float = 3.0) -> None:
        """Show a banner that hides itself after `seconds` (a newer flash restarts the clock)."""
        self.set(name, headline, detail)
        timer = self._expiry.get(name)
        if timer is None:
            timer = self._expiry[name] = QtCore.QTimer(self)
            timer.setSingleShot(True)
            timer.timeout.connect(lambda: self.set(name, ""))
        timer.start(int(seconds * 1000))

    def show_warnings(self, warnings: Iterable[Warning]) -> None:
        """Guidance warnings: the danger row (red) and the caution row (amber), each with its
        first warning's short word and every warning's line; none hides both."""
        warnings = tuple(warnings)
        for level in (DANGER, CAUTION):
            shown = [w for w in warnings if w.level == level]
            self.set(level, shown[0].word if shown else "", "; ".join(w.text for w in shown))

    def text(self, name: str) -> str:
        """Plain text ("headline: detail") of a shown banner, else ""."""
        label = self.labels[name]
        return "" if label.isHidden() else str(label.property("plain") or "")

    def shown(self) -> dict[str, str]:
        return {name: text for name in self.labels if (text := self.text(name))}
