"""Static per-patient maps in tissue coordinates, built once and then only warped per frame.

From an Anatomy and a pixel spacing this rasterises:
- coherent speckle: complex scatterers x sqrt(backscatter), convolved with the probe's
  axial/lateral point-spread function, in two independent realisations so the renderer can
  blend them for slow decorrelation (the speckle belongs to the tissue and moves with it);
- specular interfaces (fascia, vessel walls, bone, pleura), also blurred by the PSF;
- amplitude attenuation accumulated along each beam (shadows under bone and air, posterior
  enhancement under fluid) and reverberation artefacts under air interfaces;
- the label map.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.phantom.anatomy import TISSUES, Anatomy, Line, Part

_SHIFT = 4  # sub-pixel bits for cv2 drawing
# Anatomy brightnesses are relative; specular interfaces return 25-50 dB more than tissue
# backscatter (1.0), which is what makes fascia, walls and bone stand out after log compression.
SPECULAR_GAIN = 12.0
_ONE = 1 << _SHIFT


@dataclass
class Grid:
    """Tissue grid: pixel (col, row) <-> mm (x0 + col*sp, row*sp)."""

    spacing_mm: float
    x0_mm: float
    width: int
    height: int

    def to_px(self, pts_mm: np.ndarray) -> np.ndarray:
        """mm -> fixed-point pixel coordinates for cv2 drawing (int32, _SHIFT bits)."""
        px = (np.asarray(pts_mm, np.float64) - [self.x0_mm, 0.0]) / self.spacing_mm
        return np.round(px * _ONE).astype(np.int32)


@dataclass
class TissueMaps:
    grid: Grid
    speckle: np.ndarray  # (H, W, 4) float32: re/im of two speckle realisations, attenuated
    additive: np.ndarray  # (H, W) float32: attenuated specular echoes + reverberation
    labels: np.ndarray  # (H, W) uint8 label codes


def psf_sigmas_mm(frequency_mhz: float) -> tuple[float, float]:
    """Gaussian PSF sigmas (axial, lateral) in mm for a linear array at this frequency."""
    wavelength = 1.54 / frequency_mhz
    axial = 0.85 * wavelength  # ~2-cycle pulse -> axial FWHM ~ 2 lambda
    lateral = 2.4 * wavelength  # lateral focusing of a linear array, FWHM ~ 5.6 lambda
    return axial, lateral


def _draw_segments(img: np.ndarray, grid: Grid, pts: np.ndarray, values: np.ndarray,
                   thickness_mm: float, levels: int = 8) -> None:
    """Draw polyline segments whose brightness varies, batched into a few grey levels spaced
    3 dB apart (segments more than `levels` steps below the brightest are left out)."""
    if len(pts) < 2 or values.max() <= 0:
        return
    px = grid.to_px(pts)
    thick = max(1, int(round(thickness_mm / grid.spacing_mm)))
    top = float(values.max())
    step = np.log(values / top + 1e-12) / np.log(0.5 ** 0.5)  # 0 at the top, 1 per -3 dB
    idx = np.round(step).astype(int)
    for lv in range(levels):
        segs = [px[i:i + 2] for i in np.flatnonzero(idx == lv)]
        if segs:
            cv2.polylines(img, segs, False, top * 0.5 ** (lv / 2), thick, cv2.LINE_8, _SHIFT)


def _densify(pts: np.ndarray, step_mm: float, closed: bool = False) -> np.ndarray:
    if closed:
        pts = np.concatenate([pts, pts[:1]])
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(2, int(s[-1] / step_mm) + 1)
    t = np.linspace(0, s[-1], n)
    return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], 1)


def _smooth_patchiness(rng: np.random.Generator, n: int, amount: float) -> np.ndarray:
    """Brightness along a boundary of n ~0.4 mm segments: log-normal variation over a few mm,
    so sheaths and walls read as patchy rather than drawn."""
    knots = rng.normal(0.0, 1.0, max(3, n // 6 + 2))
    v = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    return np.exp(amount * 1.6 * v - amount * 0.8)


def _rim(img: np.ndarray, grid: Grid, part: Part, rng: np.random.Generator) -> None:
    """Specular boundary: bright where the beam meets it square (top and bottom of a vessel)."""
    pts = _densify(part.polygon, 0.4, closed=True)
    d = np.diff(pts, axis=0)
    cos = np.abs(d[:, 0]) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    patch = _smooth_patchiness(rng, len(d), 0.4 if part.tissue == "connective" else 0.9)
    # fluid walls are mirror-like; nerve sheaths scatter more diffusely
    floor, power = {"connective": (0.05, 6), "muscle": (0.08, 4)}.get(part.tissue, (0.3, 2))
    _draw_segments(img, grid, pts, part.rim * patch * (floor + (1 - floor) * cos ** power),
                   part.rim_mm)


def _line(img: np.ndarray, grid: Grid, line: Line, scale_y: float = 1.0,
          gain: float = 1.0) -> None:
    pts = line.points * [1.0, scale_y]
    thick = max(1, int(round(line.thickness_mm / grid.spacing_mm)))
    cv2.polylines(img, [grid.to_px(pts)], False, gain * line.brightness, thick, cv2.LINE_8,
                  _SHIFT)


def _patch_field(rng: np.random.Generator, grid: Grid, scale_mm: float = 2.5) -> np.ndarray:
    """Log-normal brightness variation over a few mm: fascia read as patchy streaks."""
    h, w, sp = grid.height, grid.width, grid.spacing_mm
    coarse = rng.normal(0, 1, (max(2, int(h * sp / scale_mm)), max(2, int(w * sp / scale_mm))))
    field = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.exp(field * np.float32(0.9) - np.float32(0.4))


def _streaks(rng: np.random.Generator, grid: Grid, per_mm2: float, length: tuple[float, float],
             value: float) -> np.ndarray:
    """Short, mostly horizontal bright dashes scattered over the grid."""
    h, w, sp = grid.height, grid.width, grid.spacing_mm
    img = np.zeros((h, w), np.float32)
    n = int(h * w * sp * sp * per_mm2)
    c = rng.uniform([0, 0], [w * sp, h * sp], (n, 2)) + [grid.x0_mm, 0.0]
    ang = rng.normal(0, 0.25, n)
    ln = rng.uniform(length[0], length[1], n)
    seg = np.stack([c, c + np.stack([np.cos(ang), np.sin(ang)], 1) * ln[:, None]], 1)
    segs = grid.to_px(seg.reshape(-1, 2)).reshape(-1, 2, 2)
    bright = rng.uniform(0, 1, n) ** 2
    for lv in (0.25, 0.5, 0.75, 1.0):
        sel = (bright <= lv) & (bright > lv - 0.25)
        cv2.polylines(img, list(segs[sel]), False, lv * value, 1, cv2.LINE_8, _SHIFT)
    return img


def build_tissue(anatomy: Anatomy, grid: Grid, rng: np.random.Generator,
                 frequency_mhz: float = 10.0, realisations: int = 2) -> TissueMaps:
    """Rasterise one patient onto the grid (one-off cost per patient / depth setting)."""
    h, w, sp = grid.height, grid.width, grid.spacing_mm
    ids = np.zeros((h, w), np.uint8)
    if len(anatomy.parts) > 254:
        raise ValueError("too many anatomy parts")
    labels = np.zeros((h, w), np.uint8)
    for i, part in enumerate(anatomy.parts):
        poly = grid.to_px(part.polygon)
        cv2.fillPoly(ids, [poly], i + 1, cv2.LINE_8, _SHIFT)
        if part.label:
            cv2.fillPoly(labels, [poly], int(part.label), cv2.LINE_8, _SHIFT)
        elif part.tissue != "connective" or not part.rim:
            # an unlabelled region painted over a labelled one hides it (vessel walls excepted,
            # they are drawn before their own lumen)
            cv2.fillPoly(labels, [poly], 0, cv2.LINE_8, _SHIFT)
    for poly, code in anatomy.labels:
        cv2.fillPoly(labels, [grid.to_px(poly)], int(code), cv2.LINE_8, _SHIFT)

    # per-part properties as lookup tables over the id map
    lut = np.zeros((5, 256), np.float32)  # echo, attenuation, muscle, fat, no-specular (blood)
    lut[0, 0], lut[1, 0] = TISSUES["deep"][:2]
    air = np.zeros(256, np.float32)
    for i, part in enumerate(anatomy.parts):
        e, att, tex = TISSUES[part.tissue]
        lut[0, i + 1], lut[1, i + 1] = e, att
        lut[2, i + 1] = tex == "muscle"
        lut[3, i + 1] = tex == "fat"
        lut[4, i + 1] = part.tissue == "blood"
        air[i + 1] = part.tissue == "air"

    # slow heterogeneity everywhere (regional gain of scatterer density)
    hetero = np.zeros((h, w), np.float32)
    for scale_mm, amount in ((5.0, 0.35), (14.0, 0.5)):
        coarse = rng.normal(0, 1, (max(2, int(h * sp / scale_mm)), max(2, int(w * sp / scale_mm))))
        hetero += amount * cv2.resize(coarse.astype(np.float32), (w, h),
                                      interpolation=cv2.INTER_CUBIC)
    hetero = cv2.exp(hetero)
    echo = cv2.LUT(ids, lut[0])
    echo *= hetero

    # specular interfaces: fascia, walls, bone, pleura, and the short dashes of perimysium
    # (muscle) and septa (fat)
    spec = cv2.LUT(ids, lut[2]) * _streaks(rng, grid, 1 / 10.0, (0.3, 1.6), 4.0)
    spec += cv2.LUT(ids, lut[3]) * _streaks(rng, grid, 1 / 6.0, (1.0, 4.0), 0.8)
    reverb = np.zeros((h, w), np.float32)
    line_rng = np.random.default_rng(rng.integers(1 << 32))
    for part in anatomy.parts:
        if part.rim > 0:
            _rim(spec, grid, part, line_rng)
    lines = np.zeros((h, w), np.float32)
    for line in anatomy.lines:
        _line(lines, grid, line)
        if line.reverb > 0:  # copies at multiples of the reflector depth (probe <-> interface)
            for k in range(2, 6):
                _line(reverb, grid, line, scale_y=k, gain=line.reverb ** (k - 1))
    spec += lines * _patch_field(line_rng, grid) * _patch_field(line_rng, grid, 0.8)
    spec *= 1.0 - cv2.LUT(ids, lut[4])  # interfaces end at a vessel: none inside a lumen
    if air.any():  # lung / tracheal air: a faint reverberant haze instead of tissue echoes
        haze = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 1.5)
        reverb += cv2.LUT(ids, air) * (haze * haze * (0.25 / SPECULAR_GAIN)) * hetero

    # attenuation along each beam (columns), exclusive of the pixel itself so bright bone
    # surfaces are not dimmed by their own shadow
    alpha_db = cv2.LUT(ids, lut[1]) * np.float32(sp / 10.0)
    for x, y in anatomy.shadows:  # refraction edge shadows under vessel walls
        c, r = int(round((x - grid.x0_mm) / sp)), int(round(y / sp))
        if 0 <= c < w and 0 <= r < h:
            hw = max(1, int(round(0.25 / sp)))
            n = max(1, int(1.0 / sp))
            alpha_db[r:r + n, max(0, c - hw):c + hw + 1] += 4.0 / n
    cum = np.cumsum(alpha_db, axis=0)
    cum -= alpha_db
    np.minimum(cum, 300.0, out=cum)
    att = cv2.exp(cum * np.float32(-np.log(10.0) / 20.0))

    # coherent speckle: complex white scatterers weighted by sqrt(backscatter), PSF-convolved
    sz, sx = psf_sigmas_mm(frequency_mhz)
    sz_px, sx_px = max(sz / sp, 0.5), max(sx / sp, 0.5)
    norm = np.sqrt(4 * np.pi * sz_px * sx_px)  # keeps E|speckle|^2 == backscatter
    amp = cv2.sqrt(echo) * np.float32(norm / np.sqrt(2))
    # uniform scatterer amplitudes with unit variance: after the PSF sums dozens of them the
    # field is Gaussian anyway (central limit), and uniform numbers are several times cheaper
    noise = rng.random((h, w, 2 * realisations), dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= (amp * np.float32(np.sqrt(12.0)))[:, :, None]
    speckle = cv2.GaussianBlur(noise, (0, 0), sigmaX=sx_px, sigmaY=sz_px)
    if realisations == 1:
        speckle = np.concatenate([speckle, np.zeros_like(speckle)], axis=2)
    speckle *= att[:, :, None]  # attenuation is real and positive: it factors out of |.|
    spec = cv2.GaussianBlur(spec, (0, 0), sigmaX=sx_px, sigmaY=sz_px)
    reverb = cv2.GaussianBlur(reverb, (0, 0), sigmaX=sx_px * 1.5, sigmaY=sz_px * 1.5)
    # reverberations are not shadowed by the air that makes them
    additive = (spec * att + reverb) * SPECULAR_GAIN

    return TissueMaps(grid, np.ascontiguousarray(speckle, np.float32),
                      np.ascontiguousarray(additive, np.float32), labels)

