"""What the app showed on a frame, as a JSON-ready record (snapshots and recordings).

Coordinates are full-frame pixels; a picture saved cropped to the image area says so beside
the record, so every number can be found again on the picture.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from sonoguide.pipeline.frames import Segmentation


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
    }
