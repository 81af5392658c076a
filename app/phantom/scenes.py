"""Every phantom scene by name, and the one way to draw a patient of one."""

from __future__ import annotations

import numpy as np

from sonoguide.phantom.anatomy import NECK_SCENES, Anatomy, roughen
from sonoguide.phantom.limbs import LIMB_SCENES

SCENES = {**NECK_SCENES, **LIMB_SCENES}
ALIASES = {"plexus": "supraclavicular"}  # the nerve-block mode's default view
VIEWS = tuple(SCENES)  # each distinct scene once
# What each scene is called in menus; every scene a source can show (the one list the factory,
# the command line and the window's Source menu use).
LABELS = {"jugular": "IJ (jugular)", "plexus": "brachial plexus (supraclavicular)",
          "interscalene": "interscalene plexus", "axillary": "axillary plexus",
          "infraclavicular": "infraclavicular plexus", "elbow": "median nerve at the elbow",
          "femoral": "femoral nerve", "popliteal": "popliteal sciatic"}
SOURCE_SCENES = tuple(LABELS) + tuple(s for s in SCENES if s not in LABELS
                                       and s not in ALIASES.values())


def make_anatomy(scene: str, rng: np.random.Generator, mirror: bool | None = None) -> Anatomy:
    """One random patient of a scene; `mirror` None picks the side at random."""
    scene = ALIASES.get(scene, scene)
    if scene not in SCENES:
        raise ValueError(f"unknown phantom scene {scene!r}; choose one of {sorted(SCENES)}")
    anatomy = roughen(SCENES[scene](rng), np.random.default_rng(rng.integers(1 << 32)))
    flip = bool(rng.random() < 0.5) if mirror is None else mirror
    return anatomy.mirrored() if flip else anatomy
