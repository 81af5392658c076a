"""What the app showed on a frame, as a JSON-ready record (snapshots and recordings).

Coordinates are full-frame pixels; a picture saved cropped to the image area says so beside
the record, so every number can be found again on the picture.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict

import numpy as np

from sonoguide.pipeline.frames import Segmentation
from sonoguide.pipeline.guidance import WARNINGS, Guidance, NeedlePath
from sonoguide.pipeline.needle import NeedleFinding, PathToTarget


def overlay_record(seg: Segmentation | None, *, contours: bool = False) -> dict | None:
    """The overlay `seg` as plain JSON types; None for no overlay. contours: add each
    structure's outline (integer pixels) so the overlay can be drawn again from the record."""
    if seg is None:
        return None
    structures = []
    for s in seg.structures:
        record = {"class": s.class_name, "centroid_xy": [round(float(c), 1) for c in s.centroid],
                  "area_px": round(float(s.area_px), 1),
                  "area_mm2": None if s.area_mm2 is None else round(float(s.area_mm2), 2),
                  "confidence": round(float(s.confidence), 3), "unsure": s.unsure}
        if contours:
            record["contour"] = np.rint(np.asarray(s.contour, float)).astype(int).tolist()
        structures.append(record)
    return {
        "result_frame_id": seg.frame_id,
        # the frame the model analysed when the overlay was moved here by measured motion
        "analysed_frame_id": seg.frame_id if seg.warped_from is None else seg.warped_from,
        "latency_ms": round(seg.latency_s * 1000, 1),
        "classes": list(seg.classes),
        "roi": asdict(seg.roi),
        "present": {k: round(float(v), 4) for k, v in seg.present.items()},
        "structures": structures,
        "target": None if seg.target is None else {
            "class": seg.target.class_name, "x": round(seg.target.x, 1),
            "y": round(seg.target.y, 1),
            "depth_mm": (None if (d := seg.target.depth_mm) is None else round(d, 2)),
            "confidence": round(float(seg.target.confidence), 3),
            "unsure": seg.target.unsure,
        },
        **guidance_record(seg),
    }


def _xy(point: tuple[float, float] | None) -> list[float] | None:
    return None if point is None else [round(float(point[0]), 1), round(float(point[1]), 1)]


def guidance_record(seg: Segmentation) -> dict:
    """The needle, its projected path and the warnings shown (empty without guidance)."""
    g = seg.guidance
    if g is None:
        return {}
    needle = None
    if g.needle is not None:
        n = g.needle
        needle = {"kind": n.kind, "tip_xy": _xy(n.tip), "shaft_start_xy": _xy(n.shaft_start),
                  "angle_deg": None if n.angle_deg is None else round(n.angle_deg, 1),
                  "tip_depth_mm": None if n.tip_depth_mm is None else round(n.tip_depth_mm, 2),
                  "tip_in_view": n.tip_in_view, "confidence": round(float(n.confidence), 3)}
        if g.path is not None:
            to = g.path.to_target
            needle["path_end_xy"] = _xy(g.path.end)
            needle["to_target_mm"] = (None if to is None or to.distance_mm is None
                                      else round(to.distance_mm, 1))
    vessels = [] if g.vessels is None else [
        {"id": v.track_id, "class": v.class_name, "centroid_xy": _xy(v.centroid),
         "pulses": v.pulses, "compresses": v.compresses, "behaves_as": v.behaves_as,
         "heart_rate_bpm": None if v.heart_rate_bpm is None else round(v.heart_rate_bpm, 1),
         "caution": v.caution} for v in g.vessels.vessels]
    return {"needle": needle, "vessels": vessels,
            "warnings": [{"key": w.key, "word": w.word, "level": w.level, "text": w.text}
                         for w in g.warnings]}


def guidance_from_record(overlay: dict, dx: float = 0.0, dy: float = 0.0) -> Guidance | None:
    """guidance_record read back (a recording's replay), moved by (-dx, -dy): the recorded
    full-frame pixels onto the recorded image area. None when nothing was recorded."""
    if "needle" not in overlay and not overlay.get("warnings"):
        return None

    def xy(value) -> tuple[float, float] | None:
        return None if not value else (float(value[0]) - dx, float(value[1]) - dy)

    needle = path = None
    if isinstance(n := overlay.get("needle"), dict) and n.get("tip_xy"):
        needle = NeedleFinding(kind=str(n.get("kind")), tip=xy(n["tip_xy"]),
                               shaft_start=xy(n.get("shaft_start_xy")),
                               angle_deg=n.get("angle_deg"),
                               from_left=None if n.get("shaft_start_xy") is None else
                               n["shaft_start_xy"][0] <= n["tip_xy"][0],
                               tip_depth_mm=n.get("tip_depth_mm"),
                               confidence=float(n.get("confidence") or 0.0),
                               tip_in_view=bool(n.get("tip_in_view", True)))
        if n.get("path_end_xy") and needle.angle_deg is not None:
            distance = n.get("to_target_mm")
            path = NeedlePath(needle.tip, xy(n["path_end_xy"]), float(needle.angle_deg),
                              PathToTarget(distance, float(needle.angle_deg), None))
    warnings = tuple(dataclasses.replace(WARNINGS[w["key"]], text=str(w.get("text") or ""))
                     for w in overlay.get("warnings") or ()
                     if isinstance(w, dict) and w.get("key") in WARNINGS)
    return Guidance(needle, path, warnings)
