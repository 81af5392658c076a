"""sonoguide-phantom: write labelled phantom frames or a clip to a folder.

  sonoguide-phantom --scene jugular --frames 200 --out DIR        # PNG images + masks
  sonoguide-phantom --scene plexus --clip --seconds 10 --fps 30 --out DIR   # mp4 + masks

Frames mode writes images/NNNNNN.png (B-mode) and masks/NNNNNN.png (phantom label codes:
0 background, 1 nerve, 2 artery, 3 vein, 4 needle), each sample a new patient (the training
generator). Clip mode scans one patient over time (pulsation, breathing, optional pressure
sweep and needle advance) and writes clip.mp4 plus masks/NNNNNN.png. Both write meta.csv with
pixel spacing and needle tip per frame.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sonoguide.phantom.generator import generate
from sonoguide.phantom.simulator import PhantomFrame, PhantomSimulator


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sonoguide-phantom", description=__doc__.split("\n")[0])
    p.add_argument("--scene", default="jugular", choices=PhantomSimulator.SCENES)
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="frame size in pixels (default 256 256 for frames, 512 512 for clips)")
    p.add_argument("--frames", type=int, default=100, help="frames mode: how many samples")
    p.add_argument("--clip", action="store_true", help="write an mp4 clip of one scan")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--depth", type=float, default=40.0, help="clip: imaging depth mm")
    p.add_argument("--curvilinear", action="store_true", help="clip: convex probe (sector)")
    p.add_argument("--heart-rate", type=float, default=72.0, help="clip: bpm")
    p.add_argument("--compress", action="store_true", help="clip: press the probe and release")
    p.add_argument("--needle", action="store_true", help="clip: advance an in-plane needle")
    return p.parse_args(argv)


def _write_meta_row(writer: csv.writer, i: int, f: PhantomFrame) -> None:
    tip = ("", "") if f.needle_tip is None else (f"{f.needle_tip[0]:.1f}", f"{f.needle_tip[1]:.1f}")
    writer.writerow([f"{i:06d}", f"{f.t:.4f}", f"{f.pixel_spacing_mm:.5f}", *tip])


def write_frames(args: argparse.Namespace) -> int:
    size = tuple(args.size) if args.size else (256, 256)
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(parents=True, exist_ok=True)
    with open(args.out / "meta.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "t", "pixel_spacing_mm", "needle_x", "needle_y"])
        frames = generate(args.scene, args.frames, args.seed, size)
        for i, f in enumerate(tqdm(frames, total=args.frames, desc=f"phantom {args.scene}")):
            cv2.imwrite(str(args.out / "images" / f"{i:06d}.png"), f.image)
            cv2.imwrite(str(args.out / "masks" / f"{i:06d}.png"), f.labels)
            _write_meta_row(w, i, f)
    return 0


def write_clip(args: argparse.Namespace) -> int:
    size = tuple(args.size) if args.size else (512, 512)
    n = max(1, int(round(args.seconds * args.fps)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(exist_ok=True)
    sim = PhantomSimulator(args.scene, seed=args.seed, size=size, depth_mm=args.depth,
                           geometry="curvilinear" if args.curvilinear else "linear")
    sim.set_heart_rate(args.heart_rate)
    h, w = sim.size
    path = args.out / "clip.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), args.fps, (w, h), True)
    if not vw.isOpened():
        print(f"cannot open a video writer for {path}", file=sys.stderr)
        return 2
    try:
        with open(args.out / "meta.csv", "w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["frame", "t", "pixel_spacing_mm", "needle_x", "needle_y"])
            for i in tqdm(range(n), desc=f"clip {args.scene}"):
                t = i / args.fps
                u = t / max(args.seconds, 1e-6)
                if args.compress:  # press during the middle third, then release
                    sim.set_pressure(float(np.clip(3 * min(u - 1 / 3, 2 / 3 - u) * 3, 0, 1)))
                if args.needle:
                    sim.set_needle(2.0 + 25.0 * u, 30.0)
                f = sim.render(t)
                vw.write(cv2.cvtColor(f.image, cv2.COLOR_GRAY2BGR))
                cv2.imwrite(str(args.out / "masks" / f"{i:06d}.png"), f.labels)
                _write_meta_row(wr, i, f)
    finally:
        vw.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.frames < 1 or args.seconds <= 0 or args.fps <= 0:
        print("--frames, --seconds and --fps must be positive", file=sys.stderr)
        return 2
    try:
        return write_clip(args) if args.clip else write_frames(args)
    except OSError as exc:
        print(f"cannot write to {args.out}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
