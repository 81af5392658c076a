"""The one interface every frame source speaks (capture card, video file, phantom).

A source runs its own producer thread and publishes only its newest frame into a one-slot
mailbox; readers never see a backlog. Frame ids rise by one per published frame and
timestamps come from time.monotonic() at capture.
"""

from __future__ import annotations

import enum
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sonoguide.pipeline.frames import Frame, as_frame_image
from sonoguide.pipeline.slot import LatestSlot


class SourceState(enum.Enum):
    STARTING = "starting"
    LIVE = "live"
    PAUSED = "paused"
    NO_SIGNAL = "no signal"  # capture lost; the source retries by itself
    ENDED = "ended"  # a file played to its end without loop
    ERROR = "error"  # cannot produce frames at all (unreadable path, corrupt clip)


@dataclass(frozen=True)
class SourceStatus:
    state: SourceState
    message: str = ""
    info: dict = field(default_factory=dict)  # e.g. granted width/height/fps/fourcc


class FrameSource(ABC):
    """Base class: subclasses implement `_run()`, calling `_publish()` per frame and checking
    `self._stop_event` often enough to stop within ~100 ms."""

    def __init__(self, name: str, nominal_fps: float | None = None) -> None:
        self.name = name
        self.nominal_fps = nominal_fps
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = SourceStatus(SourceState.STARTING)
        self._status_lock = threading.Lock()
        self._next_id = 0
        self.frames_published = 0
        self._on_publish: list[Callable[[], None]] = []
        # the time frames are stamped and paced with (tests put a fake clock here)
        self._clock: Callable[[], float] = time.monotonic

    # --- consumer side -------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run_guarded, name=f"source:{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop_event.set()
        self._slot.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def add_publish_listener(self, callback: Callable[[], None]) -> None:
        """callback() on the producer thread right after each new frame: a viewer can pull it
        at once instead of finding it at its next poll (keep it short: emit a signal)."""
        self._on_publish.append(callback)

    def latest(self) -> Frame | None:
        """Newest frame, never blocks."""
        return self._slot.peek()

    def wait_frame(self, after_id: int, timeout: float) -> Frame | None:
        """Newest frame with frame_id > after_id, waiting up to `timeout` s; else None."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._slot.peek()
            if frame is not None and frame.frame_id > after_id:
                return frame
            left = deadline - time.monotonic()
            if left <= 0 or self._stop_event.is_set():
                return None
            self._slot.wait_newer(self._slot.seq, min(left, 0.05))

    @property
    def status(self) -> SourceStatus:
        with self._status_lock:
            return self._status

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- producer side -------------------------------------------------------------------
    @abstractmethod
    def _run(self) -> None:
        """Produce frames until self._stop_event is set (or the source ends)."""

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a source fault must never take the app down
            self._set_status(SourceState.ERROR, f"{type(exc).__name__}: {exc}")

    def _set_status(self, state: SourceState, message: str = "", **info: object) -> None:
        with self._status_lock:
            merged = dict(self._status.info)
            merged.update(info)
            self._status = SourceStatus(state, message, merged)

    def _publish(self, image: np.ndarray, t_capture: float | None = None, *,
                 pixel_spacing_mm: float | None = None, truth: np.ndarray | None = None,
                 **meta: object) -> Frame:
        frame = Frame(
            image=as_frame_image(image),  # every source hands over only uint8 grey or RGB
            frame_id=self._next_id,
            t_capture=self._clock() if t_capture is None else t_capture,
            source=self.name,
            pixel_spacing_mm=pixel_spacing_mm,
            truth=truth,
            meta=dict(meta),
        )
        self._next_id += 1
        self.frames_published += 1
        self._slot.put(frame)
        for callback in list(self._on_publish):
            try:
                callback()
            except Exception:  # a viewer's fault must not stop the source
                pass
        return frame

    def _sleep_until(self, t: float) -> bool:
        """Pace to a monotonic deadline; False if asked to stop meanwhile."""
        return not self._stop_event.wait(max(0.0, t - time.monotonic()))
