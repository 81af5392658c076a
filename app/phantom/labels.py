"""Phantom label codes and how they map onto each shipped model's classes."""

from __future__ import annotations

import numpy as np

BACKGROUND, NERVE, ARTERY, VEIN, NEEDLE = 0, 1, 2, 3, 4
LABEL_NAMES = {BACKGROUND: "background", NERVE: "nerve", ARTERY: "artery", VEIN: "vein",
               NEEDLE: "needle"}

# Model class lists (index 0 is always background), as the shipped models name them.
PLEXUS_CLASSES = ("background", "nerve", "vessel")
JUGULAR_CLASSES = ("background", "vein", "artery")

_TO_MODEL = {
    PLEXUS_CLASSES: {NERVE: 1, ARTERY: 2, VEIN: 2},
    JUGULAR_CLASSES: {VEIN: 1, ARTERY: 2},
}


def to_model_classes(labels: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """Phantom label map -> index mask in a model's class list (needle counts as background)."""
    table = np.zeros(256, np.uint8)
    for code, idx in _TO_MODEL[tuple(classes)].items():
        table[code] = idx
    return table[labels]
