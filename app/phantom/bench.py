"""Phantom speed on one thread: python -m sonoguide.phantom.bench [--frames N] [--samples N]

Prints median / p95 ms per rendered 512x512 frame per scene (static maps built beforehand, as
in the live source) with controls moving every frame, and generator samples/s at 256x256
(each sample a new patient, so it includes building that patient).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from sonoguide.phantom.generator import generate
from sonoguide.phantom.scenes import VIEWS
from sonoguide.phantom.simulator import PhantomSimulator

SCENES = VIEWS


def bench_render(scene: str, frames: int, size: tuple[int, int] = (512, 512),
                 geometry: str = "linear") -> tuple[np.ndarray, np.ndarray]:
    """Per-frame wall and CPU (this thread) milliseconds. On a shared machine the CPU time is
    the honest single-core cost; wall time also counts waiting for the core."""
    sim = PhantomSimulator(scene, seed=1, size=size, geometry=geometry)
    sim.set_needle(15.0, 30.0)
    sim.render(0.0)  # builds the patient's static maps
    wall, cpu = [], []
    for i in range(frames):
        t = i / 30.0
        sim.set_pressure(0.5 + 0.5 * np.sin(t))
        sim.set_probe_offset(5.0 * np.sin(0.3 * t))
        sim.set_tilt(3.0 * np.sin(0.2 * t))
        w0, c0 = time.perf_counter(), time.thread_time()
        sim.render(t)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return np.array(wall) * 1e3, np.array(cpu) * 1e3


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--samples", type=int, default=200)
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    print(f"opencv {cv2.__version__}, threads={cv2.getNumThreads()}")
    for scene, geometry in [(s, "linear") for s in SCENES] + [("jugular", "curvilinear")]:
        wall, cpu = bench_render(scene, args.frames, geometry=geometry)
        if geometry != "linear":
            scene = f"{scene} ({geometry})"
        print(f"render 512x512 {scene:16s} wall median {np.median(wall):6.2f} ms "
              f"p95 {np.percentile(wall, 95):6.2f} ms | cpu median {np.median(cpu):6.2f} ms "
              f"p95 {np.percentile(cpu, 95):6.2f} ms  ({args.frames} frames)")
    for scene in SCENES:
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in generate(scene, args.samples, seed=0, size=(256, 256)):
            pass
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        print(f"generate 256x256 {scene:16s} {args.samples / dt:7.1f} samples/s wall, "
              f"{args.samples / dc:7.1f} samples/s per core-second "
              f"({args.samples} samples, a new patient each)")
    t0, c0 = time.perf_counter(), time.thread_time()
    for _ in generate("jugular", args.samples, seed=0, size=(256, 256), frames_per_patient=8):
        pass
    dt, dc = time.perf_counter() - t0, time.thread_time() - c0
    print(f"generate 256x256 jugular, 8 frames per patient: {args.samples / dt:7.1f} samples/s "
          f"wall, {args.samples / dc:7.1f} per core-second")


if __name__ == "__main__":
    main()
