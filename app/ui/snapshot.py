"""Snapshot files: the raw frame, the frame with the overlay, and a JSON of what was found.

Qt-free: the overlay PNG is rendered with OpenCV at the frame's full resolution using the same
style rules as the screen (sonoguide.ui.overlay.contour_style / target_text).

By default the PNGs hold the image area only: the scanner's burned-in patient name, ID and
menus stay off the files. Each file is written under a temporary name and renamed when
complete, the JSON last, so a crash or kill leaves no truncated file under a final name (and
a JSON always has both pictures).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from sonoguide.pipeline.files import write_atomically
from sonoguide.pipeline.findings import overlay_record
from sonoguide.pipeline.frames import Frame, Segmentation
from sonoguide.pipeline.guidance import Guidance
from sonoguide.ui import theme
from sonoguide.ui.needle_overlay import needle_text
from sonoguide.ui.overlay import contour_style, target_text, vessel_tags


@dataclass(frozen=True)
class SnapshotPaths:
    raw_png: Path
    overlay_png: Path
    json: Path


def _bgr(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


def _blend(base: np.ndarray, layer: np.ndarray, mask: np.ndarray, alpha: float) -> None:
    if alpha <= 0 or not mask.any():
        return
    base[mask] = (base[mask] * (1 - alpha) + layer[mask] * alpha).astype(np.uint8)


def render_overlay_bgr(image: np.ndarray, seg: Segmentation | None, *, opacity: float = 1.0,
                       fill: bool = True) -> np.ndarray:
    """Full-resolution BGR image with the overlay drawn as on screen (dashes become thin lines)."""
    out = _to_bgr(image).copy()
    if seg is None:
        return out
    for structure in seg.structures:
        style = contour_style(structure, seg.classes, opacity, fill)
        points = np.round(structure.contour).astype(np.int32).reshape(-1, 1, 2)
        colour = np.array(_bgr(style.colour), np.uint8)
        layer = np.empty_like(out)
        layer[:] = colour
        if style.fill_alpha > 0:
            mask = np.zeros(out.shape[:2], np.uint8)
            cv2.fillPoly(mask, [points], 255)
            _blend(out, layer, mask > 0, style.fill_alpha)
        mask = np.zeros(out.shape[:2], np.uint8)
        cv2.polylines(mask, [points], True, 255, 1 if style.dashed else 2, cv2.LINE_AA)
        _blend(out, layer, mask > 0, style.line_alpha)
    if seg.target is not None:
        t = seg.target
        centre = (int(round(t.x)), int(round(t.y)))
        white = _bgr(theme.TARGET_COLOUR)
        cv2.circle(out, centre, 12, white, 2, cv2.LINE_AA)
        cv2.drawMarker(out, centre, white, cv2.MARKER_CROSS, 10, 2, cv2.LINE_AA)
        cv2.putText(out, target_text(t).replace("  ", " "),
                    (centre[0] + 16, max(16, centre[1] - 16)), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    white, 2, cv2.LINE_AA)
    _draw_needle(out, seg.guidance)
    for x, y, text in vessel_tags(seg):
        words = _ascii(text)
        size = cv2.getTextSize(words, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0]
        cv2.putText(out, words, (int(x - size[0] / 2), int(y + 16)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, _bgr(theme.TEXT), 1, cv2.LINE_AA)
    return out


def _ascii(text: str) -> str:
    """OpenCV's fonts draw only ASCII: the screen's degree sign and dots spelled out."""
    return text.replace("\N{DEGREE SIGN}", " deg").replace(" \N{MIDDLE DOT} ", ", ")


def _draw_needle(out: np.ndarray, guidance: Guidance | None) -> None:
    """Shaft, tip ring with its label, and the dashed path, as NeedleItems draws them."""
    if guidance is None or guidance.needle is None:
        return
    colour = _bgr(theme.NEEDLE_COLOUR)
    needle = guidance.needle

    def pt(p: tuple[float, float]) -> tuple[int, int]:
        return int(round(p[0])), int(round(p[1]))

    if needle.shaft_start is not None:
        cv2.line(out, pt(needle.shaft_start), pt(needle.tip), colour, 2, cv2.LINE_AA)
    if guidance.path is not None:  # dashed: 8 px on, 6 px off
        (x0, y0), (x1, y1) = guidance.path.start, guidance.path.end
        length = float(np.hypot(x1 - x0, y1 - y0))
        for s in np.arange(0.0, length, 14.0):
            e = min(length, s + 8.0)
            a = (x0 + (x1 - x0) * s / length, y0 + (y1 - y0) * s / length)
            b = (x0 + (x1 - x0) * e / length, y0 + (y1 - y0) * e / length)
            cv2.line(out, pt(a), pt(b), colour, 1, cv2.LINE_AA)
    tip = pt(needle.tip)
    if needle.tip_in_view:
        cv2.circle(out, tip, 9, colour, 2, cv2.LINE_AA)
    cv2.putText(out, _ascii(needle_text(needle, guidance.path)), (tip[0] + 12, tip[1] + 20),
                cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)


def describe(frame: Frame, seg: Segmentation | None, spacing_mm: float | None,
             info: dict) -> dict:
    """JSON-ready record of what the app showed for this frame."""
    record: dict = {
        "time": datetime.now().isoformat(timespec="milliseconds"),
        "frame_id": frame.frame_id,
        "source": frame.source,
        "width": frame.width,
        "height": frame.height,
        "pixel_spacing_mm": spacing_mm,
        **info,
        "overlay": None,
    }
    record["overlay"] = overlay_record(seg)
    return record


def _png(image: np.ndarray, path: Path) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"could not encode {path.name}")
    return encoded.tobytes()


def save_snapshot(folder: Path, frame: Frame, seg: Segmentation | None, *, opacity: float = 1.0,
                  fill: bool = True, spacing_mm: float | None = None,
                  info: dict | None = None, image_area_only: bool = True) -> SnapshotPaths:
    """Write <stem>_raw.png, <stem>_overlay.png and <stem>.json into `folder` (created).

    image_area_only: crop both pictures to the frame's image area (ROI), leaving the scanner
    screen's patient details out; the JSON's coordinates stay full-frame and say the crop.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = f"sonoguide_{time.strftime('%Y%m%d_%H%M%S')}_f{frame.frame_id}"
    for n in range(1, 1000):  # a second snapshot of the same frame never replaces the first
        stem = base if n == 1 else f"{base}_{n}"
        paths = SnapshotPaths(folder / f"{stem}_raw.png", folder / f"{stem}_overlay.png",
                              folder / f"{stem}.json")
        if not any(p.exists() for p in (paths.raw_png, paths.overlay_png, paths.json)):
            break
    raw = _to_bgr(frame.image)
    overlay = render_overlay_bgr(frame.image, seg, opacity=opacity, fill=fill)
    crop = frame.roi if image_area_only and frame.roi is not None else None
    if crop is not None:
        raw, overlay = crop.crop(raw), crop.crop(overlay)
    record = describe(frame, seg, spacing_mm, info or {})
    record["pictures_cropped_to"] = None if crop is None else [crop.x, crop.y, crop.w, crop.h]
    text = json.dumps(record, indent=2, allow_nan=False).encode()
    write_atomically(paths.raw_png, _png(raw, paths.raw_png))
    write_atomically(paths.overlay_png, _png(overlay, paths.overlay_png))
    write_atomically(paths.json, text)  # last: a JSON always has its two pictures
    return paths
