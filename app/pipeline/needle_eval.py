"""How well the needle detector finds needles on phantom patients it was never tuned on.

    python -m sonoguide.pipeline.needle_eval                       # held-out seeds 100-139
    python -m sonoguide.pipeline.needle_eval --seeds 0-39          # patients tuned on (0-99)
    python -m sonoguide.pipeline.needle_eval --seeds 100-104 --frames 2 --no-clips   # quick
    python -m sonoguide.pipeline.needle_eval --generator 1200 --no-clips   # needles that vary
    taskset -c 0 python -m sonoguide.pipeline.needle_eval --no-clips   # one core

Each seed is a patient per scene (jugular, plexus) with its own anatomy, imaging depth, probe
width, frequency, gain, dynamic range, TGC, pressure and probe handling. Per patient: in-plane
needles at 15-70 degrees with the tip 5-40 mm deep, out-of-plane needles (a dot 5-40 mm deep),
needle-free frames, two needles in one frame (15-30 degrees apart, same side or crossing:
nothing should be drawn), and two harder in-plane variants the phantom does not draw itself: a
faint needle (the needle's share of the picture scaled to 30-60 %) and a shaft with gaps
(stretches of it replaced by the same frame without the needle). Half the frames are mirrored,
so needles enter from the right as often as from the left. Truth: the phantom's tip and the
set angle; a needle is "visible" with >= 5 mm of shaft in the picture.

--generator N adds N frames of the training generator's held-out stream (seed 424242, jugular,
plexus and femoral in turn, 512 px): needles that vary as real ones do (brightness,
reverberation, gaps, fading out of plane, bend; sonoguide.phantom.generator), condition
"varied", with the found share per trait; their needle-free frames join "none".

Prints per condition: frames, found share, tip error median / p90 (mm), angle error median
(degrees); out-of-plane dots and how they were marked; false needles on needle-free frames
(single frames, and short needle-free clips with and without NeedleTracker); insertion clips
(found share with and without NeedleTracker); ms per call median / p95, wall and CPU, on this
process's cores and pinned to one (like `taskset -c 0`), OpenCV on one thread as the app runs
it. No pass/fail: the figures go into the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from sonoguide.pipeline.guidance_eval import seeds_from
from sonoguide.pipeline.needle import (
    AMBIGUOUS,
    IN_PLANE,
    OUT_OF_PLANE,
    NeedleDetector,
    NeedleFinding,
    NeedleTracker,
)

SCENES = ("jugular", "plexus")
VISIBLE_MM = 5.0  # a needle with less shaft than this in the picture does not count as visible


@dataclass(frozen=True)
class Case:
    condition: str  # in_plane, faint, gaps, varied, out_of_plane, none, two (two needles)
    image: np.ndarray
    spacing_mm: float
    tip: tuple[float, float] | None  # truth (x, y) px; None: out of the picture
    angle_deg: float | None
    visible_mm: float  # needle shaft length the picture shows (in-plane)
    scene: str
    seed: int
    needle: object = None  # varied: the generator's NeedleState (its look)


GENERATOR_SEED = 424242  # a generator stream no model trained on
GENERATOR_SCENES = ("jugular", "plexus", "femoral")


def generator_cases(n: int, size: int) -> Iterator[Case]:
    """n frames of the training generator's held-out stream, scenes in turn."""
    from sonoguide.phantom.generator import sample

    for i in range(n):
        scene = GENERATOR_SCENES[i % len(GENERATOR_SCENES)]
        f = sample(scene, GENERATOR_SEED, i // len(GENERATOR_SCENES), size=(size, size))
        state = f.info.get("needle")
        condition = ("none" if state is None else "varied" if state.in_plane
                     else "out_of_plane")
        yield Case(condition, f.image, f.pixel_spacing_mm, f.needle_tip,
                   state.angle_deg if condition == "varied" else None,
                   _visible_mm(f.labels, f.pixel_spacing_mm), scene, GENERATOR_SEED, state)


TRAITS = (  # what makes a varied needle harder, as (label, test on its NeedleState)
    ("dim (brightness < 0.5)", lambda n: n.brightness < 0.5),
    ("bright (>= 0.5)", lambda n: n.brightness >= 0.5),
    ("reverb >= 4 lines", lambda n: n.reverb_count >= 4),
    ("gaps", lambda n: len(n.gaps) > 0),
    ("fading off plane", lambda n: n.elevation_mm > 0),
    ("bent", lambda n: n.bend_mm != 0),
)


def _patient(scene: str, seed: int, size: int):
    from sonoguide.phantom.simulator import PhantomSimulator

    rng = np.random.default_rng([seed, zlib.crc32(scene.encode()), 77])
    sim = PhantomSimulator(scene, seed=int(rng.integers(1 << 31)), size=(size, size),
                           depth_mm=float(rng.uniform(30.0, 50.0)),
                           probe_width_mm=float(rng.choice([38.0, 38.0, 46.0, 60.0])),
                           frequency_mhz=float(rng.uniform(7.0, 13.0)), slide_margin_mm=4.0,
                           max_tilt_deg=10.0, realisations=1)
    return sim, rng


def _settings(sim, rng: np.random.Generator) -> float:
    """This frame's probe handling and scanner settings; returns the phantom time."""
    sim.reset_time()
    sim.set_probe_offset(float(rng.uniform(-4.0, 4.0)))
    sim.set_tilt(float(np.clip(rng.normal(0.0, 4.0), -10.0, 10.0)))
    sim.set_pressure(float(rng.choice([0.0, rng.uniform(0.0, 0.5)])))
    sim.set_gain(float(rng.normal(0.0, 4.0)))
    sim.set_dynamic_range(float(rng.uniform(55.0, 85.0)))
    sim.set_tgc(float(rng.uniform(-2.5, 1.0)), float(rng.uniform(0.3, 0.7)) * sim.depth_mm)
    return float(rng.uniform(0.0, 10.0))


def _visible_mm(labels: np.ndarray, spacing: float) -> float:
    from sonoguide.phantom.labels import NEEDLE

    # the label is drawn 0.9 mm wide along the shaft and is blanked outside the probe's face
    return float(np.count_nonzero(labels == NEEDLE)) * spacing * spacing / 0.9


def _flip(case: Case) -> Case:
    w = case.image.shape[1]
    tip = None if case.tip is None else (w - 1 - case.tip[0], case.tip[1])
    return Case(case.condition, np.ascontiguousarray(case.image[:, ::-1]), case.spacing_mm, tip,
                case.angle_deg, case.visible_mm, case.scene, case.seed, case.needle)


def cases(scenes: tuple[str, ...], seeds: list[int], size: int, frames: int) -> Iterator[Case]:
    """`frames` frames of each condition per patient (scene, seed), deterministic."""
    for scene in scenes:
        for seed in seeds:
            sim, rng = _patient(scene, seed, size)
            for i in range(frames):
                for condition in ("in_plane", "faint", "gaps", "out_of_plane", "none", "two"):
                    t = _settings(sim, rng)
                    angle = float(rng.uniform(15.0, 70.0))
                    depth = float(rng.uniform(5.0, 40.0))
                    if condition == "none":
                        sim.set_needle(None)
                    elif condition == "out_of_plane":
                        sim.set_needle(min(depth, sim.depth_mm - 2.0), angle, False,
                                       float(rng.uniform(-10.0, 10.0)))
                    else:
                        sim.set_needle(depth, angle, True)
                    f = sim.render(t)
                    sp = f.pixel_spacing_mm
                    image, visible = f.image, _visible_mm(f.labels, sp)
                    if condition in ("faint", "gaps"):
                        sim.set_needle(None)
                        bare = sim.render(t).image.astype(np.float32)
                        image = _harder(condition, image.astype(np.float32), bare, f.labels,
                                        rng)
                    elif condition == "two":  # a second needle, 15-30 degrees apart
                        delta = float(rng.uniform(15.0, 30.0))
                        other = [a for a in (angle - delta, angle + delta) if 15.0 <= a <= 70.0]
                        sim.set_needle(float(rng.uniform(5.0, 40.0)),
                                       float(rng.choice(other)) if other else 15.0, True)
                        second = sim.render(t)
                        # same side, or crossing from the other side
                        image = np.maximum(image, second.image[:, ::-1] if i % 2
                                           else second.image)
                        visible = min(visible, _visible_mm(second.labels, sp))
                    case = Case(condition, image, sp, f.needle_tip,
                                angle if condition != "out_of_plane" else None,
                                visible, scene, seed)
                    yield _flip(case) if (i + seed) % 2 else case


def _harder(condition: str, with_needle: np.ndarray, bare: np.ndarray, labels: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    import cv2

    from sonoguide.phantom.labels import NEEDLE

    if condition == "faint":  # a dimmer needle: only part of its echo above the tissue
        out = bare + float(rng.uniform(0.3, 0.6)) * (with_needle - bare)
    else:  # gaps: 2-3 stretches of the shaft (not its last 3 mm) lose their echo
        near = cv2.dilate((labels == NEEDLE).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
        ys, xs = np.nonzero(labels == NEEDLE)
        out = with_needle.copy()
        if xs.size:
            keep = np.zeros(labels.shape, bool)
            span = xs.max() - xs.min()
            for _ in range(int(rng.integers(2, 4))):
                a = xs.min() + rng.uniform(0.0, 0.7) * span
                keep[:, int(a):int(a + rng.uniform(0.05, 0.12) * span)] = True
            gap = near & keep
            out[gap] = bare[gap]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class Outcome:
    case: Case
    finding: NeedleFinding | None
    reason: str
    ms: float


def _tip_err_mm(o: Outcome) -> float | None:
    if o.finding is None or o.case.tip is None:
        return None
    return float(np.hypot(o.finding.tip[0] - o.case.tip[0],
                          o.finding.tip[1] - o.case.tip[1])) * o.case.spacing_mm


def run(detector: NeedleDetector, all_cases: list[Case]) -> list[Outcome]:
    out = []
    for c in all_cases:
        t0 = time.perf_counter()
        r = detector.analyse(c.image, c.spacing_mm)
        out.append(Outcome(c, r.finding, r.reason, (time.perf_counter() - t0) * 1e3))
    return out


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):5.2f}" if values else "  -  "


def _row(label: str, sel: list[Outcome]) -> None:
    found = [o for o in sel if o.finding is not None and o.finding.kind == IN_PLANE]
    tips = [e for o in found if (e := _tip_err_mm(o)) is not None]
    angles = [abs(o.finding.angle_deg - o.case.angle_deg) for o in found]
    wrong = sum(o.finding is not None and o.finding.kind != IN_PLANE for o in sel)
    close = f"{np.mean(np.asarray(tips) <= 2.0):6.0%}" if tips else "   -  "
    share = len(found) / len(sel) if sel else float("nan")
    print(f"{label:<30}{len(sel):>5}{share:>8.1%}{_pct(tips, 50):>9}{_pct(tips, 90):>9}"
          f"{close:>7}{_pct(angles, 50):>9}{wrong:>6}")


def report(outcomes: list[Outcome]) -> None:
    print("in-plane needles (found: drawn as an in-plane shaft; tip error only where the tip is"
          " in the picture;\n  'dot': drawn as an out-of-plane dot instead)")
    print(f"{'condition':<30}{'n':>5}{'found':>8}{'tip med':>9}{'tip p90':>9}"
          f"{'<=2mm':>7}{'ang med':>9}{'dot':>6}")
    for cond in ("in_plane", "faint", "gaps", "varied"):
        mine = [o for o in outcomes if o.case.condition == cond]
        for label, keep in (
                ("visible >= 5 mm", lambda o: o.case.tip is not None
                 and o.case.visible_mm >= VISIBLE_MM),
                ("visible >= 10 mm", lambda o: o.case.tip is not None
                 and o.case.visible_mm >= 10.0),
                ("tip beyond the picture", lambda o: o.case.tip is None
                 and o.case.visible_mm >= VISIBLE_MM)):
            sel = [o for o in mine if keep(o)]
            if sel:
                _row(f"{cond} {label}", sel)
        tail = [o for o in mine if o.case.tip is None and o.finding is not None
                and o.finding.kind == IN_PLANE]
        if tail:
            marked = sum(not o.finding.tip_in_view for o in tail)
            print(f"  {cond}, tip beyond the picture and found: {marked}/{len(tail)} marked "
                  f"tip_in_view=False")
    varied = [o for o in outcomes if o.case.condition == "varied" and o.case.tip is not None
              and o.case.visible_mm >= 10.0]
    if varied:
        print("varied, visible >= 10 mm, by trait:")
    for label, has in TRAITS:
        sel = [o for o in varied if has(o.case.needle)]
        if sel:
            _row(f"  {label}", sel)
    oop = [o for o in outcomes if o.case.condition == "out_of_plane" and o.case.tip is not None
           and o.case.visible_mm > 0]
    if oop:
        kinds = {k: sum(o.finding is not None and o.finding.kind == k for o in oop)
                 for k in (OUT_OF_PLANE, IN_PLANE)}
        errs = [e for o in oop if o.finding is not None and o.finding.kind == OUT_OF_PLANE
                and (e := _tip_err_mm(o)) is not None]
        print(f"out-of-plane dots {len(oop)}: marked out-of-plane {kinds[OUT_OF_PLANE]} "
              f"({kinds[OUT_OF_PLANE] / len(oop):.1%}), drawn as an in-plane shaft "
              f"{kinds[IN_PLANE]}, nothing {len(oop) - sum(kinds.values())}; dot error "
              f"median {_pct(errs, 50)} mm, p90 {_pct(errs, 90)} mm")
    none = [o for o in outcomes if o.case.condition == "none"]
    if none:
        fp = [o for o in none if o.finding is not None]
        fp_in = sum(o.finding.kind == IN_PLANE for o in fp)
        who = sorted({f"{o.case.scene} {o.case.seed}" for o in fp})
        print(f"needle-free frames {len(none)}: false needles {len(fp)} ({len(fp) / len(none):.1%};"
              f" in-plane {fp_in}, out-of-plane dots {len(fp) - fp_in})"
              + (f" in {len(who)} patients: {', '.join(who)}" if who else ""))
    two = [o for o in outcomes if o.case.condition == "two" and o.case.visible_mm >= 2 * VISIBLE_MM]
    if two:
        refused = sum(o.finding is None for o in two)
        print(f"two in-plane needles in one frame {len(two)}: nothing drawn {refused} "
              f"({refused / len(two):.1%}; as ambiguous "
              f"{sum(o.reason == AMBIGUOUS for o in two)}), one drawn {len(two) - refused}")
    amb = sum(o.reason == AMBIGUOUS for o in outcomes if o.case.condition != "two")
    print(f"refused as ambiguous, one needle or none: {amb} of "
          f"{sum(o.case.condition != 'two' for o in outcomes)} frames")


def tracked_false_rate(detector: NeedleDetector, scenes: tuple[str, ...], seeds: list[int],
                       size: int, clip: int = 30) -> tuple[int, int, int]:
    """Needle-free clips (30 frames at 30 fps, the phantom breathing and pulsing, the probe
    still): frames with a false needle, single-frame and through NeedleTracker."""
    single = shown = total = 0
    who: set[str] = set()
    for scene in scenes:
        for seed in seeds:
            sim, rng = _patient(scene, seed, size)
            t0 = _settings(sim, rng)
            sim.set_needle(None)
            tracker = NeedleTracker()
            for k in range(clip):
                f = sim.render(t0 + k / 30.0)
                found = detector.detect(f.image, f.pixel_spacing_mm)
                single += found is not None
                shown += tracker.update(found, f.pixel_spacing_mm) is not None
                total += 1
                if found is not None:
                    who.add(f"{scene} {seed}")
    if who:
        print(f"  (false needles in clips of {len(who)} patients: {', '.join(sorted(who))})")
    return single, shown, total


def tracked_found_rate(detector: NeedleDetector, scenes: tuple[str, ...], seeds: list[int],
                       size: int, clip: int = 30) -> tuple[int, int, int]:
    """In-plane insertions (tip advancing 10 mm/s for a second): visible-needle frames found,
    single-frame and shown through NeedleTracker."""
    single = shown = total = 0
    for scene in scenes:
        for seed in seeds:
            sim, rng = _patient(scene, seed, size)
            t0 = _settings(sim, rng)
            angle, depth = float(rng.uniform(15.0, 70.0)), float(rng.uniform(8.0, 30.0))
            tracker = NeedleTracker()
            for k in range(clip):
                sim.set_needle(depth + k / 3.0, angle, True)
                f = sim.render(t0 + k / 30.0)
                found = detector.detect(f.image, f.pixel_spacing_mm)
                out = tracker.update(found, f.pixel_spacing_mm)
                if f.needle_tip is not None and _visible_mm(f.labels, f.pixel_spacing_mm) \
                        >= VISIBLE_MM:
                    single += found is not None
                    shown += out is not None
                    total += 1
    return single, shown, total


def timing(detector: NeedleDetector, images: list[tuple[np.ndarray, float]], repeat: int
           ) -> tuple[list[float], list[float]]:
    """ms per call: wall clock, and this thread's CPU time (what the call costs when the
    machine is shared: wall time then also counts waiting for a core)."""
    wall, cpu = [], []
    for _ in range(repeat):
        for image, sp in images:
            t0, c0 = time.perf_counter(), time.thread_time()
            detector.detect(image, sp)
            cpu.append((time.thread_time() - c0) * 1e3)
            wall.append((time.perf_counter() - t0) * 1e3)
    return wall, cpu


def _ms(label: str, wall: list[float], cpu: list[float]) -> None:
    print(f"{label}: wall median {np.median(wall):.2f} p95 {np.percentile(wall, 95):.2f}; "
          f"CPU median {np.median(cpu):.2f} p95 {np.percentile(cpu, 95):.2f} "
          f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="100-139", help="patients, e.g. 100-139 or 0-9,20")
    ap.add_argument("--scenes", default=",".join(SCENES))
    ap.add_argument("--size", type=int, default=512, help="picture side in pixels")
    ap.add_argument("--frames", type=int, default=6, help="frames per condition per patient")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-clips", action="store_true", help="skip the tracker clips")
    ap.add_argument("--generator", type=int, default=0, metavar="N",
                    help="also N frames of the training generator's varied needles")
    args = ap.parse_args(argv)
    import cv2

    from sonoguide.pipeline.providers import configure_cv2_threads

    configure_cv2_threads(1)  # as the app runs
    scenes = tuple(s for s in args.scenes.split(",") if s)
    seeds = seeds_from(args.seeds)
    detector = NeedleDetector()
    print("command:", "python -m sonoguide.pipeline.needle_eval", " ".join(sys.argv[1:]
                                                                          if argv is None
                                                                          else argv))
    print(f"patients: seeds {args.seeds} x {scenes}, {args.size}x{args.size} px, "
          f"{args.frames} frames per condition per patient; cv2 threads "
          f"{cv2.getNumThreads()}")
    t0 = time.perf_counter()
    all_cases = list(cases(scenes, seeds, args.size, args.frames))
    all_cases += list(generator_cases(args.generator, args.size))
    outcomes = run(detector, all_cases)
    print(f"({len(all_cases)} frames rendered and analysed in {time.perf_counter() - t0:.0f} s)")
    report(outcomes)
    if not args.no_clips:
        clip_seeds = seeds[: max(1, min(len(seeds), 20))]
        s1, s2, n = tracked_false_rate(detector, scenes, clip_seeds, args.size)
        print(f"needle-free clips {n} frames: false needles single-frame {s1} ({s1 / n:.1%}), "
              f"through NeedleTracker(confirm=2) {s2} ({s2 / n:.1%})")
        s1, s2, n = tracked_found_rate(detector, scenes, clip_seeds, args.size)
        if n:
            print(f"insertion clips {n} visible-needle frames: found single-frame {s1 / n:.1%}, "
                  f"shown through NeedleTracker(confirm=2) {s2 / n:.1%}")
    if not args.no_timing:
        sample = [(c.image, c.spacing_mm) for c in all_cases[:: max(1, len(all_cases) // 100)]]
        timing(detector, sample, 1)  # warm-up
        _ms(f"ms per call, {args.size}x{args.size}", *timing(detector, sample, 5))
        try:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
            _ms("  pinned to one core (as taskset -c 0)", *timing(detector, sample, 5))
        except (AttributeError, OSError) as exc:
            print("could not pin to one core:", exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
