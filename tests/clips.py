"""Small test clips written with cv2.VideoWriter, and how to read back which frame is shown.

Each frame carries its index as a row of black/white blocks (one bit per block), which survives
lossy codecs, so tests can tell exactly which frame a source published.
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
    return img


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
