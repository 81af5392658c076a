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

from sonoguide.phantom.anatomy import TISSUES, Anatomy, Line, Part

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


_RIM_SHAPE = {"connective": (0.05, 6), "muscle": (0.08, 4), "dmuscle": (0.08, 4),
              "node": (0.15, 3)}


def _rim(img: np.ndarray, grid: Grid, part: Part, rng: np.random.Generator) -> None:
    """Specular boundary: bright where the beam meets it square (top and bottom of a vessel)."""
    pts = _densify(part.polygon, 0.4, closed=True)
    d = np.diff(pts, axis=0)
    cos = np.abs(d[:, 0]) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    # thin (venous) walls come and go along their length; a bright arterial wall and other
    # connective sheaths are more even
    if part.role == "vessel":
        amount = 0.35 if part.rim >= 4.5 else 0.8
    else:
        amount = 0.4 if part.tissue == "connective" else 0.9
    patch = _smooth_patchiness(rng, len(d), amount)
    # fluid walls are mirror-like: bright top and bottom, almost nothing at the sides;
    # nerve sheaths scatter more diffusely
    floor, power = (0.02, 6) if part.role == "vessel" else _RIM_SHAPE.get(part.tissue, (0.3, 2))
    _draw_segments(img, grid, pts, part.rim * patch * (floor + (1 - floor) * cos ** power),
                   part.rim_mm)


def _line(img: np.ndarray, grid: Grid, line: Line, scale_y: float = 1.0,
          gain: float = 1.0) -> None:
    pts = line.points * [1.0, scale_y]
    thick = max(1, int(round(line.thickness_mm / grid.spacing_mm)))
    cv2.polylines(img, [grid.to_px(pts)], False, gain * line.brightness, thick, cv2.LINE_8,
                  _SHIFT)


def _fascia(img: np.ndarray, grid: Grid, line: Line, rng: np.random.Generator,
            thick: float) -> None:
    """A fascia / septum line whose thickness changes along its length (mean `thick` times
    the anatomy's), dimmer where thicker so a thick band is not simply a brighter line."""
    pts = _densify(line.points, 0.8)
    px = grid.to_px(pts)
    n = len(px)
    # chunk boundaries and each chunk's thickness factor, drawn at once
    steps = rng.integers(2, 8, n)
    ends = np.minimum(np.cumsum(steps), n - 1)
    ends = ends[: int(np.searchsorted(ends, n - 1)) + 1]
    starts = np.concatenate([[0], ends[:-1]])
    f = thick * rng.uniform(0.4, 1.6, len(ends))
    width = np.maximum(1, np.round(line.thickness_mm * f / grid.spacing_mm)).astype(int)
    value = line.brightness / np.maximum(f, 1.0)
    for i, j, t, v in zip(starts, ends, width, value, strict=True):
        cv2.polylines(img, [px[i:j + 1]], False, float(v), int(t), cv2.LINE_8, _SHIFT)


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


@dataclass
class Look:
    """How one patient and scanner set-up look, drawn per seed: speckle grain (PSF size),
    how patchy the tissue is, how soft its boundaries, how thick and blurred the fascia, how
    fast the picture darkens with depth and how striated the muscle."""

    grain_axial: float = 1.0  # PSF sigma factors
    grain_lateral: float = 1.0
    hetero: float = 1.0  # low-frequency echogenicity variation (log amplitude factor)
    soft_mm: float = 0.6  # blur of soft tissue boundaries
    fascia_thick: float = 1.0
    fascia_blur_mm: float = 0.1
    attenuation: float = 1.0  # factor on soft-tissue attenuation left after TGC
    striation: float = 0.5  # muscle fibre texture (log amplitude)
    diffuse: float = 0.5  # non-speckle share of tissue echo (scanner smoothing, Rician tissue)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Look:
        return cls(rng.uniform(1.0, 1.8), rng.uniform(1.0, 2.2), rng.uniform(0.6, 1.3),
                   rng.uniform(0.35, 1.1), rng.uniform(1.0, 2.5), rng.uniform(0.08, 0.3),
                   rng.uniform(0.9, 1.6), rng.uniform(0.35, 0.8), rng.uniform(0.2, 0.7))


def _striation(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """Unit-variance noise stretched along the fibres (mostly horizontal, slightly tilted
    per patient): the faint striated texture of muscle."""
    h, w, sp = grid.height, grid.width, grid.spacing_mm
    f = 6  # along the fibres the field is smooth: build it at 1/6 width
    noise = rng.normal(0, 1, (h, max(2, w // f))).astype(np.float32)
    sx, sy = rng.uniform(0.8, 2.0) / (sp * f), rng.uniform(0.08, 0.18) / sp
    field = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(sx, 0.5), sigmaY=max(sy, 0.5))
    field *= np.float32(1.0 / max(field.std(), 1e-6))
    return cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)


def build_tissue(anatomy: Anatomy, grid: Grid, rng: np.random.Generator,
                 frequency_mhz: float = 10.0, realisations: int = 2) -> TissueMaps:
    """Rasterise one patient onto the grid (one-off cost per patient / depth setting)."""
    h, w, sp = grid.height, grid.width, grid.spacing_mm
    look = Look.draw(np.random.default_rng(rng.integers(1 << 32)))
    ids = np.zeros((h, w), np.uint8)
    if len(anatomy.parts) > 254:
        raise ValueError("too many anatomy parts")
    labels = np.zeros((h, w), np.uint8)
    for i, part in enumerate(anatomy.parts):
        poly = grid.to_px(part.polygon)
        cv2.fillPoly(ids, [poly], i + 1, cv2.LINE_8, _SHIFT)
        if part.label:
            cv2.fillPoly(labels, [poly], int(part.label), cv2.LINE_8, _SHIFT)
        elif part.role != "vessel" and (part.tissue != "connective" or not part.rim):
            # an unlabelled region painted over a labelled one hides it (vessel walls excepted,
            # they are drawn before their own lumen)
            cv2.fillPoly(labels, [poly], 0, cv2.LINE_8, _SHIFT)
    for poly, code in anatomy.labels:
        cv2.fillPoly(labels, [grid.to_px(poly)], int(code), cv2.LINE_8, _SHIFT)

    # per-part properties as lookup tables over the id map
    # echo, attenuation, perimysium dashes, fat septa, no-specular (blood), kept sharp,
    # soft-edged, striation
    lut = np.zeros((8, 256), np.float32)
    lut[0, 0], lut[1, 0] = TISSUES["deep"][:2]
    lut[6, 0] = 1.0
    air = np.zeros(256, np.float32)
    for i, part in enumerate(anatomy.parts):
        e, att, tex = TISSUES[part.tissue]
        if 0 < att < 50:  # soft tissue: how much is left after TGC differs between patients
            att *= look.attenuation
        lut[0, i + 1], lut[1, i + 1] = e * part.gain, att
        lut[2, i + 1] = {"muscle": 1.0, "dmuscle": 0.5}.get(tex, 0.0)
        lut[3, i + 1] = tex == "fat"
        lut[4, i + 1] = part.tissue == "blood"
        # boundaries that stay crisp: vessels, nerves, bone, air (labels must match edges);
        # (a vessel drawn without a wall keeps a crisp edge too: blood against tissue is a
        # sharp change in echo even where the wall gives no specular line; a real-trained
        # model missed such vessels far more often when they faded out over a millimetre)
        lut[5, i + 1] = (bool(part.label) or part.role == "vessel" or part.tissue in (
            "blood", "fascicle", "bone", "air", "cartilage"))
        lut[6, i + 1] = part.soft or part.tissue in ("deep", "fat", "muscle", "dmuscle")
        lut[7, i + 1] = {"muscle": 0.6, "dmuscle": 1.0}.get(tex, 0.0) * look.striation
        air[i + 1] = part.tissue == "air"

    # slow heterogeneity everywhere (regional gain of scatterer density), stronger in some
    # patients than others
    hetero = np.zeros((h, w), np.float32)
    for scale_mm, amount in ((5.0, 0.35), (14.0, 0.5), (30.0, 0.35)):
        coarse = rng.normal(0, 1, (max(2, int(h * sp / scale_mm)), max(2, int(w * sp / scale_mm))))
        hetero += (amount * look.hetero) * cv2.resize(coarse.astype(np.float32), (w, h),
                                                      interpolation=cv2.INTER_CUBIC)
    echo = cv2.LUT(ids, lut[0])
    # soft boundaries: soft tissue blends into its neighbours over ~a millimetre, but never
    # across a vessel's, nerve's or bone's outline
    s_px = look.soft_mm / sp
    f = int(max(1, min(4, s_px / 1.5)))  # all of it is smooth: work at 1/f resolution
    small = (max(2, w // f), max(2, h // f))

    def down(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(cv2.resize(img, small, interpolation=cv2.INTER_AREA), (0, 0),
                                s_px / f)

    hs = down(cv2.merge([cv2.LUT(ids, lut[5]), cv2.LUT(ids, lut[6])]))  # kept sharp, soft
    wgt = np.clip(hs[..., 1] * 2.0, 0.0, 1.0) * (1.0 - np.clip(hs[..., 0] * 3.0, 0.0, 1.0))
    wb = cv2.resize(cv2.merge([wgt, down(echo)]), (w, h), interpolation=cv2.INTER_LINEAR)
    wgt, blurred = cv2.split(wb)
    echo += wgt * (blurred - echo)
    # striated muscle texture and the regional heterogeneity
    hetero += cv2.LUT(ids, lut[7]) * _striation(rng, grid)
    hetero = cv2.exp(hetero)
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
    fascia = np.zeros((h, w), np.float32)
    for line in anatomy.lines:
        if line.brightness < 10 and not line.reverb:  # fascia: thick, uneven and blurred
            _fascia(fascia, grid, line, line_rng, look.fascia_thick)
        else:  # skin, bone, pleura, trachea: crisp
            _line(lines, grid, line)
        if line.reverb > 0:  # copies at multiples of the reflector depth (probe <-> interface)
            for k in range(2, 6):
                _line(reverb, grid, line, scale_y=k, gain=line.reverb ** (k - 1))
    blur = look.fascia_blur_mm / sp
    lines += cv2.GaussianBlur(fascia, (0, 0), sigmaX=blur * 1.5, sigmaY=blur)
    spec += lines * _patch_field(line_rng, grid) * _patch_field(line_rng, grid, 0.8)
    spec *= 1.0 - cv2.LUT(ids, lut[4])  # interfaces end at a vessel: none inside a lumen
    if air.any():  # lung / tracheal air: a faint reverberant haze instead of tissue echoes
        haze = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 1.5)
        reverb += cv2.LUT(ids, air) * (haze * haze * (0.25 / SPECULAR_GAIN)) * hetero

    # attenuation along each beam (columns), exclusive of the pixel itself so bright bone
    # surfaces are not dimmed by their own shadow
    alpha_db = cv2.LUT(ids, lut[1]) * np.float32(sp / 10.0)
    for x, y in anatomy.shadows:  # refraction edge shadows under round structures' sides
        c, r = int(round((x - grid.x0_mm) / sp)), int(round(y / sp))
        strength, half_mm = line_rng.uniform(0.5, 4.0), line_rng.uniform(0.15, 0.5)
        if 0 <= c < w and 0 <= r < h:
            hw = max(1, int(round(half_mm / sp)))
            n = max(1, int(1.0 / sp))
            alpha_db[r:r + n, max(0, c - hw):c + hw + 1] += strength / n
    cum = np.cumsum(alpha_db, axis=0)
    cum -= alpha_db
    np.minimum(cum, 300.0, out=cum)
    att = cv2.exp(cum * np.float32(-np.log(10.0) / 20.0))

    # coherent speckle: complex white scatterers weighted by sqrt(backscatter), PSF-convolved
    sz, sx = psf_sigmas_mm(frequency_mhz)
    sz, sx = sz * look.grain_axial, sx * look.grain_lateral  # this probe / patient's grain
    sz_px, sx_px = max(sz / sp, 0.5), max(sx / sp, 0.5)
    root = cv2.sqrt(echo)
    norm = np.sqrt(4 * np.pi * sz_px * sx_px)  # keeps E|speckle|^2 == backscatter
    amp = root * np.float32(norm / np.sqrt(2))
    # uniform scatterer amplitudes with unit variance: after the PSF sums dozens of them the
    # field is Gaussian anyway (central limit), and uniform numbers are several times cheaper
    noise = rng.random((h, w, 2 * realisations), dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= (amp * np.float32(np.sqrt(12.0)))[:, :, None]
    speckle = cv2.GaussianBlur(noise, (0, 0), sigmaX=sx_px, sigmaY=sz_px)
    # a share of the tissue echo without speckle: fills the speckle's dark nulls the way a
    # scanner's speckle reduction and partly resolved tissue structure do
    diffuse = cv2.GaussianBlur(root, (0, 0), sigmaX=sx_px, sigmaY=sz_px)
    if realisations == 1:
        speckle = np.concatenate([speckle, np.zeros_like(speckle)], axis=2)
    speckle *= att[:, :, None]  # attenuation is real and positive: it factors out of |.|
    spec = cv2.GaussianBlur(spec, (0, 0), sigmaX=sx_px, sigmaY=sz_px)
    reverb = cv2.GaussianBlur(reverb, (0, 0), sigmaX=sx_px * 1.5, sigmaY=sz_px * 1.5)
    # reverberations are not shadowed by the air that makes them
    additive = (spec * att + reverb) * SPECULAR_GAIN
    additive += diffuse * att * np.float32(look.diffuse)

    return TissueMaps(grid, np.ascontiguousarray(speckle, np.float32),
                      np.ascontiguousarray(additive, np.float32), labels)

