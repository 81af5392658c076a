"""Ultrasound-minded augmentation of (image uint8 HxW, mask uint8 HxW) pairs, numpy/cv2 only.

What varies between scanners, users and patients: overall gain and dynamic range (log
compression), speckle and electronic noise, imaging depth (structures look bigger or smaller,
the skin line stays on top), probe orientation (left-right flip), small tilts, soft-tissue
deformation, and acoustic shadows below bone or air. Geometry moves image and mask together.

Domain randomisation (all off by default, for a model trained on phantom frames only): the
phantom's own look (clean speckle, black lumens with bright rings, few smooth fascia, full-frame
image) must not be what the network keys on, so these options re-draw it at random: a finer
elastic warp (irregular vessel outlines), letterboxing (real frames sit in black bands), wall
rings blended away, lumens filled with grey, speckle re-synthesised (Rayleigh, random grain),
fake fascia (thin bright curves) and blotches, a random monotone tone curve, a smooth gain field
(TGC / lateral), blur or sharpening. Only pixels change; the mask is never redrawn, so labels stay
exact (the mask moves only with the geometric steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    p_flip: float = 0.5
    max_rotate_deg: float = 10.0
    depth_scale: tuple[float, float] = (0.8, 1.25)  # zoom about the skin line's centre
    max_shift: float = 0.06  # fraction of the width/height
    p_elastic: float = 0.3
    elastic_px: float = 6.0
    gain: tuple[float, float] = (0.7, 1.35)
    gamma: tuple[float, float] = (0.7, 1.5)  # dynamic range / compression curve
    p_speckle: float = 0.5
    speckle_sigma: float = 0.15
    noise_sigma: float = 6.0
    p_shadow: float = 0.3
    # Domain randomisation; p = 0 skips the step without drawing from the RNG, so configs that
    # do not name them get exactly the augmentation stream they had before.
    p_fine_elastic: float = 0.0  # 8x8 field: bumpy, irregular outlines rather than a squash
    fine_elastic_px: float = 2.5
    p_letterbox: float = 0.0  # shrink the frame into black bands (the scanner's screen layout)
    letterbox_scale: tuple[float, float] = (0.6, 0.95)
    p_wall: float = 0.0  # inpaint the bright ring just outside each labelled structure
    p_lumen: float = 0.0  # fill labelled structures with a random grey, not always black
    lumen_level: tuple[float, float] = (0.02, 0.35)
    p_resynth: float = 0.0  # smooth the phantom texture away, multiply by new Rayleigh speckle
    p_fascia: float = 0.0  # thin bright curves and streaks outside the labelled structures
    p_blotch: float = 0.0  # soft brighter / darker patches (muscle, fat, hypoechoic clutter)
    p_tone: float = 0.0  # random monotone tone curve (a random target histogram)
    p_gain_field: float = 0.0  # smooth multiplicative field: TGC by depth and lateral falloff
    p_blur: float = 0.0  # Gaussian blur or unsharp masking (half each)

    @classmethod
    def from_dict(cls, d: dict | None) -> AugmentConfig:
        d = dict(d or {})
        for k in ("depth_scale", "gain", "gamma", "letterbox_scale", "lumen_level"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def geometric(image: np.ndarray, mask: np.ndarray, cfg: AugmentConfig,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = image.shape
    if rng.random() < cfg.p_flip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    angle = rng.uniform(-cfg.max_rotate_deg, cfg.max_rotate_deg)
    scale = np.exp(rng.uniform(*np.log(cfg.depth_scale)))
    # Rotate/scale about the top centre (the probe face), then shift a little.
    m = cv2.getRotationMatrix2D((w / 2, 0.0), angle, scale)
    m[0, 2] += rng.uniform(-cfg.max_shift, cfg.max_shift) * w
    m[1, 2] += rng.uniform(-cfg.max_shift, cfg.max_shift) * h
    image = cv2.warpAffine(np.ascontiguousarray(image), m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (w, h), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if rng.random() < cfg.p_elastic:
        image, mask = elastic(image, mask, cfg.elastic_px, rng)
    if cfg.p_fine_elastic > 0 and rng.random() < cfg.p_fine_elastic:
        image, mask = elastic(image, mask, cfg.fine_elastic_px, rng, grid=8)
    if cfg.p_letterbox > 0 and rng.random() < cfg.p_letterbox:
        image, mask = letterbox(image, mask, cfg.letterbox_scale, rng)
    return image, mask


def letterbox(image: np.ndarray, mask: np.ndarray, scale: tuple[float, float],
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Whole frame shrunk (own x and y factors) into a black canvas at a random place."""
    h, w = image.shape
    sh = int(round(h * rng.uniform(*scale)))
    sw = int(round(w * rng.uniform(*scale)))
    y0, x0 = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
    out_i, out_m = np.zeros_like(image), np.zeros_like(mask)
    out_i[y0:y0 + sh, x0:x0 + sw] = cv2.resize(np.ascontiguousarray(image), (sw, sh),
                                               interpolation=cv2.INTER_AREA)
    out_m[y0:y0 + sh, x0:x0 + sw] = cv2.resize(np.ascontiguousarray(mask), (sw, sh),
                                               interpolation=cv2.INTER_NEAREST)
    return out_i, out_m


def elastic(image: np.ndarray, mask: np.ndarray, amplitude: float,
            rng: np.random.Generator, grid: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random displacement (coarse grid x grid field upsampled): tissue compressed by the
    probe (4) or irregular outlines (8)."""
    h, w = image.shape
    coarse = rng.normal(0, amplitude, (2, grid, grid)).astype(np.float32)
    dx = cv2.resize(coarse[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(coarse[1], (w, h), interpolation=cv2.INTER_CUBIC)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + dx, gy + dy
    image = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.remap(mask, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    return image, mask


def shadow(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Acoustic shadow: a soft-edged darker column from some depth down to the bottom."""
    h, w = img.shape
    cx, half = rng.uniform(0, w), rng.uniform(0.05, 0.2) * w
    top = rng.uniform(0.2, 0.8) * h
    xs = np.arange(w, dtype=np.float32)
    across = np.clip((half - np.abs(xs - cx)) / (0.3 * half), 0, 1)
    down = np.clip((np.arange(h, dtype=np.float32) - top) / (0.05 * h), 0, 1)
    strength = rng.uniform(0.4, 0.85)
    return img * (1 - strength * down[:, None] * across[None, :])


def soften_walls(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Inpaint a 2-5 px band around the labelled structures, partly blended back: the phantom
    draws every vessel with a bright ring, real vessels often have none."""
    fg = (mask > 0).astype(np.uint8)
    if not fg.any():
        return image
    k = int(rng.integers(2, 6))
    ring = cv2.dilate(fg, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1,) * 2)) & ~fg
    ring = ring & 1
    filled = cv2.inpaint(np.clip(image * 255, 0, 255).astype(np.uint8), ring, 3,
                         cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    alpha = rng.uniform(0.5, 1.0) * cv2.GaussianBlur(ring.astype(np.float32), (0, 0), 1.0)
    return image * (1 - alpha) + filled * alpha


def fill_lumen(image: np.ndarray, mask: np.ndarray, cfg: AugmentConfig,
               rng: np.random.Generator) -> np.ndarray:
    """Each labelled class gets its own grey level (soft edge) with faint speckle of its own."""
    for c in np.unique(mask):
        if c == 0:
            continue
        soft = cv2.GaussianBlur((mask == c).astype(np.float32), (0, 0), 0.8)
        level = rng.uniform(*cfg.lumen_level)
        grain = 1 + 0.5 * cv2.GaussianBlur(rng.normal(0, 1, image.shape).astype(np.float32),
                                           (0, 0), 1.0)
        image = image * (1 - soft) + np.maximum(image, level * grain) * soft
    return image


def rayleigh_speckle(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth the image, then multiply by Rayleigh speckle of random, laterally longer grain."""
    smooth = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.8, 2.5))
    r = rng.rayleigh(1.0, image.shape).astype(np.float32)
    sx, sy = rng.uniform(0.5, 2.0), rng.uniform(0.4, 1.2)
    r = cv2.GaussianBlur(r, (0, 0), sigmaX=sx, sigmaY=sy)
    r = 1 + (r / r.mean() - 1) * rng.uniform(1.5, 3.0) / (1 + sx * sy)  # blur shrinks contrast
    mix = rng.uniform(0.5, 1.0)
    return image * (1 - mix) + smooth * np.clip(r, 0, 3) * mix


def fascia(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-10 thin bright curves (mostly horizontal, gently bent) and short streaks, drawn outside
    the labelled structures so a lumen never gains a line through it."""
    h, w = image.shape
    layer = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 11))):
        x0, x1 = sorted(rng.uniform(-0.2, 1.2, 2) * w)
        xs = np.linspace(x0, x1, 24)
        y = rng.uniform(0, h) + rng.uniform(-0.25, 0.25) * (xs - x0) \
            + rng.uniform(0, 0.08 * h) * np.sin(xs / w * rng.uniform(2, 9) + rng.uniform(0, 6))
        pts = np.stack([xs, y], 1).round().astype(np.int32)
        cv2.polylines(layer, [pts], False, float(rng.uniform(0.3, 1.0)),
                      int(rng.integers(1, 3)), cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(0.4, 1.0))
    layer *= 1 - cv2.dilate((mask > 0).astype(np.float32), np.ones((3, 3), np.uint8))
    # Not in black bands left by letterboxing or the affine border: only where there is image.
    inside = cv2.morphologyEx((image > 1 / 255).astype(np.uint8), cv2.MORPH_CLOSE,
                              np.ones((15, 15), np.uint8))
    layer *= inside
    return np.maximum(image, layer * rng.uniform(0.5, 1.0))


def blotches(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A few soft elliptical patches, each 0.4-1.8 x brighter: muscle, fat, clutter."""
    h, w = image.shape
    field = np.ones((h, w), np.float32)
    for _ in range(int(rng.integers(1, 6))):
        blob = np.zeros((h, w), np.float32)
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (int(rng.uniform(0.05, 0.3) * w), int(rng.uniform(0.03, 0.2) * h))
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        blob = cv2.GaussianBlur(blob, (0, 0), max(2.0, 0.3 * min(axes)))
        field *= 1 + (rng.uniform(0.4, 1.8) - 1) * blob
    return image * field


def tone_curve(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random monotone map of [0, 1]: 8 segments with Dirichlet slopes, like matching the
    histogram to a random target profile (no real image involved)."""
    knots = np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.full(8, 2.0)))])
    return np.interp(np.clip(image, 0, 1), np.linspace(0, 1, 9), knots).astype(np.float32)


def gain_field(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth gain: a random TGC curve by depth times a lateral falloff."""
    h, w = image.shape
    depth = np.interp(np.linspace(0, 1, h), np.linspace(0, 1, 4),
                      np.exp(rng.uniform(-0.5, 0.4, 4))).astype(np.float32)
    lateral = np.interp(np.linspace(0, 1, w), np.linspace(0, 1, 3),
                        np.exp(rng.uniform(-0.35, 0.15, 3))).astype(np.float32)
    return image * depth[:, None] * lateral[None, :]


def blur_or_sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    blurred = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.6))
    if rng.random() < 0.5:
        return blurred
    return image + rng.uniform(0.5, 1.5) * (image - blurred)  # unsharp mask


def photometric(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
                mask: np.ndarray | None = None) -> np.ndarray:
    """Intensity changes only; `mask` (aligned with image) is needed by p_wall/p_lumen/p_fascia."""
    img = image.astype(np.float32) / 255.0
    if mask is not None and cfg.p_wall > 0 and rng.random() < cfg.p_wall:
        img = soften_walls(img, mask, rng)
    if mask is not None and cfg.p_lumen > 0 and rng.random() < cfg.p_lumen:
        img = fill_lumen(img, mask, cfg, rng)
    if cfg.p_resynth > 0 and rng.random() < cfg.p_resynth:
        img = rayleigh_speckle(img, rng)
    if mask is not None and cfg.p_fascia > 0 and rng.random() < cfg.p_fascia:
        img = fascia(img, mask, rng)
    if cfg.p_blotch > 0 and rng.random() < cfg.p_blotch:
        img = blotches(img, rng)
    img = np.clip(img, 0, None) ** rng.uniform(*cfg.gamma)
    img = img * rng.uniform(*cfg.gain)
    if cfg.p_tone > 0 and rng.random() < cfg.p_tone:
        img = tone_curve(img, rng)
    if cfg.p_gain_field > 0 and rng.random() < cfg.p_gain_field:
        img = gain_field(img, rng)
    if rng.random() < cfg.p_speckle:
        # Multiplicative speckle, spatially correlated over ~2 px like a real point-spread.
        speckle = rng.normal(0, cfg.speckle_sigma, img.shape).astype(np.float32)
        img = img * (1 + cv2.GaussianBlur(speckle, (0, 0), 1.0) * 2)
    if rng.random() < cfg.p_shadow:
        img = shadow(img, rng)
    if cfg.p_blur > 0 and rng.random() < cfg.p_blur:
        img = blur_or_sharpen(img, rng)
    img = img * 255 + rng.normal(0, rng.uniform(0, cfg.noise_sigma), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def augment(image: np.ndarray, mask: np.ndarray, cfg: AugmentConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    image, mask = geometric(image, mask, cfg, rng)
    return photometric(image, cfg, rng, mask), np.ascontiguousarray(mask)
