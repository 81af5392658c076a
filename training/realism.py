"""How phantom frames differ from real ones, in numbers a phantom designer can act on.

Per labelled vessel: lumen, surrounding-tissue and below-vessel brightness, boundary sharpness,
size and depth; per frame: the brightness of background tissue by depth band of the imaged
area (a scanner's black screen margins excluded) and the grain of the texture (half-widths of
its autocorrelation). Printed as medians (25th-75th percentile) for the real images of a split
part (train only by default, so the validation images stay a clean test of the phantom) beside
each phantom scene.

With --critic MODEL the question is turned round: a network trained on real images only (never
on the phantom) segments phantom frames of each scene. Where it finds the phantom's vessels and
nerves, they share what real ones look like; what it misses or mistakes (a nerve root called a
vessel) points at what the phantom draws wrong. Minutes per run, where the phantom-only probe
(training/configs/phantom_plexus.json) takes a quarter of an hour to train.

    python -m sonoguide.training.realism [--part train] [--frames 80]
    python -m sonoguide.training.realism --critic runs/plexus4/plexus.fp32.onnx [--frames 40]

(the critic: `python -m sonoguide.training train` then `python -m sonoguide.training export`,
both with `--config training/configs/plexus_real_only.json`)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sonoguide.training.data import Sample, resize_mask

SIDE = 256  # every frame is compared at this size, so the pixel distances below mean the same
RING_PX = (7, 25)  # surrounding tissue: between these dilations of the vessel (px)
BELOW_PX = (3, 25)  # below the vessel: these rows under its lowest point, within its columns
BANDS = 10  # depth bands for the brightness profile


@dataclass
class VesselStats:
    lumen: float  # mean grey inside
    ring: float  # mean grey of the tissue around it
    below: float  # mean grey of the tissue under it (enhancement or shadow)
    edge: float  # mean gradient magnitude on its outline (sharp wall vs soft edge)
    area_pct: float
    depth_frac: float  # centre depth as a fraction of the frame height


def at_side(sample: Sample) -> Sample:
    image = cv2.resize(sample.image, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return Sample(sample.name, image, resize_mask(sample.mask, SIDE, SIDE))


def vessel_stats(sample: Sample, vessel: int, min_px: int = 100) -> list[VesselStats]:
    img = sample.image.astype(np.float32)
    tissue = sample.mask == 0
    smooth = cv2.GaussianBlur(img, (0, 0), 1.5)
    grad = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    n, comp, st, _ = cv2.connectedComponentsWithStats((sample.mask == vessel).astype(np.uint8))
    out = []
    for k in range(1, n):
        if st[k, cv2.CC_STAT_AREA] < min_px:
            continue
        c = (comp == k).astype(np.uint8)
        ring = (cv2.dilate(c, np.ones((RING_PX[1],) * 2, np.uint8))
                & ~cv2.dilate(c, np.ones((RING_PX[0],) * 2, np.uint8))).astype(bool) & tissue
        ys, xs = np.nonzero(c)
        below = np.zeros_like(tissue)
        below[ys.max() + BELOW_PX[0]:ys.max() + BELOW_PX[1], xs.min():xs.max() + 1] = True
        below &= tissue
        edge = (c - cv2.erode(c, np.ones((3, 3), np.uint8))).astype(bool)
        if ring.sum() < 20 or below.sum() < 20:
            continue
        out.append(VesselStats(float(img[c > 0].mean()), float(img[ring].mean()),
                               float(img[below].mean()), float(grad[edge].mean()),
                               100.0 * c.sum() / c.size, float(ys.mean()) / c.shape[0]))
    return out


def imaged_area(image: np.ndarray, black: float = 4.0) -> tuple[slice, slice]:
    """Rows and columns of the picture the scanner imaged: the black bands of its screen
    layout (above, below and beside the picture) are no tissue and would read as a dark
    near field."""
    rows = np.flatnonzero(image.mean(axis=1) > black)
    cols = np.flatnonzero(image.mean(axis=0) > black)
    if rows.size < 2 or cols.size < 2:
        return slice(0, image.shape[0]), slice(0, image.shape[1])
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def depth_profile(sample: Sample) -> np.ndarray:
    """Mean grey of unlabelled tissue in each of BANDS depth bands of the imaged area (nan
    where there is none)."""
    rows_in, cols_in = imaged_area(sample.image)
    image, mask = sample.image[rows_in, cols_in], sample.mask[rows_in, cols_in]
    edges = np.linspace(0, image.shape[0], BANDS + 1).astype(int)
    out = np.full(BANDS, np.nan)
    for i in range(BANDS):
        rows = slice(edges[i], edges[i + 1])
        values = image[rows][mask[rows] == 0]
        if values.size:
            out[i] = values.mean()
    return out


def _half_width(line: np.ndarray) -> float:
    """Lag (px, interpolated) where a centred autocorrelation line falls to half its peak."""
    c = len(line) // 2
    a = line[c:] / line[c]
    below = np.flatnonzero(a < 0.5)
    if not below.size:
        return float("nan")
    i = int(below[0])
    return float(i - 1 + (a[i - 1] - 0.5) / (a[i - 1] - a[i]))


def grain(sample: Sample) -> tuple[float, float]:
    """Lateral and axial half-widths (px) of the texture's autocorrelation in the middle of
    the imaged area, brightness trends removed: speckle size together with the thickness of
    fascia and other fine bright structure, as the eye reads "coarse" or "fine"."""
    rows, cols = imaged_area(sample.image)
    img = sample.image[rows, cols].astype(np.float32)
    h, w = img.shape
    img = img[h // 8: h - h // 8, w // 8: w - w // 8]
    fine = img - cv2.GaussianBlur(img, (0, 0), 4)
    power = np.abs(np.fft.fft2(fine)) ** 2
    acf = np.fft.fftshift(np.real(np.fft.ifft2(power)))
    cy, cx = acf.shape[0] // 2, acf.shape[1] // 2
    return _half_width(acf[cy, :]), _half_width(acf[:, cx])


def summary(samples: list[Sample], vessel: int) -> dict[str, tuple[float, float, float]]:
    """Median and quartiles of each vessel figure and ratio, and of the depth profile."""
    stats = [s for sample in samples for s in vessel_stats(sample, vessel)]
    rows: dict[str, np.ndarray] = {}
    if stats:
        a = np.array([[s.lumen, s.ring, s.below, s.edge, s.area_pct, s.depth_frac]
                      for s in stats])
        rows = {"lumen / surround": a[:, 0] / a[:, 1],
                "below / surround": a[:, 2] / a[:, 1],
                "edge gradient": a[:, 3], "area %": a[:, 4], "depth (frame)": a[:, 5]}
    g = np.array([grain(s) for s in samples])
    rows["grain lateral (px)"], rows["grain axial (px)"] = g[:, 0], g[:, 1]
    prof = np.array([depth_profile(s) for s in samples])
    for i in range(BANDS):
        column = prof[:, i]
        rows[f"tissue grey, depth {i * 10}-{i * 10 + 10} %"] = column[~np.isnan(column)]
    return {k: tuple(float(np.nanpercentile(v, q)) for q in (50, 25, 75))
            for k, v in rows.items() if np.isfinite(v).any()}


def _cell(figure: tuple[float, float, float] | None) -> str:
    return "n/a" if figure is None else "{:.2f} ({:.2f}-{:.2f})".format(*figure)


def critic(model: str | Path, scenes: list[str], frames: int, seed: int = 1001,
           size: int = SIDE) -> dict[str, dict[str, float | None]]:
    """A real-trained model's figures on `frames` phantom frames of each scene (held-out
    seed): vessel Dice, share of vessels found, share of vessel-free frames where it draws a
    vessel, nerve Dice (sonoguide.training.evaluate's definitions, presence-gated as the app
    runs)."""
    from sonoguide.training.evaluate import evaluate_samples
    from sonoguide.training.phantom_data import phantom_samples

    classes = ("background", "nerve", "vessel")
    out = {}
    for scene in tqdm(scenes, desc="critic", leave=False):
        samples = phantom_samples(scene, frames, seed, classes, size=(size, size))
        r = evaluate_samples(model, samples, classes, quiet=True)["classes"]
        out[scene] = {"vessel Dice": r["vessel"]["dice_mean"],
                      "vessels found": r["vessel"]["found_share"],
                      "vessel drawn, none there": r["vessel"]["false_positive_rate"],
                      "nerve Dice": r["nerve"]["dice_mean"]}
    return out


def _critic_table(table: dict[str, dict[str, float | None]]) -> str:
    keys = list(next(iter(table.values())))
    lines = ["| phantom scene | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for scene, row in {**table, "mean": {k: _mean(table, k) for k in keys}}.items():
        cells = ["n/a" if row[k] is None else f"{row[k]:.2f}" for k in keys]
        lines.append(f"| {scene} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean(table: dict[str, dict[str, float | None]], key: str) -> float | None:
    values = [row[key] for row in table.values() if row[key] is not None]
    return float(np.mean(values)) if values else None


def main(argv: list[str] | None = None) -> None:
    from sonoguide.paths import data_root
    from sonoguide.phantom.scenes import VIEWS
    from sonoguide.training.phantom_data import phantom_samples
    from sonoguide.training.train import load_sources

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", default="train", help="usgra-seg split part (default train)")
    p.add_argument("--frames", type=int, default=80, help="phantom frames per scene")
    p.add_argument("--data-root")
    p.add_argument("--critic", help="ONNX model trained on real images only: report its "
                   "figures on phantom frames of each scene instead")
    args = p.parse_args(argv)
    if args.critic:
        print(_critic_table(critic(args.critic, list(VIEWS), args.frames)))
        return
    classes = ("background", "nerve", "vessel")
    sets = {f"real ({args.part})": load_sources(
        [{"kind": "usgra-seg", "root": "usgra-seg", "split": "training/splits/usgra-seg.json",
          "part": args.part}], classes, data_root(args.data_root), (SIDE, SIDE))}
    for scene in VIEWS:
        sets[scene] = phantom_samples(scene, args.frames, 7, classes, size=(SIDE, SIDE))
    table = {name: summary([at_side(s) for s in samples], classes.index("vessel"))
             for name, samples in sets.items()}
    names = list(table)
    print("| figure | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for key in table[names[0]]:
        cells = [_cell(table[n].get(key)) for n in names]
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
