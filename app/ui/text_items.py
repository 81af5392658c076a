"""Text drawn over the image: one way to make a label that stays readable on any tissue."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6 import QtGui


def text_item(colour: str, point_size: int, *, bold: bool = False,
              anchor: tuple[float, float] = (0.0, 0.0), fill_alpha: int = 170) -> pg.TextItem:
    """A label on a dark translucent box (bright speckle under it must not eat the letters)."""
    item = pg.TextItem("", color=colour, anchor=anchor, fill=pg.mkBrush(0, 0, 0, fill_alpha))
    font = QtGui.QFont()
    font.setPointSize(point_size)
    font.setBold(bold)
    item.setFont(font)
    return item
