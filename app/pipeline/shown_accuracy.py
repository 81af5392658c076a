"""Is the overlay right where the doctor looks? Dice of the overlay *shown on each frame*.

    python -m sonoguide.pipeline.shown_accuracy --mode plexus --rates natural 15 10
    python -m sonoguide.pipeline.shown_accuracy --mode jugular --speed-mm-s 15 --seconds 10

The phantom knows the truth of every frame it renders, so the overlay a user would see on each
displayed frame can be scored against that frame's own labels while the probe sweeps (a slide
at a realistic 1-2 cm/s with a slow tilt). The model is run on the frames a worker would have
taken (newest frame only, one at a time) at a given rate of inferences per second; results
land `1/rate` after the frame was taken; each displayed frame is drawn by the live session's
own OverlayPolicy (its own result, the last one moved by measured motion, the last one unmoved,
or nothing). Time is simulated (frames at exactly 30 fps, inference times exactly 1/rate), so
the figure is the same on any machine and measures the policy, not the machine's load.

Scores, per class, mean over displayed frames where the class is in the truth:
- model: the model's own Dice when it analyses every frame (the best any overlay can do);
- shown: the Dice of what is on screen, time-weighted over each frame's display when a result
  lands part-way through it; a hidden overlay scores 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from sonoguide.pipeline.frames import Frame, Roi, Segmentation
from sonoguide.pipeline.session import FOLLOW_MOTION, HIDE, HOLD, OverlayPolicy

# A model stand-in for the tests: frame -> (classes, labels in ROI coordinates) via the analyzer
Analyse = Callable[[Frame], Segmentation]


@dataclass(frozen=True)
class Sweep:
    """Probe motion over time: a triangle-wave slide and a slow sinusoidal tilt."""

    speed_mm_s: float = 15.0  # slide speed (1-2 cm/s is a realistic scanning sweep)
    span_mm: float = 16.0  # peak-to-peak slide
    tilt_deg: float = 4.0  # tilt amplitude
    tilt_period_s: float = 4.0

    def pose(self, t: float) -> tuple[float, float]:
        period = 2.0 * self.span_mm / self.speed_mm_s if self.speed_mm_s > 0 else 1.0
        phase = (t / period) % 1.0
        tri = 4.0 * phase - 1.0 if phase < 0.5 else 3.0 - 4.0 * phase  # -1..1
        offset = 0.5 * self.span_mm * tri
        tilt = self.tilt_deg * float(np.sin(2.0 * np.pi * t / self.tilt_period_s))
        return offset, tilt


def phantom_frames(scene: str, seconds: float, fps: float = 30.0, sweep: Sweep = Sweep(),
                   seed: int = 0, size: tuple[int, int] = (512, 512)) -> list[Frame]:
    """Frames of a phantom sweep, each with its truth labels, ROI (the whole picture) and
    mm per pixel, as the live session would hand them on."""
    from sonoguide.phantom.simulator import PhantomSimulator

    sim = PhantomSimulator(scene, seed=seed, size=size)
    frames = []
    for k in range(int(round(seconds * fps))):
        t = k / fps
        offset, tilt = sweep.pose(t)
        sim.set_probe_offset(offset)
        sim.set_tilt(tilt)
        rendered = sim.render(t)
        image = rendered.image
        frames.append(Frame(image, k, t, f"phantom:{scene}", rendered.pixel_spacing_mm,
                            truth=rendered.labels, roi=Roi.full(image)))
    return frames


def schedule(n_frames: int, fps: float, infer_s: float) -> list[tuple[int, float]]:
    """Which frames a newest-frame-only worker analyses, and when each result lands:
    [(frame index, t_done)]. The worker takes the newest frame as soon as it is free."""
    out: list[tuple[int, float]] = []
    free_at = 0.0
    k = 0
    while k < n_frames:
        start = max(free_at, k / fps)
        newest = min(n_frames - 1, int(np.floor(start * fps + 1e-9)))
        k = max(k, newest)
        done = start + infer_s
        out.append((k, done))
        free_at = done
        k += 1
    return out


def mask_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = int(pred.sum()) + int(truth.sum())
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total if total else 1.0


def overlay_masks(seg: Segmentation | None, shape: tuple[int, int],
                  classes: Sequence[str]) -> dict[str, np.ndarray]:
    """Full-frame mask per class of what the overlay draws (its label map in the ROI)."""
    masks = {c: np.zeros(shape, bool) for c in classes[1:]}
    if seg is None:
        return masks
    r = seg.roi
    h, w = shape
    x0, y0 = max(r.x, 0), max(r.y, 0)
    x1, y1 = min(r.x + r.w, w), min(r.y + r.h, h)
    labels = seg.labels[y0 - r.y:y1 - r.y, x0 - r.x:x1 - r.x]
    for idx, name in enumerate(classes):
        if idx and name in masks:
            masks[name][y0:y1, x0:x1] = labels == idx
    return masks


def truth_masks(frame: Frame, classes: Sequence[str]) -> dict[str, np.ndarray]:
    from sonoguide.phantom.labels import to_model_classes

    index = to_model_classes(frame.truth, tuple(classes))
    return {name: index == i for i, name in enumerate(classes) if i}


def shown_dice(frames: Sequence[Frame], analyse: Analyse, classes: Sequence[str],
               policy: OverlayPolicy, infer_s: float, fps: float = 30.0,
               reset: Callable[[], None] | None = None) -> dict:
    """Per class: mean time-weighted Dice of the overlay on each displayed frame (over frames
    where the class is in the truth); plus the share of display time with an overlay."""
    if reset is not None:
        reset()  # a fresh analyzer: its smoothing follows the frames it is given
    results: list[tuple[float, Segmentation]] = []
    for k, done in schedule(len(frames), fps, infer_s):
        seg = analyse(frames[k])
        results.append((done, dataclasses.replace(seg, t_done=done)))
    scores: dict[str, list[float]] = {c: [] for c in classes[1:]}
    covered = 0.0
    r = 0  # results[:r] have landed
    for k, frame in enumerate(frames):
        t0, t1 = k / fps, (k + 1) / fps
        truth = truth_masks(frame, classes)
        # display segments of this frame: from t0, and from each landing inside (t0, t1)
        while r < len(results) and results[r][0] <= t0:
            r += 1
        cuts = [t0] + [d for d, _ in results[r:] if t0 < d < t1] + [t1]
        per_class = {c: 0.0 for c in scores}
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            landed = [s for d, s in results if d <= a]
            newest = landed[-1] if landed else None
            shown = policy.decide(frame, newest, model_ready_since=0.0)
            weight = (b - a) / (t1 - t0)
            covered += weight if shown.overlay is not None else 0.0
            drawn = overlay_masks(shown.overlay, frame.image.shape[:2], classes)
            for c in scores:
                per_class[c] += weight * mask_dice(drawn[c], truth[c])
        for c in scores:
            if truth[c].any():
                scores[c].append(per_class[c])
    return {"dice": {c: float(np.mean(v)) if v else None for c, v in scores.items()},
            "overlay_time": covered / max(len(frames), 1)}


def model_analyser(mode: str, model: str | None, threads: int = 2) -> tuple[Analyse, Sequence[str],
                                                                             Callable[[], None],
                                                                             float]:
    """The mode's model as an Analyse function, its classes, a reset, and its measured time
    per frame on this machine (ms -> s) for the 'natural' rate."""
    from sonoguide.pipeline.models import analyzer_for, default_model_path
    from sonoguide.pipeline.segmenter import Segmenter

    segmenter = Segmenter(model or default_model_path(mode), provider="cpu",
                          intra_op_threads=threads)
    analyzer = analyzer_for(segmenter, mode)
    cache: dict[tuple[str, int], object] = {}
    times: list[float] = []

    def analyse(frame: Frame) -> Segmentation:
        key = (frame.source, frame.frame_id)
        if key not in cache:
            t0 = time.perf_counter()
            cache[key] = segmenter.predict(frame.roi.crop(frame.image))
            times.append(time.perf_counter() - t0)
        labels, structures, target, present = analyzer.analyze(
            cache[key], frame.roi, frame.pixel_spacing_mm, frame_id=frame.frame_id,
            t_capture=frame.t_capture, source=frame.source)
        return Segmentation(frame.frame_id, frame.t_capture, frame.t_capture, segmenter.classes,
                            frame.roi, labels, structures, target, present)

    probe = np.random.default_rng(0).integers(0, 256, (512, 512), np.uint8)
    for _ in range(5):
        segmenter.predict(probe)
    t0 = time.perf_counter()
    for _ in range(20):
        segmenter.predict(probe)
    natural = (time.perf_counter() - t0) / 20
    return analyse, segmenter.classes, analyzer.reset, natural


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", default="plexus", choices=("plexus", "jugular"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--speed-mm-s", type=float, default=15.0)
    parser.add_argument("--rates", nargs="+", default=["natural", "15", "10"],
                        help="inferences per second to simulate ('natural': as measured here)")
    parser.add_argument("--budget-ms", type=float, nargs="+", default=[250.0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)

    analyse, classes, reset, natural_s = model_analyser(args.mode, args.model, args.threads)
    sweep = Sweep(speed_mm_s=args.speed_mm_s)
    t0 = time.perf_counter()
    frames = phantom_frames(args.mode, args.seconds, sweep=sweep)
    print(f"{args.mode}: {len(frames)} phantom frames at 30 fps, slide {args.speed_mm_s:g} mm/s "
          f"over {sweep.span_mm:g} mm, tilt +-{sweep.tilt_deg:g} deg "
          f"(rendered in {time.perf_counter() - t0:.1f} s); model {1 / natural_s:.0f}/s here")
    own = shown_dice(frames, analyse, classes, OverlayPolicy(follow=HIDE), 0.0, reset=reset)
    names = list(classes[1:])
    print(f"{'':34s}" + "".join(f"{n:>9s}" for n in names) + "  overlay time")
    print(f"{'model, every frame':34s}" + "".join(f"{own['dice'][n]:9.3f}" for n in names))
    for rate_text in args.rates:
        rate = 1.0 / natural_s if rate_text == "natural" else float(rate_text)
        for budget in args.budget_ms:
            for follow in (FOLLOW_MOTION, HOLD, HIDE):
                policy = OverlayPolicy(budget_s=budget / 1000.0, follow=follow)
                got = shown_dice(frames, analyse, classes, policy, 1.0 / rate, reset=reset)
                label = f"{rate:5.1f}/s budget {budget:.0f} ms {follow}"
                print(f"{label:34s}" + "".join(f"{got['dice'][n]:9.3f}" for n in names)
                      + f"  {100 * got['overlay_time']:5.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
