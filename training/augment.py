"""Ultrasound-minded augmentation of (image uint8 HxW, mask uint8 HxW) pairs, numpy/cv2 only.

What varies between scanners, users and patients: overall gain and dynamic range (log
compression), speckle and electronic noise, imaging depth (structures look bigger or smaller,
the skin line stays on top), probe orientation (left-right flip), small tilts, soft-tissue
deformation, and acoustic shadows below bone or air. Geometry moves image and mask together.
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

    @classmethod
    def from_dict(cls, d: dict | None) -> AugmentConfig:
        d = dict(d or {})
        for k in ("depth_scale", "gain", "gamma"):
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
    return image, mask


def elastic(image: np.ndarray, mask: np.ndarray, amplitude: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random displacement (coarse 4x4 field upsampled): tissue compressed by the probe."""
    h, w = image.shape
    coarse = rng.normal(0, amplitude, (2, 4, 4)).astype(np.float32)
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


def photometric(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    img = image.astype(np.float32) / 255.0
    img = img ** rng.uniform(*cfg.gamma)
    img = img * rng.uniform(*cfg.gain)
    if rng.random() < cfg.p_speckle:
        # Multiplicative speckle, spatially correlated over ~2 px like a real point-spread.
        speckle = rng.normal(0, cfg.speckle_sigma, img.shape).astype(np.float32)
        img = img * (1 + cv2.GaussianBlur(speckle, (0, 0), 1.0) * 2)
    if rng.random() < cfg.p_shadow:
        img = shadow(img, rng)
    img = img * 255 + rng.normal(0, rng.uniform(0, cfg.noise_sigma), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def augment(image: np.ndarray, mask: np.ndarray, cfg: AugmentConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    image, mask = geometric(image, mask, cfg, rng)
    return photometric(image, cfg, rng), np.ascontiguousarray(mask)
