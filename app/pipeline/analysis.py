"""Model probabilities -> what the overlay shows: structures, the mode's target and its depth.

Works in model space (small, fast) and maps only contours and centroids to full-frame pixels
through the ROI. Qt-free; one Analyzer per model, used from one thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from sonoguide.pipeline.contract import DEFAULT_UNSURE_BELOW
from sonoguide.pipeline.frames import Roi, Structure, Target, most_confident
from sonoguide.pipeline.roi import depth_mm, map_model_to_full
from sonoguide.pipeline.segmenter import Prediction

# The procedures, once: what the user calls them, what they target, the phantom scene that
# shows their anatomy. The window, the command line, the trainee and the speed check read these.
MODE_LABELS = {"plexus": "Nerve block", "jugular": "IJ cannulation"}
MODES = tuple(MODE_LABELS)
TARGET_CLASS = {"plexus": "nerve", "jugular": "vein"}
MODE_SCENES = {mode: f"phantom:{mode}" for mode in MODES}  # phantom scenes of the same names
DEFAULT_MODE = "jugular"  # IJ cannulation: the window and the command line start here
PRESENCE_THRESHOLD = 0.5
HYSTERESIS_MAX = 0.01  # the most an unsure outline must climb above its level to turn solid
SURE_HOLD_MAX = 0.02  # the most a sure outline may dim below its level and stay solid


@dataclass(frozen=True)
class Analysis:
    labels: np.ndarray  # (roi.h, roi.w) uint8 class index; specks and absent classes removed
    structures: tuple[Structure, ...]
    target: Target | None
    present: dict[str, float]  # class -> presence probability (empty without a presence head)

    def __iter__(self):  # allows `labels, structures, target, present = analyzer.analyze(...)`
        return iter((self.labels, self.structures, self.target, self.present))


class Analyzer:
    """Per class: argmax -> connected components -> contours in full-frame coordinates.

    min_area_frac: components smaller than this fraction of the model image are specks (0.001 is
      ~65 px of a 256x256 model, ~1.5 mm across on a 40 mm wide image: below a nerve fascicle).
    cluster_gap_frac: nerve fascicles closer than this fraction of the model width count as one
      plexus (the target is the centroid of the largest such cluster).
    smoothing: EMA weight of the newest frame's probabilities (1.0 = off). Consecutive frames of
      the same source and ROI are blended so contours do not flicker; any change of ROI, source,
      model shape or a gap in time/frame ids starts afresh so an old image never bleeds in.
    max_gap_s: results further apart than this are not blended. 50 ms: one or two frames of
      30-60 fps video. A slower model's results are 70-100 ms apart, and blending them smears
      an outline over anatomy that has moved since (on a 1.5 cm/s phantom sweep at 15
      inferences/s, shown-overlay Dice 0.897 / 0.870 with a 250 ms gap, 0.909 / 0.901 with
      50 ms; python -m sonoguide.pipeline.shown_accuracy). Between a slow model's results the
      overlay follows the measured motion instead.
    unsure_below: class -> mean probability under which a structure (and the target) is marked
      unsure, the model's calibrated levels (ModelContract.unsure_below); others get
      DEFAULT_UNSURE_BELOW.
    unsure_hysteresis: once a class's most confident structure was unsure, it must climb this
      fraction of the way from its level to full confidence (at most HYSTERESIS_MAX) to be drawn
      sure again, so an outline hovering at the level (a vein being released) does not flick
      between dashed and solid. Relative, because levels differ: a fixed 0.01 above the jugular
      model's artery level of 0.966 was more than its usual frame-to-frame spread (0.967-0.976),
      so one dip kept a correct artery dashed for good (sonoguide.pipeline.guidance_eval).
      Cleared with the smoothing.
    sure_hold: the other way round: once a class's most confident structure was drawn sure, it
      stays sure until its confidence falls under its level by this fraction of the gap
      between the level and full confidence (at most SURE_HOLD_MAX), so a structure does not
      turn dashed the moment a needle enters it and dims it a little, hiding the warning that
      needle should raise. 0.5: on
      held-out phantom IJ runs (jugular-6) a tip in the artery is warned of on 85.7 % of frames
      instead of 15.7 %, false warnings still 0.0 %; on real clips (usgra-seg validation, 12
      frames of small motion each, plexus-7) stray outlines are drawn dashed as often as
      without it (80 % nerve, 92 % vessel) and true vessels dashed on 18 % instead of 22 %.
    """

    def __init__(self, classes: tuple[str, ...] | list[str], mode: str, *,
                 min_area_frac: float = 0.001, cluster_gap_frac: float = 0.04,
                 smoothing: float = 0.5, max_gap_s: float = 0.05,
                 max_frame_gap: int = 10,
                 unsure_below: dict[str, float] | None = None,
                 unsure_hysteresis: float = 0.1, sure_hold: float = 0.5) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.classes = tuple(classes)
        self.mode = mode
        self.target_class = TARGET_CLASS[mode]
        self.min_area_frac = min_area_frac
        self.cluster_gap_frac = cluster_gap_frac
        self.smoothing = smoothing
        self.max_gap_s = max_gap_s
        self.max_frame_gap = max_frame_gap
        self.unsure_below = dict(unsure_below or {})
        self.unsure_hysteresis = unsure_hysteresis
        self.sure_hold = sure_hold
        self._was_unsure: dict[str, bool] = {}  # class -> its best structure, last frame
        self._ema: np.ndarray | None = None
        self._ema_key: tuple | None = None
        self._ema_stamp: tuple[int | None, float | None] = (None, None)
        # the needle, its path and warnings on the same frames (sonoguide.pipeline.guidance.Guide;
        # set by models.analyzer_for, None for an analyzer of outlines only)
        self.guide: Any = None

    def is_unsure(self, name: str, confidence: float) -> bool:
        level = self.unsure_below.get(name, DEFAULT_UNSURE_BELOW)
        was_unsure = self._was_unsure.get(name)
        if was_unsure is None:
            return confidence < level
        if was_unsure:
            return confidence < level + min(HYSTERESIS_MAX,
                                            self.unsure_hysteresis * (1.0 - level))
        return confidence < level - min(SURE_HOLD_MAX, self.sure_hold * (1.0 - level))

    def reset(self) -> None:
        """Forget the temporal state (call on seek, source switch, freeze...)."""
        self._ema = None
        self._ema_key = None
        self._was_unsure = {}
        if self.guide is not None:  # the needle and the vessels' histories are temporal too
            self.guide.reset()

    # ----------------------------------------------------------------------------------------
    def analyze(self, pred: Prediction, roi: Roi, pixel_spacing_mm: float | None, *,
                frame_id: int | None = None, t_capture: float | None = None,
                source: str = "") -> Analysis:
        probs = self._smoothed(pred.probs, roi, source, frame_id, t_capture)
        n_cls, model_h, model_w = probs.shape
        if n_cls != len(self.classes):
            raise ValueError(f"prediction has {n_cls} classes, analyzer expects "
                             f"{len(self.classes)} ({', '.join(self.classes)})")
        present = {}
        if pred.presence is not None:
            present = {name: float(p) for name, p in zip(self.classes, pred.presence, strict=True)
                       if name != "background"}
        labels = probs.argmax(axis=0).astype(np.uint8)
        min_area = max(1, round(self.min_area_frac * model_h * model_w))
        # Full-frame pixels per model pixel: areas scale by this product.
        px_per_model = (roi.w / model_w) * (roi.h / model_h)

        structures: list[Structure] = []
        components: dict[int, list[tuple[Structure, np.ndarray]]] = {}
        for idx, name in enumerate(self.classes):
            if idx == 0:
                continue
            mask = labels == idx
            if present.get(name, 1.0) < PRESENCE_THRESHOLD:
                labels[mask] = 0  # model says the class is absent: show nothing of it
                continue
            found = self._components(mask, probs[idx], name, roi, (model_h, model_w),
                                     min_area, px_per_model, pixel_spacing_mm, labels)
            components[idx] = found
            structures.extend(s for s, _ in found)

        target = self._target(components, probs, roi, (model_h, model_w), pixel_spacing_mm)
        self._was_unsure = {name: s.unsure for name, s in most_confident(structures).items()}
        labels_roi = cv2.resize(labels, (roi.w, roi.h), interpolation=cv2.INTER_NEAREST)
        return Analysis(labels_roi, tuple(structures), target, present)

    # ----------------------------------------------------------------------------------------
    def _smoothed(self, probs: np.ndarray, roi: Roi, source: str, frame_id: int | None,
                  t_capture: float | None) -> np.ndarray:
        """Blend with the previous frames of the same scene; a new scene (source, ROI, model
        shape, or a gap in frame ids or time) starts afresh, its doubt state included."""
        key = (source, roi, probs.shape)
        last_id, last_t = self._ema_stamp
        gap = (
            (frame_id is not None and last_id is not None
             and not 0 < frame_id - last_id <= self.max_frame_gap)
            or (t_capture is not None and last_t is not None
                and not 0 <= t_capture - last_t <= self.max_gap_s)
        )
        self._ema_stamp = (frame_id, t_capture)
        fresh = self._ema_key is None or key != self._ema_key or gap
        self._ema_key = key
        if fresh:
            self._was_unsure = {}  # a new scene: no doubt carried over either
        if self.smoothing >= 1.0:
            return probs
        if fresh or self._ema is None:
            self._ema = probs.astype(np.float32, copy=True)
            return self._ema
        a = np.float32(self.smoothing)
        self._ema = a * probs + (np.float32(1.0) - a) * self._ema
        return self._ema

    def _components(self, mask: np.ndarray, prob: np.ndarray, name: str, roi: Roi,
                    model_hw: tuple[int, int], min_area: int, px_per_model: float,
                    spacing: float | None, labels: np.ndarray) -> list[tuple[Structure,
                                                                              np.ndarray]]:
        count, cc, stats, centroids = cv2.connectedComponentsWithStats(
            mask.view(np.uint8), connectivity=8)
        found = []
        for i in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[i])
            component = cc[y:y + h, x:x + w] == i
            if area < min_area:
                labels[y:y + h, x:x + w][component] = 0  # a speck: gone from the overlay too
                continue
            contours, _ = cv2.findContours(component.view(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            outline = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)
            outline += np.float32([x, y])
            full_mask = cc == i
            area_full = area * px_per_model
            confidence = float(prob[full_mask].mean())
            structure = Structure(
                class_name=name,
                contour=map_model_to_full(outline, roi, model_hw).astype(np.float32),
                area_px=float(area_full),
                centroid=_to_full_point(centroids[i], roi, model_hw),
                confidence=confidence,
                area_mm2=None if spacing is None else float(area_full * spacing * spacing),
                unsure=self.is_unsure(name, confidence),
            )
            found.append((structure, full_mask))
        return found

    def _target(self, components: dict[int, list[tuple[Structure, np.ndarray]]],
                probs: np.ndarray, roi: Roi, model_hw: tuple[int, int],
                spacing: float | None) -> Target | None:
        if self.target_class not in self.classes:
            return None
        idx = self.classes.index(self.target_class)
        found = components.get(idx, [])
        if not found:
            return None
        if self.mode == "jugular":
            structure, _ = max(found, key=lambda sm: sm[0].area_px)
            cx, cy = structure.centroid
            confidence = structure.confidence
        else:
            cx, cy, confidence = self._largest_cluster(found, probs[idx], roi, model_hw)
        return Target(self.target_class, float(cx), float(cy), depth_mm(cy, roi, spacing),
                      float(confidence), self.is_unsure(self.target_class, confidence))

    def _largest_cluster(self, found: list[tuple[Structure, np.ndarray]], prob: np.ndarray,
                         roi: Roi, model_hw: tuple[int, int]) -> tuple[float, float, float]:
        """Centroid of the biggest group of nerve fascicles: a plexus is several blobs."""
        nerve = np.zeros(model_hw, np.uint8)
        for _, mask in found:
            nerve[mask] = 1
        gap = max(1, round(self.cluster_gap_frac * model_hw[1]))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
        count, clusters = cv2.connectedComponents(cv2.dilate(nerve, kernel), connectivity=8)
        best, best_area = None, -1
        for c in range(1, count):
            members = (clusters == c) & (nerve == 1)
            area = int(members.sum())
            if area > best_area:
                best, best_area = members, area
        ys, xs = np.nonzero(best)
        cx, cy = _to_full_point((xs.mean(), ys.mean()), roi, model_hw)
        return cx, cy, float(prob[best].mean())


def _to_full_point(xy, roi: Roi, model_hw: tuple[int, int]) -> tuple[float, float]:
    point = map_model_to_full(np.asarray([xy], np.float32), roi, model_hw)[0]
    return float(point[0]), float(point[1])
