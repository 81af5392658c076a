"""sonoguide.pipeline.settings_file and the ROI store on it: no settings file can stop the app."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from sonoguide.pipeline import settings_file
from sonoguide.pipeline.calibration import RoiSetting, RoiStore
from sonoguide.pipeline.frames import Roi
from sonoguide.pipeline.settings_file import (
    KEEP_ASIDE,
    SettingsRead,
    read_json_settings,
    write_json_settings,
)
from tests.waiting import WAIT_S


def promptly(fn, timeout_s: float = WAIT_S):
    """fn() in a thread; fails (instead of hanging the suite) when it blocks."""
    out: list = []
    worker = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    worker.start()
    worker.join(timeout_s)
    assert not worker.is_alive(), f"blocked for more than {timeout_s} s"
    assert out, "raised instead of returning (see the thread's traceback above)"
    return out[0]


def assert_refused(read: SettingsRead, path: Path, why: str) -> None:
    assert read.data == {}
    assert read.problem is not None and str(path) in read.problem and why in read.problem
    assert read.moved_to is not None and read.moved_to.name.startswith("rois.json.corrupt")
    assert read.moved_to.name in read.problem and "starts with defaults" in read.problem
    assert not os.path.lexists(path)  # out of the way: the next save writes a good file


def test_a_missing_file_is_an_empty_object_without_a_problem(tmp_path):
    assert read_json_settings(tmp_path / "rois.json") == SettingsRead({})
    assert read_json_settings(tmp_path / "no" / "folder.json") == SettingsRead({})
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert read_json_settings(blocker / "rois.json") == SettingsRead({})


def test_written_settings_read_back(tmp_path):
    path = tmp_path / "new" / "folder" / "rois.json"
    data = {"a": {"roi": [1, 2, 3, 4], "pixel_spacing_mm": 0.1}, "b": [True, None, "é"]}
    assert write_json_settings(path, data) is None
    assert read_json_settings(path) == SettingsRead(data)
    assert [p.name for p in path.parent.iterdir()] == ["rois.json"]  # no temporary file left


def test_deeply_nested_json_starts_with_defaults_and_is_moved_aside(tmp_path):
    path = tmp_path / "rois.json"
    path.write_text("[" * 100_000)
    read = promptly(lambda: read_json_settings(path))
    assert_refused(read, path, "nested too deeply")
    assert read.moved_to.read_text() == "[" * 100_000  # kept for whoever wants to look


def test_nesting_under_the_recursion_limit_is_refused_too(tmp_path):
    # json parses this fine, but code that later walks it recursively (saving it) might not
    path = tmp_path / "rois.json"
    path.write_text('{"a": ' + "[" * 900 + "]" * 900 + "}")
    assert_refused(read_json_settings(path), path, "nested too deeply")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_does_not_block_start_up(tmp_path):
    path = tmp_path / "rois.json"
    os.mkfifo(path)
    try:
        read = promptly(lambda: read_json_settings(path))
    finally:
        unblock(path)
    assert_refused(read, path, "named pipe")


def unblock(path: Path) -> None:
    """Release a reader stuck in open() on the pipe (only when the test failed)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader (ENXIO) or no pipe any more: nothing is stuck
        pass


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_store_on_a_named_pipe_starts_empty_and_saves_a_real_file(tmp_path):
    path = tmp_path / "rois.json"
    os.mkfifo(path)
    try:
        store = promptly(lambda: RoiStore(path))
    finally:
        unblock(path)
    assert store.keys() == [] and len(store.problems) == 1 and "named pipe" in store.problems[0]
    store.set("camera:0", pixel_spacing_mm=0.2)
    assert path.is_file() and RoiStore(path).get("camera:0") == RoiSetting(None, 0.2)


def test_a_huge_file_is_refused_without_being_read(tmp_path, monkeypatch):
    path = tmp_path / "rois.json"
    with open(path, "wb") as f:
        f.truncate(200 << 20)  # sparse: 200 MiB of zero bytes, not on disk
    reads: list[int] = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    read = read_json_settings(path)
    assert_refused(read, path, "too large: 200.0 MiB")
    assert reads == []  # refused on its size alone: not one byte read


def test_a_file_that_grows_after_the_size_check_is_cut_off(tmp_path, monkeypatch):
    path = tmp_path / "rois.json"
    with open(path, "wb") as f:
        f.truncate(200 << 20)
    real_fstat, real_read = os.fstat, os.read
    reads: list[int] = []

    def small(fd: int) -> os.stat_result:  # as if the file had 10 bytes when checked
        st = real_fstat(fd)
        return os.stat_result((*st[:6], 10, *st[7:10]))

    monkeypatch.setattr(os, "fstat", small)
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    read = read_json_settings(path, max_bytes=1000)
    monkeypatch.undo()
    assert sum(reads) == 1001  # the limit and one byte to know it is over, not 200 MiB
    assert_refused(read, path, "larger than 1000 bytes")


def test_a_folder_in_place_of_the_file(tmp_path):
    path = tmp_path / "rois.json"
    (path / "inside").mkdir(parents=True)
    read = promptly(lambda: read_json_settings(path))
    assert_refused(read, path, "a folder")
    assert (read.moved_to / "inside").is_dir()  # moved, not deleted
    assert write_json_settings(path, {"a": 1}) is None


@pytest.mark.parametrize("content, why", [
    (b'{"a": "\xff\xfe"}', "not UTF-8"),
    (b'{"spacing": NaN}', "not valid JSON"),
    (b'{"spacing": Infinity}', "not valid JSON"),
    (b'{"spacing": -Infinity}', "not valid JSON"),
    (b'{"spacing": 1e999}', "not valid JSON"),
    (b"[1, 2]", "top level is not a JSON object"),
    (b'"text"', "top level is not a JSON object"),
    (b"", "not valid JSON"),
    (b"{not json", "not valid JSON"),
    (b'{"n": ' + b"9" * 5000 + b"}", "not valid JSON"),  # beyond int's digit limit
])
def test_bad_content_starts_with_defaults(tmp_path, content, why):
    path = tmp_path / "rois.json"
    path.write_bytes(content)
    assert_refused(read_json_settings(path), path, why)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "rois.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}')  # Notepad's UTF-8
    assert read_json_settings(path) == SettingsRead({"a": 1})


def test_moved_aside_files_never_overwrite_each_other_and_only_a_few_are_kept(tmp_path):
    path = tmp_path / "rois.json"
    (tmp_path / "rois.json.corrupt").write_text("from an older version")
    moved = []
    for i in range(KEEP_ASIDE + 2):
        path.write_text(f"bad {i}")
        moved.append(read_json_settings(path).moved_to)
    assert len(set(moved)) == len(moved)  # all within a second: numbered, not clobbered
    left = sorted(tmp_path.glob("rois.json.corrupt*"))
    assert len(left) == KEEP_ASIDE
    assert {p.read_text() for p in left} == {f"bad {i}" for i in range(2, KEEP_ASIDE + 2)}


def test_a_shipped_file_is_left_in_place(tmp_path):
    path = tmp_path / "plexus.ship.json"
    path.write_text("[" * 5000)
    read = read_json_settings(path, move_aside=False)
    assert read.data == {} and read.moved_to is None and str(path) in read.problem
    assert path.exists()


def test_a_file_that_cannot_be_moved_aside_is_still_refused(tmp_path, monkeypatch):
    path = tmp_path / "rois.json"
    path.write_text("{bad")

    def refuse(*a):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(settings_file.os, "replace", refuse)
    read = read_json_settings(path)
    assert read.data == {} and read.moved_to is None
    assert "could not be moved aside (permission denied)" in read.problem


def test_saving_where_no_folder_can_be_made_answers_a_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    problem = write_json_settings(blocker / "sonoguide" / "rois.json", {"a": 1})
    assert problem is not None and problem.startswith("Cannot save settings: ")
    assert str(blocker / "sonoguide" / "rois.json") in problem
    assert "(kept for this session only)" in problem


def test_saving_into_a_read_only_folder_answers_a_sentence(tmp_path):
    if os.name != "posix" or os.geteuid() == 0:
        pytest.skip("root (and Windows) ignore the folder's write permission")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        problem = write_json_settings(folder / "rois.json", {"a": 1})
    finally:
        folder.chmod(0o700)
    assert problem is not None and "permission denied" in problem
    assert list(folder.iterdir()) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "rois.json"
    assert write_json_settings(path, {"old": 1}) is None

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(settings_file.os, "fsync", disk_full)
    assert "no space left on device" in write_json_settings(path, {"new": 2})
    monkeypatch.undo()
    assert read_json_settings(path).data == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["rois.json"]


@pytest.mark.parametrize("data", [{"a": float("nan")}, {"a": object()}])
def test_unencodable_settings_answer_a_sentence(tmp_path, data):
    problem = write_json_settings(tmp_path / "rois.json", data)
    assert problem is not None and "could not be encoded" in problem
    assert not list(tmp_path.iterdir())


# --- the ROI store ---------------------------------------------------------------------------

def test_a_bad_store_file_is_told_to_the_window_even_before_it_listens(tmp_path):
    path = tmp_path / "rois.json"
    path.write_text("[" * 100_000)
    heard: list[str] = []
    store = promptly(lambda: RoiStore(path, say=heard.append))
    assert store.keys() == [] and heard == store.problems and len(heard) == 1
    assert str(path) in heard[0] and "nested too deeply" in heard[0]
    quiet = RoiStore(path)  # the file was moved aside: the next start is clean
    assert quiet.problems == []
    path.write_text("{bad")
    late = RoiStore(path)  # no listener yet (the window comes later): kept for it
    assert len(late.problems) == 1 and "not valid JSON" in late.problems[0]


def test_a_store_that_cannot_save_tells_once_and_keeps_the_values(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    heard: list[str] = []
    store = RoiStore(blocker / "rois.json", say=heard.append)
    store.set("camera:0", roi=Roi(0, 0, 64, 48))
    store.set("camera:0", pixel_spacing_mm=0.1)
    store.set("camera:1", pixel_spacing_mm=0.3)
    store.forget("camera:1")
    assert len(heard) == 1 and store.problems == heard
    assert heard[0].startswith("Cannot save settings:")
    assert "(kept for this session only)" in heard[0]
    assert store.get("camera:0") == RoiSetting(Roi(0, 0, 64, 48), 0.1)  # for this session


def test_a_store_tells_again_when_saving_fails_again_after_working(tmp_path, monkeypatch):
    path = tmp_path / "rois.json"
    store = RoiStore(path)
    failing = [True]
    real = settings_file.write_json_settings

    def write(p, data):
        return "Cannot save settings: disk full (kept for this session only)." if failing[0] \
            else real(p, data)

    monkeypatch.setattr("sonoguide.pipeline.calibration.write_json_settings", write)
    store.set("a", pixel_spacing_mm=0.1)
    store.set("a", pixel_spacing_mm=0.2)
    failing[0] = False
    store.set("a", pixel_spacing_mm=0.3)
    failing[0] = True
    store.set("a", pixel_spacing_mm=0.4)
    assert len(store.problems) == 2
    assert json.loads(path.read_text())["a"]["pixel_spacing_mm"] == 0.3


def test_a_listener_may_read_the_store_and_a_broken_one_does_not_stop_saving(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = RoiStore(blocker / "rois.json")
    store.say = lambda text: store.keys()  # calls back in: must not deadlock
    promptly(lambda: store.set("a", pixel_spacing_mm=0.1))

    def broken(text: str) -> None:
        raise RuntimeError("listener bug")

    other = RoiStore(blocker / "rois.json", say=broken)
    assert other.set("b", pixel_spacing_mm=0.2) == RoiSetting(None, 0.2)
    assert len(other.problems) == 1 and other.get("b") == RoiSetting(None, 0.2)
