"""Phantom scenes as labelled samples, generated on the fly from app.phantom.generator."""

from __future__ import annotations

import numpy as np

from app.phantom.labels import to_model_classes
from training.data import Sample


def phantom_samples(scene: str, n: int, seed: int, classes: tuple[str, ...],
                    size: tuple[int, int] = (256, 256), stride: int = 1) -> list[Sample]:
    """`n` frames of one scene's clip: every `stride`-th frame, so fewer near-duplicates."""
    from app.phantom.generator import generate  # imported late: only phantom configs need it

    out = []
    for i, frame in enumerate(generate(scene, n * stride, seed, size=size)):
        if i % stride:
            continue
        labels = to_model_classes(np.asarray(frame.labels), classes)
        out.append(Sample(f"{scene}-s{seed}-{i:05d}", np.asarray(frame.image, np.uint8), labels,
                          spacing_mm=float(frame.pixel_spacing_mm), group=scene))
    return out
