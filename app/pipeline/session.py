"""The live session: source -> image area -> worker -> analysis -> "what to draw on this frame".

One Qt-free object wires the whole flow; the window (a view of it) and the headless runner
(`sonoguide --headless`, the benchmarks) drive the same object, so both see the same ROI,
scale, areas and overlay decisions for the same input.

The driver calls `pull()` whenever it wants the newest frame (the window's GUI tick, the
headless loop) and `show()` for what to draw on it. The model never holds the picture back:
`pull()` hands the frame to the inference worker's one-slot mailbox (newest wins) and returns at
once. A result is drawn on its own frame as it is; on a newer frame only moved there by the
image motion measured between the two frames, and never once it is older than the budget
(OverlayPolicy). A recorded clip may instead wait for the model on every frame
(`analyse_every_frame`), since nothing forces a replay to run in real time.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sonoguide.pipeline.frames import Frame, Segmentation
from sonoguide.pipeline.image_area import ImageArea
from sonoguide.pipeline.timeline import AreaTimeline
from sonoguide.sources.base import FrameSource

FRESH, FOLLOWED, HIDDEN, NO_MODEL = "fresh", "followed", "hidden", "no model"
FOLLOW_MOTION, HOLD, HIDE = "motion", "hold", "hide"  # what a result does on a newer frame
# A result older than this is never drawn. At 10-15 inferences/s results land 70-130 ms after
# their frame and are shown up to ~200 ms: with 150 ms the plexus overlay was hidden on a third
# of a 10/s sweep (shown Dice 0.59), with 250 ms on none (0.89; sonoguide.pipeline.shown_accuracy).
DEFAULT_BUDGET_S = 0.25
STATS_KEPT = 20_000  # per-frame figures kept for reports (about 11 minutes at 30 fps)
SUBMITTED_KEPT = 32  # frames given to the model, kept to tell a clip which one is done


class Worker(Protocol):
    """What the session needs from sonoguide.pipeline.worker.InferenceWorker."""

    def submit(self, frame: Frame) -> None: ...
    def latest(self) -> Segmentation | None: ...
    def add_listener(self, cb: Callable[[Segmentation], None]) -> None: ...
    def add_finished_listener(self, cb: Callable[[int], None]) -> None: ...
    def remove_listener(self, cb: Callable) -> None: ...
    def set_model(self, segmenter: Any, analyzer: Any) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class Shown:
    """What to draw on one displayed frame."""

    frame: Frame
    overlay: Segmentation | None  # None: draw no overlay
    kind: str  # FRESH (the model's result for this very frame), FOLLOWED (moved here), HIDDEN,
    # NO_MODEL
    lagging: bool = False  # hidden because the model's newest answer is too old
    reason: str = ""  # why hidden, in a few words for the banner
    age_s: float | None = None  # this frame's capture time minus the analysed frame's
    flow_ms: float | None = None  # cost of measuring the motion, when it was measured


class OverlayPolicy:
    """Decides what may be drawn on a frame from the newest result. No clock: the frames' own
    capture times decide, so a simulated timeline (shown_accuracy) gets the same decisions.

    budget_s: a result older than this (capture time of the shown frame minus that of the
      analysed frame) is never drawn: the anatomy may have changed in ways no motion model
      captures (a vein compressing, the needle moving).
    follow: FOLLOW_MOTION moves a result to the newer frame by measured image motion and hides
      it when the motion cannot be measured; HOLD draws it unmoved within the budget (the
      behaviour before motion following, kept for comparison); HIDE draws results on their own
      frame only.
    """

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S, follow: str = FOLLOW_MOTION, *,
                 chain: Any = None, warmup_s: float = 1.0) -> None:
        if follow not in (FOLLOW_MOTION, HOLD, HIDE):
            raise ValueError(f"follow must be {FOLLOW_MOTION}, {HOLD} or {HIDE}, got {follow!r}")
        if not budget_s > 0:
            raise ValueError(f"budget_s must be > 0, got {budget_s}")
        self.budget_s = budget_s
        self.follow = follow
        self.warmup_s = warmup_s
        if chain is None and follow == FOLLOW_MOTION:
            from sonoguide.pipeline.motion import MotionChain

            chain = MotionChain()
        self.chain = chain  # frame-to-frame motion of the frames decided on

    def decide(self, shown: Frame, result: Segmentation | None,
               model_ready_since: float | None) -> Shown:
        """shown: the frame on screen; result: the model's newest result (or None);
        model_ready_since: capture time of the first frame given to the current model (None:
        no model). Call it for every frame shown, in order: motion is measured from one frame
        to the next (once per frame) and composed from a result's frame to the one shown."""
        if model_ready_since is None:
            return Shown(shown, None, NO_MODEL)
        spent = self.chain.add(shown) if self.chain is not None else None
        if result is None:  # first answers are slow (allocations): allow a warm-up
            late = shown.t_capture - model_ready_since > self.warmup_s
            return Shown(shown, None, HIDDEN, lagging=late, reason="waiting for the model",
                         flow_ms=spent)
        if result.frame_id == shown.frame_id:
            return Shown(shown, result, FRESH, age_s=0.0, flow_ms=spent)
        age = shown.t_capture - result.t_capture
        if result.frame_id > shown.frame_id or age < 0:
            return Shown(shown, None, HIDDEN, reason="result of a later frame", flow_ms=spent)
        if age > self.budget_s:
            return Shown(shown, None, HIDDEN, lagging=True, age_s=age, reason="AI lagging",
                         flow_ms=spent)
        if self.follow == HIDE:
            return Shown(shown, None, HIDDEN, age_s=age, reason="waiting for this frame")
        if self.follow == HOLD:
            return Shown(shown, result, FOLLOWED, age_s=age)
        from sonoguide.pipeline.motion import warp_segmentation

        check = self.chain.motion((shown.source, result.frame_id), shown)
        if check.motion is None:
            return Shown(shown, None, HIDDEN, age_s=age, reason=check.reason, flow_ms=spent)
        return Shown(shown, warp_segmentation(result, check.motion, shown), FOLLOWED,
                     age_s=age, flow_ms=spent)


@dataclass
class DisplayCounts:
    """Per displayed frame, the best overlay it got while on screen."""

    frames: int = 0
    fresh: int = 0
    followed: int = 0
    hidden: int = 0
    no_model: int = 0

    @property
    def overlay_fraction(self) -> float:
        """Frames with a fresh or motion-followed overlay, of frames shown with a model."""
        with_model = self.frames - self.no_model
        return (self.fresh + self.followed) / with_model if with_model else 0.0

    def as_dict(self) -> dict:
        return {"frames": self.frames, "fresh": self.fresh, "followed": self.followed,
                "hidden": self.hidden, "no_model": self.no_model,
                "overlay_fraction": round(self.overlay_fraction, 4)}


_RANK = {NO_MODEL: 0, HIDDEN: 1, FOLLOWED: 2, FRESH: 3}
_FIELD = {FRESH: "fresh", FOLLOWED: "followed", HIDDEN: "hidden", NO_MODEL: "no_model"}


def _count(counts: DisplayCounts, kind: str) -> None:
    counts.frames += 1
    setattr(counts, _FIELD[kind], getattr(counts, _FIELD[kind]) + 1)


class LiveSession:
    """Source, image area, model and worker of one live view, and what to draw.

    make_worker(segmenter, analyzer) -> Worker: the inference thread (tests inject fakes).
    analyse_every_frame: a recorded clip waits for the model on every frame (sources that
      support it: FileSource); live sources always keep the newest-frame-only rule.
    on_result: called on the worker thread when a result lands (the window emits a queued
      signal there; nothing else may happen on that thread).
    on_frame: called on the source's thread when it has a new frame (the window emits a queued
      signal and pulls it at once rather than at its next timer tick).
    """

    def __init__(self, area: ImageArea | None = None,
                 make_worker: Callable[[Any, Any], Worker] | None = None, *,
                 policy: OverlayPolicy | None = None, analyse_every_frame: bool = True,
                 on_result: Callable[[Segmentation], None] | None = None,
                 on_frame: Callable[[], None] | None = None,
                 timeline_window_s: float = 10.0) -> None:
        self.area = area or ImageArea()
        self._make_worker = make_worker or _default_worker
        self.policy = policy or OverlayPolicy()
        self._analyse_every_frame = analyse_every_frame
        self.on_result = on_result
        self.on_frame = on_frame
        self.area_timeline = AreaTimeline(window_s=timeline_window_s)
        self.source: FrameSource | None = None
        self.model: Any = None  # sonoguide.ui.controller.LoadedModel-like: .segmenter, .analyzer
        self.worker: Worker | None = None
        self._worker_made_by: Callable | None = None
        self.frozen = False
        self.current: Frame | None = None  # the frame on screen
        self.counts = DisplayCounts()
        self.results_seen = 0
        self._epoch_t: float | None = None  # results of frames before this are not drawn
        self._submitted: collections.OrderedDict[int, Frame] = collections.OrderedDict()
        self._lock = threading.Lock()  # guards _submitted (the worker thread reads it)
        self._decision: Shown | None = None
        self._decision_key: tuple | None = None
        self._best_kind: str | None = None  # best overlay the current frame got so far
        self._best_shown: Shown | None = None  # ... and what it was
        self.recorder: Any = None  # sonoguide.pipeline.recording.Recorder while recording
        self._last_result_id: int | None = None
        self._landed_id: int | None = None  # the worker's newest result (worker thread)
        self._stop = threading.Event()
        self._measurer: threading.Thread | None = None
        # bounded: a window runs for hours (reports and benchmarks read the recent ones)
        self.overlay_age_ms: collections.deque[float] = collections.deque(maxlen=STATS_KEPT)
        self.flow_ms: collections.deque[float] = collections.deque(maxlen=STATS_KEPT)

    # --- source -------------------------------------------------------------------------
    def set_source(self, source: FrameSource, key: str, *, full_frame: bool | None = None
                   ) -> FrameSource | None:
        """Switch to an opened (started) source; returns the old one for the caller to stop
        (stopping may wait on a device, so a window does it off the GUI thread).
        full_frame: the picture is all image, no scanner screen around it (default: for the
        phantom, which has a simulator); otherwise the image area is detected or remembered."""
        old, self.source = self.source, source
        source.add_publish_listener(self._frame_published)
        self._finish_frame()
        if full_frame is None:  # a recording holds the image area only; the phantom is all image
            full_frame = bool(getattr(source, "full_frame", hasattr(source, "simulator")))
        self.area.reset(key, full_frame=full_frame)
        self.current = None
        self._epoch_t = None
        self._decision = self._decision_key = None
        with self._lock:
            self._submitted.clear()
        self.area_timeline.reset()
        if self.policy.chain is not None:
            self.policy.chain.reset()
        if self.model is not None:
            self.model.analyzer.reset()
        self._apply_replay_mode()
        return old

    @property
    def analyse_every_frame(self) -> bool:
        return self._analyse_every_frame

    @analyse_every_frame.setter
    def analyse_every_frame(self, on: bool) -> None:
        self._analyse_every_frame = bool(on)
        self._apply_replay_mode()

    @property
    def replay_waits(self) -> bool:
        """True while the source is a clip that waits for the model on every frame."""
        return bool(getattr(self.source, "analyse_every_frame", False))

    def _apply_replay_mode(self) -> None:
        if self.source is not None and hasattr(self.source, "analyse_every_frame"):
            self.source.analyse_every_frame = (self._analyse_every_frame
                                               and self.worker is not None
                                               and self.model is not None)

    # --- model --------------------------------------------------------------------------
    def set_model(self, model: Any) -> None:
        """Use `model` (.segmenter, .analyzer) from the next frame on; None = video only."""
        self.model = model
        self._epoch_t = None
        self._decision = self._decision_key = None
        self.area_timeline.reset()
        if model is None and self.worker is not None:
            self.worker.set_model(None, None)  # let go of the old model now, not at the next
        if model is not None:
            # a model may bring its own kind of worker (a recording's findings need no thread)
            make_worker = getattr(model, "make_worker", None) or self._make_worker
            if self.worker is not None and make_worker is not self._worker_made_by:
                self._drop_worker()
            if self.worker is None:
                self.worker = make_worker(model.segmenter, model.analyzer)
                self._worker_made_by = make_worker
                self.worker.add_listener(self._result_landed)
                self.worker.add_finished_listener(self._frame_finished)
            else:
                self.worker.set_model(model.segmenter, model.analyzer)
            self._start_measuring()
            if self.current is not None:
                # the frame on screen now gets its own result (a paused clip, a clip that
                # is about to wait for it) instead of waiting for the next frame
                self._submit(self.current)
        self._apply_replay_mode()

    def _drop_worker(self) -> None:
        worker, self.worker = self.worker, None
        self._stop_worker(worker)

    def _stop_worker(self, worker: Worker | None) -> None:
        if worker is not None:
            worker.remove_listener(self._result_landed)
            worker.remove_listener(self._frame_finished)
            worker.stop()

    def _start_measuring(self) -> None:
        """Measure the motion of every new frame on a helper thread as it arrives, ahead of
        the view: the GUI thread then only composes (OpenCV releases the GIL meanwhile)."""
        if self.policy.chain is None or self._measurer is not None:
            return
        self._measurer = threading.Thread(target=self._measure_motion, name="motion",
                                          daemon=True)
        self._measurer.start()

    def _measure_motion(self) -> None:  # motion thread
        source, after = None, -1
        while not self._stop.is_set():
            current = self.source
            if current is None or self.model is None or self.frozen:
                self._stop.wait(0.05)
                continue
            if current is not source:
                source, after = current, -1
            frame = source.wait_frame(after, 0.1)
            roi = self.area.roi
            if frame is None or roi is None:
                continue
            after = frame.frame_id
            if frame.width >= roi.x + roi.w and frame.height >= roi.y + roi.h:
                spent = self.policy.chain.add(dataclasses.replace(frame, roi=roi))
                if spent is not None:
                    self.flow_ms.append(spent)

    def _frame_published(self) -> None:  # source thread
        on_frame = self.on_frame
        if on_frame is not None:
            on_frame()

    def _result_landed(self, result: Segmentation) -> None:  # worker thread
        self._landed_id = result.frame_id
        if self.on_result is not None:
            self.on_result(result)

    def _frame_finished(self, frame_id: int) -> None:  # worker thread
        """A frame that gave no result (an error) lets a waiting clip go on at once; one that
        did is let go by show(), once its own overlay is what is drawn on it."""
        if frame_id != self._landed_id:
            self._release(frame_id)

    def _release(self, frame_id: int) -> None:
        """A clip that waits for the model may go on past this frame."""
        with self._lock:
            frame = self._submitted.get(frame_id)
        self._let_go(frame)

    def _let_go(self, frame: Frame | None) -> None:
        source = self.source
        done = getattr(source, "frame_done", None)
        if done is not None and frame is not None and frame.source == source.name:
            done(frame.frame_id)

    # --- per frame ----------------------------------------------------------------------
    def pull(self) -> Frame | None:
        """The source's newest frame if it is new (and the view is not frozen): stamped with
        its ROI and scale, handed to the model, and now the current frame. Never blocks."""
        if self.source is None:
            return None
        if self.frozen:  # the picture holds still; a clip that waits for the model must not
            self._let_go(self.source.latest())  # crawl underneath, one give-up at a time
            return None
        frame = self.source.latest()
        if frame is None or (self.current is not None and frame.frame_id == self.current.frame_id
                             and frame.source == self.current.source):
            return None
        return self._take(frame)

    def wait_pull(self, timeout: float) -> Frame | None:
        """Like pull(), waiting up to `timeout` s for a new frame (headless loop)."""
        if self.source is None:
            return None
        after = self.current.frame_id if self.current is not None else -1
        frame = self.source.wait_frame(after, timeout)
        return None if frame is None else self._take(frame)

    def _take(self, raw: Frame) -> Frame:
        frame = self.area.prepare(raw)
        self._finish_frame()
        self.current = frame
        self._best_kind = None
        self._best_shown = None
        self._submit(frame)
        return frame

    def _submit(self, frame: Frame) -> None:
        """Hand `frame` to the model (if there is one)."""
        if self.model is None or self.worker is None:
            return
        if self._epoch_t is None:
            self._epoch_t = frame.t_capture
        with self._lock:
            self._submitted[frame.frame_id] = frame
            while len(self._submitted) > SUBMITTED_KEPT:
                self._submitted.popitem(last=False)
        self.worker.submit(frame)

    def latest_result(self) -> Segmentation | None:
        """The current model's newest result for the current source, else None."""
        if self.worker is None or self.model is None or self._epoch_t is None:
            return None
        result = self.worker.latest()
        if result is None or result.t_capture < self._epoch_t:
            return None  # from another source or the previous model
        return result

    def show(self) -> Shown | None:
        """What to draw on the current frame now (cheap when nothing changed)."""
        frame = self.current
        if frame is None:
            return None
        result = self.latest_result()
        if result is not None and result.frame_id != self._last_result_id:
            self._last_result_id = result.frame_id
            self.results_seen += 1
            self.area_timeline.add(result)  # the analyzer's own mm2 (the frame carried mm/px)
        ready = self._epoch_t if self.model is not None else None
        key = (frame.source, frame.frame_id, None if result is None else result.frame_id,
               ready is None)
        if key != self._decision_key:
            self._decision = self.policy.decide(frame, result, ready)
            self._decision_key = key
            self._note(self._decision)
            if result is not None:
                self._release(result.frame_id)  # drawn: a waiting clip may show the next one
        return self._decision

    def _note(self, shown: Shown) -> None:
        if self._best_kind is None or _RANK[shown.kind] > _RANK[self._best_kind]:
            if shown.overlay is not None and (self._best_kind is None
                                              or _RANK[self._best_kind] < _RANK[FOLLOWED]):
                self.overlay_age_ms.append(1000.0 * (shown.age_s or 0.0))
            self._best_kind = shown.kind
            self._best_shown = shown
        if shown.flow_ms is not None:
            self.flow_ms.append(shown.flow_ms)

    def _finish_frame(self) -> None:
        """Count the frame leaving the screen by the best overlay it got, and record it with
        that overlay when recording."""
        if self.current is not None and self._best_kind is not None:
            _count(self.counts, self._best_kind)
        if self.recorder is not None:
            self._record_current(self.recorder)
        self._best_kind = None
        self._best_shown = None

    def _record_current(self, recorder: Any) -> None:
        """The frame on screen, with the best overlay it got, into the recording."""
        if self.current is not None:
            best = self._best_shown
            recorder.add(self.current, self._best_kind, best.overlay if best is not None else None)

    # --- recording ----------------------------------------------------------------------
    def start_recording(self, recorder: Any) -> None:
        """Record every frame shown from now on (sonoguide.pipeline.recording.Recorder)."""
        self.stop_recording()
        self.recorder = recorder

    def stop_recording(self) -> Any:
        """Record the frame on screen, then stop; returns the recorder's status (or None)."""
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return None
        self._record_current(recorder)
        return recorder.stop()

    def display_counts(self) -> DisplayCounts:
        """Counts including the frame on screen now."""
        counts = DisplayCounts(**vars(self.counts))
        if self.current is not None and self._best_kind is not None:
            _count(counts, self._best_kind)
        return counts

    def model_rate(self) -> float:
        """The model's own results per second lately (the worker's figure; 0 once they stop)."""
        return self.worker.stats().inference_fps if self.worker is not None else 0.0

    def reset_counts(self) -> None:
        self.counts = DisplayCounts()
        self._best_kind = None
        self._best_shown = None
        self.overlay_age_ms.clear()
        self.flow_ms.clear()

    # --- end ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the worker and the source (blocking: the window calls it on close); a
        recording is finished first."""
        self.stop_recording()
        self._stop.set()
        if self._measurer is not None:
            self._measurer.join(1.0)
        self._stop_worker(self.worker)  # kept, stopped: reports read its counts afterwards
        if self.source is not None:
            self.source.stop()


def _default_worker(segmenter: Any, analyzer: Any) -> Worker:
    from sonoguide.pipeline.worker import InferenceWorker

    return InferenceWorker(segmenter, analyzer)


def percentiles(values: collections.abc.Iterable[float]) -> dict[str, float | None]:
    """{"p50", "p95", "max"} rounded to 0.01, or Nones for no values."""
    a = np.asarray(list(values), float)
    if a.size == 0:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": round(float(np.percentile(a, 50)), 2),
            "p95": round(float(np.percentile(a, 95)), 2), "max": round(float(a.max()), 2)}
