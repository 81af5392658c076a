"""Phantom scenes as labelled samples, generated on the fly from sonoguide.phantom.generator."""

from __future__ import annotations

import numpy as np

from sonoguide.phantom.labels import ARTERY, VEIN, to_model_classes
from sonoguide.training.data import Sample


def vessels_overlap(labels: np.ndarray, min_share: float = 0.5) -> bool:
    """Vein and artery stacked in the same columns (the IJ-over-carotid case).

    True when their horizontal extents share at least `min_share` of the narrower one: then a
    needle aimed at the vein's centre would reach the artery if it went through.
    """
    cols_v = np.nonzero((labels == VEIN).any(axis=0))[0]
    cols_a = np.nonzero((labels == ARTERY).any(axis=0))[0]
    if cols_v.size == 0 or cols_a.size == 0:
        return False
    shared = min(cols_v[-1], cols_a[-1]) - max(cols_v[0], cols_a[0]) + 1
    narrower = min(cols_v[-1] - cols_v[0], cols_a[-1] - cols_a[0]) + 1
    return shared >= min_share * narrower


def _sample(frame, name: str, group: str, classes: tuple[str, ...]) -> Sample:
    """A rendered phantom frame as a labelled sample; "-overlap" is added to the group where
    vein and artery are stacked, so metrics can be read for that dangerous case on its own. The
    classes come from the anatomy under the needle: a needle in the artery does not cut it out."""
    raw = np.asarray(frame.tissue_labels)
    return Sample(name, np.asarray(frame.image, np.uint8), to_model_classes(raw, classes),
                  spacing_mm=float(frame.pixel_spacing_mm),
                  group=f"{group}-overlap" if vessels_overlap(raw) else group)


def phantom_samples(scene: str, n: int, seed: int, classes: tuple[str, ...],
                    size: tuple[int, int] = (256, 256), stride: int = 1,
                    aimed: float = 0.0) -> list[Sample]:
    """`n` labelled frames of one scene, each a different phantom patient (seeded); the group
    is the scene."""
    from sonoguide.phantom.generator import generate  # imported late: only phantom configs need it

    out = []
    for i, frame in enumerate(generate(scene, n * stride, seed, size=size, aimed=aimed)):
        if i % stride == 0:
            out.append(_sample(frame, f"{scene}-s{seed}-{i:05d}", scene, classes))
    return out


def live_samples(scene: str, seed: int, n: int, classes: tuple[str, ...],
                 size: tuple[int, int] = (512, 512), fps: float = 30.0) -> list[Sample]:
    """`n` frames of one phantom patient as the app's live source plays it (the same
    simulator, seed and frame size), at `fps`: what a user sees first when the app starts."""
    from sonoguide.phantom.simulator import PhantomSimulator

    sim = PhantomSimulator(scene, seed=seed, size=size)
    return [_sample(sim.render(i / fps), f"{sim.scene}-live{seed}-{i:04d}", f"{sim.scene}-live",
                    classes) for i in range(n)]
