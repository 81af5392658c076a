"""Video file source (mp4/avi/mkv/mov): plays a recorded scan as if it were live.

Frames are paced at the file's own frame rate from a monotonic anchor (frame k is due at
anchor_t + (k - anchor_k) / fps), so timing never drifts while it keeps up; after a hiccup it
re-anchors rather than bursting to catch up. Controls (pause, seek, step, loop) are requests
the producer thread carries out, so the caller never blocks on decoding; a seek or step
publishes the frame it lands on at once, paused or not.

"Analyse every frame" (for replaying a clip to teach): a live source only ever offers its newest
frame, so a model slower than the clip skips frames. With `analyse_every_frame` on, the producer
holds each played frame until the consumer says its analysis is done (`frame_done(frame_id)`),
so playback slows to the model's pace instead of losing overlays; it never runs faster than the
file's fps, and after ANALYSIS_WAIT_S without an answer it moves on (`frames_not_analysed`).
`playback_rate` says how fast it really plays (1.0 = real time).
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

import cv2

from sonoguide.sources.base import FrameSource, SourceState
from sonoguide.sources.capture import to_rgb

# FFmpeg prints every decode hiccup of a damaged clip to stderr (once per loop); the status
# message already says what is wrong. Read once, when OpenCV first opens a file; a user's own
# setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

FALLBACK_FPS = 30.0
MAX_PLAUSIBLE_FPS = 240.0  # some containers report 1000 (a time base), not a frame rate
# Further behind than this many frame periods (a slow decode, a hiccup, a cold start):
# re-anchor instead of catching up. A catch-up burst puts frames out within a few ms of each
# other, which no viewer sees (each replaces the last before it is drawn) and which a model
# analysing every frame would have to chew through; half a period keeps every gap >= half one.
MAX_LAG_PERIODS = 0.5
IDLE_WAIT_S = 0.1  # how long a paused/ended thread sleeps between checks of its requests
ANALYSIS_WAIT_S = 3.0  # analyse_every_frame: longest hold for one frame's analysis, then move on
RATE_WINDOW_S = 2.0  # playback_rate: frames published over about this long


@dataclass(frozen=True)
class _Seek:
    frame: int


@dataclass(frozen=True)
class _Step:
    delta: int


class FileSource(FrameSource):
    def __init__(self, path: str | Path, loop: bool = True) -> None:
        self.path = Path(path)
        super().__init__(name=f"file:{self.path.name}")
        self._lock = threading.Lock()
        self._wake = threading.Event()  # set on every request and on stop()
        self._loop = loop
        self._paused = False
        self._request: _Seek | _Step | None = None
        self._fps = FALLBACK_FPS
        self._frame_count: int | None = None
        self._index = -1  # index of the frame last published
        self._stamp: tuple[int, int] | None = None  # (size, mtime) when opened
        # analyse every frame (all under self._lock but the flag, which is a plain bool)
        self._analyse_every_frame = False
        self._done_id = -1  # highest frame id the consumer said it has analysed
        self._awaited_id: int | None = None  # frame id the producer is holding playback for
        self._shown_id = -1  # frame id of the frame last published
        self._play_times: deque[float] = deque(maxlen=int(RATE_WINDOW_S * MAX_PLAUSIBLE_FPS) + 2)
        self.frames_not_analysed = 0  # frames played on after ANALYSIS_WAIT_S without an answer
        self.analysis_wait_s = ANALYSIS_WAIT_S
        self._open_error = self._probe()

    # --- controls (any thread) -------------------------------------------------------------
    @property
    def loop(self) -> bool:
        return self._loop

    @loop.setter
    def loop(self, value: bool) -> None:
        self._loop = bool(value)
        self._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True
        self._wake.set()

    def resume(self) -> None:
        self._paused = False
        self._wake.set()

    def toggle_pause(self) -> None:
        self.resume() if self._paused else self.pause()

    @property
    def analyse_every_frame(self) -> bool:
        """On: playback waits for each frame's analysis (frame_done) before the next one."""
        return self._analyse_every_frame

    @analyse_every_frame.setter
    def analyse_every_frame(self, value: bool) -> None:
        self._analyse_every_frame = bool(value)
        self._wake.set()  # turning it off releases a wait at once

    def frame_done(self, frame_id: int) -> None:
        """The consumer has finished analysing every frame up to `frame_id` (any thread)."""
        with self._lock:
            if frame_id <= self._done_id:
                return
            self._done_id = int(frame_id)
            release = self._awaited_id is not None and self._done_id >= self._awaited_id
        if release:
            self._wake.set()

    @property
    def waiting_for_analysis(self) -> bool:
        """True while playback is held for the analysis of the frame on screen."""
        with self._lock:
            return self._awaited_id is not None

    @property
    def playback_rate(self) -> float:
        """Frames per second achieved over the last ~RATE_WINDOW_S / the file's fps (1.0 = real
        time, less when analyse_every_frame waits for a slower model); 0.0 unless playing."""
        if self._paused or not self.running or self.status.state is not SourceState.LIVE:
            return 0.0
        with self._lock:
            times = list(self._play_times)
        if not times:
            return 0.0
        now = self._clock()
        recent = [t for t in times if t >= now - RATE_WINDOW_S] or times[-1:]
        # n frames from recent[0] on fill n periods (the last one its own); once the frame on
        # screen stays longer than that (a model that does not answer) the rate falls as it lasts
        span = max(recent[-1] - recent[0] + 1.0 / self._fps, now - recent[0])
        return min(len(recent) / span / self._fps, 1.0)

    def seek(self, seconds: float) -> None:
        """Jump to `seconds` (clamped into the clip); shows that frame even while paused."""
        if not math.isfinite(seconds):
            return
        self._request_(_Seek(max(0, int(round(seconds * self._fps)))))

    def step(self, n: int = 1) -> None:
        """Pause and move `n` frames (negative: backward); shows the frame it lands on."""
        self._paused = True
        self._request_(_Step(int(n)))

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def position_s(self) -> float:
        return max(self._index, 0) / self._fps

    @property
    def duration_s(self) -> float | None:
        """Clip length from its header; None when the container does not say."""
        return None if self._frame_count is None else self._frame_count / self._fps

    def stop(self, timeout: float = 2.0) -> None:
        self._stop_event.set()
        self._wake.set()
        super().stop(timeout)

    def _request_(self, request: _Seek | _Step) -> None:
        with self._lock:
            self._request = request  # a newer request replaces an unserved one
        self._wake.set()

    def _take_request(self) -> _Seek | _Step | None:
        with self._lock:
            request, self._request = self._request, None
        return request

    # --- producer thread -------------------------------------------------------------------
    def _probe(self) -> str | None:
        """Read fps / length / size up front so the UI can show them before playback."""
        cap = self._open()
        if isinstance(cap, str):
            self._set_status(SourceState.ERROR, cap, path=str(self.path))
            return cap
        try:
            fps = cap.get(cv2.CAP_PROP_FPS)
            if math.isfinite(fps) and 0 < fps <= MAX_PLAUSIBLE_FPS:
                self._fps = float(fps)
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            if math.isfinite(count) and count > 0:
                self._frame_count = int(count)
            self._set_status(
                SourceState.STARTING, f"opening {self.path.name}", path=str(self.path),
                fps=self._fps, width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), frame_count=self._frame_count,
                duration_s=self.duration_s)
        finally:
            cap.release()
        return None

    def _file_changed(self) -> bool:
        """Has the file been removed, cut or rewritten since it was opened?"""
        try:
            stat = self.path.stat()
        except OSError:
            return True
        return self._stamp is not None and (stat.st_size, stat.st_mtime_ns) != self._stamp

    def _open(self) -> cv2.VideoCapture | str:
        """An opened capture, or a message saying why this file cannot be played."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return f"video file not found: {self.path}"
        except OSError as exc:  # a name too long, a folder we may not read, ...
            return f"cannot open {self.path.name[:60]}: {exc.strerror or exc}"
        if not S_ISREG(stat.st_mode):
            return f"not a file: {self.path}"
        try:
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
            if not cap.isOpened():
                cap = cv2.VideoCapture(str(self.path))  # let OpenCV try its other backends
        except cv2.error as exc:
            return f"cannot open {self.path.name}: {exc}"
        if not cap.isOpened():
            return f"cannot play {self.path.name}: not a video or the file is corrupt"
        self._stamp = (stat.st_size, stat.st_mtime_ns)
        return cap

    def _run(self) -> None:
        if self._open_error is not None:
            return
        while not self._stop_event.is_set():
            cap = self._open()
            if isinstance(cap, str):
                self._set_status(SourceState.ERROR, cap)
                return
            try:
                rewind_failed = self._play(cap)
            finally:
                cap.release()
            if not rewind_failed:
                return
            # some containers cannot seek back to frame 0: loop by opening the file afresh

    def _play(self, cap: cv2.VideoCapture) -> bool:
        try:
            return self._play_loop(cap)
        finally:
            self._hold_for(None)

    def _play_loop(self, cap: cv2.VideoCapture) -> bool:
        """Play until stopped (False), or until a rewind to frame 0 found nothing to read
        after this pass had shown frames (True: the caller opens the file again)."""
        next_index = 0  # the frame cap.read() returns next
        played = False  # has this pass shown a frame (then a failed rewind is the
        # container's fault, not a clip without frames)
        still = False  # a single-frame file (a PNG, a 1-frame clip): shown once and kept
        anchor: tuple[float, int] | None = None  # (monotonic t, frame index) pacing origin
        ended = False
        hold: tuple[int, float] | None = None  # analyse_every_frame: (frame id, t wait began)
        while not self._stop_event.is_set():
            request = self._take_request()
            if request is not None:
                target = self._target_of(request)
                if target != next_index:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, target)
                    next_index = target
                if self._show_next(cap, next_index):
                    next_index += 1
                    ended = False
                    # playback goes on from here at real speed, next frame one period later
                    anchor = (self._clock(), next_index - 1)
                else:
                    ended, anchor = True, None  # past the readable end
                self._report_state(ended)
                continue
            if self._paused or ended:
                self._report_state(ended)
                anchor, hold = None, None  # resume from the moment of resuming, no catch-up
                self._hold_for(None)
                with self._lock:
                    self._play_times.clear()  # the rate starts afresh on resuming
                self._wake.wait(IDLE_WAIT_S)
                self._wake.clear()
                if ended and self._loop and not self._paused and not still:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    next_index, ended, anchor = 0, False, None
                continue
            if self._analyse_every_frame or hold is not None:
                hold, wait_s = self._analysis_hold(hold)
                if wait_s > 0:
                    self._report_state(False)  # playing (resumed), if held for the model
                    self._wake.wait(wait_s)
                    self._wake.clear()
                    continue  # answered, timed out, toggled off, or a request / pause / stop
            now = self._clock()
            hold = None  # a hold is over: the next frame is due (late ones re-anchor just below)
            if anchor is None or now - self._due(anchor, next_index) > MAX_LAG_PERIODS / self._fps:
                anchor = (now, next_index)
            due = self._due(anchor, next_index)
            if due > now:
                self._wake.wait(due - now)
                self._wake.clear()
                if self._clock() < due:
                    continue  # woken by a request or stop(): handle it first
            if self._show_next(cap, next_index):
                next_index += 1
                played = True
                self._report_state(False)
                continue
            if self._file_changed():
                # emptied, cut or replaced under us: stop on the last frame rather than loop
                # whatever FFmpeg still had buffered as if it were the clip
                self._set_status(SourceState.ERROR, f"{self.path.name} can no longer be read "
                                 "(changed or removed while playing); open it again")
                return False
            if next_index == 0:
                if played:
                    return True
                self._set_status(SourceState.ERROR,
                                 f"cannot play {self.path.name}: no readable frames")
                return False
            if next_index == 1 and self._index == 0 and (self._frame_count or 1) <= 1:
                # one frame and no more: a still image, not a one-frame film to loop
                still, ended = True, True
                self._set_status(SourceState.ENDED, f"still image: {self.path.name}",
                                 still=True, frame_count=1)
                continue
            if self._frame_count is not None and next_index < self._frame_count - 1:
                self._frame_count = next_index  # truncated: only this much is playable
                warning = (f"{self.path.name} is cut off after {next_index / self._fps:.1f} s "
                           "(truncated or corrupt)")
                self._set_status(SourceState.ENDED, warning, warning=warning,
                                 frame_count=next_index, duration_s=self.duration_s)
            if self._loop:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                # frame 0 takes the slot the missing frame would have had: no gap, no drift
                next_index, anchor = 0, (due, 0)
            else:
                ended = True
                self._report_state(True)
        return False

    def _analysis_hold(self, hold: tuple[int, float] | None
                       ) -> tuple[tuple[int, float] | None, float]:
        """Playback with analyse_every_frame: should the frame on screen stay until its
        analysis is done? Returns (hold, seconds to wait, 0 to play on); the hold is kept
        across the caller's loop so a frame's wait is timed from when it began."""
        shown = self._shown_id
        if not self._analyse_every_frame or shown < 0:
            self._hold_for(None)
            return hold, 0.0
        if not self._hold_for(shown):
            return hold, 0.0  # already analysed
        if hold is None or hold[0] != shown:
            hold = (shown, self._clock())  # a new frame to wait for (played, or a seek)
        left = hold[1] + self.analysis_wait_s - self._clock()
        if left > 0:
            return hold, left
        self.frames_not_analysed += 1  # a stuck consumer must not freeze playback
        with self._lock:
            self._done_id = max(self._done_id, shown)  # given up on: no second wait for it
            self._awaited_id = None
        return hold, 0.0

    def _hold_for(self, frame_id: int | None) -> bool:
        """Say which frame's analysis playback waits for (None: none); False if it is done."""
        with self._lock:
            if frame_id is not None and self._done_id >= frame_id:
                frame_id = None
            self._awaited_id = frame_id
            return frame_id is not None

    def _due(self, anchor: tuple[float, int], index: int) -> float:
        return anchor[0] + (index - anchor[1]) / self._fps

    def _target_of(self, request: _Seek | _Step) -> int:
        target = request.frame if isinstance(request, _Seek) else self._index + request.delta
        last = None if self._frame_count is None else self._frame_count - 1
        return max(0, target if last is None else min(target, last))

    def _show_next(self, cap: cv2.VideoCapture, index: int) -> bool:
        ok, image = cap.read()
        if not ok or image is None:
            return False
        self._index = index
        frame = self._publish(to_rgb(image), frame_index=index, position_s=index / self._fps)
        self._shown_id = frame.frame_id
        if not self._paused:
            with self._lock:
                self._play_times.append(frame.t_capture)
        return True

    def _report_state(self, ended: bool) -> None:
        if ended:
            if self.status.state is not SourceState.ENDED:
                self._set_status(SourceState.ENDED, f"end of {self.path.name}")
        elif self._paused:
            if self.status.state is not SourceState.PAUSED:
                self._set_status(SourceState.PAUSED, f"paused: {self.path.name}")
        elif self.status.state is not SourceState.LIVE:
            self._set_status(SourceState.LIVE, f"playing {self.path.name}")
