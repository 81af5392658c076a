"""Recordings: the image area of every frame shown, and what was shown on it, crash-safe.

A recording is a folder:
    recording.json     what was recorded (source, mode, model, started, ended, frames)
    seg-000000.avi     the image area (never the scanner's patient name or menus), MJPG, in
    seg-000001.avi     self-contained segments of SEGMENT_S seconds
    frames.jsonl       one line per frame: its id, time, segment and index, image area, mm per
                       pixel, and the overlay shown (kind, structures with outlines, target)

Crash safety: a segment is written under a hidden name and renamed when complete, and its
frame lines are appended (and flushed to disk) only then; so killing the app loses at most the
segment being written (about a second) and never damages an earlier one. The writer runs on
its own thread and never holds up the picture: if the disk cannot keep up, frames are dropped
and counted. Recording stops by itself, saying why, when the disk is nearly full.

Replay: sonoguide.sources.recording.RecordingSource plays a recording folder like a clip.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from sonoguide.pipeline.files import write_atomically
from sonoguide.pipeline.findings import overlay_record
from sonoguide.pipeline.frames import Frame, Segmentation

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "recording.json"
FRAMES = "frames.jsonl"
SEGMENT = re.compile(r"^seg-(\d{6})\.avi$")
SEGMENT_S = 1.0
MIN_FREE_BYTES = 500 * 1024 * 1024  # stop before the disk is full: the system needs room too
QUEUE_FRAMES = 90  # about 3 s at 30 fps of slack for a slow disk; beyond that frames drop
FOURCC = "MJPG"  # every frame a JPEG: cheap to write, seekable, and a cut file loses no others
JPEG_QUALITY = 90


def segment_name(index: int) -> str:
    return f"seg-{index:06d}.avi"


@dataclass(frozen=True)
class RecordingStatus:
    folder: Path
    frames: int  # frames written into complete segments
    seconds: float  # span of the frames recorded so far
    dropped: int  # frames the writer could not keep up with
    free_bytes: int | None  # on the recording's disk, at the last check
    recording: bool
    stopped_because: str = ""  # why it stopped ("" while recording or when asked to stop)


@dataclass
class _Item:
    frame: Frame  # frames and results are never changed once made: safe to hand over as is
    kind: str | None
    overlay: Segmentation | None


class Recorder:
    """Writes frames handed to add() into a recording folder, on its own thread.

    folder: created; must not hold a recording already (a recording is never overwritten).
    info: what to say in recording.json about the source, mode and model.
    on_stop(reason): called on the writer thread when it stops by itself (disk full, write
    error) so the view can say so; not called for stop().
    """

    def __init__(self, folder: Path, *, info: dict | None = None, fps: float = 30.0,
                 segment_s: float = SEGMENT_S, min_free_bytes: int | None = None,
                 on_stop: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder)
        if (self.folder / MANIFEST).exists():
            raise ValueError(f"{self.folder} already holds a recording; choose a new folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fps = fps if fps > 0 else 30.0
        self.segment_s = segment_s
        self.min_free_bytes = MIN_FREE_BYTES if min_free_bytes is None else min_free_bytes
        self.on_stop = on_stop
        self._manifest = {"format": FORMAT, "started": datetime.now().isoformat(timespec="seconds"),
                          "segment_s": segment_s, "codec": FOURCC, **(info or {}),
                          "ended": None, "frames": None, "stopped_because": None}
        write_atomically(self.folder / MANIFEST, json.dumps(self._manifest, indent=1) + "\n")
        self._queue: queue.Queue[_Item | None] = queue.Queue(QUEUE_FRAMES)
        self._lock = threading.Lock()
        self._frames = 0
        self._dropped = 0
        self._t0: float | None = None
        self._t_last = 0.0
        self._free: int | None = self._free_bytes()
        self._stopped_because = ""
        self._recording = True
        # writer-thread state
        self._writer: cv2.VideoWriter | None = None
        self._segment = -1
        self._segment_key: tuple | None = None
        self._segment_t0 = 0.0
        self._lines: list[dict] = []
        self._next_free_check = 0.0
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    # --- any thread ----------------------------------------------------------------------
    def add(self, frame: Frame, kind: str | None = None,
            overlay: Segmentation | None = None) -> bool:
        """Queue `frame`'s image area with the overlay shown on it (kind: fresh / followed /
        hidden / no model). Never blocks; False when not recording or the frame was dropped."""
        if not self._recording:
            return False
        if self._t0 is None:
            self._t0 = frame.t_capture
        try:  # cropping, encoding and the record are the writer thread's work, not the view's
            self._queue.put_nowait(_Item(frame, kind, overlay))
        except queue.Full:
            with self._lock:
                self._dropped += 1
            return False
        return True

    @property
    def recording(self) -> bool:
        return self._recording

    def status(self) -> RecordingStatus:
        with self._lock:
            span = self._t_last - self._t0 if self._t0 is not None and self._frames else 0.0
            return RecordingStatus(self.folder, self._frames, round(span, 2), self._dropped,
                                   self._free, self._recording, self._stopped_because)

    def stop(self, timeout: float = 10.0) -> RecordingStatus:
        """Write what is queued, close the last segment and the manifest; wait for it."""
        if self._recording:
            self._recording = False
            self._queue.put(None)  # after everything already queued
        self._thread.join(timeout)
        return self.status()

    # --- writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                problem = self._check_disk(item.frame.t_capture) or self._write(item)
                if problem:
                    self._stop_by_itself(problem)
                    break
        except Exception as exc:  # a recording fault must never take the app down
            self._stop_by_itself(f"recording stopped: {type(exc).__name__}: {exc}")
        finally:
            self._close_segment()
            self._finish_manifest()

    def _stop_by_itself(self, reason: str) -> None:
        log.warning("%s", reason)
        self._recording = False
        with self._lock:
            self._stopped_because = reason
        while True:  # let go of what is queued (add() no longer queues anything)
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self.on_stop is not None:
            try:
                self.on_stop(reason)
            except Exception:
                log.exception("recorder: on_stop failed")

    def _check_disk(self, t: float) -> str:
        if t < self._next_free_check:
            return ""
        self._next_free_check = t + 1.0
        free = self._free_bytes()
        with self._lock:
            self._free = free
        if free is not None and free < self.min_free_bytes:
            return (f"recording stopped: the disk is nearly full ({free / 2**20:.0f} MB left); "
                    f"everything up to now is kept in {self.folder}")
        return ""

    def _free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.folder).free
        except OSError:
            return None

    def _write(self, item: _Item) -> str:
        frame, roi = item.frame, item.frame.roi
        image = frame.image if roi is None else roi.crop(frame.image)
        key = (image.shape[1], image.shape[0], image.ndim == 3)
        if (self._writer is None or key != self._segment_key
                or frame.t_capture - self._segment_t0 >= self.segment_s):
            self._close_segment()
            problem = self._open_segment(key, frame.t_capture)
            if problem:
                return problem
        bgr = (np.ascontiguousarray(image) if image.ndim == 2
               else cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        assert self._writer is not None
        self._writer.write(bgr)
        self._lines.append({
            "frame_id": frame.frame_id, "t_s": round(frame.t_capture - (self._t0 or 0.0), 4),
            "roi": None if roi is None else [roi.x, roi.y, roi.w, roi.h],
            "pixel_spacing_mm": frame.pixel_spacing_mm, "shown": item.kind,
            "overlay": overlay_record(item.overlay, contours=True),
            "segment": segment_name(self._segment), "index": len(self._lines)})
        with self._lock:
            self._t_last = frame.t_capture
        return ""

    def _open_segment(self, key: tuple, t: float) -> str:
        self._segment += 1
        width, height, colour = key
        path = self._partial(self._segment)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), self.fps,
                                 (width, height), colour)
        if not writer.isOpened():
            return f"recording stopped: cannot write video into {self.folder}"
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, JPEG_QUALITY)
        self._writer, self._segment_key, self._segment_t0 = writer, key, t
        self._lines = []
        return ""

    def _partial(self, index: int) -> Path:
        return self.folder / f".{segment_name(index)}"  # hidden until complete

    def _close_segment(self) -> None:
        """Finish the open segment: the video under its final name, then its frame lines."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        lines, self._lines = self._lines, []
        try:
            _fsync_file(self._partial(self._segment))
            os.replace(self._partial(self._segment), self.folder / segment_name(self._segment))
            with (self.folder / FRAMES).open("a", encoding="utf-8") as fh:
                for line in lines:
                    fh.write(_json_line(line))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self._stop_by_itself(f"recording stopped: cannot write into {self.folder}: "
                                 f"{exc.strerror or exc}")
            return
        with self._lock:
            self._frames += len(lines)

    def _finish_manifest(self) -> None:
        status = self.status()
        self._manifest.update(ended=datetime.now().isoformat(timespec="seconds"),
                              frames=status.frames, seconds=status.seconds,
                              dropped=status.dropped,
                              stopped_because=status.stopped_because or None)
        try:
            write_atomically(self.folder / MANIFEST, json.dumps(self._manifest, indent=1) + "\n")
        except OSError as exc:
            log.warning("recording %s: cannot finish %s: %s", self.folder, MANIFEST, exc)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _json_line(line: dict) -> str:
    try:
        return json.dumps(line, allow_nan=False, separators=(",", ":")) + "\n"
    except ValueError:  # a non-finite number slipped through: keep the frame, not the overlay
        return json.dumps({**line, "overlay": None, "pixel_spacing_mm": None,
                           "note": "overlay not recorded: non-finite value"},
                          separators=(",", ":")) + "\n"


def default_recording_dir() -> Path:
    """Where recordings go unless told otherwise: beside the snapshots."""
    from sonoguide.pipeline.calibration import default_snapshot_dir

    return default_snapshot_dir() / "recordings" / time.strftime("%Y%m%d_%H%M%S")
