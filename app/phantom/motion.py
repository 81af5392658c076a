"""Where each displayed pixel comes from in the tissue: the per-frame inverse deformation.

The composition, evaluated from the screen inwards on a coarse grid (the field is smooth, so it
is upsampled for cv2.remap):
1. cardiac pulsation: the artery's radius swells by (1 + s); surrounding tissue is pushed
   outwards, area-preserving, fading with distance;
2. probe pressure and breathing: the vein's height shrinks by a factor (1 - k) per column while
   its upper edge stays put; tissue under it follows upwards, fading with depth; the artery is
   moved rigidly (it stays round: arteries do not collapse under a probe);
3. probe pose: in-plane tilt (beams aimed obliquely: depth-proportional sideways shift) and a
   lateral slide.
Labels and image are warped by the same map, so the truth always matches what is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sonoguide.phantom.anatomy import Vessel


@dataclass
class Pose:
    offset_mm: float = 0.0  # lateral slide of the probe over the skin
    tilt_deg: float = 0.0  # in-plane rocking


@dataclass
class VeinChains:
    """Vein outline split into upper and lower edges, sorted by x (tissue mm)."""

    upper: np.ndarray  # (N, 2)
    lower: np.ndarray

    @classmethod
    def from_vessel(cls, v: Vessel) -> VeinChains:
        poly = v.outer()
        i0, i1 = int(np.argmin(poly[:, 0])), int(np.argmax(poly[:, 0]))
        ring = np.concatenate([poly, poly])
        a = ring[i0:i0 + ((i1 - i0) % len(poly)) + 1]
        b = ring[i1:i1 + ((i0 - i1) % len(poly)) + 1]
        up, lo = (a, b) if a[:, 1].mean() < b[:, 1].mean() else (b, a)
        return cls(up[np.argsort(up[:, 0])], lo[np.argsort(lo[:, 0])])


# Tilting the probe in its plane (heel-toe / angling) keeps the skin under the face but aims the
# beams obliquely: deeper tissue shifts sideways in proportion to depth (a shear), and the
# oblique path makes every depth a little longer (1 / cos).


def _to_probe(pts: np.ndarray, pose: Pose) -> np.ndarray:
    th = np.deg2rad(pose.tilt_deg)
    x, y = pts[..., 0] - pose.offset_mm, pts[..., 1]
    ys = y / np.cos(th)
    return np.stack([x - ys * np.sin(th), ys], -1)


def _to_tissue(x: np.ndarray, y: np.ndarray, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    th = np.deg2rad(pose.tilt_deg)
    return x + y * np.sin(th) + pose.offset_mm, y * np.cos(th)


class Compression:
    """Vein collapse field in probe coordinates: source y = y + E(x, y).

    The vein's height shrinks by (1 - k). A share of the lost height comes from its roof
    sinking (the overlying tissue drapes down, stretched evenly from the skin) and the rest from
    its floor rising (the tissue below is pulled up, fading with depth), as on a real scanner.
    """

    ROOF_SHARE = 0.6

    def __init__(self, chains: VeinChains, pose: Pose, k: float) -> None:
        up = _to_probe(chains.upper, pose)
        lo = _to_probe(chains.lower, pose)
        self.up = up[np.argsort(up[:, 0])]
        self.lo = lo[np.argsort(lo[:, 0])]
        self.k = float(k)
        hmax = float(np.max(self.lo[:, 1]) - np.min(self.up[:, 1]))
        # long enough that the field never folds (|dE/dy| < 1), short enough to stay local
        self.decay_mm = 2.5 * abs(self.k) * hmax * (1 - self.ROOF_SHARE) + 2.0

    def field(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        top = np.interp(x, self.up[:, 0], self.up[:, 1], left=np.nan, right=np.nan)
        bot = np.interp(x, self.lo[:, 0], self.lo[:, 1], left=np.nan, right=np.nan)
        h = np.nan_to_num(np.maximum(bot - top, 0.0))
        top = np.maximum(np.nan_to_num(top), 0.5)
        k, f = self.k, self.ROOF_SHARE
        roof = top + f * k * h  # the vein's roof and floor on screen
        floor = roof + (1.0 - k) * h
        above = -y * (f * k * h) / roof
        inside = top + (y - roof) / (1.0 - k) - y
        lift = (1.0 - f) * k * h
        below = lift * np.clip(1.0 - (y - floor) / self.decay_mm, 0.0, 1.0) ** 2
        e = np.where(y <= roof, above, np.where(y <= floor, inside, below))
        return np.where(h > 0, e, 0.0)

    def forward_y(self, x: float, y_src: float) -> float:
        """Screen depth of the tissue point at source depth y_src (fixed-point solve)."""
        xs = np.array([x])
        y = y_src
        for _ in range(40):
            y_new = y_src - float(self.field(xs, np.array([y]))[0])
            if abs(y_new - y) < 1e-3:
                return y_new
            y = y_new
        return y


def inverse_map(x: np.ndarray, y: np.ndarray, pose: Pose, artery: Vessel | None,
                pulse: float, chains: VeinChains | None, k: float,
                smooth_px: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Screen mm (x, y) -> tissue mm, for the given probe pose, pulsation and collapse.

    x, y: 2-D grids (a coarse screen grid); smooth_px softens the collapse field's shear at
    the vein's sides (in grid cells, laterally only, so the vein can still flatten to a slit),
    as tissue stiffness does.
    """
    comp = Compression(chains, pose, k) if chains is not None and k != 0.0 else None
    a_scr = None
    if artery is not None:
        ap = _to_probe(np.array([artery.cx, artery.cy]), pose)
        a_scr = np.array([ap[0], comp.forward_y(ap[0], ap[1]) if comp else ap[1]])
        r_out = 0.5 * (artery.a + artery.b) + artery.wall_mm
        if pulse != 0.0:
            x, y = _pulsate(x, y, a_scr, r_out, pulse)
    if comp is not None:
        e = comp.field(x, y)
        if smooth_px > 0:
            e = cv2.GaussianBlur(e.astype(np.float32), (0, 0), sigmaX=smooth_px,
                                 sigmaY=0.25 * smooth_px)
        if a_scr is not None:  # the artery (and its wall) moves as one rigid body
            e_c = float(comp.field(a_scr[:1], a_scr[1:])[0])
            r = np.hypot(x - a_scr[0], y - a_scr[1])
            r1 = r_out + 0.6
            w = np.clip((r1 + 4.0 - r) / 4.0, 0.0, 1.0)
            w = w * w * (3 - 2 * w)
            e = e + w * (e_c - e)
        y = y + e
    return _to_tissue(x, y, pose)


def _pulsate(x: np.ndarray, y: np.ndarray, centre: np.ndarray, radius: float,
             s: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of a radial swelling by (1 + s): inside, shrink back; outside, area-preserving."""
    dx, dy = x - centre[0], y - centre[1]
    r = np.maximum(np.hypot(dx, dy), 1e-6)
    grown = radius * (1.0 + s)
    r_in = r / (1.0 + s)
    r_out = np.sqrt(np.maximum(r * r - ((1.0 + s) ** 2 - 1.0) * radius * radius, 0.0))
    r_src = np.where(r < grown, r_in, r_out)
    fade = np.exp(-(np.maximum(r - grown, 0.0) / (2.5 * radius)) ** 2)
    r_src = r - (r - r_src) * fade
    f = r_src / r
    return centre[0] + dx * f, centre[1] + dy * f
