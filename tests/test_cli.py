"""`sonoguide` CLI and the headless runner, end to end with real sources and real ONNX models."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from sonoguide import cli
from sonoguide.pipeline import runner
from sonoguide.pipeline.analysis import Analyzer
from sonoguide.pipeline.models import LoadedModel
from sonoguide.pipeline.runner import run_headless
from sonoguide.pipeline.segmenter import Segmenter
from sonoguide.pipeline.session import LiveSession
from sonoguide.sources.base import FrameSource, SourceState
from tests.clips import truncate_copy, write_clip
from tests.model_factory import JUGULAR, make_model
from tests.waiting import wait_until

REPORT_KEYS = {"source", "source_state", "ended_by", "frames_in", "frames_seen",
               "frames_inferred", "frames_dropped", "inferred_fraction", "input_fps",
               "inference_fps", "latency_ms", "inference_ms", "provider", "provider_note",
               "model", "mode", "wall_s", "errors", "source_spec"}


@pytest.fixture(scope="module")
def plexus_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("m") / "plexus-test.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("c") / "scan.avi", n_frames=15, size=(160, 128))


def _run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_headless_clip_writes_a_full_report(tmp_path, plexus_model, clip, capsys):
    report_path = tmp_path / "out" / "r.json"
    code, out, err = _run(["--headless", "--source", str(clip), "--mode", "plexus",
                           "--model", str(plexus_model), "--provider", "cpu",
                           "--max-frames", "10", "--report", str(report_path)], capsys)

    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert REPORT_KEYS <= set(report)
    assert report["frames_in"] == 10
    assert 0 < report["frames_inferred"] <= 10
    assert report["frames_dropped"] == 10 - report["frames_inferred"]
    assert report["provider"] == "CPU"
    assert report["model"]["name"] == "plexus-test" and report["model"]["version"] == "test-1"
    assert report["source"] == "file:scan.avi" and report["mode"] == "plexus"
    assert report["roi"][2] <= 160 and report["roi"][3] <= 128  # the area the model saw
    assert set(report["latency_ms"]) == {"p50", "p95", "max"}
    assert report["latency_ms"]["p50"] > 0 and report["errors"] == []
    assert "10 frames in" in out and "plexus-test" in out and out.count("\n") == 1


def test_headless_clip_without_limit_plays_once(plexus_model, clip, capsys, tmp_path):
    report_path = tmp_path / "r.json"
    code, _, err = _run(["--headless", "--source", str(clip), "--mode", "plexus",
                         "--model", str(plexus_model), "--report", str(report_path)], capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["frames_in"] == 15 and report["ended_by"] == "source ended"


@pytest.mark.parametrize("model_kind", ["missing", "corrupt", "wrong_mode"])
def test_bad_model_still_runs_video_and_says_why(tmp_path, clip, capsys, model_kind):
    model = tmp_path / "m.onnx"
    if model_kind == "corrupt":
        model.write_bytes(b"\x00garbage")
    elif model_kind == "wrong_mode":
        make_model(model, classes=JUGULAR)  # an IJ model in plexus mode
    report_path = tmp_path / "r.json"
    code, out, err = _run(["--headless", "--source", str(clip), "--mode", "plexus",
                           "--model", str(model), "--max-frames", "5",
                           "--report", str(report_path)], capsys)

    assert code == 0, "the video ran, so this is not a failure to run"
    assert str(model) in err and "without overlay" in err
    report = json.loads(report_path.read_text())
    assert report["frames_in"] == 5 and report["frames_inferred"] == 0
    assert report["provider"] is None and report["latency_ms"]["p95"] is None
    assert len(report["errors"]) == 1 and str(model) in report["errors"][0]
    assert "no overlay" in out


@pytest.mark.parametrize("spec, message", [
    ("nowhere/scan.mp4", "not found"),
    ("phantom:knee", "unknown phantom scene"),
    ("camera:x", "camera index"),
])
def test_unusable_source_is_a_clear_message_and_nonzero_exit(spec, message, plexus_model,
                                                             capsys):
    code, _, err = _run(["--headless", "--source", spec, "--model", str(plexus_model)], capsys)
    assert code == 1
    assert "source" in err and message in err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--mode", "knee"])
    assert info.value.code == 2


@pytest.mark.parametrize("argv, source, mode", [
    ([], "phantom:jugular", "jugular"),
    (["--mode", "plexus"], "phantom:plexus", "plexus"),
    (["--source", "phantom", "--mode", "plexus"], "phantom:plexus", "plexus"),
    (["--source", "camera:1"], "camera:1", "jugular"),
])
def test_no_headless_opens_the_window_with_the_mode_phantom(monkeypatch, argv, source, mode):
    import sonoguide.ui.app

    seen = {}

    def fake_run_gui(args):
        seen.update(vars(args))
        return 0

    monkeypatch.setattr(sonoguide.ui.app, "run_gui", fake_run_gui)
    assert cli.main(argv) == 0
    assert seen["source"] == source and seen["mode"] == mode
    assert seen["provider"] == "auto" and seen["model"] is None


@pytest.mark.skipif(importlib.util.find_spec("sonoguide.sources.phantom") is None,
                    reason="sonoguide.sources.phantom not there yet")
def test_headless_phantom_end_to_end(tmp_path, capsys):
    model = make_model(tmp_path / "ij.onnx", classes=JUGULAR, size=(96, 96), presence=True)
    report_path = tmp_path / "r.json"
    code, out, err = _run(["--headless", "--source", "phantom", "--model", str(model),
                           "--max-frames", "30", "--report", str(report_path)], capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["frames_in"] == 30 and report["frames_inferred"] > 0
    assert report["source_spec"] == "phantom:jugular" and report["mode"] == "jugular"
    assert report["input_fps"] > 0


def test_headless_timeline_csv_and_area_summary(tmp_path, capsys):
    model = make_model(tmp_path / "ij.onnx", classes=JUGULAR, size=(96, 96))
    report_path, csv_path = tmp_path / "r.json", tmp_path / "out" / "areas.csv"
    code, out, err = _run(["--headless", "--source", "phantom", "--model", str(model),
                           "--max-frames", "20", "--report", str(report_path),
                           "--timeline", str(csv_path)], capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    rows = csv_path.read_text().splitlines()
    # the phantom knows its pixel spacing: areas in mm2, one row per inferred frame
    assert rows[0] == "frame_id,t_s,vein_mm2,artery_mm2"
    assert len(rows) - 1 == report["frames_inferred"] > 0
    ids = [int(r.split(",")[0]) for r in rows[1:]]
    assert ids == sorted(ids)
    areas = report["areas"]
    assert areas["unit"] == "mm2" and set(areas["classes"]) == {"vein", "artery"}
    for stats in areas["classes"].values():
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert stats["frames"] == report["frames_inferred"]


def test_cli_help_mentions_the_timeline(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "--timeline" in capsys.readouterr().out


class BurstSource(FrameSource):
    """Publishes frames three at a time: a reader can only ever see the last of each burst
    (the burst goes out under the mailbox's lock, so no reader gets in between)."""

    def __init__(self, bursts: int, fail: bool = False) -> None:
        super().__init__("burst", nominal_fps=30)
        self.bursts, self.fail = bursts, fail

    def _run(self) -> None:
        self._set_status(SourceState.LIVE)
        image = np.full((64, 64), 250, np.uint8)
        for _ in range(self.bursts):
            with self._slot._cond:
                for _ in range(3):
                    self._publish(image)
            if not self._sleep_until(time.monotonic() + 0.03):
                return
        if self.fail:
            raise OSError("capture card unplugged")
        self._set_status(SourceState.ENDED, "end of stream")


def session_on(source: FrameSource, segmenter: Segmenter | None = None,
               mode: str = "plexus") -> LiveSession:
    """The live session the window and `--headless` drive, on `source` with `segmenter`."""
    session = LiveSession()
    session.set_source(source, source.name)
    if segmenter is not None:
        session.set_model(LoadedModel(segmenter, Analyzer(segmenter.classes, mode)))
    return session


def test_runner_counts_frames_it_never_saw_as_dropped(plexus_model):
    segmenter = Segmenter(plexus_model, provider="cpu")
    session = session_on(BurstSource(bursts=6), segmenter)
    worker = session.worker

    report = run_headless(session, max_frames=None)

    assert report["frames_in"] == 18
    assert report["frames_seen"] <= 6
    assert report["frames_inferred"] <= report["frames_seen"]
    assert report["frames_dropped"] == 18 - report["frames_inferred"] >= 12
    assert report["ended_by"] == "source ended" and not worker.running


def test_runner_reports_a_source_error(plexus_model):
    report = run_headless(session_on(BurstSource(bursts=2, fail=True)), max_frames=None)
    assert report["frames_in"] == 6 and report["frames_inferred"] == 0
    assert report["ended_by"] == "source error"
    assert any("capture card unplugged" in e for e in report["errors"])


class DiscSource(FrameSource):
    """A bright disc (radius 24 px) on mid-grey, 0.1 mm per pixel: a vein of known area."""

    def __init__(self, frames: int = 8) -> None:
        super().__init__("disc", nominal_fps=30)
        self.frames = frames

    def _run(self) -> None:
        self._set_status(SourceState.LIVE)
        yy, xx = np.mgrid[0:128, 0:128]
        image = np.full((128, 128), 128, np.uint8)
        image[(xx - 64) ** 2 + (yy - 64) ** 2 < 24 ** 2] = 250
        for _ in range(self.frames):
            self._publish(image, pixel_spacing_mm=0.1)
            if not self._sleep_until(time.monotonic() + 0.04):
                return
        self._set_status(SourceState.ENDED, "end of stream")


def test_runner_area_summary_matches_the_disc_in_mm2(tmp_path):
    model = make_model(tmp_path / "ij.onnx", classes=JUGULAR, size=(64, 64))
    segmenter = Segmenter(model, provider="cpu")
    samples: list = []
    report = run_headless(session_on(DiscSource(), segmenter, "jugular"), max_frames=None,
                          on_area=samples.append)
    vein = report["areas"]["classes"]["vein"]
    truth = np.pi * 24 ** 2 * 0.1 ** 2  # 18.1 mm2
    assert report["areas"]["unit"] == "mm2"
    assert vein["median"] == pytest.approx(truth, rel=0.1)
    assert report["areas"]["classes"]["artery"]["max"] == 0.0  # no dark disc: no artery
    assert len(samples) == report["frames_inferred"] > 0


class DropoutSource(FrameSource):
    """A capture card that loses its signal for `gap_s` mid-run, then comes back."""

    def __init__(self, gap_s: float) -> None:
        super().__init__("dropout", nominal_fps=30)
        self.gap_s = gap_s

    def _run(self) -> None:
        image = np.full((64, 64), 250, np.uint8)
        for phase in ("before", "gap", "after"):
            if phase == "gap":
                self._set_status(SourceState.NO_SIGNAL, "no signal")
                if not self._sleep_until(time.monotonic() + self.gap_s):
                    return
                continue
            self._set_status(SourceState.LIVE)
            for _ in range(5):
                self._publish(image)
                if not self._sleep_until(time.monotonic() + 0.03):
                    return
        self._set_status(SourceState.ENDED, "end of stream")


def test_a_capture_dropout_longer_than_the_stall_limit_is_waited_for(monkeypatch, plexus_model):
    monkeypatch.setattr(runner, "STALL_TIMEOUT_S", 0.3)
    segmenter = Segmenter(plexus_model, provider="cpu")
    report = run_headless(session_on(DropoutSource(gap_s=1.0), segmenter), max_frames=None)
    assert report["ended_by"] == "source ended"  # not "source stalled" during the gap
    assert report["frames_in"] == 10  # the frames after the reconnect were analysed too
    lost = report["signal_lost"]
    assert lost["count"] == 1 and lost["total_s"] == lost["longest_s"]
    assert 0.8 <= lost["longest_s"] <= report["wall_s"]  # the 1 s gap, within the run


def test_a_clip_cut_short_says_so_in_the_report(tmp_path, plexus_model, capsys):
    full = write_clip(tmp_path / "full.avi", n_frames=30, fps=60.0, size=(160, 128))
    cut = truncate_copy(full, tmp_path / "cut.avi", 0.5)
    report_path = tmp_path / "r.json"
    code, _, err = _run(["--headless", "--source", str(cut), "--model", str(plexus_model),
                         "--mode", "plexus", "--provider", "cpu", "--report", str(report_path)],
                        capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert "cut off" in (report["source_warning"] or "")
    assert any("cut off" in e for e in report["errors"])


def test_a_single_png_runs_headless_as_one_still_frame(tmp_path, plexus_model, capsys):
    path = tmp_path / "still.png"
    cv2.imwrite(str(path), np.full((128, 160, 3), 250, np.uint8))
    code, out, err = _run(["--headless", "--source", str(path), "--model", str(plexus_model),
                           "--mode", "plexus", "--provider", "cpu",
                           "--report", str(tmp_path / "r.json")], capsys)
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0, err
    assert report["frames_in"] == 1 and report["frames_inferred"] == 1
    assert report["ended_by"] == "source ended" and report["errors"] == []


def test_sigterm_ends_a_headless_run_with_its_report_and_timeline(tmp_path, plexus_model):
    report_path, timeline_path = tmp_path / "r.json", tmp_path / "t.csv"
    recording = tmp_path / "rec"  # frames.jsonl there: frames have gone through the run
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sonoguide.cli", "--headless", "--source", "phantom:plexus",
         "--mode", "plexus", "--model", str(plexus_model), "--provider", "cpu",
         "--threads", "1", "--report", str(report_path), "--timeline", str(timeline_path),
         "--record", str(recording)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = [proc.stderr.readline() for _ in range(1)]
        while "until stopped" not in said[-1] and said[-1] and len(said) < 50:
            said.append(proc.stderr.readline())  # e.g. a library's warning came first
        assert "until stopped" in said[-1], said  # the run is under way
        frames = recording / "frames.jsonl"
        assert wait_until(lambda: frames.is_file() and frames.stat().st_size > 0, timeout=60)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(report_path.read_text())
    assert report["ended_by"] == "signal" and report["signal"] == "SIGTERM"
    assert report["frames_in"] > 0
    rows = timeline_path.read_text().splitlines()
    assert rows[0].startswith("frame_id,t_s,nerve_") and len(rows) - 1 == report["frames_inferred"]
    assert not list(tmp_path.glob(".t.csv*"))  # no temporary file left behind


def test_a_bad_settings_file_is_moved_aside_and_named_in_the_report(tmp_path, monkeypatch,
                                                                     plexus_model, clip, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    settings = tmp_path / "sonoguide" / "rois.json"
    settings.parent.mkdir()
    settings.write_text('{"file:/x.mp4": {"roi": [1, 2, 3, 4], "pixel_spacing_mm": NaN}}')
    report_path = tmp_path / "r.json"
    code, _, err = _run(["--headless", "--source", str(clip), "--mode", "plexus",
                         "--model", str(plexus_model), "--provider", "cpu", "--max-frames", "3",
                         "--report", str(report_path)], capsys)
    assert code == 0, err
    errors = json.loads(report_path.read_text())["errors"]
    assert any("rois.json" in e and "moved aside" in e for e in errors), errors
    assert not settings.exists() and list(settings.parent.glob("rois.json.corrupt*"))


def test_a_scale_read_from_the_ruler_is_a_note_in_the_report_not_an_error(tmp_path, capsys):
    import cv2

    from tests.scanner_screens import draw_screen

    screen = draw_screen((1280, 720), 40.0)
    still = tmp_path / "screen.png"
    cv2.imwrite(str(still), cv2.cvtColor(screen.image, cv2.COLOR_RGB2BGR))
    model = make_model(tmp_path / "p.onnx")
    report_path = tmp_path / "r.json"
    code = cli.main(["--headless", "--source", str(still), "--mode", "plexus", "--model",
                     str(model), "--provider", "cpu", "--report", str(report_path)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert report["errors"] == []
    assert any("read from the ruler" in n for n in report["notes"]), report["notes"]
    assert report["pixel_spacing_mm"] == pytest.approx(screen.mm_per_px, rel=0.02)
