"""python -m sonoguide.phantom.gallery [--out assets/phantom_gallery.png] [--real DIR]

Writes a gallery: rows of rendered phantom frames per scene (different patients and settings:
a compressed IJV, a needle, a deeper view; one row of the limb views) beside a row of real
B-mode images, for judging realism by eye. Real images are read from usgra-seg/images under
$SONOGUIDE_DATA_ROOT (else ../shared/data beside the repository) when present, and only those
in the "train" list of training/splits/usgra-seg.json (the "val" images are the held-out test
and are never shown).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from sonoguide.paths import data_root, training_file
from sonoguide.phantom.simulator import PhantomSimulator

TILE = 320
COLS = 4
REAL_DIR = data_root() / "usgra-seg" / "images"
SPLIT = training_file("splits", "usgra-seg.json")
REAL_SHOWN = ("0001", "0037", "0062", "0145")  # train-split images with large hypoechoic vessels


def _train_reals(real_dir: Path) -> list[Path]:
    """The real images to show: train split only (nothing when the split is unknown)."""
    if not (real_dir.is_dir() and SPLIT.is_file()):
        return []
    train = set(json.loads(SPLIT.read_text())["train"])
    return [real_dir / f"{n}.png" for n in REAL_SHOWN
            if n in train and (real_dir / f"{n}.png").is_file()][:COLS]


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img.copy()
    cv2.putText(out, text, (6, TILE - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3,
                cv2.LINE_AA)
    cv2.putText(out, text, (6, TILE - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (80, 220, 255), 1,
                cv2.LINE_AA)
    return out


def _outline(frame) -> np.ndarray:
    """The frame with its label contours, to show the truth lines up."""
    out = cv2.cvtColor(frame.image, cv2.COLOR_GRAY2BGR)
    colours = {1: (0, 220, 255), 2: (60, 60, 255), 3: (255, 140, 40), 4: (80, 255, 80)}
    for code, col in colours.items():
        cs, _ = cv2.findContours((frame.labels == code).astype(np.uint8), cv2.RETR_EXTERNAL,
                                 cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, cs, -1, col, 1, cv2.LINE_AA)
    return out


def _tiles(shots) -> list[np.ndarray]:
    """One tile per (scene, seed, caption, setup): a 512x512 frame at t=0.35 s after `setup`
    set the simulator's controls; captions ending in "labels" show the label outlines."""
    tiles = []
    for scene, seed, text, setup in shots:
        sim = PhantomSimulator(scene, seed=seed, size=(512, 512))
        setup(sim)
        f = sim.render(0.35)
        img = _outline(f) if text.endswith("labels") else f.image
        tiles.append(_label(cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA),
                            f"{scene} #{seed} {text}"))
    return tiles


def _scene_row(scene: str, seeds: list[int], setups) -> list[np.ndarray]:
    return _tiles((scene, seed, text, setup)
                  for seed, (text, setup) in zip(seeds, setups, strict=True))


def build(real_dir: Path = REAL_DIR) -> np.ndarray:
    rows = []
    plain = ("", lambda s: None)
    rows.append(_scene_row("jugular", [0, 1, 2, 1], [
        plain, plain, ("needle in-plane", lambda s: s.set_needle(16.0, 35.0)),
        ("pressed + labels", lambda s: s.set_pressure(0.7))]))
    rows.append(_scene_row("supraclavicular", [0, 1, 5, 2], [
        plain, ("depth 45", lambda s: s.set_depth(45)),
        ("depth 55: A-lines", lambda s: s.set_depth(55)), ("labels", lambda s: None)]))
    rows.append(_scene_row("interscalene", [0, 1, 5, 3], [
        plain, ("out-of-plane needle", lambda s: s.set_needle(14.0, in_plane=False, x_mm=-2)),
        ("gain +6", lambda s: s.set_gain(6)), ("labels", lambda s: None)]))
    rows.append(_tiles([("axillary", 0, "", plain[1]), ("infraclavicular", 1, "depth 50",
                                                         lambda s: s.set_depth(50)),
                        ("femoral", 1, "pressed + labels", lambda s: s.set_pressure(0.7)),
                        ("popliteal", 2, "labels", plain[1])]))
    reals = _train_reals(real_dir)
    if reals:
        tiles = []
        for p in reals:
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            tiles.append(_label(cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA),
                                f"REAL usgra-seg {p.stem}"))
        tiles += [np.zeros((TILE, TILE, 3), np.uint8)] * (COLS - len(tiles))
        rows.append(tiles)
    return np.vstack([np.hstack(r) for r in rows])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("assets/phantom_gallery.png"))
    p.add_argument("--real", type=Path, default=REAL_DIR)
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), build(args.real))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
