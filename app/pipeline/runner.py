"""The live session without a window: driven, counted, timed and reported.

Used by `sonoguide --headless` and the benchmarks; it drives the same LiveSession as the
window, so both see the same ROI, scale, areas and overlay decisions. Every frame id the
source published counts as input, including ids this loop never saw (the source's mailbox
replaced them): those count as dropped, the same as frames the worker's mailbox replaced.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from app.pipeline.frames import Frame, Segmentation
from app.pipeline.session import LiveSession, percentiles
from app.pipeline.timeline import AreaSample, area_sample, summarize
from app.sources.base import SourceState

SOURCE_START_TIMEOUT_S = 5.0  # no first frame within this: the source counts as failed
STALL_TIMEOUT_S = 3.0  # no new frame for this long after the first: stop and report
DRAIN_TIMEOUT_S = 2.0  # after the last frame, wait this long for its overlay
SLICE_S = 0.005  # headless loop: how often results are looked at between frames


def run_headless(session: LiveSession, max_frames: int | None = None, *,
                 duration_s: float | None = None, errors: list[str] | None = None,
                 model_info: dict | None = None, stop_event: threading.Event | None = None,
                 areas_out: list[AreaSample] | None = None) -> dict:
    """Drive `session` (its source set, its model set or None) until max_frames frames came
    in, duration_s passed, the source ended or failed, or stop_event is set. Starts and stops
    the source; stops the worker at the end.

    errors: problems met before the run (e.g. a model that failed to load), kept in the report.
    model_info: name/version to report when there is no model.
    areas_out: filled with the per-frame class areas of this run, in frame order (for CSV);
    the report's "areas" summarises them.
    """
    source = session.source
    if source is None:
        raise ValueError("the session has no source")
    worker = session.worker if session.model is not None else None
    errors = errors if errors is not None else []
    # only what the report needs: a long run must not hold every frame's label map
    results: list[_Done] = []
    results_lock = threading.Lock()

    def collect(seg: Segmentation) -> None:
        done = _Done(seg.frame_id, seg.latency_s, seg.t_done, area_sample(seg))
        with results_lock:
            results.append(done)

    if worker is not None:
        worker.add_listener(collect)
    stop_event = stop_event or threading.Event()
    first_id = last_id = first_seen_id = None
    seen = 0
    t_first = t_last = None
    t_start = time.monotonic()
    ended_by = "max_frames"
    frame_age_ms: list[float] = []
    # Ids rise by one per published frame, so the first id of this run is the count so far:
    # frames published before this loop saw its first one still count as input (and dropped).
    first_expected_id = source.frames_published
    source.start()
    session.reset_counts()
    try:
        while True:
            if stop_event.is_set():
                ended_by = "stopped"
                break
            if duration_s is not None and time.monotonic() - t_start >= duration_s:
                ended_by = "duration"
                break
            wait = SOURCE_START_TIMEOUT_S if first_id is None else STALL_TIMEOUT_S
            frame = _next_frame(session, wait, stop_event)
            if frame is None:
                state = source.status
                if stop_event.is_set():
                    ended_by = "stopped"
                elif state.state in (SourceState.ENDED, SourceState.ERROR):
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
            worker.remove_listener(collect)
    if status.state in (SourceState.ERROR, SourceState.NO_SIGNAL):
        errors.append(f"source {source.name}: {status.state.value}: {status.message}")

    frames_in = 0 if first_id is None else last_id - first_id + 1
    with results_lock:
        done = [r for r in results if first_id is not None and first_id <= r.frame_id <= last_id]
    done.sort(key=lambda r: r.frame_id)
    areas = [r.areas for r in done]
    if areas_out is not None:
        areas_out.extend(areas)
    latencies = [r.latency_s * 1000.0 for r in done]
    span_in = (t_last - t_first) if t_first is not None and t_last is not None else 0.0
    span_out = (done[-1].t_done - done[0].t_done) if len(done) >= 2 else 0.0
    segmenter = session.model.segmenter if session.model is not None else None
    roi = session.area.roi
    return {
        "source": source.name,
        "source_state": status.state.value,
        "ended_by": ended_by,
        "frames_in": frames_in,
        "frames_seen": seen,
        "frames_inferred": len(done),
        "frames_dropped": frames_in - len(done),
        "inferred_fraction": round(len(done) / frames_in, 4) if frames_in else 0.0,
        "input_fps": round((last_id - first_seen_id) / span_in, 2) if span_in > 0 else 0.0,
        "inference_fps": round((len(done) - 1) / span_out, 2) if span_out > 0 else 0.0,
        "latency_ms": percentiles(latencies),
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
        "areas": summarize(areas),
        "errors": errors,
    }


@dataclass(frozen=True)
class _Done:
    frame_id: int
    latency_s: float
    t_done: float
    areas: AreaSample


def _next_frame(session: LiveSession, wait: float,
                stop_event: threading.Event) -> Frame | None:
    """The next new frame, waiting in short slices so a stop request is seen promptly and a
    result that lands meanwhile still reaches the frame it belongs to (session.show())."""
    source = session.source
    deadline = time.monotonic() + wait
    while not stop_event.is_set():
        frame = session.wait_pull(min(SLICE_S, max(0.0, deadline - time.monotonic())))
        if frame is not None:
            return frame
        session.show()
        state = source.status.state
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
