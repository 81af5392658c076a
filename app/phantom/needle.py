"""Block needle as the scanner shows it, drawn in screen coordinates (it is rigid, held with
the probe, so tissue warps do not bend it).

In-plane: a bright specular shaft entering from a side of the picture (its skin puncture just
beyond the probe's end) with parallel reverberation lines under it (the echo bouncing inside
the steel) and a brighter tip; the steeper the needle the weaker its echo. Out-of-plane: a
bright dot (or a short oblique cut through the shaft) with a short comet tail.

NeedleState's defaults are the classic phantom needle (saturated, straight, from the left, four
lines 0.45 mm apart); its keyword-only fields vary the look for training: brightness, entry
side and position, reverberation, dropouts along the shaft, a slightly off-plane shaft whose echo
fades, a gentle bend, tip brightness, comet-tail length and oblique cuts. Labels mark only the
echo that is visible (>= VISIBLE_DB above the tissue grey), so gaps and faded parts stay
background.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

import cv2
import numpy as np

from sonoguide.phantom.labels import NEEDLE

_SHIFT = 4
_ONE = 1 << _SHIFT
VISIBLE_DB = 12.0  # echo this far above the tissue grey (amplitude 1) counts as visible
_VISIBLE_AMP = 10.0 ** (VISIBLE_DB / 20.0)
BEAM_MM = 1.0  # elevational beam half-thickness: an off-plane shaft's echo falls as exp(-(e/B)^2)
_GAP_EDGE_MM = 0.3  # dropouts fade in and out over this much shaft (no razor edges)
_BEND_POINTS = 24  # polyline points of a bent shaft


@dataclass
class NeedleState:
    depth_mm: float  # depth of the tip below the skin
    angle_deg: float = 30.0  # to the skin surface (in-plane)
    in_plane: bool = True
    x_mm: float = 0.0  # out-of-plane: lateral position of the dot (screen mm, 0 = centre)
    _: KW_ONLY
    # echo height above the tissue on the (log) display, as a share of the classic needle's:
    # 1 is the classic near-saturated echo, 0.5 half as many dB above the tissue grey
    brightness: float = 1.0
    from_right: bool = False  # in-plane: the shaft enters from the screen-right side
    entry_offset_mm: float = 4.0  # skin puncture this far beyond the probe's end
    reverb_count: int = 3  # reverberation lines under the shaft
    reverb_spacing_mm: float = 0.45  # between them, across the shaft
    reverb_decay: float = 0.12  # amplitude ratio of each line to the one above it
    # echo dropouts along the shaft: (start, length) in mm, the start measured back from the tip
    gaps: tuple[tuple[float, float], ...] = ()
    elevation_mm: float = 0.0  # tip's distance from the scan plane (the shaft crosses it at skin)
    bend_mm: float = 0.0  # sagitta of a gentle bend (> 0 bows deeper, < 0 shallower)
    tip_gain: float = 1.4  # tip echo relative to the shaft's
    tail_count: int = 5  # out-of-plane: comet-tail echoes under the dot
    cut_mm: float = 0.0  # out-of-plane: length of an oblique cut through the shaft (0: a dot)


def _geometry(n: NeedleState, half_width_mm: float) -> tuple[float, float, float, float]:
    """In-plane: (entry x, tip x, tip y, side sign) in screen mm; sign +1 from the left."""
    ang = np.deg2rad(np.clip(n.angle_deg, 5.0, 80.0))
    sgn = -1.0 if n.from_right else 1.0
    entry_x = -sgn * (half_width_mm + max(0.0, n.entry_offset_mm))
    return entry_x, entry_x + sgn * (n.depth_mm / np.tan(ang)), n.depth_mm, sgn


def tip_mm(n: NeedleState, half_width_mm: float) -> tuple[float, float]:
    """Tip position in screen mm (x from the centre, y depth)."""
    if not n.in_plane:
        return n.x_mm, n.depth_mm
    _, tx, ty, _ = _geometry(n, half_width_mm)
    return tx, ty


def _shaft_gain(n: NeedleState, width: int, spacing_mm: float, cx: float, ex: float, tx: float,
                ty: float) -> np.ndarray | None:
    """Echo gain per picture column (None: 1 everywhere). Reverberations repeat the shaft
    straight below it, so a column is one place along the shaft for all of its lines."""
    elev = float(n.elevation_mm)
    gaps = [(float(a), float(b)) for a, b in n.gaps if b > 0.0]
    if elev == 0.0 and not gaps:
        return None
    x_mm = (np.arange(width, dtype=np.float32) - np.float32(cx)) * np.float32(spacing_mm)
    run = tx - ex if abs(tx - ex) > 1e-6 else 1e-6
    t = np.clip((x_mm - np.float32(ex)) / np.float32(run), 0.0, 1.0)  # 0 at skin, 1 at the tip
    gain = np.exp(-(t * np.float32(elev / BEAM_MM)) ** 2)
    back = (1.0 - t) * np.float32(np.hypot(run, ty))  # mm back from the tip
    for start, length in gaps:
        inside = np.minimum(back - start, start + length - back) / _GAP_EDGE_MM + 0.5
        gain *= 1.0 - np.clip(inside, 0.0, 1.0)
    return gain.astype(np.float32)


def _shaft_points(ex: float, tx: float, ty: float, bend_mm: float) -> np.ndarray:
    """Screen-mm polyline of a gently bent shaft from the skin entry to the tip (a parabola
    off the straight chord, bowing deeper for bend_mm > 0)."""
    t = np.linspace(0.0, 1.0, _BEND_POINTS)
    dx, dy = tx - ex, ty
    length = float(np.hypot(dx, dy)) or 1.0
    nx, ny = -dy / length, dx / length  # a normal of the chord ...
    if ny < 0:  # ... the one pointing deeper
        nx, ny = -nx, -ny
    off = 4.0 * bend_mm * t * (1.0 - t)
    return np.stack([ex + t * dx + off * nx, t * dy + off * ny], axis=1)


def draw_needle(lin: np.ndarray, labels: np.ndarray, n: NeedleState, spacing_mm: float,
                half_width_mm: float, origin_row: float = 0.0) -> tuple[float, float]:
    """Add the needle's echo to the linear image and its label; returns the tip in pixels.

    origin_row: the pixel row of the skin under the probe centre (0 for a linear probe)."""
    h, w = lin.shape
    cx = w / 2.0

    def px(x_mm: float, y_mm: float) -> tuple[int, int]:
        return (int(round((cx + x_mm / spacing_mm) * _ONE)),
                int(round((origin_row + y_mm / spacing_mm) * _ONE)))

    def fixed(pts_mm: np.ndarray, dy_mm: float = 0.0) -> np.ndarray:
        return np.stack([np.rint((cx + pts_mm[:, 0] / spacing_mm) * _ONE),
                         np.rint((origin_row + (pts_mm[:, 1] + dy_mm) / spacing_mm) * _ONE)],
                        axis=1).astype(np.int32)

    tx, ty = tip_mm(n, half_width_mm)
    tip_px = (float(cx + tx / spacing_mm), float(origin_row + ty / spacing_mm))
    thick = max(1, int(round(0.35 / spacing_mm)))
    bright = float(np.clip(n.brightness, 0.0, 1.5))
    layer = np.zeros_like(lin)
    if n.in_plane:
        ang = np.deg2rad(np.clip(n.angle_deg, 5.0, 80.0))
        ex = _geometry(n, half_width_mm)[0]
        echo = 1500.0 * (0.15 + 0.85 * np.cos(ang) ** 4)  # specular: strong when near-horizontal
        if bright != 1.0:  # scale the dB above the tissue grey (1), as the log display shows it
            echo = echo ** bright
        spacing_r, decay = float(n.reverb_spacing_mm), float(np.clip(n.reverb_decay, 0.0, 1.0))
        pts = None if n.bend_mm == 0.0 else fixed(_shaft_points(ex, tx, ty, float(n.bend_mm)))
        for k in range(1 + max(0, int(n.reverb_count))):  # shaft and its reverberations
            dy = k * spacing_r / np.cos(ang)
            if pts is None:
                cv2.line(layer, px(ex, dy), px(tx, ty + dy), echo * decay ** k, thick,
                         cv2.LINE_AA, _SHIFT)
            else:  # bent: the shaft's polyline moved down
                down = np.array([0, round(dy / spacing_mm * _ONE)], np.int32)
                cv2.polylines(layer, [pts + down], False, echo * decay ** k, thick, cv2.LINE_AA,
                              _SHIFT)
        cv2.circle(layer, px(tx, ty), max(1, int(0.4 / spacing_mm)) * _ONE, echo * n.tip_gain,
                   -1, cv2.LINE_AA, _SHIFT)
        gain = _shaft_gain(n, w, spacing_mm, cx, ex, tx, ty)
        if gain is not None:
            layer *= gain[None, :]
        np.maximum(lin, layer, out=lin)
        label_w = max(1, int(round(0.9 / spacing_mm)))
        if gain is None and echo >= _VISIBLE_AMP and pts is None:  # the classic needle
            cv2.line(labels, px(ex, 0.0), px(tx, ty), NEEDLE, label_w, cv2.LINE_8, _SHIFT)
        elif echo >= _VISIBLE_AMP:  # label only the columns whose shaft echo shows
            mask = np.zeros(labels.shape, np.uint8)
            if pts is None:
                cv2.line(mask, px(ex, 0.0), px(tx, ty), 1, label_w, cv2.LINE_8, _SHIFT)
            else:
                cv2.polylines(mask, [pts], False, 1, label_w, cv2.LINE_8, _SHIFT)
            if gain is not None:
                mask *= (gain * echo >= _VISIBLE_AMP).astype(np.uint8)[None, :]
            labels[mask > 0] = NEEDLE
    else:
        r = max(1, int(round(0.45 / spacing_mm)))
        dot = 900.0 if bright == 1.0 else 900.0 ** bright
        cut = float(max(0.0, n.cut_mm))
        if cut > 0.0:  # the stretch of shaft inside the beam's slice, seen as a short stroke
            ang = np.deg2rad(np.clip(n.angle_deg, 5.0, 80.0))
            back = np.array([[tx, ty], [tx - (-1.0 if n.from_right else 1.0) * cut * np.cos(ang),
                                        ty - cut * np.sin(ang)]])
        for k in range(1 + max(0, int(n.tail_count))):  # comet tail
            if cut > 0.0:
                cv2.polylines(layer, [fixed(back, k * 0.6)], False, dot * 0.55 ** k, 2 * r,
                              cv2.LINE_AA, _SHIFT)
            else:
                cv2.circle(layer, px(tx, ty + k * 0.6), r * _ONE, dot * 0.55 ** k, -1,
                           cv2.LINE_AA, _SHIFT)
        np.maximum(lin, layer, out=lin)
        if dot >= _VISIBLE_AMP:
            if cut > 0.0:
                cv2.polylines(labels, [fixed(back)], False, NEEDLE, 2 * r, cv2.LINE_8, _SHIFT)
            else:
                cv2.circle(labels, px(tx, ty), r * _ONE, NEEDLE, -1, cv2.LINE_8, _SHIFT)
    return tip_px
