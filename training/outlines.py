"""The outlines the app draws on a labelled frame, as the app draws them.

Each labelled sample goes through the app's own Segmenter and Analyzer (the model's calibrated
unsure levels; no smoothing or doubt carried over from the sample before), so an outline's
confidence, and whether it is drawn unsure, are exactly the app's numbers. An outline is
stray when it covers no pixel of the structure it claims to be: the false vein beside the real
one, which Dice barely shows.
Evaluation counts them; calibration sets the unsure levels from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sonoguide.pipeline.analysis import TARGET_CLASS
from sonoguide.pipeline.contract import DEFAULT_UNSURE_BELOW
from sonoguide.pipeline.frames import Roi
from sonoguide.pipeline.models import analyzer_for
from sonoguide.pipeline.segmenter import Segmenter
from sonoguide.training.data import Sample


@dataclass(frozen=True)
class Outline:
    frame: int  # index of the sample it was drawn on
    class_name: str  # model class
    data_class: int  # the labelled class it stands for (after merging), 0 = none
    confidence: float  # the app's: mean probability inside the component
    unsure: bool  # the app draws it dashed (the model's own levels)
    stray: bool  # touches none of the labelled structure


def map_classes(model_classes: tuple[str, ...], data_classes: tuple[str, ...],
                merge: dict[str, str] | None = None) -> np.ndarray:
    """Lookup table model class index -> data class index (unmatched classes -> background)."""
    merge = merge or {}
    table = np.zeros(256, np.uint8)
    for i, name in enumerate(model_classes):
        target = merge.get(name, name)
        if target in data_classes:
            table[i] = data_classes.index(target)
    return table


def mode_for(classes: tuple[str, ...]) -> str:
    """The app mode whose target this model segments (plexus before jugular)."""
    return next(m for m, target in TARGET_CLASS.items() if target in classes)


def app_outlines(model: str | Path, samples: list[Sample], data_classes: tuple[str, ...],
                 merge: dict[str, str] | None = None, quiet: bool = False) -> list[Outline]:
    segmenter = Segmenter(model, provider="cpu")
    analyzer = analyzer_for(segmenter, mode_for(segmenter.classes), smoothing=1.0)
    table = map_classes(segmenter.classes, data_classes, merge)
    out = []
    for i, s in enumerate(tqdm(samples, desc=f"outlines {Path(model).name}", disable=quiet,
                               leave=False)):
        roi = Roi(*s.roi) if s.roi else Roi.full(s.image)
        analyzer.reset()  # independent frames: no doubt (hysteresis) carried from the last one
        analysis = analyzer.analyze(segmenter.predict(roi.crop(s.image)), roi, None)
        for st in analysis.structures:
            drawn = np.zeros(s.image.shape[:2], np.uint8)
            cv2.fillPoly(drawn, [np.round(st.contour).astype(np.int32)], 1)
            data_class = int(table[segmenter.classes.index(st.class_name)])
            truth = s.mask == data_class if data_class else np.zeros_like(drawn, bool)
            out.append(Outline(i, st.class_name, data_class, st.confidence, st.unsure,
                               not bool(np.any(truth & (drawn > 0)))))
    return out


def dashed_counts(outlines: list[Outline], level: dict[str, float] | None = None,
                  key: Callable[[Outline], object] = lambda o: o.class_name
                  ) -> dict[object, dict[str, int]]:
    """Per key (model class by default): true and stray outlines and how many of each are drawn
    unsure, by the model's own levels or, given `level`, by those (class -> probability)."""
    counts: dict[object, dict[str, int]] = {}
    for o in outlines:
        c = counts.setdefault(key(o), {"true": 0, "true_unsure": 0, "stray": 0,
                                       "stray_unsure": 0})
        unsure = o.unsure if level is None else (
            o.confidence < level.get(o.class_name, DEFAULT_UNSURE_BELOW))
        kind = "stray" if o.stray else "true"
        c[kind] += 1
        c[f"{kind}_unsure"] += unsure
    return counts


def dashed_text(c: dict[str, int]) -> str:
    """'true_unsure of true / stray_unsure of stray', as the tables print a dashed_counts cell."""
    return f"{c['true_unsure']} of {c['true']} / {c['stray_unsure']} of {c['stray']}"
