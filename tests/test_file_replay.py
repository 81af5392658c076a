"""Replaying a recorded clip for teaching: "analyse every frame" holds playback for the model."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sonoguide.sources.base import SourceState
from sonoguide.sources.file import FileSource
from tests.clips import WAIT_S, frame_index_of, wait_for, write_clip

FPS = 30.0
PERIOD = 1.0 / FPS




class Model:
    """A consumer like the live session: takes the newest frame, spends `work_s` on it, then
    says it is done (unless `ack` is off: a model that hangs)."""

    def __init__(self, source: FileSource, work_s: float, ack: bool = True) -> None:
        self.source, self.work_s, self.ack = source, work_s, ack
        self.frames: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Model:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)

    def indices(self) -> list[int]:
        return [f.meta["frame_index"] for f in list(self.frames)]

    def _run(self) -> None:
        last = -1
        while not self._stop.is_set():
            frame = self.source.wait_frame(last, 0.05)
            if frame is None:
                continue
            self.frames.append(frame)
            last = frame.frame_id
            if self._stop.wait(self.work_s):
                return
            if self.ack:
                self.source.frame_done(frame.frame_id)




@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s at 30 fps."""
    return write_clip(tmp_path_factory.mktemp("replay") / "scan.mp4", n_frames=60, fps=FPS)


def replay(clip: Path, every_frame: bool = True, loop: bool = False) -> FileSource:
    source = FileSource(clip, loop=loop)
    source.analyse_every_frame = every_frame
    return source


def gaps(frames) -> np.ndarray:
    return np.diff([f.t_capture for f in frames])


def test_every_frame_is_analysed_when_the_model_is_slower_than_the_clip(started, clip):
    source = started(replay(clip))
    model = started(Model(source, work_s=0.06))
    assert wait_for(lambda: len(model.frames) >= 20)
    rate = source.playback_rate  # ~16 frames/s of a 30 fps clip
    assert wait_for(lambda: len(model.frames) >= 30)
    seen = model.indices()[:30]
    assert seen == list(range(30)), f"frames skipped: {seen}"
    assert [frame_index_of(f.image) for f in model.frames[:30]] == seen
    ids = [f.frame_id for f in model.frames[:30]]
    assert ids == list(range(ids[0], ids[0] + 30))  # still one id per published frame
    # the next frame went out only once the model was done with the last one
    assert gaps(model.frames[:30]).min() >= 0.055
    assert 0.35 <= rate <= 0.65, rate
    assert source.frames_not_analysed == 0
    assert source.status.state is SourceState.LIVE


def test_without_it_a_slow_model_skips_frames_and_the_clip_plays_in_real_time(started, clip):
    source = started(replay(clip, every_frame=False))
    model = started(Model(source, work_s=0.06))
    assert wait_for(lambda: model.frames and model.indices()[-1] >= 40)
    rate = source.playback_rate
    seen = model.indices()
    assert (np.diff(seen) > 1).any(), f"no frame was dropped: {seen}"
    assert len(seen) < 30  # far fewer analysed than the 41 played
    assert 0.85 <= rate <= 1.0, rate


def test_a_fast_model_keeps_real_time_and_never_runs_ahead_of_the_clip(started, clip):
    source = started(replay(clip))
    model = started(Model(source, work_s=0.0))
    assert wait_for(lambda: len(model.frames) >= 31)
    assert model.indices()[:31] == list(range(31))
    assert source.playback_rate >= 0.85
    assert gaps(model.frames[:31]).min() >= PERIOD * 0.5  # no burst
    span = model.frames[30].t_capture - model.frames[0].t_capture
    assert span >= 30 * PERIOD * 0.95  # 30 periods, never faster than the file's fps


def test_stop_is_prompt_while_waiting_for_the_model(started, clip):
    source = started(replay(clip))
    assert source.wait_frame(-1, WAIT_S) is not None
    assert wait_for(lambda: source.waiting_for_analysis)
    t0 = time.monotonic()
    source.stop()
    assert time.monotonic() - t0 < 0.5
    assert not source.running


def test_a_model_that_never_answers_is_given_up_on_and_counted(started, clip):
    source = replay(clip)
    source.analysis_wait_s = 0.15
    started(source)
    model = started(Model(source, work_s=0.0, ack=False))
    # (the consumer sees frame 3 a moment after the third give-up: wait for both)
    assert wait_for(lambda: source.frames_not_analysed >= 3 and len(model.frames) >= 4)
    frames = model.frames[:4]
    assert [f.meta["frame_index"] for f in frames] == [0, 1, 2, 3]  # moved on, frame by frame
    assert gaps(frames).min() >= 0.14  # each one held for the timeout
    assert source.playback_rate < 0.4
    assert source.status.state is SourceState.LIVE


def test_a_pause_gives_the_model_its_full_wait_again(started, clip):
    source = replay(clip)
    source.analysis_wait_s = 0.4
    started(source)
    first = source.wait_frame(-1, WAIT_S)
    assert first is not None and wait_for(lambda: source.waiting_for_analysis)
    time.sleep(0.3)  # most of the wait used up ...
    source.pause()
    assert wait_for(lambda: source.status.state is SourceState.PAUSED, timeout=0.5)
    source.resume()  # ... then the clock starts over: no move on 0.1 s after resuming
    assert wait_for(lambda: source.status.state is SourceState.LIVE, timeout=0.5)
    assert source.wait_frame(first.frame_id, 0.25) is None
    assert source.frames_not_analysed == 0
    assert source.wait_frame(first.frame_id, WAIT_S) is not None  # then it does move on
    assert source.frames_not_analysed == 1


def test_turning_it_off_while_waiting_resumes_real_time_without_a_burst(started, clip):
    source = started(replay(clip))
    model = started(Model(source, work_s=0.0, ack=False))
    assert wait_for(lambda: source.waiting_for_analysis)
    first = source.latest()
    time.sleep(0.3)  # the model holds playback a while (far short of the 3 s timeout)
    assert source.latest().frame_id == first.frame_id  # held, not playing on
    source.analyse_every_frame = False
    released = source.wait_frame(first.frame_id, 0.2)
    assert released is not None, "turning it off did not release the wait"
    assert wait_for(lambda: len(model.frames) >= 12)
    after = [f for f in model.frames if f.frame_id >= released.frame_id][:11]
    assert [f.meta["frame_index"] for f in after] == list(range(1, 12))
    # re-anchored at the release: real-time pacing, not a catch-up burst of the held time
    assert gaps(after).min() >= PERIOD * 0.5
    assert not source.waiting_for_analysis and source.frames_not_analysed == 0


def test_pause_seek_and_step_are_served_while_waiting(started, clip):
    source = started(replay(clip, loop=True))
    assert source.wait_frame(-1, WAIT_S) is not None
    assert wait_for(lambda: source.waiting_for_analysis)

    source.pause()
    assert wait_for(lambda: source.status.state is SourceState.PAUSED, timeout=0.5)
    assert not source.waiting_for_analysis and source.playback_rate == 0.0
    source.seek(1.0)
    assert wait_for(lambda: source.latest().meta["frame_index"] == 30, timeout=0.5)
    source.step(1)
    assert wait_for(lambda: source.latest().meta["frame_index"] == 31, timeout=0.5)

    source.resume()  # playing again, the frame on screen waits for its analysis
    assert wait_for(lambda: source.waiting_for_analysis, timeout=0.5)
    held = source.latest()
    assert held.meta["frame_index"] == 31 and source.wait_frame(held.frame_id, 0.2) is None
    source.frame_done(held.frame_id)
    nxt = source.wait_frame(held.frame_id, 0.5)
    assert nxt is not None and nxt.meta["frame_index"] == 32
    assert nxt.frame_id == held.frame_id + 1

    assert wait_for(lambda: source.waiting_for_analysis, timeout=0.5)
    t0 = time.monotonic()
    source.seek(0.5)  # while playing and held: lands at once, then waits for that frame
    landed = source.wait_frame(nxt.frame_id, 0.5)
    assert landed is not None and landed.meta["frame_index"] == 15
    assert time.monotonic() - t0 < 0.5
    assert wait_for(lambda: source.waiting_for_analysis, timeout=0.5)
    assert source.latest().frame_id == landed.frame_id
    assert source.frames_not_analysed == 0
