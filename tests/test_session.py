"""The live session and its image area, without Qt: what the model looks at, at which scale,
and what a viewer is shown, as the window and `--headless` both get it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sonoguide.pipeline.calibration import RoiStore
from sonoguide.pipeline.frames import Frame, Roi
from sonoguide.pipeline.image_area import ImageArea
from sonoguide.pipeline.models import LoadedModel, analyzer_for
from sonoguide.pipeline.segmenter import Segmenter
from sonoguide.pipeline.session import FOLLOWED, FRESH, NO_MODEL, LiveSession
from sonoguide.sources.base import FrameSource, SourceState
from tests.model_factory import make_model
from tests.waiting import wait_until, wait_value


def screen(w: int = 320, h: int = 240) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w), np.uint8)


def frame(image: np.ndarray, i: int = 0, spacing: float | None = None) -> Frame:
    return Frame(image, i, float(i), "card", spacing)


def test_image_area_is_found_again_when_the_picture_size_changes():
    said: list[str] = []
    area = ImageArea(lambda image: Roi(10, 10, image.shape[1] - 20, image.shape[0] - 20),
                     say=said.append)
    area.reset("camera:0")
    big = area.prepare(frame(screen(1920, 1080)))
    assert big.roi == Roi(10, 10, 1900, 1060)
    small = area.prepare(frame(screen(640, 480), 1))  # the card switched resolution
    assert small.roi == Roi(10, 10, 620, 460)  # never the old area clamped to a margin strip
    assert any("640x480" in text for text in said)


def test_a_remembered_area_that_does_not_fit_is_refused_and_found_again(tmp_path):
    store = RoiStore(tmp_path / "rois.json")
    store.set("camera:0@320x240", roi=Roi(100000, 100000, 50, 50), pixel_spacing_mm=1000.0)
    said: list[str] = []
    area = ImageArea(lambda image: Roi(20, 20, 200, 180), store, say=said.append)
    area.reset("camera:0")
    prepared = area.prepare(frame(screen()))
    assert prepared.roi == Roi(20, 20, 200, 180)  # detected, not a 1x1 corner
    assert prepared.pixel_spacing_mm is None  # 1000 mm per pixel is no scale
    assert any("does not fit" in text for text in said)
    assert any("not plausible" in text for text in said)


def test_area_and_scale_are_remembered_per_source_and_picture_size(tmp_path):
    store = RoiStore(tmp_path / "rois.json")
    area = ImageArea(lambda image: Roi.full(image), store)
    area.reset("camera:0")
    area.prepare(frame(screen()))
    assert area.set_roi(Roi(30, 20, 200, 150)) == Roi(30, 20, 200, 150)
    assert area.set_roi(Roi(30, 20, 20, 10)) is None  # too small for an ultrasound image
    assert area.calibrate((0.0, 0.0), (0.0, 100.0), 10.0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="mm/px"):
        area.calibrate((0.0, 0.0), (0.0, 1.0), 400.0)  # 400 mm per pixel: a typo

    again = ImageArea(lambda image: Roi.full(image), RoiStore(tmp_path / "rois.json"))
    again.reset("camera:0")
    prepared = again.prepare(frame(screen(), spacing=None))
    assert prepared.roi == Roi(30, 20, 200, 150) and prepared.pixel_spacing_mm == 0.1
    other_size = again.prepare(frame(screen(640, 480), 1))
    assert other_size.roi == Roi(0, 0, 640, 480)  # another layout: its own entry


class StillSource(FrameSource):
    """The same textured picture at `fps`; `simulator` marks it as a phantom (all image)."""

    def __init__(self, n: int = 40, fps: float = 60.0, phantom: bool = False) -> None:
        super().__init__("still", nominal_fps=fps)
        self.n = n
        if phantom:
            self.simulator = object()

    def _run(self) -> None:
        self._set_status(SourceState.LIVE)
        image = np.full((128, 160), 90, np.uint8)
        rng = np.random.default_rng(1)
        image[:] = rng.integers(40, 140, image.shape)
        image[40:80, 50:100] = 250  # a bright block: the test model's class 1
        t = time.monotonic()
        for _ in range(self.n):
            self._publish(image, pixel_spacing_mm=0.1)
            t += 1.0 / self.nominal_fps
            if not self._sleep_until(t):
                return
        self._set_status(SourceState.ENDED, "end")


def test_the_phantom_is_analysed_whole_whatever_the_detector_says():
    session = LiveSession(ImageArea(lambda image: Roi(5, 5, 70, 70)))
    session.set_source(StillSource(phantom=True), "phantom:jugular")
    session.source.start()
    try:
        got = session.wait_pull(2.0)
    finally:
        session.stop()
    assert got is not None and got.roi == Roi(0, 0, 160, 128)


def test_session_draws_fresh_or_followed_and_never_an_unmoved_old_result(tmp_path):
    segmenter = Segmenter(make_model(tmp_path / "m.onnx"), provider="cpu")
    session = LiveSession()
    session.set_source(StillSource(n=30), "still")
    assert session.show() is None  # nothing on screen yet
    session.source.start()
    first = session.wait_pull(2.0)
    assert session.show().kind == NO_MODEL  # video before any model: drawn plain
    session.set_model(LoadedModel(segmenter, analyzer_for(segmenter, "plexus")))
    kinds = []
    try:
        for _ in range(20):
            if session.wait_pull(1.0) is None:
                break
            # drawn with this frame's own result, or one moved onto it, once it comes
            shown = wait_value(lambda: (lambda s: s if s.kind in (FRESH, FOLLOWED) else None)(
                session.show()))
            assert shown is not None, "no overlay came for the frame on screen"
            kinds.append(shown.kind)
            if shown.kind == FOLLOWED:
                # moved onto this frame: it is this frame's overlay, made from an older one
                assert shown.overlay.frame_id == shown.frame.frame_id
                assert shown.overlay.warped_from < shown.frame.frame_id
    finally:
        session.stop()
    assert first is not None and kinds and set(kinds) <= {FRESH, FOLLOWED}
    counts = session.display_counts()
    assert counts.fresh + counts.followed >= len(kinds)
    # the nerve block's area, in mm2 from the frame's own scale (0.1 mm/px: 40x50 px = 20 mm2)
    sample = session.area_timeline.samples()[-1]
    assert session.area_timeline.unit == "mm2"
    assert sample.areas["nerve"] == pytest.approx(20.0, rel=0.15)


def test_freezing_stops_new_frames_and_a_new_source_starts_afresh():
    session = LiveSession()
    session.set_source(StillSource(n=100), "still")
    session.source.start()
    try:
        assert session.wait_pull(2.0) is not None
        session.frozen = True
        held = session.current
        assert wait_until(lambda: session.source.frames_published > held.frame_id + 3)
        assert session.pull() is None and session.current is held  # newer ones wait
        session.frozen = False
        old = session.set_source(StillSource(n=100), "still-2")
        old.stop()
        assert session.current is None and len(session.area_timeline) == 0
        session.source.start()
        assert session.wait_pull(2.0).frame_id == 0
    finally:
        session.stop()


def _drive_until(session: LiveSession, done) -> bool:
    """What the window's timer does (pull the newest frame, decide what to draw) until `done()`."""
    def step() -> bool:
        session.pull()
        session.show()
        return done()

    return wait_until(step)


def test_a_clip_that_waits_for_the_model_never_sticks_on_a_frame(tmp_path):
    """A model that arrives while a frame is already on screen analyses that frame at once (the
    clip would otherwise wait for an answer that never comes); a frozen view lets the clip
    play on underneath instead of crawling from one give-up to the next."""
    from sonoguide.sources.file import FileSource
    from tests.clips import write_clip

    clip = write_clip(tmp_path / "clip.avi", n_frames=120)
    segmenter = Segmenter(make_model(tmp_path / "m.onnx"), provider="cpu")
    session = LiveSession()
    source = FileSource(clip)
    source.analysis_wait_s = 3600.0  # a frame left waiting would stop the clip for good
    session.set_source(source, "clip")
    source.start()
    try:
        assert session.wait_pull(2.0) is not None  # on screen before any model
        session.set_model(LoadedModel(segmenter, analyzer_for(segmenter, "plexus")))
        assert source.analyse_every_frame
        assert _drive_until(session, lambda: session.results_seen >= 10)
        assert source.frames_not_analysed == 0
        session.frozen = True
        published, results = source.frames_published, session.results_seen
        assert _drive_until(session, lambda: source.frames_published >= published + 8)
        assert session.results_seen <= results + 1  # played on underneath, not analysed
        assert source.frames_not_analysed == 0
    finally:
        session.stop()


def test_a_screen_without_a_scale_gets_it_from_the_depth_ruler_kept_only_when_confirmed(
        tmp_path):
    from sonoguide.pipeline.calibration import RoiStore
    from sonoguide.pipeline.depth_scale import find_depth_scale
    from tests.scanner_screens import draw_screen

    screen = draw_screen((1280, 720), 40.0)
    store = RoiStore(tmp_path / "rois.json")
    said: list[str] = []
    area = ImageArea(lambda image: screen.roi, store, say=said.append,
                     find_scale=find_depth_scale)
    area.reset("camera:0")
    frame = area.prepare(Frame(screen.image, 0, 0.0, "camera:0"))
    assert frame.pixel_spacing_mm == pytest.approx(screen.mm_per_px, rel=0.02)
    assert any("read from the ruler" in s for s in said)
    assert store.get(area.store_key) is None  # used, not remembered until the user keeps it
    assert area.confirm_scale() == pytest.approx(screen.mm_per_px, rel=0.02)
    assert store.get(area.store_key).pixel_spacing_mm == frame.pixel_spacing_mm
    assert area.found_scale is None

    again = ImageArea(lambda image: screen.roi, store, find_scale=lambda *_: 1 / 0)
    again.reset("camera:0")  # remembered: the ruler is not read again (nor can it break it)
    assert again.prepare(Frame(screen.image, 1, 0.0, "camera:0")).pixel_spacing_mm == \
        frame.pixel_spacing_mm
