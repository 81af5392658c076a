"""A scanner-screen clip made of real labelled images, to benchmark the live app on real texture.

    python -m sonoguide.training.scanner_clip --out clip.mp4 [--data-root DIR]
        [--split val|train|all] [--hold 15] [--fps 30] [--seconds 20] [--seed 0]

Each usgra-seg image (the split's images, in order, cycled) is held for `--hold` frames inside a
1280x720 scanner-like screen: grey UI with a top bar, menu and parameter text, a depth ruler
beside a black image panel; the image (its export's black padding trimmed) covers the image
area. While an image is held it drifts a few px and zooms slightly, like a
probe moving, with fresh mild noise on every frame. Written with cv2.VideoWriter (mp4v); OUT.json
beside it records the fps, frame count, the source image of every frame and `image_area`
[x, y, w, h], the rectangle the ultrasound image fills (what the app's ROI detection should find).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sonoguide.paths import training_file

SCREEN = (1280, 720)  # (width, height)
IMAGE_AREA = (320, 80, 640, 560)  # (x, y, w, h) of the ultrasound image (usgra-seg's aspect)
PANEL_MARGIN = 16  # black around the image area, as scanners draw it
BACKGROUND = 38  # the UI's dark grey
DEPTH_MM = 50.0  # what the depth ruler says the image area spans (usgra-seg: ~0.1 mm/px)
LETTERBOX_MAX = 10  # edge rows/columns no brighter than this are the export's padding
NOISE_SIGMA = 2.5  # grey levels of fresh noise per frame inside the image area
FONT = cv2.FONT_HERSHEY_SIMPLEX
SPLIT_FILE = training_file("splits", "usgra-seg.json")


def load_images(root: str | Path | None = None, split: str = "val") -> list[tuple[str, np.ndarray]]:
    """(name, grey image) of usgra-seg under the data root; the split's part when the split
    file lists it, else every image. Data root and reading as training does."""
    from sonoguide.paths import data_root
    from sonoguide.training.data import USGRA_PALETTE, FolderSpec, load_folder, read_split

    spec = FolderSpec.from_config({"kind": "usgra-seg", "root": "usgra-seg"}, base=data_root(root))
    names = None
    if split != "all" and SPLIT_FILE.exists():
        names = read_split(SPLIT_FILE).get(split)
        if names is None:
            raise SystemExit(f"{SPLIT_FILE} has no part {split!r}")
    return [(s.name, s.image) for s in load_folder(spec, tuple(USGRA_PALETTE), names)]


def trim(image: np.ndarray) -> np.ndarray:
    """The image without the black padding some exports put around the scan."""
    rows = np.flatnonzero(image.max(axis=1) > LETTERBOX_MAX)
    cols = np.flatnonzero(image.max(axis=0) > LETTERBOX_MAX)
    if rows.size < 2 or cols.size < 2:
        return image
    return image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def screen_template() -> np.ndarray:
    """The static scanner screen (BGR): UI, text, ruler, and the black image panel."""
    w, h = SCREEN
    x, y, aw, ah = IMAGE_AREA
    scr = np.full((h, w, 3), BACKGROUND, np.uint8)
    text = (205, 205, 205)
    cv2.rectangle(scr, (0, 0), (w, 44), (92, 62, 34), -1)  # coloured top bar
    cv2.putText(scr, "DOE^JANE  ID 0042  2025-05-14 10:32", (16, 30), FONT, 0.7, (240, 240, 240),
                2)
    cv2.putText(scr, "MI 0.7  TIs 0.2", (w - 220, 30), FONT, 0.7, (240, 240, 240), 2)
    for i, label in enumerate(["B-mode", "Gain 54", "DR 66", "Freq 12 MHz", "FR 30 Hz",
                               "Focus 1", "Preset Nerve"]):
        cv2.putText(scr, label, (20, 110 + 48 * i), FONT, 0.7, text, 2)
    for i, label in enumerate(["L14-6Ns", "Nerve", f"Depth {DEPTH_MM / 10:.1f}", "Zoom off",
                               "Freeze"]):
        cv2.putText(scr, label, (w - 230, 110 + 48 * i), FONT, 0.7, text, 2)
    m = PANEL_MARGIN
    cv2.rectangle(scr, (x - m, y - m), (x + aw + m - 1, y + ah + m - 1), (0, 0, 0), -1)
    # depth ruler right of the panel: a tick every 5 mm, labelled every cm
    mm_per_px = DEPTH_MM / ah
    rx = x + aw + m + 10
    for mm in range(0, int(ah * mm_per_px) + 1, 5):
        ty = y + round(mm / mm_per_px)
        major = mm % 10 == 0
        cv2.line(scr, (rx, ty), (rx + (14 if major else 7), ty), (230, 230, 230), 2)
        if major:
            cv2.putText(scr, str(mm // 10), (rx + 20, ty + 7), FONT, 0.6, text, 2)
    return scr


def place(image: np.ndarray, dx: float, dy: float, zoom: float) -> np.ndarray:
    """The grey image covering the image area (the overflow cut off), zoomed about its centre
    and shifted by (dx, dy)."""
    _, _, aw, ah = IMAGE_AREA
    ih, iw = image.shape[:2]
    s = max(aw / iw, ah / ih) * zoom
    m = np.float32([[s, 0, aw / 2 - s * iw / 2 + dx], [0, s, ah / 2 - s * ih / 2 + dy]])
    return cv2.warpAffine(image, m, (aw, ah), flags=cv2.INTER_LINEAR, borderValue=0)


def make_clip(images: list[tuple[str, np.ndarray]], out: str | Path, *, hold: int = 15,
              fps: float = 30.0, seconds: float = 20.0, seed: int = 0) -> dict:
    """Write the clip and OUT.json; returns what the JSON holds."""
    if not images:
        raise ValueError("no images to make a clip of")
    if hold < 1 or fps <= 0 or seconds <= 0:
        raise ValueError(f"need hold >= 1, fps > 0, seconds > 0 (got {hold}, {fps}, {seconds})")
    out = Path(out)
    n = max(1, round(seconds * fps))
    rng = np.random.default_rng(seed)
    template = screen_template()
    x, y, aw, ah = IMAGE_AREA
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, SCREEN)
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {out} (mp4v)")
    shown: list[str] = []
    try:
        for i in tqdm(range(n), desc=out.name, unit="frame"):
            k = i % hold
            if k == 0:  # a new image: where the probe starts, and where it drifts to
                name, image = images[(i // hold) % len(images)]
                image = trim(image)
                start, drift = rng.uniform(-3, 3, 2), rng.uniform(-6, 6, 2)
                zoom0, dzoom = rng.uniform(1.04, 1.06), rng.uniform(-0.02, 0.02)
            t = k / max(hold - 1, 1)
            (dx, dy), zoom = start + drift * t, zoom0 + dzoom * t
            view = place(image, dx, dy, zoom).astype(np.float32)
            view += rng.normal(0.0, NOISE_SIGMA, view.shape).astype(np.float32)
            frame = template.copy()
            frame[y:y + ah, x:x + aw] = np.clip(view, 0, 255).astype(np.uint8)[..., None]
            writer.write(frame)
            shown.append(name)
    finally:
        writer.release()
    info = {"fps": fps, "frames": n, "size": list(SCREEN), "image_area": list(IMAGE_AREA),
            "hold": hold, "seed": seed, "images": [name for name, _ in images],
            "frame_images": shown}
    out.with_suffix(".json").write_text(json.dumps(info, indent=1))
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="clip to write (.mp4); OUT.json goes beside it")
    p.add_argument("--data-root", default=None,
                   help="folder holding usgra-seg/ (default: $SONOGUIDE_DATA_ROOT or the "
                        "training default)")
    p.add_argument("--split", default="val",
                   help="part of training/splits/usgra-seg.json (train|val), or all")
    p.add_argument("--hold", type=int, default=15, help="frames each image is held")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    images = load_images(a.data_root, a.split)
    info = make_clip(images, a.out, hold=a.hold, fps=a.fps, seconds=a.seconds, seed=a.seed)
    print(f"{a.out}: {info['frames']} frames at {a.fps:g} fps from {len(images)} images "
          f"({a.split}), image area {info['image_area']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
