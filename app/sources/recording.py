"""Replay a SonoGuide recording folder (sonoguide.pipeline.recording) like a clip.

The folder's segments play as one clip: pause, seek, step, loop and "analyse every frame" are
FileSource's own; only reading differs (SegmentsCapture joins the segments behind the small
part of cv2.VideoCapture that FileSource uses). Each frame carries the recording's mm per pixel
and, in meta["recorded"], its line of frames.jsonl (the overlay shown when it was recorded).
The pictures are the image area already, so the whole picture goes to the model.

A segment that cannot be read (cut by a crash) is left out and said; broken lines of
frames.jsonl are skipped and counted; what can be played is played.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from sonoguide.pipeline.frames import Frame
from sonoguide.pipeline.recording import FRAMES, MANIFEST, SEGMENT
from sonoguide.pipeline.replay import RecordedFindings
from sonoguide.sources.base import SourceState
from sonoguide.sources.file import FileSource

log = logging.getLogger(__name__)


def recorded_findings(source: RecordingSource) -> RecordedFindings:
    """The stand-in model that shows what was recorded on each frame."""
    return RecordedFindings(source.manifest, source.classes)


def is_recording(path: Path) -> bool:
    try:
        return path.is_dir() and (path / MANIFEST).is_file()
    except OSError:
        return False


class SegmentsCapture:
    """The segments of a recording as one capture: read(), set/get of position, fps, count."""

    def __init__(self, segments: list[tuple[Path, int]], fps: float) -> None:
        self._segments = segments  # (path, frames), in order
        self._fps = fps
        self._starts = np.cumsum([0] + [n for _, n in segments])
        self._pos = 0
        self._cap: cv2.VideoCapture | None = None
        self._cap_index = -1

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return bool(self._segments)

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self._fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(self._starts[-1])
        if prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT) and self._segments:
            cap = cv2.VideoCapture(str(self._segments[0][0]))
            try:
                return cap.get(prop)
            finally:
                cap.release()
        return 0.0

    def set(self, prop: int, value: float) -> bool:
        if prop != cv2.CAP_PROP_POS_FRAMES:
            return False
        self._pos = max(0, int(value))
        self._cap_index = -1  # seek: open the segment it falls in afresh
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        segment = int(np.searchsorted(self._starts, self._pos, side="right")) - 1
        if segment >= len(self._segments):
            return False, None
        if segment != self._cap_index:
            self.release()
            self._cap = cv2.VideoCapture(str(self._segments[segment][0]))
            self._cap_index = segment
            offset = self._pos - int(self._starts[segment])
            if offset:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, offset)
        ok, image = self._cap.read() if self._cap is not None else (False, None)
        if not ok:
            return False, None
        self._pos += 1
        if self._pos >= self._starts[segment + 1]:
            self.release()  # the next read opens the next segment
        return True, image

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap, self._cap_index = None, -1


class RecordingSource(FileSource):
    full_frame = True  # the recorded pictures are the image area: no scanner screen around

    def __init__(self, folder: str | Path, loop: bool = True) -> None:
        folder = Path(folder)
        self.notes: list[str] = []
        self._lines: list[dict | None] = []
        self._segments: list[tuple[Path, int]] = []
        self.classes: tuple[str, ...] = ()  # of the overlays recorded
        self._rec_fps = 30.0
        self.manifest: dict = {}
        self._manifest_error = self._read(folder)
        super().__init__(folder, loop=loop)
        self.name = f"recording:{folder.name}"

    # --- reading the folder ---------------------------------------------------------------
    def _read(self, folder: Path) -> str | None:
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            return f"{folder.name} is not a readable SonoGuide recording ({MANIFEST}: {exc})"
        self.manifest = manifest
        lines_by_segment: dict[str, list[dict]] = {}
        broken = 0
        try:
            with (folder / FRAMES).open(encoding="utf-8", errors="replace") as fh:
                for text in fh:
                    try:
                        line = json.loads(text)
                        lines_by_segment.setdefault(str(line["segment"]), []).append(line)
                    except (ValueError, KeyError, TypeError):
                        broken += 1
        except OSError:
            pass  # no frame lines at all: the pictures still play
        if broken:
            self.notes.append(f"{broken} broken line(s) of {FRAMES} skipped")
        names = sorted(p.name for p in folder.iterdir() if SEGMENT.match(p.name))
        for name in names:
            cap = cv2.VideoCapture(str(folder / name))
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
            cap.release()
            if count <= 0:
                self.notes.append(f"{name} cannot be read and is left out")
                continue
            lines = sorted(lines_by_segment.get(name, []), key=lambda d: d.get("index", 0))
            self._segments.append((folder / name, count))
            self._lines.extend((lines + [None] * count)[:count])
        self.classes = next((tuple(line["overlay"]["classes"]) for line in self._lines
                             if line and isinstance(line.get("overlay"), dict)), ())
        times = [line["t_s"] for line in self._lines if line and "t_s" in line]
        if len(times) >= 2 and times[-1] > times[0]:
            self._rec_fps = (len(times) - 1) / (times[-1] - times[0])
        if not self._segments:
            return f"{folder.name}: the recording holds no readable video"
        return None

    # --- FileSource's reading points ------------------------------------------------------
    def _open(self) -> SegmentsCapture | str:  # type: ignore[override]
        if self._manifest_error is not None:
            return self._manifest_error
        return SegmentsCapture(self._segments, self._rec_fps)

    def _probe(self) -> str | None:
        error = super()._probe()
        if error is None and self.notes:
            self._set_status(SourceState.STARTING, self.status.message,
                             warning="; ".join(self.notes))
        return error

    def _file_changed(self) -> bool:
        return False  # a folder's time stamp changes with any file in it; segments are final

    def _publish(self, image: np.ndarray, t_capture: float | None = None, *,
                 pixel_spacing_mm: float | None = None, truth: np.ndarray | None = None,
                 **meta: object) -> Frame:
        index = meta.get("frame_index")
        line = self._lines[index] if isinstance(index, int) and index < len(self._lines) \
            else None
        if line is not None:
            spacing = line.get("pixel_spacing_mm")
            if pixel_spacing_mm is None and isinstance(spacing, int | float) and spacing > 0:
                pixel_spacing_mm = float(spacing)
            meta["recorded"] = line
        return super()._publish(image, t_capture, pixel_spacing_mm=pixel_spacing_mm,
                                truth=truth, **meta)
