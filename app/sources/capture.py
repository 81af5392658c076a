"""Capture card source: the scanner's video output through OpenCV VideoCapture.

The producer thread reads continuously, so the driver's buffer never hands over a stale frame
and readers always get the newest one. When the cable is pulled (read fails or raises) the last
frame stays visible, the status says "no signal", and the thread releases and reopens the device
by itself with exponential backoff until frames come again; nothing ever raises into the app and
stop() returns promptly even mid-backoff.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import cv2
import numpy as np

from sonoguide.sources.base import FrameSource, SourceState, SourceStatus

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.25
# Longest wait between reopen attempts. A card plugged back in is found at the next attempt, so
# the worst reconnect is this plus a failed and a good open (up to ~1 s each on slow drivers):
# at 2 s that stays within the 4 s a user accepts; at 4 s it could reach 6 s.
BACKOFF_MAX_S = 2.0
RATE_WINDOW_S = 1.0  # how often the measured frame rate in the status is refreshed
STALE_AFTER_S = 1.0  # LIVE but no new frame for this long (driver stuck in read): no signal
NO_SIGNAL = "no signal"


class VideoCaptureLike(Protocol):
    """The part of cv2.VideoCapture this source uses (tests pass fakes)."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def set(self, prop_id: int, value: float) -> bool: ...
    def get(self, prop_id: int) -> float: ...
    def release(self) -> None: ...


# opener(index, backend) -> capture; cv2.VideoCapture by default
Opener = Callable[[int, int], VideoCaptureLike]


def default_backend() -> int:
    """The capture API that handles capture cards best on this OS."""
    if sys.platform.startswith("linux"):
        return cv2.CAP_V4L2
    if sys.platform == "win32":
        return cv2.CAP_DSHOW  # opens fast and honours MJPG on most cards (MSMF often does not)
    if sys.platform == "darwin":
        return cv2.CAP_AVFOUNDATION
    return cv2.CAP_ANY


def backend_name(backend: int) -> str:
    try:
        return cv2.videoio_registry.getBackendName(backend)
    except cv2.error:
        return str(backend)


def fourcc_to_str(value: float) -> str:
    code = int(value)
    if code <= 0:
        return ""
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ")


def to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR / BGRA / one-channel image -> Frame's RGB or gray."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


_log_lock = threading.Lock()
_log_depth = 0
_log_saved = 0


@contextlib.contextmanager
def quiet_opencv_logs() -> Iterator[None]:
    """Silence OpenCV's "can't open camera by index" warnings while probing/reopening.

    The level is process-wide, so nested or concurrent users share one save/restore.
    """
    global _log_depth, _log_saved
    with _log_lock:
        if _log_depth == 0:
            _log_saved = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        _log_depth += 1
    try:
        yield
    finally:
        with _log_lock:
            _log_depth -= 1
            if _log_depth == 0:
                cv2.utils.logging.setLogLevel(_log_saved)


def _cv2_opener(index: int, backend: int) -> VideoCaptureLike:
    return cv2.VideoCapture(index, backend)


class CaptureSource(FrameSource):
    backoff_start_s = BACKOFF_START_S  # reopen delays double from start to max while unplugged
    backoff_max_s = BACKOFF_MAX_S

    def __init__(self, index: int = 0, width: int = 1920, height: int = 1080, fps: float = 60,
                 fourcc: str = "MJPG", backend: int | None = None,
                 opener: Opener | None = None) -> None:
        super().__init__(name=f"camera:{index}", nominal_fps=float(fps))
        self.index = index
        self.requested = (int(width), int(height), float(fps), fourcc)
        self.backend = default_backend() if backend is None else backend
        self._opener: Opener = opener or _cv2_opener
        self.reconnects = 0  # how often the device was reopened after a loss

    @property
    def status(self) -> SourceStatus:
        """As the base reports it, except that a LIVE source whose newest frame is older than
        STALE_AFTER_S says "no signal": a driver can hang inside read() for seconds after the
        cable is pulled, and the frozen image must not pass for a live one."""
        status = super().status
        if status.state is SourceState.LIVE:
            frame = self.latest()
            age = None if frame is None else time.monotonic() - frame.t_capture
            if age is not None and age > STALE_AFTER_S:
                return SourceStatus(SourceState.NO_SIGNAL, NO_SIGNAL,
                                    {**status.info, "detail": f"no frame for {age:.1f} s"})
        return status

    # --- producer thread -------------------------------------------------------------------
    def _run(self) -> None:
        backoff = self.backoff_start_s
        first = True
        while not self._stop_event.is_set():
            if not first:
                self.reconnects += 1
            first = False
            cap = self._connect()
            got_frames = False
            if cap is not None:
                try:
                    got_frames = self._pump(cap)
                finally:
                    self._release(cap)
            if self._stop_event.is_set():
                break
            if got_frames:
                backoff = self.backoff_start_s  # it worked a moment ago: retry soon
            self._set_status(SourceState.NO_SIGNAL, NO_SIGNAL, retry_in_s=backoff)
            if self._stop_event.wait(backoff):
                break
            backoff = min(backoff * 2, self.backoff_max_s)

    def _connect(self) -> VideoCaptureLike | None:
        """Open and configure the device; None (status says why) when it does not open."""
        try:
            with quiet_opencv_logs():
                cap = self._opener(self.index, self.backend)
                if not cap.isOpened():
                    self._release(cap)
                    self._set_status(SourceState.NO_SIGNAL, NO_SIGNAL,
                                     detail=f"cannot open capture device {self.index} "
                                            f"({backend_name(self.backend)})")
                    return None
                self._configure(cap)
        except Exception as exc:  # a driver fault must not end the retry loop
            self._set_status(SourceState.NO_SIGNAL, NO_SIGNAL,
                             detail=f"opening device {self.index} failed: {exc}")
            return None
        return cap

    def _configure(self, cap: VideoCaptureLike) -> None:
        """Ask for size/rate/format, then report what the driver actually granted."""
        width, height, fps, fourcc = self.requested
        # FOURCC first: V4L2 drivers pick the modes available for the current format
        wishes = [(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc)) if len(fourcc) == 4
                  else None,
                  (cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                  (cv2.CAP_PROP_FPS, fps), (cv2.CAP_PROP_BUFFERSIZE, 1)]
        for wish in wishes:
            if wish is None:
                continue
            try:
                cap.set(*wish)
            except Exception:  # unsupported property on this backend: keep its default
                log.debug("capture %d: cannot set property %s", self.index, wish[0])
        self._set_status(
            SourceState.STARTING, f"opened capture device {self.index}",
            width=int(self._get(cap, cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._get(cap, cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=round(self._get(cap, cv2.CAP_PROP_FPS), 2),
            fourcc=fourcc_to_str(self._get(cap, cv2.CAP_PROP_FOURCC)),
            backend=backend_name(self.backend),
            requested=f"{width}x{height}@{fps:g} {fourcc}", detail="")

    def _pump(self, cap: VideoCaptureLike) -> bool:
        """Read and publish until the signal is lost or stop(); True if any frame came."""
        got = 0
        window_start, window_frames = time.monotonic(), 0
        while not self._stop_event.is_set():
            try:
                ok, image = cap.read()
            except Exception as exc:
                log.warning("capture %d: read raised %s", self.index, exc)
                ok, image = False, None
            if not ok or image is None or image.size == 0:
                return got > 0
            t = time.monotonic()
            self._publish(to_rgb(image), t)
            got += 1
            window_frames += 1
            if got == 1:
                self._set_status(SourceState.LIVE, f"live: capture device {self.index}",
                                 width=int(image.shape[1]), height=int(image.shape[0]),
                                 retry_in_s=None)
            elif t - window_start >= RATE_WINDOW_S:
                self._set_status(SourceState.LIVE, super().status.message,
                                 measured_fps=round(window_frames / (t - window_start), 1))
                window_start, window_frames = t, 0
        return got > 0

    @staticmethod
    def _get(cap: VideoCaptureLike, prop: int) -> float:
        try:
            return float(cap.get(prop))
        except Exception:
            return 0.0

    @staticmethod
    def _release(cap: VideoCaptureLike) -> None:
        try:
            cap.release()
        except Exception:
            log.debug("release of a capture device failed", exc_info=True)
