"""Steadiness: how much the drawn outlines flicker while the image barely moves.

Figure (issue 15): per class, the mean IoU of the class's drawn mask between consecutive frames
of clips with small motion, over the pairs where either frame draws the class (a class drawn in
one frame and gone in the next counts IoU 0: a blink).

Clips:
- motion clips, built from each held-out image: `frames` frames, each the image moved by a
  fresh random shift (0-3 px, any direction, sub-pixel included) and zoom (0-3 %, about the
  centre), with fresh speckle-like multiplicative noise (10 % sd, correlated over ~1 px);
  seeded per image, so a figure is reproducible and does not depend on the order of the set.
  The motion is known, so the earlier frame's drawn mask is moved into the later frame's
  coordinates before comparing ("aligned" IoU, the headline): what is left is flicker the
  anatomy does not explain. The same comparison of the true masks gives the ceiling (pixel
  quantisation of the labels alone), and the unaligned ("on screen") IoU is reported beside it.
- sweeps: consecutive frames of a "phantom-live" source (the app's phantom patient as it
  plays). Their motion is the simulator's own, so only the on-screen IoU is measured, beside
  the true masks' own on-screen IoU (what perfect outlines would score).

The predictor maps an image (and the ROI the app would feed the model) to a label map of what is
drawn: DrawnPredictor runs the app's Segmenter and Analyzer and fills the outlines they draw,
as evaluate's outline counts do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sonoguide.pipeline.analysis import Analysis
from sonoguide.pipeline.frames import Roi
from sonoguide.pipeline.models import analyzer_for
from sonoguide.pipeline.segmenter import Segmenter
from sonoguide.training.data import Sample
from sonoguide.training.outlines import map_classes, mode_for

RoiBox = tuple[int, int, int, int]
Predictor = Callable[[np.ndarray, RoiBox | None], np.ndarray]

TARGET = 0.90  # issue 15: steadiness of nerve and vessel outlines


@dataclass(frozen=True)
class SteadinessOptions:
    frames: int = 8  # per motion clip
    max_shift_px: float = 3.0
    max_zoom: float = 0.03
    noise_sd: float = 0.10  # multiplicative speckle, per frame
    seed: int = 0
    smoothing: float = 1.0  # the app's temporal EMA while a clip plays (1.0: each frame alone)
    threads: int = 1
    sure_hold: float | None = None  # the Analyzer's sure_hold (None: the app's default)


class DrawnPredictor:
    """Image -> label map (data classes) of the outlines the app draws, filled.

    The app's Segmenter and Analyzer with the model's calibrated levels; with smoothing < 1 the
    Analyzer blends consecutive frames as the live app does, so call reset() between clips.
    """

    def __init__(self, model: str | Path, data_classes: tuple[str, ...] | None = None,
                 merge: dict[str, str] | None = None, smoothing: float = 1.0,
                 threads: int = 1) -> None:
        self.segmenter = Segmenter(model, provider="cpu", intra_op_threads=threads)
        self.analyzer = analyzer_for(self.segmenter, mode_for(self.segmenter.classes),
                                     smoothing=smoothing)
        # data_classes None: label maps in the model's own classes
        self.table = map_classes(self.segmenter.classes, data_classes or self.segmenter.classes,
                                 merge)

    def reset(self) -> None:
        self.analyzer.reset()

    def data_class(self, model_class: str) -> int:
        return int(self.table[self.segmenter.classes.index(model_class)])

    def analyze(self, image: np.ndarray, roi: RoiBox | None = None
                ) -> tuple[np.ndarray, Analysis]:
        r = Roi(*roi) if roi else Roi.full(image)
        analysis = self.analyzer.analyze(self.segmenter.predict(r.crop(image)), r, None)
        labels = np.zeros(image.shape[:2], np.uint8)
        for st in analysis.structures:
            c = self.data_class(st.class_name)
            if c:  # the drawn outline, filled: what the user sees as that structure
                labels[filled(st, labels.shape)] = c
        return labels, analysis

    def __call__(self, image: np.ndarray, roi: RoiBox | None = None) -> np.ndarray:
        return self.analyze(image, roi)[0]


def filled(structure, shape: tuple[int, ...]) -> np.ndarray:
    """A drawn structure's outline, filled, as a boolean mask of the picture."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(structure.contour).astype(np.int32).reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


@dataclass(frozen=True)
class Clip:
    name: str
    frames: list[np.ndarray]
    truth: list[np.ndarray]
    moves: list[np.ndarray] | None  # per frame, 2x3 affine reference -> frame; None: a sweep
    roi: RoiBox | None = None


def _speckle(shape: tuple[int, ...], sd: float, rng: np.random.Generator) -> np.ndarray:
    """Mean-1 multiplicative noise, correlated over about a pixel as speckle is."""
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 0.8)
    field /= max(float(field.std()), 1e-6)
    return np.clip(1.0 + sd * field, 0.0, 2.0)


def motion_clip(sample: Sample, index: int, opt: SteadinessOptions) -> Clip:
    """`opt.frames` frames of one image under small random motion and fresh noise (seeded by
    opt.seed and the image's index, so each image's clip is the same on every run)."""
    rng = np.random.default_rng([opt.seed, index])
    h, w = sample.image.shape[:2]
    frames, truth, moves = [], [], []
    for _ in range(opt.frames):
        radius, angle = rng.uniform(0, opt.max_shift_px), rng.uniform(0, 2 * np.pi)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, 1.0 + rng.uniform(0, opt.max_zoom))
        m[:, 2] += (radius * np.cos(angle), radius * np.sin(angle))
        moved = cv2.warpAffine(sample.image.astype(np.float32), m, (w, h),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        noisy = moved * _speckle(moved.shape, opt.noise_sd, rng)
        frames.append(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
        truth.append(cv2.warpAffine(sample.mask, m, (w, h), flags=cv2.INTER_NEAREST,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0))
        moves.append(m)
    return Clip(sample.name, frames, truth, moves, sample.roi)


def is_sweep(sample: Sample) -> bool:
    """Frames of a "phantom-live" source (groups "<scene>-live[-overlap]") play as one clip."""
    return "-live" in sample.group


def build_clips(samples: list[Sample], opt: SteadinessOptions) -> list[Clip]:
    """Consecutive live-phantom frames as sweeps (one per scene), every other sample as a motion
    clip of its own."""
    clips: list[Clip] = []
    sweeps: dict[str, list[Sample]] = {}
    for i, s in enumerate(samples):
        if is_sweep(s):
            sweeps.setdefault(s.group.removesuffix("-overlap"), []).append(s)
        else:
            clips.append(motion_clip(s, i, opt))
    for name, frames in sweeps.items():
        clips.append(Clip(name, [s.image for s in frames], [s.mask for s in frames], None,
                          frames[0].roi))
    return clips


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine taking frame a's pixels to frame b's (b after a^-1)."""
    a3, b3 = np.vstack([a, (0, 0, 1)]), np.vstack([b, (0, 0, 1)])
    return (b3 @ np.linalg.inv(a3))[:2]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks; a may be soft (0..1, a binary mask moved with interpolation, so a
    sub-pixel move costs no more than the area it really shifts)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    union = float(np.maximum(a, b).sum())
    return float(np.minimum(a, b).sum()) / union if union > 0 else 1.0


class _Pairs:
    """IoU of one class over consecutive pairs where either frame has it."""

    def __init__(self) -> None:
        self.iou: list[float] = []
        self.blinks = 0

    def add(self, a: np.ndarray, b: np.ndarray, iou: float | None = None) -> None:
        if not (a.any() or b.any()):
            return
        self.blinks += bool(a.any()) != bool(b.any())
        self.iou.append(_iou(a, b) if iou is None else iou)

    def mean(self) -> float | None:
        return round(float(np.mean(self.iou)), 4) if self.iou else None


def steadiness(predict: Predictor, clips: Iterable[Clip], classes: tuple[str, ...],
               quiet: bool = False) -> dict:
    """Per foreground class, mean IoU of the drawn mask between consecutive frames (see the
    module doc). `predict` may have reset(), called before each clip (temporal state)."""
    clips = list(clips)
    fg = range(1, len(classes))
    acc = {kind: {c: {k: _Pairs() for k in ("aligned", "screen", "truth_aligned",
                                            "truth_screen")} for c in fg}
           for kind in ("motion", "sweep")}
    # each drawn outline while the clips play: true (touches its structure) or stray, and how
    # many of each are dashed (the doubt a moving picture shows, temporal hysteresis included)
    outlines = {c: dict.fromkeys(("true", "true_dashed", "stray", "stray_dashed"), 0)
                for c in fg}
    counted = hasattr(predict, "analyze")
    frames = 0
    t0 = time.perf_counter()
    for clip in tqdm(clips, desc="steadiness", disable=quiet, leave=False):
        if hasattr(predict, "reset"):
            predict.reset()
        if counted:
            results = [predict.analyze(f, clip.roi) for f in clip.frames]
            drawn = [labels for labels, _ in results]
            for (_, analysis), truth in zip(results, clip.truth, strict=True):
                for st in analysis.structures:
                    c = predict.data_class(st.class_name)
                    if c:
                        kind = "true" if np.any(filled(st, truth.shape) & (truth == c)) \
                            else "stray"
                        outlines[c][kind] += 1
                        outlines[c][f"{kind}_dashed"] += int(st.unsure)
        else:
            drawn = [predict(f, clip.roi) for f in clip.frames]
        frames += len(drawn)
        kind = "sweep" if clip.moves is None else "motion"
        h, w = clip.frames[0].shape[:2]
        for k in range(1, len(drawn)):
            move = None if clip.moves is None else _relative(clip.moves[k - 1], clip.moves[k])
            for c in fg:
                for prefix, pair in (("", (drawn[k - 1], drawn[k])),
                                     ("truth_", (clip.truth[k - 1], clip.truth[k]))):
                    a, b = pair[0] == c, pair[1] == c
                    acc[kind][c][prefix + "screen"].add(a, b)
                    if move is not None and (a.any() or b.any()):
                        moved = cv2.warpAffine(a.astype(np.float32), move, (w, h),
                                               flags=cv2.INTER_LINEAR,
                                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                        acc[kind][c][prefix + "aligned"].add(a, b, _iou(moved, b))
    seconds = time.perf_counter() - t0
    n_clips = {kind: sum((c.moves is None) == (kind == "sweep") for c in clips)
               for kind in ("motion", "sweep")}
    out: dict = {"clips": n_clips, "frames": frames, "seconds": round(seconds, 1),
                 "ms_per_frame": round(1000 * seconds / frames, 1) if frames else None,
                 "classes": {}}
    for c in fg:
        entry: dict = {}
        for kind in ("motion", "sweep"):
            if not n_clips[kind]:
                continue
            p = acc[kind][c]
            entry[kind] = {"pairs": len(p["screen"].iou), "blinks": p["screen"].blinks,
                           "iou_on_screen": p["screen"].mean(),
                           "truth_on_screen": p["truth_screen"].mean()}
            if kind == "motion":
                entry[kind] |= {"iou_aligned": p["aligned"].mean(),
                                "truth_aligned": p["truth_aligned"].mean()}
        # headline: motion clips' aligned IoU where there are any, else the sweeps' on-screen IoU
        head = entry.get("motion", {}).get("iou_aligned")
        entry["steadiness"] = head if "motion" in entry else entry["sweep"]["iou_on_screen"]
        if counted:
            entry["outlines"] = outlines[c]
        out["classes"][classes[c]] = entry
    return out


def steadiness_of_samples(model: str | Path, samples: list[Sample],
                          data_classes: tuple[str, ...], merge: dict[str, str] | None = None,
                          opt: SteadinessOptions | None = None, quiet: bool = False) -> dict:
    """The steadiness figure of an ONNX model on these samples (clips as build_clips makes)."""
    opt = opt or SteadinessOptions()
    predict = DrawnPredictor(model, data_classes, merge, opt.smoothing, opt.threads)
    if opt.sure_hold is not None:
        predict.analyzer.sure_hold = opt.sure_hold
    report = steadiness(predict, build_clips(samples, opt), data_classes, quiet)
    report["options"] = {"frames": opt.frames, "max_shift_px": opt.max_shift_px,
                         "max_zoom": opt.max_zoom, "noise_sd": opt.noise_sd, "seed": opt.seed,
                         "smoothing": opt.smoothing,
                         "sure_hold": predict.analyzer.sure_hold}
    return report


def _dashed(o: dict | None) -> str:
    if not o:
        return "n/a"
    return (f"{o['true_dashed']} of {o['true']} / {o['stray_dashed']} of {o['stray']}")


def markdown(report: dict, title: str = "") -> str:
    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    o = report.get("options", {})
    head = (f"**Steadiness{': ' + title if title else ''}** ({report['clips']['motion']} motion "
            f"clips of {o.get('frames', '?')} frames, {report['clips']['sweep']} sweep(s); "
            f"smoothing {o.get('smoothing', 1.0)}, sure hold {o.get('sure_hold', 'n/a')}; "
            f"{report['ms_per_frame']} ms/frame; "
            f"target >= {TARGET:.2f})")
    lines = [head, "| class | steadiness | motion: aligned IoU (truth) | motion: on-screen IoU "
             "(truth) | sweep: on-screen IoU (truth) | pairs / blinks | outlines dashed: "
             "true / stray |", "|---|---|---|---|---|---|---|"]
    for name, e in report["classes"].items():
        m, s = e.get("motion"), e.get("sweep")
        pairs = " + ".join(f"{x['pairs']} / {x['blinks']}" for x in (m, s) if x)
        lines.append(
            f"| {name} | {f(e['steadiness'])} "
            f"| {f(m['iou_aligned']) + ' (' + f(m['truth_aligned']) + ')' if m else 'n/a'} "
            f"| {f(m['iou_on_screen']) + ' (' + f(m['truth_on_screen']) + ')' if m else 'n/a'} "
            f"| {f(s['iou_on_screen']) + ' (' + f(s['truth_on_screen']) + ')' if s else 'n/a'} "
            f"| {pairs} | {_dashed(e.get('outlines'))} |")
    return "\n".join(lines)
