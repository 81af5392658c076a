"""Test media: small clips written with cv2.VideoWriter, and synthetic scanner screens.

Each clip frame carries its index as a row of black/white blocks (one bit per block), which
survives lossy codecs, so tests can tell exactly which frame a source published. A red block in
the bottom-right corner tells whether a source delivered RGB (red in channel 0) or BGR.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BITS = 8  # frame indices 0..255
BLOCK = 16  # px per bit block; big enough to survive mp4v/MJPG compression

FOURCC_FOR_SUFFIX = {".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


def frame_image(index: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """BGR frame (as VideoWriter wants it) with `index` coded in the top row of blocks."""
    width, height = size
    if width < BITS * BLOCK or height < 2 * BLOCK:
        raise ValueError(f"size {size} too small to carry {BITS} bits")
    img = np.full((height, width, 3), 60, np.uint8)
    # a gentle gradient below the code so frames are not trivially flat
    img[BLOCK:, :, 1] = np.linspace(40, 200, width, dtype=np.uint8)[None, :]
    for bit in range(BITS):
        if (index >> bit) & 1:
            img[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255
        else:
            img[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 0
    img[-2 * BLOCK :, -2 * BLOCK :] = (0, 0, 255)  # pure red in BGR
    return img


def red_corner_rgb(image: np.ndarray) -> tuple[float, float, float]:
    """Mean (c0, c1, c2) of the red marker block of a published frame (RGB: c0 is large)."""
    q = BLOCK // 2
    patch = image[-2 * BLOCK + q : -q, -2 * BLOCK + q : -q].reshape(-1, 3).mean(axis=0)
    return float(patch[0]), float(patch[1]), float(patch[2])


def frame_index_of(image: np.ndarray) -> int:
    """Read back the index that frame_image() coded (image gray, RGB or BGR)."""
    gray = image if image.ndim == 2 else image.mean(axis=2)
    index = 0
    for bit in range(BITS):
        # centre of the block, away from codec ringing at its edges
        q = BLOCK // 4
        centre = gray[q : BLOCK - q, bit * BLOCK + q : (bit + 1) * BLOCK - q]
        if float(centre.mean()) > 128:
            index |= 1 << bit
    return index


def write_clip(path: Path, n_frames: int = 30, fps: float = 30.0,
               size: tuple[int, int] = (160, 120), fourcc: str | None = None) -> Path:
    """Write `n_frames` coded frames to `path` (codec chosen from the suffix unless given)."""
    path = Path(path)
    code = fourcc or FOURCC_FOR_SUFFIX.get(path.suffix.lower(), "mp4v")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*code), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path} with {code}")
    try:
        for i in range(n_frames):
            writer.write(frame_image(i, size))
    finally:
        writer.release()
    return path


def truncate_copy(src: Path, dst: Path, keep_fraction: float = 0.5) -> Path:
    """Copy the first `keep_fraction` of `src`'s bytes to `dst`: a clip cut off mid-write."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep_fraction)])
    return Path(dst)


# --- synthetic scanner screens ---------------------------------------------------------------

def speckle_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Grey B-mode-like image: Rayleigh speckle on smooth tissue, bright skin line, dark vessel."""
    rng = np.random.default_rng(seed)
    tissue = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 12)
    tissue = (tissue - tissue.min()) / (np.ptp(tissue) + 1e-6)
    tissue[: max(3, height // 40)] = 1.2
    cv2.circle(tissue, (width // 2, height // 2), height // 8, 0.05, -1)
    speckle = rng.rayleigh(1.0, (height, width)).astype(np.float32)
    image = cv2.GaussianBlur(np.clip(tissue * speckle * 90 + 10, 0, 255), (3, 3), 0.8)
    return image.astype(np.uint8)


def scanner_screen(size: tuple[int, int] = (1920, 1080), roi: tuple[int, int, int, int] =
                   (420, 140, 1000, 800), background: int = 12, seed: int = 0,
                   content: np.ndarray | None = None,
                   grey_panel: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """RGB scanner screen: coloured top bar with patient text, button bar, parameter text,
    a depth ruler right of the image and a probe label; the B-mode image sits at `roi`
    (x, y, w, h). `content` (grey or RGB, roi-sized) replaces the synthetic speckle;
    `grey_panel` (x, y, w, h) adds a flat grey settings panel with text."""
    width, height = size
    white = (255, 255, 255)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scr = np.full((height, width, 3), background, np.uint8)
    cv2.rectangle(scr, (0, 0), (width, 60), (140, 70, 40), -1)
    cv2.putText(scr, "PATIENT: DOE^JANE  ID 12345  MI 0.9 TIS 0.4", (20, 42), font, 1.1,
                white, 2)
    cv2.rectangle(scr, (0, height - 90), (width, height), (30, 50, 90), -1)
    for i, label in enumerate(["Freeze", "Gain", "Depth", "Focus", "Preset"]):
        cv2.rectangle(scr, (30 + i * 240, height - 75), (230 + i * 240, height - 15),
                      (60, 120, 160), -1)
        cv2.putText(scr, label, (50 + i * 240, height - 35), font, 1.0, white, 2)
    for i in range(10):
        cv2.putText(scr, f"Param {i}: {i * 7}", (20, 120 + 40 * i), font, 0.8, (230, 230, 230), 2)
    if grey_panel is not None:
        px, py, pw, ph = grey_panel
        cv2.rectangle(scr, (px, py), (px + pw - 1, py + ph - 1), (70, 70, 70), -1)
        for i in range(0, ph - 40, 40):
            cv2.putText(scr, f"Setting {i // 40}", (px + 10, py + 30 + i), font, 0.8, white, 2)
    x, y, w, h = roi
    image = speckle_image(h, w, seed) if content is None else content
    scr[y : y + h, x : x + w] = image[..., None] if image.ndim == 2 else image
    ruler_x, step = x + w + 12, max(h // 40, 4)
    for d in range(0, h, step):
        major = d % (step * 5) == 0
        cv2.line(scr, (ruler_x, y + d), (ruler_x + (14 if major else 6), y + d), white, 2)
        if major:
            cv2.putText(scr, str(d // 20), (ruler_x + 20, y + d + 8), font, 0.7, white, 2)
    cv2.putText(scr, "L14-6", (width - 200, 120), font, 1.2, (200, 200, 200), 2)
    return scr


def published(source) -> list:
    """Every frame `source` publishes from now on, in order (a reader of `latest()` only ever
    gets the newest, and may miss one however the test waits)."""
    frames: list = []
    source.add_publish_listener(lambda: frames.append(source.latest()))  # on the producer thread
    return frames
