"""Frame sources as a user meets them: live frames, unplugging, file playback, bad files."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from sonoguide.sources.base import SourceState
from sonoguide.sources.capture import CaptureSource
from sonoguide.sources.devices import list_capture_devices
from sonoguide.sources.factory import open_source, source_key
from sonoguide.sources.file import FileSource
from tests.clips import (
    frame_image,
    frame_index_of,
    published,
    red_corner_rgb,
    truncate_copy,
    write_clip,
)
from tests.waiting import WAIT_S, FakeClock, wait_until

# --- a fake capture card ----------------------------------------------------------------------

class FakeCard:
    """A capture card that can be unplugged and plugged back in by the test."""

    def __init__(self, fps: float = 200.0, size: tuple[int, int] = (64, 48)) -> None:
        self.plugged = True
        self.raise_on_read = False
        self.hang = threading.Event()  # set: read() hangs (until released) like a stuck driver
        self.release_hang = threading.Event()
        self.period = 1.0 / fps
        self.size = size
        self.opens = 0
        self.settings: dict[int, float] = {}
        self.lock = threading.Lock()

    def opener(self, index: int, backend: int) -> FakeCapture:
        with self.lock:
            self.opens += 1
        return FakeCapture(self)


class FakeCapture:
    def __init__(self, card: FakeCard) -> None:
        self.card = card
        self.open = card.plugged
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802
        return self.open

    def read(self):
        time.sleep(self.card.period)
        if self.card.hang.is_set():
            self.card.release_hang.wait(WAIT_S)
        if self.card.raise_on_read:
            raise RuntimeError("driver fault")
        if not (self.open and self.card.plugged):
            return False, None
        w, h = self.card.size
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[:, :, 0] = 255  # pure blue in BGR
        return True, bgr

    def set(self, prop: int, value: float) -> bool:
        self.card.settings[prop] = value
        return True

    def get(self, prop: int) -> float:
        granted = {cv2.CAP_PROP_FRAME_WIDTH: 1280, cv2.CAP_PROP_FRAME_HEIGHT: 720,
                   cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*"YUYV")}
        return float(granted.get(prop, 0.0))

    def release(self) -> None:
        self.released = True
        self.open = False


def fast_backoff(source: CaptureSource) -> CaptureSource:
    source.backoff_start_s, source.backoff_max_s = 0.02, 0.1
    return source


def test_capture_frames_flow_newest_first_in_rgb(started):
    card = FakeCard()
    source = started(CaptureSource(index=3, opener=card.opener))
    first = source.wait_frame(-1, WAIT_S)
    assert first is not None
    assert first.image[0, 0].tolist() == [0, 0, 255]  # blue stays blue: BGR was turned to RGB
    ids, times, last = [], [], first.frame_id
    for _ in range(5):
        frame = source.wait_frame(last, WAIT_S)
        ids.append(frame.frame_id)
        times.append(frame.t_capture)
        last = frame.frame_id
    assert ids == sorted(set(ids)) and all(b >= a for a, b in zip(times, times[1:], strict=False))
    assert source.status.state is SourceState.LIVE


def test_capture_reports_what_the_driver_granted(started):
    card = FakeCard()
    source = started(CaptureSource(index=0, width=1920, height=1080, fps=60, fourcc="MJPG",
                                   opener=card.opener))
    assert source.wait_frame(-1, WAIT_S) is not None
    info = source.status.info
    assert (info["fps"], info["fourcc"]) == (30.0, "YUYV")
    assert info["requested"] == "1920x1080@60 MJPG"
    assert info["backend"]  # named, so the window can show it
    assert (info["width"], info["height"]) == (64, 48)  # what frames really are
    assert card.settings[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
    assert card.settings[cv2.CAP_PROP_FRAME_WIDTH] == 1920
    assert card.settings[cv2.CAP_PROP_BUFFERSIZE] == 1


def test_slow_reader_gets_the_newest_frame_not_a_backlog(started):
    card = FakeCard(fps=300.0)
    source = started(CaptureSource(opener=card.opener))
    seen = [source.wait_frame(-1, WAIT_S).frame_id]
    for _ in range(4):  # the reader comes back only after the card has sent five more frames
        assert wait_until(lambda: source.frames_published >= seen[-1] + 6)
        seen.append(source.latest().frame_id)
    gaps = np.diff(seen)
    assert (gaps >= 5).all(), f"reader got {seen}: a backlog, not the newest frame"


def test_unplug_keeps_last_frame_says_no_signal_and_reconnects(started):
    card = FakeCard()
    source = started(fast_backoff(CaptureSource(opener=card.opener)))
    assert source.wait_frame(-1, WAIT_S) is not None
    card.plugged = False
    assert wait_until(lambda: source.status.state is SourceState.NO_SIGNAL)
    assert source.status.message == "no signal"
    last = source.latest()
    assert last is not None  # the last image stays on screen
    opens_while_unplugged = card.opens
    assert wait_until(lambda: card.opens >= opens_while_unplugged + 2)  # it keeps retrying
    assert source.latest().frame_id == last.frame_id
    card.plugged = True
    assert wait_until(lambda: source.status.state is SourceState.LIVE)
    fresh = source.wait_frame(last.frame_id, WAIT_S)
    assert fresh is not None and fresh.frame_id > last.frame_id
    assert source.reconnects >= 1


def test_driver_exceptions_become_no_signal_not_crashes(started):
    card = FakeCard()
    source = started(fast_backoff(CaptureSource(opener=card.opener)))
    assert source.wait_frame(-1, WAIT_S) is not None
    card.raise_on_read = True
    assert wait_until(lambda: source.status.state is SourceState.NO_SIGNAL)
    card.raise_on_read = False
    assert wait_until(lambda: source.status.state is SourceState.LIVE)
    assert source.running


def test_a_driver_hanging_in_read_shows_no_signal_instead_of_a_frozen_live_image(started):
    card = FakeCard()
    source = started(CaptureSource(opener=card.opener))
    assert source.wait_frame(-1, WAIT_S) is not None
    card.hang.set()
    assert wait_until(lambda: source.status.state is SourceState.NO_SIGNAL)
    assert source.status.message == "no signal" and source.latest() is not None
    card.hang.clear()
    card.release_hang.set()
    assert wait_until(lambda: source.status.state is SourceState.LIVE)


def test_missing_device_says_no_signal_and_stop_is_prompt_mid_backoff(started):
    card = FakeCard()
    card.plugged = False
    source = CaptureSource(index=5, opener=card.opener)
    source.backoff_start_s = source.backoff_max_s = 3600.0  # an hour between attempts
    started(source)
    assert wait_until(lambda: source.status.state is SourceState.NO_SIGNAL)
    assert "5" in source.status.info["detail"]
    thread = source._thread
    source.stop(timeout=WAIT_S)  # ends the hour's wait at once, else the thread lives on
    assert not thread.is_alive() and not source.running


class RecordingStop(threading.Event):
    """A source's stop event that notes each reopen delay the retry loop asks for and waits
    only a moment, so a test sees the whole backoff schedule without sitting through it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            return super().wait()
        self.waits.append(timeout)
        return super().wait(0.001)


def test_reopen_delays_double_from_a_quarter_second_and_stop_at_two_seconds(started):
    """A card plugged back in is found at the next attempt: with at most 2 s between attempts
    (plus a failed and a good open of up to ~1 s each) a reconnect stays within 4 s however
    long the cable was out, and a short pull is retried after a quarter second again."""
    card = FakeCard()
    card.plugged = False
    source = CaptureSource(opener=card.opener)  # the shipped schedule
    stop = source._stop_event = RecordingStop()
    started(source)
    assert wait_until(lambda: len(stop.waits) >= 8)
    assert stop.waits[:8] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert source.status.state is SourceState.NO_SIGNAL and source.status.info["retry_in_s"] == 2.0
    slow_open_s = 1.0
    assert max(stop.waits) + 2 * slow_open_s <= 4.0

    card.plugged = True
    assert wait_until(lambda: source.status.state is SourceState.LIVE)
    stop.waits.clear()  # nothing waits while frames flow
    card.plugged = False
    assert wait_until(lambda: len(stop.waits) >= 3)
    assert stop.waits[:3] == [0.25, 0.5, 1.0]  # it worked a moment ago: the schedule starts over
    assert source.latest() is not None and source.status.message == "no signal"


def test_device_list_shows_only_devices_that_open():
    class Lab:
        def opener(self, index, backend):
            if index == 4:
                raise RuntimeError("broken driver")
            capture = FakeCapture(FakeCard())
            capture.open = index in (0, 2)
            return capture

    devices = list_capture_devices(max_index=6, opener=Lab().opener)
    assert [d.index for d in devices] == [0, 2]
    assert (devices[0].width, devices[0].height) == (1280, 720)
    assert devices[1].spec == "camera:2" and "1280x720" in devices[1].label


def test_device_list_on_this_machine_returns_quietly(capfd):
    if list(Path("/dev").glob("video*")):
        pytest.skip("this machine has video devices")
    assert list_capture_devices() == []
    assert "WARN" not in capfd.readouterr().err


# --- video files -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip20(tmp_path_factory) -> Path:
    """2 s at 20 fps."""
    return write_clip(tmp_path_factory.mktemp("clips") / "scan.mp4", n_frames=40, fps=20.0)


def test_file_plays_at_its_own_frame_rate_in_order(started, clip20):
    clock = FakeClock()
    source = clock.drive(FileSource(clip20, loop=False))
    assert source.duration_s == pytest.approx(2.0)
    assert source.status.info["fps"] == pytest.approx(20.0)
    frames = published(source)
    started(source)
    clock.run(0.99)
    # 20 fps for (just under) 1 s: frames 0..19, one every 50 ms of the source's clock
    shown = [frame_index_of(f.image) for f in frames]
    assert shown == list(range(20))
    assert all(f.meta["frame_index"] == s for f, s in zip(frames, shown, strict=True))
    assert np.diff([f.t_capture for f in frames]) == pytest.approx(0.05, abs=1e-9)
    assert red_corner_rgb(frames[0].image)[0] > 150  # RGB, not BGR
    assert source.status.state is SourceState.LIVE
    clock.run(2.0)  # and no further than its last frame
    assert frame_index_of(frames[-1].image) == 39 and len(frames) == 40
    assert source.status.state is SourceState.ENDED


def test_pause_seek_and_step(started, clip20):
    clock = FakeClock()
    source = clock.drive(FileSource(clip20))
    started(source)
    clock.run(0.2)
    source.pause()
    clock.settle()
    assert source.status.state is SourceState.PAUSED
    still = source.latest().frame_id
    clock.run(1.0)  # twenty frame periods
    assert source.latest().frame_id == still  # nothing moves while paused

    source.seek(1.0)  # shows the frame at 1 s even while paused
    clock.settle()
    assert frame_index_of(source.latest().image) == 20
    assert source.position_s == pytest.approx(1.0)
    source.step(1)
    clock.settle()
    assert frame_index_of(source.latest().image) == 21
    source.step(-3)
    clock.settle()
    assert frame_index_of(source.latest().image) == 18
    assert source.paused and source.status.state is SourceState.PAUSED

    frames = published(source)
    source.toggle_pause()
    clock.run(0.38)  # on from where it stood, at the clip's pace
    assert [frame_index_of(f.image) for f in frames] == list(range(19, 27))


def test_step_and_seek_stay_inside_the_clip(started, clip20):
    source = started(FileSource(clip20))
    assert source.wait_frame(-1, WAIT_S) is not None
    source.seek(0)
    source.step(-5)
    assert wait_until(lambda: source.paused and frame_index_of(source.latest().image) == 0)
    source.seek(99.0)
    assert wait_until(lambda: frame_index_of(source.latest().image) == 39)


def test_without_loop_the_clip_ends_on_its_last_frame(started, tmp_path):
    clip = write_clip(tmp_path / "short.avi", n_frames=8, fps=40.0)
    source = started(FileSource(clip, loop=False))
    assert wait_until(lambda: source.status.state is SourceState.ENDED)
    assert frame_index_of(source.latest().image) == 7
    assert "short.avi" in source.status.message
    source.loop = True  # turning loop on at the end plays it again
    assert wait_until(lambda: source.status.state is SourceState.LIVE)


def test_loop_starts_over_with_rising_frame_ids(started, tmp_path):
    clip = write_clip(tmp_path / "short.mkv", n_frames=8, fps=40.0)
    source = FileSource(clip, loop=True)
    frames = published(source)
    started(source)
    assert wait_until(lambda: len(frames) >= 20)
    shown = [frame_index_of(f.image) for f in frames[:20]]
    assert shown == [i % 8 for i in range(20)]  # wrapped around, twice
    ids = [f.frame_id for f in frames]
    assert ids == sorted(set(ids))
    assert source.status.state is SourceState.LIVE


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing.mp4", "not found"),
    (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", "notes.mp4"),
    (lambda d: truncate_copy(write_clip(d / "full.mp4"), d / "cut.mp4"), "cut.mp4"),
])
def test_unplayable_files_give_a_clear_error_and_never_raise(started, tmp_path, make, expected):
    path = make(tmp_path)
    source = FileSource(path)
    assert source.status.state is SourceState.ERROR  # known before start: the UI can say so
    assert expected in source.status.message
    started(source)  # must not raise
    source.pause()
    source.seek(1.0)
    source.step(1)
    assert wait_until(lambda: not source.running)  # done: it will never publish a frame
    assert source.latest() is None and source.status.state is SourceState.ERROR


def test_truncated_clip_plays_what_is_readable_then_ends(started, tmp_path):
    full = write_clip(tmp_path / "full.avi", n_frames=30, fps=60.0)
    cut = truncate_copy(full, tmp_path / "cut.avi", 0.5)
    source = started(FileSource(cut, loop=False))
    assert wait_until(lambda: source.status.state is SourceState.ENDED)
    assert "cut.avi" in source.status.message and "cut off" in source.status.message
    last = frame_index_of(source.latest().image)
    assert 0 < last < 29  # the readable part was shown, its last frame stays
    assert source.duration_s == pytest.approx((last + 1) / 60.0)


def test_clip_emptied_while_playing_says_so_and_keeps_its_last_frame(started, tmp_path):
    clip = write_clip(tmp_path / "live.avi", n_frames=20, fps=60.0, size=(640, 480))
    source = started(FileSource(clip, loop=True))
    assert wait_until(lambda: source.latest() is not None)
    # it must not loop what FFmpeg still has buffered as if that were the clip
    clip.write_bytes(b"")  # the recording is wiped while the app plays it
    assert wait_until(lambda: source.status.state is SourceState.ERROR)
    assert "can no longer be read" in source.status.message
    assert source.latest() is not None  # the last image stays for the window


# --- factory -----------------------------------------------------------------------------------

def test_factory_builds_the_right_source(clip20):
    camera = open_source("camera:2")
    assert isinstance(camera, CaptureSource) and camera.index == 2 and not camera.running
    assert open_source("camera").index == 0
    video = open_source(str(clip20))
    assert isinstance(video, FileSource) and video.path == clip20


@pytest.mark.parametrize("spec, message", [
    ("webcam", "valid forms"),
    ("", "valid forms"),
    ("camera:one", "camera index"),
    ("phantom:knee", "jugular"),
    ("/no/such/clip.mp4", "not found"),
])
def test_factory_rejects_bad_specs_with_a_clear_message(spec, message):
    with pytest.raises(ValueError, match=message):
        open_source(spec)


def test_source_keys_identify_the_same_source(clip20):
    assert source_key("phantom") == source_key("phantom:jugular") == source_key("PHANTOM:Jugular")
    assert source_key("phantom:plexus") != source_key("phantom")
    assert source_key("camera") == source_key("camera:0") != source_key("camera:1")
    assert source_key(str(clip20)) == source_key(str(clip20.parent / ".." / clip20.parent.name
                                                     / clip20.name))
    assert source_key("/gone/clip.mp4").startswith("file:")


@pytest.mark.skipif(importlib.util.find_spec("sonoguide.sources.phantom") is None,
                    reason="phantom source not built yet")
def test_factory_opens_phantom_scenes():
    jugular = open_source("phantom")
    plexus = open_source("phantom:plexus")
    assert type(jugular).__name__ == "PhantomSource" == type(plexus).__name__
    # the limb block views a trainee can scan too
    limbs = ("axillary", "infraclavicular", "elbow", "femoral", "popliteal")
    assert [open_source(f"phantom:{s}").name for s in limbs] == [f"phantom:{s}" for s in limbs]


@pytest.mark.parametrize("name", ["still.png", "one.avi"])
def test_a_single_picture_is_shown_as_a_still_not_an_error(started, tmp_path, name):
    image = frame_image(7, size=(160, 120))
    path = tmp_path / name
    if name.endswith(".png"):
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    else:
        write_clip(path, n_frames=1, fps=30.0, size=(160, 120))
    clock = FakeClock()
    source = started(clock.drive(FileSource(path, loop=True)))  # the window's default: loop
    clock.run(1.0)  # a still is published once, not looped as a one-frame film
    assert source.status.state is SourceState.ENDED
    assert source.frames_published == 1 and source.latest() is not None
    assert source.status.info.get("still") and "still image" in source.status.message
    if name.endswith(".png"):
        assert np.abs(source.latest().image.astype(int) - image).mean() < 3


def test_a_file_name_too_long_for_the_disk_is_a_message_not_a_traceback(tmp_path):
    spec = str(tmp_path / ("a" * 300 + ".mp4"))
    with pytest.raises(ValueError, match="too long"):
        open_source(spec)
    source = FileSource(spec)  # the window's file dialog path goes straight here
    assert source.status.state is SourceState.ERROR and "too long" in source.status.message


def test_every_scene_the_simulator_draws_is_a_source_and_in_the_menu_list():
    from sonoguide.phantom.scenes import ALIASES, LABELS, SCENES

    for scene in (*SCENES, *ALIASES):  # interscalene was once refused though the phantom had it
        source = open_source(f"phantom:{scene}")
        assert source.simulator.scene == ALIASES.get(scene, scene)
    assert {ALIASES.get(s, s) for s in LABELS} == set(SCENES)  # each drawn scene has a label
    with pytest.raises(ValueError, match="interscalene"):  # the message lists the real ones
        open_source("phantom:knee")
