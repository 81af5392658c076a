"""Phantom speed on one thread: python -m app.phantom.bench [--frames N] [--samples N]

Prints median / p95 ms per rendered 512x512 frame per scene (static maps built beforehand, as
in the live source) with controls moving every frame, and generator samples/s at 256x256
(each sample a new patient, so it includes building that patient).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from app.phantom.generator import generate
from app.phantom.simulator import PhantomSimulator

SCENES = ("jugular", "supraclavicular", "interscalene")


def bench_render(scene: str, frames: int, size: tuple[int, int] = (512, 512)) -> np.ndarray:
    sim = PhantomSimulator(scene, seed=1, size=size)
    sim.set_needle(15.0, 30.0)
    sim.render(0.0)  # builds the patient's static maps
    times = []
    for i in range(frames):
        t = i / 30.0
        sim.set_pressure(0.5 + 0.5 * np.sin(t))
        sim.set_probe_offset(5.0 * np.sin(0.3 * t))
        sim.set_tilt(3.0 * np.sin(0.2 * t))
        t0 = time.perf_counter()
        sim.render(t)
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--samples", type=int, default=200)
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    print(f"opencv {cv2.__version__}, threads={cv2.getNumThreads()}")
    for scene in SCENES:
        ms = bench_render(scene, args.frames)
        print(f"render 512x512 {scene:16s} median {np.median(ms):6.2f} ms   "
              f"p95 {np.percentile(ms, 95):6.2f} ms   ({args.frames} frames)")
    for scene in SCENES:
        t0 = time.perf_counter()
        for _ in generate(scene, args.samples, seed=0, size=(256, 256)):
            pass
        dt = time.perf_counter() - t0
        print(f"generate 256x256 {scene:16s} {args.samples / dt:7.1f} samples/s "
              f"({args.samples} samples, a new patient each)")


if __name__ == "__main__":
    main()
