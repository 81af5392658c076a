"""The inference thread: newest frame in, Segmentation out, never a backlog.

submit() drops the frame into a one-slot mailbox; if the model is still busy with an earlier
frame, the next submit replaces the waiting one (counted as dropped). So a slow model makes the
overlay update less often, never later, and memory stays flat.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sonoguide.pipeline.analysis import Analyzer
from sonoguide.pipeline.frames import Frame, Roi, Segmentation
from sonoguide.pipeline.segmenter import Segmenter
from sonoguide.pipeline.slot import LatestSlot

log = logging.getLogger(__name__)
Listener = Callable[[Segmentation], None]
MAX_ERRORS_KEPT = 100
STATS_WINDOW = 120  # recent results used for latency figures
FPS_WINDOW_S = 2.0


@dataclass(frozen=True)
class WorkerStats:
    frames_submitted: int
    frames_inferred: int
    frames_dropped: int  # replaced in the mailbox before the model got to them
    errors: int
    last_inference_ms: float | None  # model part only (preprocess + run + softmax)
    last_latency_ms: float | None  # capture -> overlay ready, latest result
    latency_p95_ms: float | None  # over the recent window
    inference_fps: float  # results per second over the recent window
    provider: str
    model: str


class InferenceWorker:
    def __init__(self, segmenter: Segmenter, analyzer: Analyzer, *,
                 autostart: bool = True) -> None:
        self._segmenter = segmenter
        self._analyzer = analyzer
        self._slot: LatestSlot[Frame] = LatestSlot()
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._finished: list[Callable[[int], None]] = []  # frame id, after success or error
        self._latest: Segmentation | None = None
        self._generation = 0  # bumped by set_model: results of the old model are discarded
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames_submitted = 0
        self.frames_inferred = 0
        # the newest errors (the banner shows the last one; a long run must not freeze on its
        # hundredth); error_count counts them all
        self.errors: collections.deque[str] = collections.deque(maxlen=MAX_ERRORS_KEPT)
        self.error_count = 0
        self.last_inference_ms: float | None = None
        self._recent: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=STATS_WINDOW)  # (t_done, latency_s)
        self.inference_ms_history: collections.deque[float] = collections.deque(maxlen=10_000)
        if autostart:
            self.start()

    # --- control (any thread) ----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Returns as soon as the current inference (if any) ends; waiting frames are dropped."""
        self._stop_event.set()
        self._slot.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, frame: Frame) -> None:
        with self._lock:
            self.frames_submitted += 1
        self._slot.put(frame)

    def latest(self) -> Segmentation | None:
        with self._lock:
            return self._latest

    def add_listener(self, callback: Listener) -> None:
        """callback(segmentation) runs on the worker thread: keep it short (emit a signal)."""
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)
            if callback in self._finished:
                self._finished.remove(callback)

    def add_finished_listener(self, callback: Callable[[int], None]) -> None:
        """callback(frame_id) on the worker thread once a frame is done with, whether it gave
        a result or an error (a replay that waits for every frame must never wait forever)."""
        with self._lock:
            self._finished.append(callback)

    def set_model(self, segmenter: Segmenter | None, analyzer: Analyzer | None) -> None:
        """Switch model (mode change); the next frame uses it and the old overlay is forgotten.
        None lets go of the old model at once (its memory is freed while the next one loads);
        frames submitted meanwhile are dropped."""
        with self._lock:
            self._segmenter = segmenter
            self._analyzer = analyzer
            self._latest = None
            self._generation += 1

    @property
    def segmenter(self) -> Segmenter | None:
        with self._lock:
            return self._segmenter

    @property
    def analyzer(self) -> Analyzer | None:
        with self._lock:
            return self._analyzer

    @property
    def frames_dropped(self) -> int:
        return self._slot.replaced

    def stats(self) -> WorkerStats:
        with self._lock:
            recent = list(self._recent)
            segmenter = self._segmenter
            inferred, submitted = self.frames_inferred, self.frames_submitted
        fps = 0.0
        window = [t for t, _ in recent if t >= time.monotonic() - FPS_WINDOW_S]
        if len(window) >= 2 and window[-1] > window[0]:
            fps = (len(window) - 1) / (window[-1] - window[0])  # 0 once results stop coming
        latencies = [lat * 1000.0 for _, lat in recent]
        return WorkerStats(
            frames_submitted=submitted,
            frames_inferred=inferred,
            frames_dropped=self.frames_dropped,
            errors=self.error_count,
            last_inference_ms=self.last_inference_ms,
            last_latency_ms=latencies[-1] if latencies else None,
            latency_p95_ms=float(np.percentile(latencies, 95)) if latencies else None,
            inference_fps=fps,
            provider=segmenter.provider if segmenter is not None else "-",
            model=segmenter.name if segmenter is not None else "-",
        )

    # --- worker thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop_event.is_set():
            frame = self._slot.take(timeout=0.1)
            if frame is None or self._stop_event.is_set():
                continue
            self._handle(frame)

    def _handle(self, frame: Frame) -> None:
        """One frame through the model (a method of its own so that the model it used is not
        kept alive by the loop's variables while the loop waits: set_model(None) frees it)."""
        with self._lock:
            generation, segmenter, analyzer = (self._generation, self._segmenter,
                                               self._analyzer)
        result = None
        try:
            if segmenter is not None and analyzer is not None:  # else between models
                result = self._process(frame, segmenter, analyzer)
        except Exception as exc:  # one bad frame must not stop the overlay for good
            self._record_error(f"frame {frame.frame_id}: {type(exc).__name__}: {exc}",
                               exc)
        with self._lock:
            current = generation == self._generation  # else the model switched meanwhile
            if result is not None and current:
                self._latest = result
                self.frames_inferred += 1
                self._recent.append((result.t_done, result.latency_s))
            listeners = list(self._listeners) if result is not None and current else []
            finished = list(self._finished)
        for callback in listeners:
            try:
                callback(result)
            except Exception as exc:
                self._record_error(f"listener {callback!r}: {type(exc).__name__}: {exc}",
                                   exc)
        for done in finished:
            try:
                done(frame.frame_id)
            except Exception as exc:
                self._record_error(f"listener {done!r}: {type(exc).__name__}: {exc}", exc)

    def _process(self, frame: Frame, segmenter: Segmenter, analyzer: Analyzer) -> Segmentation:
        # The live session stamped the ROI and scale on the frame (ImageArea.prepare).
        roi = (frame.roi or Roi.full(frame.image)).clamp(frame.width, frame.height)
        pred = segmenter.predict(roi.crop(frame.image))
        self.last_inference_ms = pred.inference_ms
        self.inference_ms_history.append(pred.inference_ms)
        labels, structures, target, present = analyzer.analyze(
            pred, roi, frame.pixel_spacing_mm, frame_id=frame.frame_id,
            t_capture=frame.t_capture, source=frame.source)
        guide = getattr(analyzer, "guide", None)
        guidance = None if guide is None else guide.update(
            roi.crop(frame.image), structures, target, roi, frame.pixel_spacing_mm,
            source=frame.source, t=frame.t_capture)
        return Segmentation(
            frame_id=frame.frame_id,
            t_capture=frame.t_capture,
            t_done=time.monotonic(),
            classes=segmenter.classes,
            roi=roi,
            labels=labels,
            structures=structures,
            target=target,
            present=present,
            guidance=guidance,
        )

    def _record_error(self, message: str, exc: BaseException) -> None:
        with self._lock:
            self.error_count += 1
            self.errors.append(message)
        if self.error_count == 1:  # the first one in full, for whoever reads the log
            log.warning("inference error: %s", message, exc_info=exc)
