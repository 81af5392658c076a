"""Benchmark: model speed alone, then the whole headless pipeline at the source's frame rate.

    python -m app.pipeline.bench --model models/plexus.onnx --frames 600 --threads 1 2

Prints medians and p95s (no pass/fail): the targets are frames_inferred/frames_in >= 0.95 at
30 fps input and capture-to-overlay latency p95 <= 50 ms. The source is the phantom when it is
installed, else a synthetic speckle scan at 30 fps. Figures depend on machine load; the 1-minute
load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from app.pipeline.models import analyzer_for, default_model_path
from app.pipeline.providers import configure_cv2_threads
from app.pipeline.runner import detected_roi_provider, run_headless
from app.pipeline.segmenter import Segmenter
from app.pipeline.worker import InferenceWorker
from app.sources.base import FrameSource, SourceState


class SyntheticScan(FrameSource):
    """Speckle with two drifting dark discs, paced at `fps`: a stand-in when no phantom."""

    def __init__(self, fps: float = 30.0, size: tuple[int, int] = (640, 480)) -> None:
        super().__init__("synthetic", nominal_fps=fps)
        self.fps, self.size = fps, size

    def _run(self) -> None:
        width, height = self.size
        rng = np.random.default_rng(0)
        speckle = [rng.gamma(2.0, 40.0, (height, width)).clip(0, 255).astype(np.uint8)
                   for _ in range(4)]
        self._set_status(SourceState.LIVE)
        t0, k = time.monotonic(), 0
        while not self._stop_event.is_set():
            image = speckle[k % 4].copy()
            cx = int(width * (0.4 + 0.1 * np.sin(k / 30)))
            cv2.circle(image, (cx, height // 2), height // 10, 15, -1)
            cv2.circle(image, (cx + width // 5, height // 3), height // 14, 230, -1)
            self._publish(image, pixel_spacing_mm=0.1)
            k += 1
            if not self._sleep_until(t0 + k / self.fps):
                return


def model_speed(segmenter: Segmenter, roi_image: np.ndarray, runs: int) -> dict:
    times = [segmenter.predict(roi_image).inference_ms for _ in range(runs)]
    return {"p50": float(np.median(times)), "p95": float(np.percentile(times, 95))}


def make_source(spec: str | None) -> FrameSource:
    if spec:
        from app.sources.factory import open_source

        return open_source(spec)
    try:
        from app.sources.phantom import PhantomSource
    except ImportError:
        return SyntheticScan()
    return PhantomSource(scene="plexus")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(default_model_path("plexus")))
    parser.add_argument("--mode", default="plexus", choices=("plexus", "jugular"))
    parser.add_argument("--source", default=None, help="source spec (default: phantom)")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cv2-threads", type=int, nargs="+", default=[1])
    parser.add_argument("--provider", default="auto")
    parser.add_argument("--speed-runs", type=int, default=50)
    args = parser.parse_args(argv)

    print(f"model {args.model}; load average {os.getloadavg()[0]:.2f}; cores {os.cpu_count()}")
    for cv_threads in args.cv2_threads:
        configure_cv2_threads(cv_threads)
        for threads in args.threads:
            segmenter = Segmenter(args.model, provider=args.provider, intra_op_threads=threads)
            probe = np.random.default_rng(1).integers(0, 256, (400, 500), np.uint8)
            speed = model_speed(segmenter, probe, args.speed_runs)
            worker = InferenceWorker(segmenter, analyzer_for(segmenter, args.mode),
                                     roi_provider=detected_roi_provider())
            report = run_headless(make_source(args.source), worker, args.frames)
            lat = report["latency_ms"]
            print(f"{segmenter.provider} intra-op {threads} cv2 {cv_threads}: "
                  f"model {speed['p50']:.1f}/{speed['p95']:.1f} ms (p50/p95); pipeline "
                  f"{report['frames_in']} in at {report['input_fps']:.1f} fps, inferred "
                  f"{100 * report['inferred_fraction']:.1f}%, in-pipeline model "
                  f"{report['inference_ms']['p50']}/{report['inference_ms']['p95']} ms, "
                  f"latency p50 {lat['p50']} "
                  f"p95 {lat['p95']} max {lat['max']} ms; load {os.getloadavg()[0]:.2f}"
                  + (f"; errors {report['errors']}" if report["errors"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
