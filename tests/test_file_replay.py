"""Replaying a recorded clip for teaching: "analyse every frame" holds playback for the model.

The source runs on a fake clock (tests/waiting.py) and the test plays the model: it says when a
frame's analysis is done and how much time passes meanwhile, so every gap, hold and give-up
below is exact, whatever the machine's speed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonoguide.sources.base import SourceState
from sonoguide.sources.file import FileSource
from tests.clips import frame_index_of, published, write_clip
from tests.waiting import WAIT_S, FakeClock

FPS = 30.0
PERIOD = 1.0 / FPS
MODEL_S = 0.2  # a model six frame periods slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s at 30 fps."""
    return write_clip(tmp_path_factory.mktemp("replay") / "scan.mp4", n_frames=60, fps=FPS)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def replay(clip: Path, clock: FakeClock, every_frame: bool = True,
           loop: bool = False) -> FileSource:
    source = clock.drive(FileSource(clip, loop=loop))
    source.analyse_every_frame = every_frame
    return source


def gaps(frames) -> np.ndarray:
    return np.diff([f.t_capture for f in frames])


def indices(frames) -> list[int]:
    return [f.meta["frame_index"] for f in frames]


def test_every_frame_is_analysed_when_the_model_is_slower_than_the_clip(started, clip, clock):
    source = replay(clip, clock)
    frames = published(source)
    started(source)
    clock.settle()
    for k in range(30):
        assert len(frames) == k + 1 and source.waiting_for_analysis
        clock.run(MODEL_S)  # the model works; six frames fall due meanwhile ...
        assert len(frames) == k + 1  # ... and wait for it
        source.frame_done(frames[k].frame_id)
        clock.settle()
    rate = source.playback_rate
    assert indices(frames[:30]) == list(range(30)), "frames skipped"
    assert [frame_index_of(f.image) for f in frames[:30]] == list(range(30))
    ids = [f.frame_id for f in frames[:30]]
    assert ids == list(range(ids[0], ids[0] + 30))  # still one id per published frame
    # the next frame went out when the model was done with the last one: not before, not later
    assert gaps(frames[:31]) == pytest.approx(MODEL_S, abs=1e-9)
    assert rate == pytest.approx(PERIOD / MODEL_S, rel=0.15)  # ~1/6 of real time
    assert source.frames_not_analysed == 0
    assert source.status.state is SourceState.LIVE


def test_without_it_a_slow_model_skips_frames_and_the_clip_plays_in_real_time(started, clip,
                                                                              clock):
    source = replay(clip, clock, every_frame=False)
    frames = published(source)
    started(source)
    seen = []
    for _ in range(20):  # the model takes the newest frame, works MODEL_S / 3, takes the next
        clock.run(MODEL_S / 3)
        seen.append(source.latest().meta["frame_index"])
    rate = source.playback_rate
    assert (np.diff(seen) > 1).any(), f"no frame was dropped: {seen}"
    assert len(frames) > 2 * len(seen) - 5  # far more played than analysed
    assert indices(frames) == list(range(len(frames)))
    assert gaps(frames) == pytest.approx(PERIOD, abs=1e-9)  # the clip's own pace
    assert rate >= 0.95, rate


def test_a_fast_model_keeps_real_time_and_never_runs_ahead_of_the_clip(started, clip, clock):
    source = replay(clip, clock)
    frames = published(source)
    source.add_publish_listener(lambda: source.frame_done(source.latest().frame_id))  # at once
    started(source)
    clock.run(30 * PERIOD + PERIOD / 2)
    assert indices(frames) == list(range(31))
    assert gaps(frames) == pytest.approx(PERIOD, abs=1e-9)  # no burst, never faster than fps
    assert source.playback_rate >= 0.95
    assert source.frames_not_analysed == 0


def test_stop_is_prompt_while_waiting_for_the_model(started, clip, clock):
    source = started(replay(clip, clock))
    clock.settle()
    assert source.waiting_for_analysis  # and the fake clock never moves: it would wait forever
    thread = source._thread
    source.stop(timeout=WAIT_S)
    assert not thread.is_alive() and not source.running


def test_a_model_that_never_answers_is_given_up_on_and_counted(started, clip, clock):
    source = replay(clip, clock)
    source.analysis_wait_s = 0.15
    frames = published(source)
    started(source)
    clock.run(0.5)
    assert source.frames_not_analysed == 3
    assert indices(frames) == [0, 1, 2, 3]  # moved on, frame by frame
    assert gaps(frames) == pytest.approx(0.15, abs=1e-9)  # each one held for the timeout
    assert source.playback_rate < 0.4
    assert source.status.state is SourceState.LIVE


def test_a_pause_gives_the_model_its_full_wait_again(started, clip, clock):
    source = replay(clip, clock)
    source.analysis_wait_s = 0.4
    frames = published(source)
    started(source)
    clock.settle()
    assert source.waiting_for_analysis
    clock.run(0.3)  # most of the wait used up ...
    source.pause()
    clock.settle()
    assert source.status.state is SourceState.PAUSED and not source.waiting_for_analysis
    source.resume()  # ... then the clock starts over: no move on 0.1 s after resuming
    clock.settle()
    assert source.status.state is SourceState.LIVE and source.waiting_for_analysis
    clock.run(0.3)
    assert len(frames) == 1 and source.frames_not_analysed == 0
    clock.run(0.15)  # then it does move on
    assert len(frames) == 2 and source.frames_not_analysed == 1


def test_turning_it_off_while_waiting_resumes_real_time_without_a_burst(started, clip, clock):
    source = replay(clip, clock)
    frames = published(source)
    started(source)
    clock.run(1.0)  # the model holds playback a while (far short of the 3 s timeout)
    assert len(frames) == 1  # held, not playing on
    source.analyse_every_frame = False
    clock.settle()
    assert len(frames) == 2, "turning it off did not release the wait"
    assert frames[1].t_capture == clock()  # at once
    clock.run(10 * PERIOD + PERIOD / 2)
    after = frames[1:]
    assert indices(after) == list(range(1, 12))
    # re-anchored at the release: real-time pacing, not a catch-up burst of the held time
    assert gaps(after) == pytest.approx(PERIOD, abs=1e-9)
    assert not source.waiting_for_analysis and source.frames_not_analysed == 0


def test_pause_seek_and_step_are_served_while_waiting(started, clip, clock):
    source = replay(clip, clock, loop=True)
    frames = published(source)
    started(source)
    clock.settle()
    assert source.waiting_for_analysis

    source.pause()
    clock.settle()
    assert source.status.state is SourceState.PAUSED
    assert not source.waiting_for_analysis and source.playback_rate == 0.0
    source.seek(1.0)
    clock.settle()
    assert source.latest().meta["frame_index"] == 30
    source.step(1)
    clock.settle()
    assert source.latest().meta["frame_index"] == 31

    source.resume()  # playing again, the frame on screen waits for its analysis
    clock.settle()
    assert source.waiting_for_analysis
    held = source.latest()
    assert held.meta["frame_index"] == 31
    clock.run(0.5)
    assert source.latest() is held
    source.frame_done(held.frame_id)
    clock.settle()
    nxt = source.latest()
    assert nxt.meta["frame_index"] == 32 and nxt.frame_id == held.frame_id + 1
    assert nxt.t_capture == clock()  # out as soon as the model was done

    assert source.waiting_for_analysis
    source.seek(0.5)  # while playing and held: lands at once, then waits for that frame
    clock.settle()
    landed = source.latest()
    assert landed.meta["frame_index"] == 15 and landed.t_capture == nxt.t_capture
    assert source.waiting_for_analysis
    clock.run(0.5)
    assert source.latest() is landed
    assert frames[-1] is landed and source.frames_not_analysed == 0
