"""Plain data that flows through the pipeline: source -> preprocess -> model -> analysis -> view.

Nothing here imports Qt or torch, so every stage can be tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # guidance builds on these types; the import is for annotations only
    from sonoguide.pipeline.guidance import Guidance


class FrameError(ValueError):
    """A picture the pipeline cannot read; the message says what it is and what is wanted."""


def as_frame_image(image: object) -> np.ndarray:
    """The one definition of a frame's picture: uint8, (H, W) grey or (H, W, 3) RGB.

    Converted here: (H, W, 1) -> grey; (H, W, 4) RGBA -> RGB (alpha dropped); uint16 (16-bit
    capture) -> uint8 by its top 8 bits; float with every value in 0..1 -> x 255, in 0..255 ->
    as is (rounded). Refused with a FrameError: empty, not 2-D grey or 3/4-channel colour,
    bool, signed integer, complex, non-finite or out-of-range float pictures.
    """
    if not isinstance(image, np.ndarray):
        raise FrameError(f"a frame must be a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise FrameError("empty frame: nothing to show or segment")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise FrameError(f"a frame must be (H, W) grey or (H, W, 3) RGB, got shape {image.shape}")
    kind = image.dtype
    if kind == np.uint8:
        return image
    if kind == np.uint16:
        return (image >> 8).astype(np.uint8)
    if kind.kind == "f":
        values = image.astype(np.float32, copy=False)
        if not np.isfinite(values).all():
            raise FrameError("frame has NaN or infinite pixel values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 255.0:
            raise FrameError(f"float frame values must lie in 0..1 or 0..255, got "
                             f"{low:.3g}..{high:.3g}")
        if high <= 1.0:
            values = values * np.float32(255.0)
        return np.rint(values).astype(np.uint8)
    raise FrameError(f"a frame must be uint8 (or uint16 / float, converted), got {kind}")


@dataclass(frozen=True)
class Roi:
    """Image area of the scanner screen, in full-frame pixel coordinates."""

    x: int
    y: int
    w: int
    h: int

    @classmethod
    def full(cls, image: np.ndarray) -> Roi:
        return cls(0, 0, int(image.shape[1]), int(image.shape[0]))

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y : self.y + self.h, self.x : self.x + self.w]

    def clamp(self, width: int, height: int) -> Roi:
        x = min(max(self.x, 0), max(width - 1, 0))
        y = min(max(self.y, 0), max(height - 1, 0))
        return Roi(x, y, max(1, min(self.w, width - x)), max(1, min(self.h, height - y)))


@dataclass(frozen=True)
class Frame:
    """One video frame as a source delivered it.

    image: uint8, (H, W) grayscale or (H, W, 3) RGB, full frame (scanner screen included).
    t_capture: time.monotonic() seconds when the frame was captured (or rendered/decoded).
    pixel_spacing_mm: mm per pixel: the source's own (phantom) as published; the live session
      fills in the user's calibration for sources that do not know it.
    truth: phantom ground-truth label map (H, W) uint8 in sonoguide.phantom label codes, else None.
    roi: the image area the model analyses, in full-frame pixels; None as a source publishes
      it, set by the live session (LiveSession.prepare) before the frame goes anywhere else.
    """

    image: np.ndarray
    frame_id: int
    t_capture: float
    source: str = ""
    pixel_spacing_mm: float | None = None
    truth: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    roi: Roi | None = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class Structure:
    """One connected component of one class, in full-frame coordinates."""

    class_name: str
    contour: np.ndarray  # (K, 2) float32 x, y in full-frame pixels, closed polygon
    area_px: float
    centroid: tuple[float, float]  # x, y full-frame pixels
    confidence: float  # mean class probability inside the component, 0..1
    area_mm2: float | None = None
    unsure: bool = False  # confidence under the model's calibrated level: drawn dashed


def most_confident(structures: Iterable[Structure]) -> dict[str, Structure]:
    """Each class's most confident structure (what the legend shows and doubt follows)."""
    best: dict[str, Structure] = {}
    for s in structures:
        if s.class_name not in best or s.confidence > best[s.class_name].confidence:
            best[s.class_name] = s
    return best


@dataclass(frozen=True)
class Target:
    """Where the mode's target structure is, and how deep."""

    class_name: str
    x: float  # full-frame pixels
    y: float
    depth_mm: float | None  # from the top of the ROI (skin line); None without pixel spacing
    confidence: float
    unsure: bool = False  # confidence under the model's calibrated level: drawn dashed


@dataclass(frozen=True)
class Segmentation:
    """What the model found in one frame; belongs to exactly that frame (frame_id)."""

    frame_id: int
    t_capture: float  # the frame's capture time (monotonic s)
    t_done: float  # when the overlay was ready (monotonic s)
    classes: tuple[str, ...]  # index 0 is "background"
    roi: Roi
    labels: np.ndarray  # (roi.h, roi.w) uint8 class index, ROI coordinates
    structures: tuple[Structure, ...] = ()
    target: Target | None = None
    present: dict[str, float] = field(default_factory=dict)  # class -> presence probability
    # Set on a result moved by measured motion onto a newer frame (sonoguide.pipeline.motion): the
    # id of the frame the model actually saw. frame_id is then the frame it is drawn on, and
    # t_capture stays the analysed frame's, so latency_s is the true age of the analysis.
    warped_from: int | None = None
    # the needle, its path and the warnings on this frame (sonoguide.pipeline.guidance)
    guidance: Guidance | None = None

    @property
    def latency_s(self) -> float:
        return self.t_done - self.t_capture
