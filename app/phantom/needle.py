"""Block needle as the scanner shows it, drawn in screen coordinates (it is rigid, held with
the probe, so tissue warps do not bend it).

In-plane: a bright specular shaft entering from the screen-left edge with parallel
reverberation lines under it (the echo bouncing inside the steel) and a brighter tip; the
steeper the needle the weaker its echo. Out-of-plane: a bright dot with a short comet tail.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sonoguide.phantom.labels import NEEDLE

_SHIFT = 4
_ONE = 1 << _SHIFT


@dataclass
class NeedleState:
    depth_mm: float  # depth of the tip below the skin
    angle_deg: float = 30.0  # to the skin surface (in-plane)
    in_plane: bool = True
    x_mm: float = 0.0  # out-of-plane: lateral position of the dot (screen mm, 0 = centre)


def tip_mm(n: NeedleState, half_width_mm: float) -> tuple[float, float]:
    """Tip position in screen mm (x from the centre, y depth)."""
    if not n.in_plane:
        return n.x_mm, n.depth_mm
    ang = np.deg2rad(np.clip(n.angle_deg, 5.0, 80.0))
    entry_x = -half_width_mm - 4.0  # skin puncture just beyond the probe's left end
    return entry_x + n.depth_mm / np.tan(ang), n.depth_mm


def draw_needle(lin: np.ndarray, labels: np.ndarray, n: NeedleState, spacing_mm: float,
                half_width_mm: float, origin_row: float = 0.0) -> tuple[float, float]:
    """Add the needle's echo to the linear image and its label; returns the tip in pixels.

    origin_row: the pixel row of the skin under the probe centre (0 for a linear probe)."""
    h, w = lin.shape
    cx = w / 2.0

    def px(x_mm: float, y_mm: float) -> tuple[int, int]:
        return (int(round((cx + x_mm / spacing_mm) * _ONE)),
                int(round((origin_row + y_mm / spacing_mm) * _ONE)))

    tx, ty = tip_mm(n, half_width_mm)
    tip_px = (float(cx + tx / spacing_mm), float(origin_row + ty / spacing_mm))
    thick = max(1, int(round(0.35 / spacing_mm)))
    if n.in_plane:
        ang = np.deg2rad(np.clip(n.angle_deg, 5.0, 80.0))
        ex = -half_width_mm - 4.0
        echo = 1500.0 * (0.15 + 0.85 * np.cos(ang) ** 4)  # specular: strong when near-horizontal
        layer = np.zeros_like(lin)
        for k in range(4):  # shaft and its reverberation copies below it
            dy = k * 0.45 / np.cos(ang)
            cv2.line(layer, px(ex, dy), px(tx, ty + dy), echo * 0.12 ** k, thick, cv2.LINE_AA,
                     _SHIFT)
        cv2.circle(layer, px(tx, ty), max(1, int(0.4 / spacing_mm)) * _ONE, echo * 1.4, -1,
                   cv2.LINE_AA, _SHIFT)
        np.maximum(lin, layer, out=lin)
        cv2.line(labels, px(ex, 0.0), px(tx, ty), NEEDLE, max(1, int(round(0.9 / spacing_mm))),
                 cv2.LINE_8, _SHIFT)
    else:
        r = max(1, int(round(0.45 / spacing_mm)))
        layer = np.zeros_like(lin)
        for k in range(6):  # comet tail
            cv2.circle(layer, px(tx, ty + k * 0.6), r * _ONE, 900.0 * 0.55 ** k, -1, cv2.LINE_AA,
                       _SHIFT)
        np.maximum(lin, layer, out=lin)
        cv2.circle(labels, px(tx, ty), r * _ONE, NEEDLE, -1, cv2.LINE_8, _SHIFT)
    return tip_px
