"""Benchmark: what each stage costs per frame, then the live session headless at 30 fps.

    python -m sonoguide.pipeline.bench --mode plexus --frames 600
    taskset -c 0 python -m sonoguide.pipeline.bench --mode plexus --frames 600   # a slow laptop

Prints medians and p95s (no pass/fail). Stage costs are measured one after another on the
phantom's frames on this thread: phantom render, ROI crop, preprocess, model run, analysis,
guidance (needle, path, warnings, vessel behaviour; a needle is in the sweep), motion
measurement and the warp of a result (the window's paint is in sonoguide.ui.bench). The
pipeline run drives the same LiveSession as the window and prints the share of frames inferred,
capture-to-result latency, and the share of frames shown with a fresh or motion-followed
overlay. Figures depend on machine load: the 1-minute load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from sonoguide.pipeline.analysis import MODES
from sonoguide.pipeline.frames import Frame, Segmentation
from sonoguide.pipeline.models import LoadedModel, analyzer_for, default_model_path
from sonoguide.pipeline.providers import configure_cv2_threads
from sonoguide.pipeline.runner import run_headless
from sonoguide.pipeline.segmenter import Segmenter
from sonoguide.pipeline.session import FOLLOW_MOTION, HIDE, HOLD, LiveSession, OverlayPolicy


def _stats(values: list[float]) -> str:
    a = np.asarray(values, float)
    if a.size == 0:
        return "n=0"
    return f"{np.median(a):6.2f} / {np.percentile(a, 95):6.2f}"


def _timed(fn: Callable[[], object], runs: list[float]) -> object:
    t0 = time.perf_counter()
    out = fn()
    runs.append((time.perf_counter() - t0) * 1000.0)
    return out


def stage_costs(mode: str, model: str, threads: int, frames: int = 60,
                provider: str = "cpu") -> dict[str, list[float]]:
    """ms per frame of each stage, measured in turn on `frames` phantom frames of a sweep."""
    from sonoguide.phantom.simulator import PhantomSimulator
    from sonoguide.pipeline.motion import MotionEstimator, warp_segmentation
    from sonoguide.pipeline.roi import detect_roi

    sim = PhantomSimulator(mode, seed=0)
    segmenter = Segmenter(model, provider=provider, intra_op_threads=threads)
    analyzer = analyzer_for(segmenter, mode)
    estimator = MotionEstimator()
    costs: dict[str, list[float]] = {k: [] for k in (
        "phantom render", "ROI (detect once) + crop", "preprocess", "model run", "analysis",
        "guidance", "motion measure", "warp result")}
    sim.set_needle(20.0, 35.0)  # the guide then fits a shaft on every frame, its real work
    previous: tuple[Frame, object] | None = None
    roi = None
    for k in range(frames):
        sim.set_probe_offset(15.0 * np.sin(k / frames * 2 * np.pi))  # a 1.5 cm/s sweep
        rendered = _timed(lambda k=k: sim.render(k / 30.0), costs["phantom render"])
        frame = Frame(rendered.image, k, k / 30.0, "bench", rendered.pixel_spacing_mm)
        if roi is None:
            roi = detect_roi(frame.image)  # once per source and size, as the session does
        crop = _timed(lambda roi=roi, frame=frame: np.ascontiguousarray(roi.crop(frame.image)),
                      costs["ROI (detect once) + crop"])
        frame = Frame(frame.image, k, k / 30.0, "bench", rendered.pixel_spacing_mm, roi=roi)
        x = _timed(lambda crop=crop: segmenter.preprocess(crop), costs["preprocess"])
        _timed(lambda x=x: segmenter._run(x), costs["model run"])
        pred = segmenter.predict(crop)
        result = _timed(lambda pred=pred, frame=frame: analyzer.analyze(
            pred, frame.roi, frame.pixel_spacing_mm, frame_id=frame.frame_id,
            t_capture=frame.t_capture), costs["analysis"])
        _timed(lambda crop=crop, result=result, frame=frame: analyzer.guide.update(
            crop, result.structures, result.target, frame.roi, frame.pixel_spacing_mm,
            source="bench", t=frame.t_capture), costs["guidance"])
        if previous is not None:
            old_frame, old = previous
            check = _timed(lambda old_frame=old_frame, frame=frame: estimator.estimate(
                old_frame, frame), costs["motion measure"])
            if check.motion is not None:
                seg = Segmentation(old_frame.frame_id, old_frame.t_capture, 0.0,
                                   segmenter.classes, roi, old.labels, old.structures,
                                   old.target)
                _timed(lambda seg=seg, check=check, frame=frame: warp_segmentation(
                    seg, check.motion, frame), costs["warp result"])
        if k % 3 == 0:  # a result three frames old, as at ~10 inferences/s
            previous = (frame, result)
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", default="plexus", choices=MODES)
    parser.add_argument("--model", default=None, help="default: the mode's shipped model")
    parser.add_argument("--source", default=None, help="source spec (default: the mode's "
                                                       "phantom scene)")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--follow", nargs="+", default=[FOLLOW_MOTION],
                        choices=(FOLLOW_MOTION, HOLD, HIDE))
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage costs")
    args = parser.parse_args(argv)
    model = args.model or str(default_model_path(args.mode))
    source_spec = args.source or f"phantom:{args.mode}"
    configure_cv2_threads(1)

    print(f"model {model}; cores {os.cpu_count()} (usable {len(os.sched_getaffinity(0))}); "
          f"load average {os.getloadavg()[0]:.2f}")
    if not args.no_stages:
        costs = stage_costs(args.mode, model, args.threads[0], provider=args.provider)
        print(f"per-stage cost, ms median / p95 (intra-op threads {args.threads[0]}):")
        for name, values in costs.items():
            print(f"  {name:26s} {_stats(values)}")
    from sonoguide.sources.factory import open_source, source_key

    for threads in args.threads:
        for follow in args.follow:
            segmenter = Segmenter(model, provider=args.provider, intra_op_threads=threads)
            session = LiveSession(policy=OverlayPolicy(follow=follow))
            session.set_source(open_source(source_spec), source_key(source_spec))
            session.set_model(LoadedModel(segmenter, analyzer_for(segmenter, args.mode)))
            report = run_headless(session, args.frames)
            lat, shown = report["latency_ms"], report["shown"]
            print(f"{segmenter.provider} intra-op {threads}, follow {follow}: "
                  f"{report['frames_in']} in at {report['input_fps']:.1f} fps, inferred "
                  f"{100 * report['inferred_fraction']:.1f}% at {report['inference_fps']:.1f}/s,"
                  f" model {report['inference_ms']['p50']}/{report['inference_ms']['p95']} ms, "
                  f"latency p50 {lat['p50']} p95 {lat['p95']} ms; overlay on "
                  f"{100 * shown['overlay_fraction']:.1f}% of frames shown ({shown['fresh']} "
                  f"fresh, {shown['followed']} followed, {shown['hidden']} hidden), overlay "
                  f"age p50 {report['overlay_age_ms']['p50']} p95 "
                  f"{report['overlay_age_ms']['p95']} ms, flow {report['flow_ms']['p50']}/"
                  f"{report['flow_ms']['p95']} ms; load {os.getloadavg()[0]:.2f}"
                  + (f"; errors {report['errors']}" if report["errors"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
