"""The live session without a window: driven, counted, timed and reported.

Used by `sonoguide --headless` and the benchmarks; it drives the same LiveSession as the
window, so both see the same ROI, scale, areas and overlay decisions. Every frame id the
source published counts as input, including ids this loop never saw (the source's mailbox
replaced them): those count as dropped, the same as frames the worker's mailbox replaced.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sonoguide.pipeline.frames import Frame, Segmentation
from sonoguide.pipeline.session import STATS_KEPT, LiveSession, percentiles
from sonoguide.pipeline.timeline import AreaSample, AreaSummary, area_sample
from sonoguide.sources.base import SourceState, SourceStatus

SOURCE_START_TIMEOUT_S = 5.0  # no first frame within this: the source counts as failed
STALL_TIMEOUT_S = 3.0  # no new frame for this long after the first: stop and report
DRAIN_TIMEOUT_S = 2.0  # after the last frame, wait this long for its overlay
SLICE_S = 0.005  # headless loop: how often results are looked at between frames


def run_headless(session: LiveSession, max_frames: int | None = None, *,
                 duration_s: float | None = None, errors: list[str] | None = None,
                 model_info: dict | None = None, stop_event: threading.Event | None = None,
                 on_area: Callable[[AreaSample], None] | None = None,
                 stop_reason: Callable[[], str] | None = None) -> dict:
    """Drive `session` (its source set, its model set or None) until max_frames frames came
    in, duration_s passed, the source ended or failed, or stop_event is set. Starts and stops
    the source; stops the worker at the end. A live source that lost its signal (capture card
    unplugged) is waited for: it reconnects by itself, and the report counts the dropouts.

    errors: problems met before the run (e.g. a model that failed to load), kept in the report.
    model_info: name/version to report when there is no model.
    on_area: called with each inferred frame's class areas, in frame order (e.g. TimelineCsv);
    the report's "areas" summarises them.
    stop_reason: what ended the run when stop_event was set (default "stopped").

    Memory stays flat however long it runs: per-frame figures are running statistics or the
    newest STATS_KEPT values (percentiles say over how many).
    """
    source = session.source
    if source is None:
        raise ValueError("the session has no source")
    worker = session.worker if session.model is not None else None
    errors = errors if errors is not None else []
    # Ids rise by one per published frame, so the first id of this run is the count so far:
    # frames published before this loop saw its first one still count as input (and dropped).
    first_expected_id = source.frames_published
    tally = _Tally(first_expected_id, on_area)
    if worker is not None:
        worker.add_listener(tally.collect)
    stop_event = stop_event or threading.Event()
    first_id = last_id = first_seen_id = None
    seen = 0
    t_first = t_last = None
    t_start = time.monotonic()
    ended_by = "max_frames"
    frame_age_ms: collections.deque[float] = collections.deque(maxlen=STATS_KEPT)
    dropouts = _Dropouts()
    source.start()
    session.reset_counts()
    try:
        while True:
            tally.absorb()
            if stop_event.is_set():
                ended_by = stop_reason() if stop_reason is not None else "stopped"
                break
            if duration_s is not None and time.monotonic() - t_start >= duration_s:
                ended_by = "duration"
                break
            wait = SOURCE_START_TIMEOUT_S if first_id is None else STALL_TIMEOUT_S
            frame = _next_frame(session, wait, stop_event, dropouts.follow)
            if frame is None:
                state = source.status
                if stop_event.is_set():
                    continue  # the top of the loop says why
                if first_id is not None and state.state is SourceState.NO_SIGNAL:
                    continue  # unplugged: the source reconnects by itself; wait for it
                if state.state in (SourceState.ENDED, SourceState.ERROR):
                    ended_by = f"source {state.state.value}"
                else:
                    ended_by = "source stalled"
                    errors.append(f"source {source.name}: no new frame for {wait:.0f} s "
                                  f"(state: {state.state.value}"
                                  f"{': ' + state.message if state.message else ''})")
                break
            frame_age_ms.append(1000.0 * (time.monotonic() - frame.t_capture))
            session.show()
            if first_id is None:
                first_id = min(first_expected_id, frame.frame_id)
                first_seen_id, t_first = frame.frame_id, frame.t_capture
            last_id, t_last = frame.frame_id, frame.t_capture
            seen += 1
            if max_frames is not None and last_id - first_id + 1 >= max_frames:
                break
    finally:
        if worker is not None:
            _drain(worker, last_id)
            session.show()  # the last frame's own result counts for it
            errors.extend(f"inference: {e}" for e in worker.errors)
        status = source.status
        session.stop()
        if worker is not None:
            worker.remove_listener(tally.collect)
        tally.absorb()
    if status.state in (SourceState.ERROR, SourceState.NO_SIGNAL):
        errors.append(f"source {source.name}: {status.state.value}: {status.message}")
    warning = status.info.get("warning")
    if warning:
        errors.append(f"source {source.name}: {warning}")

    frames_in = 0 if first_id is None else last_id - first_id + 1
    done = tally.frames if first_id is not None else 0
    span_in = (t_last - t_first) if t_first is not None and t_last is not None else 0.0
    span_out = tally.t_done_last - tally.t_done_first if done >= 2 else 0.0
    segmenter = session.model.segmenter if session.model is not None else None
    roi = session.area.roi
    return {
        "source": source.name,
        "source_state": status.state.value,
        "source_warning": warning or None,
        "ended_by": ended_by,
        "frames_in": frames_in,
        "frames_seen": seen,
        "frames_inferred": done,
        "frames_dropped": frames_in - done,
        "inferred_fraction": round(done / frames_in, 4) if frames_in else 0.0,
        "input_fps": round((last_id - first_seen_id) / span_in, 2) if span_in > 0 else 0.0,
        "inference_fps": round((done - 1) / span_out, 2) if span_out > 0 else 0.0,
        "signal_lost": dropouts.as_dict(),
        # percentiles of the newest STATS_KEPT frames (all of them in runs shorter than that)
        "latency_ms": percentiles(tally.latency_ms),
        "inference_ms": percentiles(_inference_ms(worker)),
        # what a viewer would have seen: per frame shown, the best overlay it got
        "shown": session.display_counts().as_dict(),
        "overlay_age_ms": percentiles(session.overlay_age_ms),
        "frame_age_ms": percentiles(frame_age_ms),
        "flow_ms": percentiles(session.flow_ms),
        "follow": session.policy.follow,
        "budget_ms": round(1000.0 * session.policy.budget_s, 1),
        "analyse_every_frame": bool(getattr(source, "analyse_every_frame", False)),
        "roi": None if roi is None else [roi.x, roi.y, roi.w, roi.h],
        "pixel_spacing_mm": (session.current.pixel_spacing_mm
                             if session.current is not None else None),
        "provider": segmenter.provider if segmenter is not None else None,
        "provider_note": segmenter.provider_note if segmenter is not None else "",
        "model": ({"name": segmenter.name, "version": segmenter.contract.version,
                   "classes": list(segmenter.classes), "path": str(segmenter.path)}
                  if segmenter is not None else (model_info or None)),
        "mode": session.model.analyzer.mode if session.model is not None else None,
        "wall_s": round(time.monotonic() - t_start, 3),
        "areas": tally.areas.as_dict(),
        "errors": errors,
    }


class _Tally:
    """The run's results as running figures. The worker thread only appends to a queue
    (collect); the runner's loop folds the queue in (absorb), so the worker never waits on a
    CSV write and nothing per frame is kept beyond STATS_KEPT latencies."""

    def __init__(self, first_id: int, on_area: Callable[[AreaSample], None] | None) -> None:
        self._first_id = first_id
        self._on_area = on_area
        self._queue: collections.deque[_Done] = collections.deque()
        self.frames = 0
        self.t_done_first = self.t_done_last = 0.0
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=STATS_KEPT)
        self.areas = AreaSummary()

    def collect(self, seg: Segmentation) -> None:  # worker thread
        self._queue.append(_Done(seg.frame_id, seg.latency_s, seg.t_done, area_sample(seg)))

    def absorb(self) -> None:
        while self._queue:
            done = self._queue.popleft()
            if done.frame_id < self._first_id:
                continue  # a result of a frame from before this run
            if self.frames == 0:
                self.t_done_first = done.t_done
            self.frames += 1
            self.t_done_last = done.t_done
            self.latency_ms.append(1000.0 * done.latency_s)
            self.areas.add(done.areas)
            if self._on_area is not None:
                self._on_area(done.areas)


class _Dropouts:
    """How often and how long a live source had no signal during the run."""

    def __init__(self) -> None:
        self.count = 0
        self.total_s = 0.0
        self.longest_s = 0.0
        self._since: float | None = None

    def follow(self, status: SourceStatus) -> None:
        now = time.monotonic()
        if status.state is SourceState.NO_SIGNAL:
            if self._since is None:
                self._since, self.count = now, self.count + 1
        elif self._since is not None:
            self._close(now)

    def _close(self, now: float) -> None:
        lost = now - self._since
        self.total_s += lost
        self.longest_s = max(self.longest_s, lost)
        self._since = None

    def as_dict(self) -> dict:
        if self._since is not None:
            self._close(time.monotonic())
        return {"count": self.count, "total_s": round(self.total_s, 2),
                "longest_s": round(self.longest_s, 2)}


@dataclass(frozen=True)
class _Done:
    frame_id: int
    latency_s: float
    t_done: float
    areas: AreaSample


def _next_frame(session: LiveSession, wait: float, stop_event: threading.Event,
                on_status: Callable[[SourceStatus], None]) -> Frame | None:
    """The next new frame, waiting in short slices so a stop request is seen promptly and a
    result that lands meanwhile still reaches the frame it belongs to (session.show());
    on_status sees the source's status every slice."""
    source = session.source
    deadline = time.monotonic() + wait
    while not stop_event.is_set():
        frame = session.wait_pull(min(SLICE_S, max(0.0, deadline - time.monotonic())))
        status = source.status
        on_status(status)
        if frame is not None:
            return frame
        session.show()
        state = status.state
        if state in (SourceState.ENDED, SourceState.ERROR) or time.monotonic() >= deadline:
            return None
    return None


def _drain(worker: Any, last_id: int | None) -> None:
    """Give the frame submitted last the time to come out of the model."""
    if last_id is None:
        return
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        latest = worker.latest()
        if latest is not None and latest.frame_id >= last_id:
            return
        if worker.frames_inferred + worker.frames_dropped + worker.error_count \
                >= worker.frames_submitted:
            return
        time.sleep(0.005)


def _inference_ms(worker: Any) -> list[float]:
    return list(worker.inference_ms_history) if worker is not None else []
