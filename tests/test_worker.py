"""InferenceWorker: newest frame wins, results belong to their frames, faults do not stop it."""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import replace

import numpy as np
import pytest

from sonoguide.pipeline.analysis import Analyzer
from sonoguide.pipeline.frames import Frame, Roi, Segmentation
from sonoguide.pipeline.segmenter import Segmenter
from sonoguide.pipeline.worker import InferenceWorker
from tests.model_factory import JUGULAR, GatedSegmenter, make_model
from tests.waiting import wait_until

H, W = 240, 320


@pytest.fixture(scope="module")
def fast_segmenter(tmp_path_factory):
    return Segmenter(make_model(tmp_path_factory.mktemp("m") / "thr.onnx"), provider="cpu")


def _bright_x(frame_id: int) -> int:
    """Where frame `frame_id` shows its bright (nerve) square: moves with the id."""
    return 20 + 12 * (frame_id % 20)


def _frame(frame_id: int) -> Frame:
    image = np.full((H, W), 128, np.uint8)
    x = _bright_x(frame_id)
    image[100:140, x:x + 40] = 250
    return Frame(image, frame_id, time.monotonic(), source="test", pixel_spacing_mm=0.1)


def test_a_busy_model_drops_frames_keeps_memory_flat_and_results_match_their_frames(
        fast_segmenter):
    model = GatedSegmenter(fast_segmenter)  # busy with each frame until the test releases it
    worker = InferenceWorker(model, Analyzer(model.classes, "plexus", smoothing=1.0))
    results: list[Segmentation] = []
    worker.add_listener(results.append)
    alive = [0]
    most_alive = 0

    def gone() -> None:
        alive[0] -= 1

    def submit(frame_id: int) -> None:
        nonlocal most_alive
        frame = _frame(frame_id)
        alive[0] += 1
        weakref.finalize(frame, gone)
        worker.submit(frame)
        del frame
        most_alive = max(most_alive, alive[0])

    bursts = [1, 4, 1, 7, 2, 12, 3, 10]  # frames arriving during each inference: 40 in all
    newest = [int(i) for i in np.cumsum(bursts) - 1]  # what the model takes after each burst
    try:
        submit(0)
        assert wait_until(lambda: model.entered == 1)  # the model is busy with frame 0
        for n in range(1, len(bursts)):
            for frame_id in range(newest[n - 1] + 1, newest[n] + 1):
                submit(frame_id)  # each replaces the one waiting before it
            model.release()  # the inference ends: the worker takes the newest waiting frame
            assert wait_until(lambda n=n: model.entered == n + 1)
        model.release()
        assert wait_until(lambda: len(results) == len(bursts))
    finally:
        model.open()
        worker.stop()

    # Nothing queued: at most the waiting frame and the one in the model were alive.
    assert most_alive <= 2
    assert worker.frames_submitted == 40
    assert worker.frames_dropped == 40 - len(bursts)
    assert worker.frames_inferred == len(results) == len(bursts)
    assert [r.frame_id for r in results] == newest, "the newest frame is always processed"
    for result in results:  # each overlay shows its own frame's structure, not a neighbour's
        nerve = [s for s in result.structures if s.class_name == "nerve"]
        assert len(nerve) == 1
        assert nerve[0].centroid[0] == pytest.approx(_bright_x(result.frame_id) + 19.5, abs=2)
        assert result.t_capture <= result.t_done
    assert worker.latest() is results[-1]
    stats = worker.stats()
    assert stats.frames_dropped == worker.frames_dropped and stats.provider == "CPU"
    assert stats.last_inference_ms is not None and stats.latency_p95_ms is not None


def test_an_error_is_recorded_and_the_worker_keeps_going(fast_segmenter):
    worker = InferenceWorker(fast_segmenter, Analyzer(fast_segmenter.classes, "plexus"))
    results: list[Segmentation] = []
    worker.add_listener(results.append)
    try:
        worker.submit(Frame(np.zeros((0, 0), np.uint8), 7, time.monotonic()))  # broken frame
        assert wait_until(lambda: worker.error_count == 1)
        worker.submit(_frame(8))
        assert wait_until(lambda: len(results) == 1)
    finally:
        worker.stop()
    assert results[0].frame_id == 8
    assert len(worker.errors) == 1 and "frame 7" in worker.errors[0]
    assert "empty ROI" in worker.errors[0]


def test_a_failing_listener_does_not_stop_other_listeners(fast_segmenter):
    worker = InferenceWorker(fast_segmenter, Analyzer(fast_segmenter.classes, "plexus"))
    got: list[int] = []

    def broken(_: Segmentation) -> None:
        raise RuntimeError("UI went away")

    worker.add_listener(broken)
    worker.add_listener(lambda seg: got.append(seg.frame_id))
    try:
        for i in range(3):
            worker.submit(_frame(i))
            assert wait_until(lambda i=i: i in got)
    finally:
        worker.stop()
    assert got == [0, 1, 2]
    assert worker.error_count == 3 and "UI went away" in worker.errors[0]


def test_the_frames_roi_decides_what_the_model_sees(fast_segmenter):
    roi = Roi(W // 2, 0, W, H)  # reaches past the frame: the worker clamps it
    worker = InferenceWorker(fast_segmenter, Analyzer(fast_segmenter.classes, "plexus"))
    try:
        worker.submit(replace(_frame(0), roi=roi))  # bright square at x = 20..60: left of ROI
        assert wait_until(lambda: worker.latest() is not None)
        left = worker.latest()
        worker.submit(replace(_frame(15), roi=roi))  # x = 200..240: inside the ROI
        assert wait_until(lambda: worker.latest().frame_id == 15)
        inside = worker.latest()
    finally:
        worker.stop()
    assert left.roi == Roi(W // 2, 0, W // 2, H)
    assert left.labels.shape == (H, W // 2)
    assert left.structures == ()
    assert [s.class_name for s in inside.structures] == ["nerve"]
    assert inside.structures[0].centroid[0] == pytest.approx(219.5, abs=2)


def test_set_model_switches_mode_and_forgets_the_old_overlay(fast_segmenter, tmp_path):
    jugular = Segmenter(make_model(tmp_path / "ij.onnx", classes=JUGULAR), provider="cpu")
    worker = InferenceWorker(fast_segmenter, Analyzer(fast_segmenter.classes, "plexus"))
    try:
        worker.submit(_frame(0))
        assert wait_until(lambda: worker.latest() is not None)
        assert worker.latest().classes == fast_segmenter.classes
        worker.set_model(jugular, Analyzer(JUGULAR, "jugular"))
        assert worker.latest() is None
        worker.submit(_frame(1))
        assert wait_until(lambda: worker.latest() is not None)
        assert worker.latest().classes == JUGULAR
        assert worker.stats().model == "ij"
    finally:
        worker.stop()


def test_stop_is_prompt_and_final(fast_segmenter):
    worker = InferenceWorker(fast_segmenter, Analyzer(fast_segmenter.classes, "plexus"))
    stopped = threading.Event()
    threading.Thread(target=lambda: (worker.stop(), stopped.set()), daemon=True).start()
    assert stopped.wait(5.0)
    assert not worker.running
    worker.submit(_frame(0))  # after stop: ignored, no crash
    assert worker.latest() is None


def test_the_newest_error_is_kept_for_the_banner(fast_segmenter):
    """After a hundred failures the message shown is still the latest one, not the 100th."""
    worker = InferenceWorker(fast_segmenter, Analyzer(fast_segmenter.classes, "plexus"),
                             autostart=False)
    for i in range(150):
        worker._record_error(f"frame {i}: broken", ValueError("broken"))
    assert worker.error_count == 150 and len(worker.errors) == 100
    assert worker.errors[-1] == "frame 149: broken"


def test_a_model_switch_lets_go_of_the_old_model_before_the_next_one_loads(tmp_path):
    """The window clears the model while the next mode's loads: the old one must be freed
    then (two models in memory at once made a switch cost hundreds of MB)."""
    import gc

    segmenter = Segmenter(make_model(tmp_path / "m.onnx"), provider="cpu")
    worker = InferenceWorker(segmenter, Analyzer(segmenter.classes, "plexus"))
    finished: list[int] = []
    worker.add_finished_listener(finished.append)
    try:
        worker.submit(Frame(np.full((64, 64), 250, np.uint8), 0, 0.0, "test"))
        assert wait_until(lambda: worker.latest() is not None)
        gone = weakref.ref(segmenter)
        worker.set_model(None, None)
        del segmenter
        gc.collect()
        assert gone() is None
        worker.submit(Frame(np.full((64, 64), 250, np.uint8), 1, 0.1, "test"))
        assert wait_until(lambda: 1 in finished)  # a clip waiting on it is let go, not held
        assert worker.latest() is None and worker.error_count == 0
        assert worker.stats().model == "-"
    finally:
        worker.stop()
