"""Static per-patient maps in tissue coordinates, built once and then only warped per frame.

From an Anatomy and a pixel spacing this rasterises:
- coherent speckle: complex scatterers x sqrt(backscatter), convolved with the probe's
  axial/lateral point-spread function, in two independent realisations so the renderer can
  blend them for slow decorrelation (the speckle belongs to the tissue and moves with it);
- specular interfaces (fascia, vessel walls, bone, pleura), also blurred by the PSF;
- amplitude attenuation accumulated along each beam (shadows under bone and air, posterior
  enhancement under fluid) and reverberation artefacts under air interfaces;
- the label map and, per column, the vein's upper and lower edge (for compression).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.phantom.anatomy import TEXTURES, TISSUES, Anatomy, Line, Part

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
    vein_top_mm: np.ndarray  # (W,) per column, NaN where no vein
    vein_bottom_mm: np.ndarray


def psf_sigmas_mm(frequency_mhz: float) -> tuple[float, float]:
    """Gaussian PSF sigmas (axial, lateral) in mm for a linear array at this frequency."""
    wavelength = 1.54 / frequency_mhz
    axial = 0.9 * wavelength  # ~2.5-cycle pulse -> axial FWHM ~ 2 lambda
    lateral = 3.2 * wavelength  # elevation/lateral focusing of a linear array, FWHM ~ 7 lambda
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


def _smooth_patchiness(rng: np.random.Generator, n: int, broken: float) -> np.ndarray:
    """Brightness along an interface (segments ~0.4 mm): log-normal variation over a few mm
    with drop-outs, so fascia read as patchy streaks rather than drawn lines."""
    knots = rng.normal(0.0, 1.0, max(3, n // 6 + 2))
    v = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    return np.exp(broken * 1.6 * v - broken * 0.8)


def _rim(img: np.ndarray, grid: Grid, part: Part, rng: np.random.Generator) -> None:
    """Specular boundary: bright where the beam meets it square (top and bottom of a vessel)."""
    pts = _densify(part.polygon, 0.4, closed=True)
    d = np.diff(pts, axis=0)
    cos = np.abs(d[:, 0]) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    patch = _smooth_patchiness(rng, len(d), 0.4)
    # fluid walls are mirror-like; nerve sheaths scatter more diffusely
    floor, power = (0.05, 6) if part.tissue == "connective" else (0.3, 2)
    _draw_segments(img, grid, pts, part.rim * patch * (floor + (1 - floor) * cos ** power),
                   part.rim_mm)


def _line(img: np.ndarray, grid: Grid, line: Line, rng: np.random.Generator,
          scale_y: float = 1.0, gain: float = 1.0) -> None:
    pts = _densify(line.points, 0.4)
    pts = pts * [1.0, scale_y]
    d = np.diff(pts, axis=0)
    cos = np.abs(d[:, 0]) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    patch = _smooth_patchiness(rng, len(d), line.broken)
    _draw_segments(img, grid, pts, gain * line.brightness * patch * (0.3 + 0.7 * cos ** 2),
                   line.thickness_mm)


def _texture_fields(rng: np.random.Generator, grid: Grid) -> dict[str, np.ndarray]:
    """Multiplicative backscatter textures, one per texture kind, over the whole grid."""
    h, w, sp = grid.height, grid.width, grid.spacing_mm
    # slow heterogeneity everywhere
    coarse = rng.normal(0, 1, (max(2, int(h * sp / 6)), max(2, int(w * sp / 6)))).astype(np.float32)
    hetero = np.exp(0.4 * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC))
    fields = {"plain": hetero}
    # muscle: "starry night" of short bright perimysium streaks on a dark belly
    fib = np.zeros((h, w), np.float32)
    area = h * w * sp * sp
    n = int(area / 3.0)
    c = rng.uniform([0, 0], [w * sp, h * sp], (n, 2)) + [grid.x0_mm, 0.0]
    ang = rng.normal(0, 0.25, n)
    length = rng.uniform(0.4, 2.5, n)
    seg = np.stack([c, c + np.stack([np.cos(ang), np.sin(ang)], 1) * length[:, None]], 1)
    segs = grid.to_px(seg.reshape(-1, 2)).reshape(-1, 2, 2)
    bright = rng.uniform(0, 1, n) ** 2
    for lv in (0.25, 0.5, 0.75, 1.0):
        sel = (bright <= lv) & (bright > lv - 0.25)
        cv2.polylines(fib, list(segs[sel]), False, lv * 2.0, 1, cv2.LINE_8, _SHIFT)
    fields["muscle"] = hetero
    fields["muscle_streaks"] = fib
    # fat: dark lobules between thin brighter strands
    strands = np.zeros((h, w), np.float32)
    n = int(area / 6)
    c = rng.uniform([0, 0], [w * sp, h * sp], (n, 2)) + [grid.x0_mm, 0.0]
    ang = rng.normal(0, 0.25, n)
    length = rng.uniform(1.0, 4.0, n)
    seg = np.stack([c, c + np.stack([np.cos(ang), np.sin(ang)], 1) * length[:, None]], 1)
    cv2.polylines(strands, list(grid.to_px(seg.reshape(-1, 2)).reshape(-1, 2, 2)), False, 0.8,
                  1, cv2.LINE_8, _SHIFT)
    fields["fat"] = hetero
    fields["fat_streaks"] = strands
    return fields


def ids_of(anatomy: Anatomy, tissue: str) -> list[int]:
    """Part ids (as rasterised, 1-based) made of one tissue."""
    return [i + 1 for i, p in enumerate(anatomy.parts) if p.tissue == tissue]


def build_tissue(anatomy: Anatomy, grid: Grid, rng: np.random.Generator,
                 frequency_mhz: float = 10.0, realisations: int = 2) -> TissueMaps:
    """Rasterise one patient onto the grid (one-off cost per patient / depth setting)."""
    h, w, sp = grid.height, grid.width, grid.spacing_mm
    ids = np.zeros((h, w), np.uint8)
    n_parts = len(anatomy.parts)
    if n_parts > 254:
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

    echo_lut = np.zeros(256, np.float32)
    atten_lut = np.zeros(256, np.float32)
    tex_lut = np.zeros(256, np.int32)
    echo_lut[0], atten_lut[0] = TISSUES["deep"][:2]
    for i, part in enumerate(anatomy.parts):
        e, att, tex = TISSUES[part.tissue]
        echo_lut[i + 1], atten_lut[i + 1], tex_lut[i + 1] = e, att, TEXTURES.index(tex)

    fields = _texture_fields(rng, grid)
    tex_id = tex_lut[ids]
    echo = echo_lut[ids] * fields["plain"]
    for k, name in enumerate(TEXTURES[1:], start=1):
        sel = tex_id == k
        echo[sel] = echo_lut[ids][sel] * fields[name][sel]

    # specular interfaces and reverberation artefacts
    spec = np.zeros((h, w), np.float32)
    reverb = np.zeros((h, w), np.float32)
    line_rng = np.random.default_rng(rng.integers(1 << 32))
    for part in anatomy.parts:
        if part.rim > 0:
            _rim(spec, grid, part, line_rng)
    for line in anatomy.lines:
        _line(spec, grid, line, line_rng)
    for k, name in enumerate(TEXTURES[1:], start=1):  # perimysium / fat septa: short dashes
        sel = tex_id == k
        spec[sel] += fields[name + "_streaks"][sel]
    blood = ids_of(anatomy, "blood")
    if blood:  # interfaces end at a vessel: nothing specular inside a lumen
        spec[np.isin(ids, blood)] = 0.0
        if line.reverb > 0:  # copies at multiples of the reflector depth (probe <-> interface)
            for k in range(2, 6):
                _line(reverb, grid, line, line_rng, scale_y=k, gain=line.reverb ** (k - 1))
    air = ids_of(anatomy, "air")
    if air:  # lung / tracheal air: a faint reverberant haze instead of tissue echoes
        haze = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 1.5)
        reverb += np.isin(ids, air) * (haze * haze * 0.25 / SPECULAR_GAIN) * fields["plain"]

    # attenuation along each beam (columns), exclusive of the pixel itself so bright bone
    # surfaces are not dimmed by their own shadow
    alpha_db = atten_lut[ids] * (sp / 10.0)
    for x, y in anatomy.shadows:  # refraction edge shadows under vessel walls
        c, r = int(round((x - grid.x0_mm) / sp)), int(round(y / sp))
        if 0 <= c < w and 0 <= r < h:
            hw = max(1, int(round(0.25 / sp)))
            n = max(1, int(1.0 / sp))
            alpha_db[r:r + n, max(0, c - hw):c + hw + 1] += 4.0 / n
    cum = np.cumsum(alpha_db, axis=0) - alpha_db
    att = np.power(10.0, -np.minimum(cum, 300.0) / 20.0).astype(np.float32)

    # coherent speckle: complex white scatterers weighted by sqrt(backscatter), PSF-convolved
    sz, sx = psf_sigmas_mm(frequency_mhz)
    sz_px, sx_px = max(sz / sp, 0.5), max(sx / sp, 0.5)
    norm = np.sqrt(4 * np.pi * sz_px * sx_px)  # keeps E|speckle|^2 == backscatter
    amp = np.sqrt(echo) * np.float32(norm / np.sqrt(2))
    noise = rng.standard_normal((h, w, 2 * realisations), dtype=np.float32)
    noise *= amp[:, :, None]
    if realisations == 1:
        noise = np.concatenate([noise, np.zeros_like(noise)], axis=2)
    speckle = cv2.GaussianBlur(noise, (0, 0), sigmaX=sx_px, sigmaY=sz_px)
    speckle *= att[:, :, None]  # attenuation is real and positive: it factors out of |.|
    spec = cv2.GaussianBlur(spec, (0, 0), sigmaX=sx_px, sigmaY=sz_px)
    reverb = cv2.GaussianBlur(reverb, (0, 0), sigmaX=sx_px * 1.5, sigmaY=sz_px * 1.5)
    # reverberations are not shadowed by the air that makes them
    additive = (spec * att + reverb) * SPECULAR_GAIN

    vein_top = np.full(w, np.nan, np.float32)
    vein_bot = np.full(w, np.nan, np.float32)
    if anatomy.vein is not None:
        vmask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(vmask, [grid.to_px(anatomy.vein.outer())], 1, cv2.LINE_8, _SHIFT)
        cols = np.flatnonzero(vmask.any(axis=0))
        if len(cols):
            sub = vmask[:, cols].astype(bool)
            vein_top[cols] = sub.argmax(axis=0) * sp
            vein_bot[cols] = (h - sub[::-1].argmax(axis=0)) * sp
    return TissueMaps(grid, np.ascontiguousarray(speckle, np.float32),
                      np.ascontiguousarray(additive, np.float32), labels, vein_top, vein_bot)

