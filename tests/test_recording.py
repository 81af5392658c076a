"""Recordings: the image area and what was shown, crash-safe, and replayed like a clip."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from sonoguide import cli
from sonoguide.pipeline.frames import Frame, Roi, Segmentation, Structure
from sonoguide.pipeline.recording import FRAMES, MANIFEST, Recorder
from sonoguide.sources.base import SourceState
from sonoguide.sources.factory import open_source
from sonoguide.sources.recording import RecordingSource
from tests.clips import published
from tests.model_factory import make_model
from tests.waiting import wait_until


def screen(i: int, size: tuple[int, int] = (120, 160)) -> np.ndarray:
    """A scanner-like screen whose image area (rows 20-99, cols 40-139) holds a bright bar at
    a column that moves with i; the patient name sits outside it, at the top left."""
    image = np.zeros((*size, 3), np.uint8)
    image[2:10, 2:60] = 255  # "patient name": must never reach a recording
    image[20:100, 40:140] = 60
    image[30:90, 50 + i % 60: 58 + i % 60] = 230
    return image


def overlay(frame_id: int) -> Segmentation:
    contour = np.array([[50, 30], [58, 30], [58, 90], [50, 90]], np.float32)
    vein = Structure("vein", contour, 480.0, (54.0, 60.0), 0.93, 4.8)
    return Segmentation(frame_id, 0.0, 0.03, ("background", "vein", "artery"),
                        Roi(40, 20, 100, 80), np.zeros((80, 100), np.uint8), (vein,))


def record(folder: Path, n: int, *, fps: float = 30.0, segment_s: float = 0.25,
           **kwargs) -> Recorder:
    recorder = Recorder(folder, info={"source": "test"}, fps=fps, segment_s=segment_s, **kwargs)
    for i in range(n):
        frame = Frame(screen(i), i, 100.0 + i / fps, "test", pixel_spacing_mm=0.1,
                      roi=Roi(40, 20, 100, 80))
        recorder.add(frame, "fresh", overlay(i))
    recorder.stop()
    return recorder


def replay_all(folder: Path) -> tuple[RecordingSource, list[Frame]]:
    """Play a recording once through; every frame it publishes, in order."""
    source = RecordingSource(folder, loop=False)
    frames = published(source)
    source.start()
    try:
        assert wait_until(lambda: source.status.state in (SourceState.ENDED, SourceState.ERROR))
    finally:
        source.stop()
    return source, frames


def test_a_recording_holds_the_image_area_only_and_what_was_shown(tmp_path):
    folder = tmp_path / "rec"
    status = record(folder, 24).status()
    assert status.frames == 24 and status.dropped == 0 and not status.recording
    assert len(list(folder.glob("seg-*.avi"))) >= 3  # short self-contained segments
    lines = [json.loads(t) for t in (folder / FRAMES).read_text().splitlines()]
    assert [d["frame_id"] for d in lines] == list(range(24))
    vein = lines[5]["overlay"]["structures"][0]
    assert vein["class"] == "vein" and vein["area_mm2"] == 4.8 and len(vein["contour"]) == 4
    assert json.loads((folder / MANIFEST).read_text())["frames"] == 24

    source, frames = replay_all(folder)
    assert len(frames) == 24 and source.status.state is SourceState.ENDED
    first = frames[0]
    assert first.image.shape[:2] == (80, 100)  # the image area, not the screen
    assert first.pixel_spacing_mm == 0.1 and first.meta["recorded"]["frame_id"] == 0
    expected = Roi(40, 20, 100, 80).crop(screen(7))
    assert np.abs(frames[7].image.astype(int) - expected).mean() < 4  # JPEG, quality 90


def test_a_recording_replays_through_the_factory_and_headless(tmp_path, capsys):
    folder = tmp_path / "rec"
    record(folder, 12)
    assert isinstance(open_source(str(folder)), RecordingSource)
    model = make_model(tmp_path / "ij.onnx", classes=("background", "vein", "artery"))
    report_path = tmp_path / "r.json"
    code = cli.main(["--headless", "--source", str(folder), "--model", str(model),
                     "--provider", "cpu", "--report", str(report_path)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert report["frames_in"] == 12 and report["pixel_spacing_mm"] == 0.1
    assert report["roi"] == [0, 0, 100, 80]  # the whole recorded picture is the image area


def test_a_new_image_area_size_starts_a_new_segment_and_both_play(tmp_path):
    folder = tmp_path / "rec"
    recorder = Recorder(folder, segment_s=10.0)
    for i in range(6):
        roi = Roi(40, 20, 100, 80) if i < 3 else Roi(30, 15, 120, 90)
        recorder.add(Frame(screen(i), i, i / 30, "t", roi=roi), "hidden", None)
    assert recorder.stop().frames == 6
    assert len(list(folder.glob("seg-*.avi"))) == 2
    _, frames = replay_all(folder)
    assert [f.image.shape[:2] for f in frames] == [(80, 100)] * 3 + [(90, 120)] * 3


def test_a_nearly_full_disk_stops_the_recording_and_keeps_what_was_written(tmp_path):
    told: list[str] = []
    recorder = Recorder(tmp_path / "rec", min_free_bytes=2**62, on_stop=told.append)
    recorder.add(Frame(screen(0), 0, 0.0, "t", roi=Roi(40, 20, 100, 80)), "hidden", None)
    assert wait_until(lambda: not recorder.recording)
    assert told and "disk is nearly full" in told[0]
    status = recorder.stop()
    assert "nearly full" in status.stopped_because
    manifest = json.loads((tmp_path / "rec" / MANIFEST).read_text())
    assert "nearly full" in manifest["stopped_because"]


def test_a_recording_is_never_overwritten(tmp_path):
    record(tmp_path / "rec", 2)
    with pytest.raises(ValueError, match="already holds a recording"):
        Recorder(tmp_path / "rec")


def test_a_damaged_recording_plays_what_it_can_and_says_what_it_left_out(tmp_path):
    folder = tmp_path / "rec"
    record(folder, 24)
    segments = sorted(folder.glob("seg-*.avi"))
    segments[1].write_bytes(segments[1].read_bytes()[:300])  # cut by a crash
    with (folder / FRAMES).open("a") as fh:
        fh.write('{"frame_id": 99, "segm')  # the line being written when power went
    source, frames = replay_all(folder)
    assert "seg-000001.avi cannot be read" in source.status.info.get("warning", "")
    assert "1 broken line" in source.status.info.get("warning", "")
    assert len(frames) == 24 - _frames_in(folder, segments[1].name)
    assert RecordingSource(tmp_path).status.state is SourceState.ERROR  # no recording there


def _frames_in(folder: Path, segment: str) -> int:
    lines = [json.loads(t) for t in (folder / FRAMES).read_text().splitlines()[:-1]]
    return sum(d["segment"] == segment for d in lines)


def test_sigkill_while_recording_loses_at_most_the_last_second(tmp_path):
    """A kill at a random moment: every complete segment plays, up to within 1 s of the kill
    (the long run: python -m tests.reliability.record_kill --minutes 10)."""
    from tests.reliability.record_kill import record_and_kill

    model = make_model(tmp_path / "p.onnx")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    result = record_and_kill(
        tmp_path / "rec", random.Random(os.getpid()).uniform(2.0, 4.0),
        ["--source", "phantom:plexus", "--mode", "plexus", "--model", str(model),
         "--provider", "cpu", "--threads", "1"], env=env)
    assert result.ok, result
    assert result.segments >= 1 and result.frames > 0
    manifest = json.loads((tmp_path / "rec" / MANIFEST).read_text())
    assert manifest["ended"] is None  # it never ended: what played was saved as it went


def test_a_recording_replays_with_the_findings_recorded_with_it(tmp_path, capsys):
    from sonoguide.pipeline.replay import segmentation_from_record

    folder = tmp_path / "rec"
    record(folder, 12)
    _, frames = replay_all(folder)
    seg = segmentation_from_record(frames[0])
    assert seg is not None and seg.frame_id == frames[0].frame_id
    # the vein outlined at screen columns 50-58, rows 30-90 lies at 10-18, 10-70 of the
    # recorded image area (whose corner was 40, 20)
    ys, xs = np.nonzero(seg.labels == 1)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 18, 10, 70)
    assert seg.structures[0].centroid == (14.0, 40.0) and seg.structures[0].area_mm2 == 4.8

    report_path = tmp_path / "r.json"
    code = cli.main(["--headless", "--source", str(folder), "--recorded-findings",
                     "--report", str(report_path)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert report["frames_inferred"] == 12 and report["provider"] == "recorded"
    assert report["areas"]["classes"]["vein"]["median"] == 4.8  # as recorded, no model run
    assert cli.main(["--headless", "--source", "phantom", "--recorded-findings"]) == 2
