"""sonoguide.training.scanner_clip: a scanner-screen clip of labelled images, with its JSON of
truth."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from sonoguide.pipeline.roi import detect_roi
from sonoguide.training.scanner_clip import main
from tests.clips import speckle_image

pytestmark = pytest.mark.torch  # the training package


def _fake_usgra(root):
    """A usgra-seg-like folder with three speckle images (black masks: all background)."""
    (root / "usgra-seg" / "images").mkdir(parents=True)
    (root / "usgra-seg" / "masks").mkdir()
    for i in range(3):
        image = speckle_image(224, 256, seed=i)
        cv2.imwrite(str(root / "usgra-seg" / "images" / f"{i:04d}.png"), image)
        cv2.imwrite(str(root / "usgra-seg" / "masks" / f"{i:04d}.png"),
                    np.zeros((224, 256, 3), np.uint8))


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / (aw * ah + bw * bh - ix * iy)


def test_clip_from_a_data_folder(tmp_path):
    _fake_usgra(tmp_path / "data")
    out = tmp_path / "clip.mp4"
    assert main(["--out", str(out), "--data-root", str(tmp_path / "data"), "--split", "all",
                 "--hold", "3", "--fps", "10", "--seconds", "0.8", "--seed", "1"]) == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["fps"] == 10 and info["frames"] == 8
    assert info["frame_images"] == ["0000"] * 3 + ["0001"] * 3 + ["0002"] * 2

    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == info["frames"]
    assert all(f.shape == (info["size"][1], info["size"][0], 3) for f in frames)

    x, y, w, h = info["image_area"]
    gray = cv2.cvtColor(frames[4], cv2.COLOR_BGR2GRAY).astype(float)
    inside = gray[y + 4:y + h - 4, x + 4:x + w - 4]
    border = np.concatenate([gray[y - 10:y - 2, x:x + w].ravel(),  # black panel above and below
                             gray[y + h + 2:y + h + 10, x:x + w].ravel()])
    assert inside.mean() > border.mean() + 20 and border.mean() < 10
    assert inside.std() > 10  # speckle, not a flat fill

    found = detect_roi(cv2.cvtColor(frames[4], cv2.COLOR_BGR2RGB))
    assert _iou((found.x, found.y, found.w, found.h), info["image_area"]) > 0.8
