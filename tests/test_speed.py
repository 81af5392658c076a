"""sonoguide.pipeline.speed: time the shipped variants, pick the fastest the card allows,
cache it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from sonoguide.pipeline import speed
from sonoguide.pipeline.analysis import MODES
from sonoguide.pipeline.segmenter import ModelLoadError
from tests.model_factory import make_model

GOOD = {"nerve": 0.65, "vessel": 0.82}
RUNS = 6


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nan_model(path: Path) -> Path:
    """A contract model that loads and runs but answers NaN everywhere."""
    make_model(path)
    proto = onnx.load(str(path))
    nodes = list(proto.graph.node)
    ident = next(n for n in nodes if n.output[0] == "logits")
    ident.input[0] = "nan_logits"
    proto.graph.initializer.append(numpy_helper.from_array(np.array([np.nan], np.float32), "nan"))
    mul = helper.make_node("Mul", ["thr_logits", "nan"], ["nan_logits"])
    del proto.graph.node[:]
    proto.graph.node.extend(nodes[:-1] + [mul, nodes[-1]])
    onnx.save(proto, str(path))
    return path


def write_card(folder: Path, variants: list[dict], **extra) -> None:
    card = {"shipped": "int8", "path": "plexus.onnx", "variants": variants,
            "max_dice_drop": 0.02, **extra}
    (folder / "plexus.ship.json").write_text(json.dumps(card, indent=1))


@pytest.fixture
def models(tmp_path) -> Path:
    """plexus.onnx: slow (heavy convolutions); plexus.fp32.onnx: fast; same Dice on the card."""
    folder = tmp_path / "models"
    # several times slower, so a loaded machine cannot swap the order
    make_model(folder / "plexus.onnx", kind="slow", slow_layers=8, slow_channels=32)
    make_model(folder / "plexus.fp32.onnx")
    write_card(folder, [
        {"file": "plexus.onnx", "precision": "int8", "dice": GOOD,
         "sha256": sha(folder / "plexus.onnx")},
        {"file": "plexus.fp32.onnx", "precision": "float32", "dice": GOOD,
         "sha256": sha(folder / "plexus.fp32.onnx")}])
    return folder


def choose(models: Path, tmp_path: Path, **kw) -> speed.SpeedChoice:
    kw.setdefault("thread_options", [1])
    return speed.choose_speed("plexus", models_dir=models, cache_path=tmp_path / "speed.json",
                              runs=RUNS, **kw)


def no_segmenter(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("a Segmenter was created: the cache was not used")

    monkeypatch.setattr(speed, "Segmenter", boom)


def test_picks_the_faster_variant_and_caches_it(models, tmp_path):
    seen = []
    choice = choose(models, tmp_path, thread_options=[1, 2], progress=seen.append)
    assert choice.path == models / "plexus.fp32.onnx" and choice.precision == "float32"
    assert not choice.from_cache and choice.skipped == ()
    assert {(r["file"], r["threads"]) for r in choice.table} == {
        ("plexus.onnx", 1), ("plexus.onnx", 2), ("plexus.fp32.onnx", 1), ("plexus.fp32.onnx", 2)}
    fast = min(r["median_ms"] for r in choice.table if r["file"] == "plexus.fp32.onnx")
    slow = min(r["median_ms"] for r in choice.table if r["file"] == "plexus.onnx")
    assert fast < slow and choice.median_ms <= fast * (1 + speed.TIE_MARGIN)
    assert choice.per_s == pytest.approx(1000 / choice.median_ms, rel=0.01)
    assert all(r["runs"] == RUNS for r in choice.table)
    assert any("plexus.onnx" in s for s in seen)
    text = choice.summary()
    assert text.startswith("float32, ") and "/s (measured here)" in text
    cached = json.loads((tmp_path / "speed.json").read_text())
    assert cached["entries"]["plexus"]["choice"]["file"] == "plexus.fp32.onnx"
    assert not list(tmp_path.glob(".speed.json*"))  # no temporary file left


def test_second_call_uses_the_cache_without_loading_a_model(models, tmp_path, monkeypatch):
    first = choose(models, tmp_path)
    no_segmenter(monkeypatch)
    again = choose(models, tmp_path)
    assert again.from_cache
    assert (again.path, again.threads, again.median_ms) == (first.path, first.threads,
                                                            first.median_ms)
    assert again.table == first.table and "measured here earlier" in again.summary()


def test_recalibrate_measures_again(models, tmp_path):
    choose(models, tmp_path)
    assert not choose(models, tmp_path, recalibrate=True).from_cache
    assert choose(models, tmp_path).from_cache


@pytest.mark.parametrize("content", [b"\x00\xffnot json{", b"[]", b'{"format": 1}',
                                     b'{"format": 1, "entries": {"plexus": {"key": 3}}}',
                                     b'{"format": 1, "entries": {"plexus": "x"}}'])
def test_an_unreadable_cache_is_rebuilt(models, tmp_path, content):
    (tmp_path / "speed.json").write_bytes(content)
    choice = choose(models, tmp_path)
    assert not choice.from_cache and choice.path.name == "plexus.fp32.onnx"
    assert json.loads((tmp_path / "speed.json").read_text())["entries"]["plexus"]


def test_a_tampered_cached_choice_is_not_trusted(models, tmp_path, monkeypatch):
    choose(models, tmp_path)
    data = json.loads((tmp_path / "speed.json").read_text())
    data["entries"]["plexus"]["choice"]["file"] = "../elsewhere.onnx"
    (tmp_path / "speed.json").write_text(json.dumps(data))
    assert not choose(models, tmp_path).from_cache


def test_a_changed_model_is_measured_again(models, tmp_path):
    choose(models, tmp_path)
    make_model(models / "plexus.fp32.onnx", version="test-2")  # new file, new hash
    card = json.loads((models / "plexus.ship.json").read_text())
    card["variants"][1]["sha256"] = sha(models / "plexus.fp32.onnx")
    (models / "plexus.ship.json").write_text(json.dumps(card))
    again = choose(models, tmp_path)
    assert not again.from_cache and again.path.name == "plexus.fp32.onnx"


def test_a_file_that_differs_from_the_one_the_card_measured_is_not_used(models, tmp_path):
    make_model(models / "plexus.fp32.onnx", version="test-2")  # card still has the old hash
    choice = choose(models, tmp_path)
    assert choice.path.name == "plexus.onnx"
    assert any("plexus.fp32.onnx" in s and "sha256" in s for s in choice.skipped)


def test_broken_and_nan_variants_are_skipped_with_their_names(models, tmp_path):
    (models / "plexus.bad.onnx").write_bytes(b"not an onnx model")
    nan_model(models / "plexus.nan.onnx")
    card = json.loads((models / "plexus.ship.json").read_text())
    card["variants"] += [{"file": "plexus.bad.onnx", "precision": "int8", "dice": GOOD},
                         {"file": "plexus.nan.onnx", "precision": "float16", "dice": GOOD},
                         {"file": "plexus.gone.onnx", "precision": "int4", "dice": GOOD}]
    (models / "plexus.ship.json").write_text(json.dumps(card))
    choice = choose(models, tmp_path, thread_options=[1, 2])
    assert choice.path.name == "plexus.fp32.onnx"
    assert {r["file"] for r in choice.table} == {"plexus.onnx", "plexus.fp32.onnx"}
    text = "\n".join(choice.skipped)
    assert "plexus.bad.onnx: failed to load" in text
    # refused by the Segmenter's warm-up check, or by the timing check if it got past it
    assert any(line.startswith("plexus.nan.onnx") and "non-finite" in line
               for line in choice.skipped)
    assert "plexus.gone.onnx: failed to load" in text and "not found" in text
    assert len(choice.skipped) == 3  # one message per variant, not per thread count


def test_a_variant_the_card_does_not_allow_is_never_timed(models, tmp_path, monkeypatch):
    card = json.loads((models / "plexus.ship.json").read_text())
    card["variants"][1]["dice"] = {"nerve": 0.62, "vessel": 0.82}  # 0.03 below the best nerve
    (models / "plexus.ship.json").write_text(json.dumps(card))
    variants = speed.model_variants("plexus", models)
    assert [v.allowed for v in variants] == [True, False]
    assert "nerve 0.620 < best 0.650" in variants[1].reason
    timed = []
    real = speed.Segmenter

    def spy(path, *a, **k):
        timed.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(speed, "Segmenter", spy)
    choice = choose(models, tmp_path)
    assert choice.path.name == "plexus.onnx" and set(timed) == {"plexus.onnx"}
    assert any(s.startswith("plexus.fp32.onnx: not allowed by the model card")
               for s in choice.skipped)


def test_within_the_allowed_drop_both_are_allowed(models):
    card = json.loads((models / "plexus.ship.json").read_text())
    card["variants"][1]["dice"] = {"nerve": 0.635, "vessel": 0.83}  # 0.015 below: allowed
    card["variants"][1].pop("sha256")
    (models / "plexus.ship.json").write_text(json.dumps(card))
    assert [v.allowed for v in speed.model_variants("plexus", models)] == [True, True]


@pytest.mark.parametrize("card", [None, "{broken", json.dumps({"shipped": "int8"}),
                                  json.dumps({"variants": "x"}),
                                  json.dumps({"variants": [{"file": "../x.onnx"}]})])
def test_without_usable_variants_the_default_model_is_the_only_one(tmp_path, card):
    folder = tmp_path / "models"
    make_model(folder / "plexus.onnx")
    if card is not None:
        (folder / "plexus.ship.json").write_text(card)
    variants = speed.model_variants("plexus", folder)
    assert [(v.path, v.precision, v.allowed) for v in variants] == [
        (folder / "plexus.onnx", "default", True)]
    choice = choose(folder, tmp_path)
    assert choice.path == folder / "plexus.onnx" and choice.summary().startswith("plexus.onnx, 1 ")


def test_when_nothing_allowed_runs_the_default_model_is_timed(models, tmp_path,
                                                                    monkeypatch):
    card = json.loads((models / "plexus.ship.json").read_text())
    card["variants"] = [{"file": "plexus.x.onnx", "precision": "int8", "dice": GOOD}]
    (models / "plexus.ship.json").write_text(json.dumps(card))
    choice = choose(models, tmp_path)
    assert choice.path.name == "plexus.onnx" and choice.precision == "default"
    assert any("plexus.x.onnx" in s for s in choice.skipped)
    no_segmenter(monkeypatch)
    assert choose(models, tmp_path).from_cache  # the fallback is cached too


def test_no_usable_model_at_all_raises_a_load_error(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "plexus.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="plexus.onnx"):
        choose(folder, tmp_path)


def test_an_unwritable_cache_only_costs_the_cache(models, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    choice = speed.choose_speed("plexus", models_dir=models, cache_path=blocker / "speed.json",
                                thread_options=[1], runs=3)
    assert choice.path.name == "plexus.fp32.onnx" and not choice.from_cache


def test_fewer_threads_win_a_near_tie():
    rows = [{"file": "a", "threads": 1, "median_ms": 10.3}, {"file": "a", "threads": 2,
                                                             "median_ms": 10.0},
            {"file": "b", "threads": 2, "median_ms": 14.0}]
    assert speed.pick(rows)["threads"] == 1
    rows[0]["median_ms"] = 12.0
    assert speed.pick(rows)["threads"] == 2


def test_default_thread_options():
    assert speed.default_thread_options(1) == (1,)
    assert speed.default_thread_options(2) == (1, 2)
    assert speed.default_thread_options(4) == (1, 2)
    assert speed.default_thread_options(16) == (1, 2, 3, 4)


def test_cpu_signature_and_image():
    sig = speed.cpu_signature()
    assert sig["cores"] >= 1 and sig["model"] and json.dumps(sig)
    img = speed.speckle_image()
    assert img.shape == (400, 500) and img.dtype == np.uint8 and 20 < img.mean() < 120


def test_command_line_prints_the_table(models, tmp_path, capsys):
    args = ["--mode", "plexus", "--models-dir", str(models), "--cache",
            str(tmp_path / "speed.json"), "--runs", "3", "--threads", "1"]
    assert speed.main(args) == 0
    out = capsys.readouterr().out
    assert "plexus.fp32.onnx" in out and "median ms" in out and "chosen: plexus.fp32.onnx" in out
    assert speed.main(args) == 0
    assert "plexus: cached" in capsys.readouterr().out


def test_the_shipped_cards_list_int8_and_float32_as_the_files_in_models():
    for mode in MODES:
        variants = speed.model_variants(mode)
        assert [(v.path.name, v.precision) for v in variants] == [
            (f"{mode}.onnx", "int8"), (f"{mode}.fp32.onnx", "float32")]
        for v in variants:
            assert v.allowed, v.reason
            assert v.sha256 == speed.file_sha256(v.path), f"{v.path} differs from its card"


@pytest.mark.parametrize("content, why", [(b"[" * 100_000, "nested too deeply"),
                                          (b'{"format": NaN}', "not valid JSON"),
                                          (b"\xff\xfe", "not UTF-8")])
def test_a_corrupt_cache_is_moved_aside_measured_again_and_told(models, tmp_path, content, why):
    (tmp_path / "speed.json").write_bytes(content)
    choice = choose(models, tmp_path)
    assert not choice.from_cache and choice.path.name == "plexus.fp32.onnx"
    problem = choice.cache_problem
    assert problem and str(tmp_path / "speed.json") in problem and why in problem
    assert "measured again" in problem and "note: " + problem in speed.format_table("plexus",
                                                                                     choice)
    [aside] = tmp_path.glob("speed.json.corrupt-*")
    assert aside.read_bytes() == content and aside.name in problem
    again = choose(models, tmp_path)  # the rebuilt cache serves the next start, silently
    assert again.from_cache and again.cache_problem is None


def test_a_cache_of_an_older_format_is_replaced_silently(models, tmp_path):
    (tmp_path / "speed.json").write_text('{"format": 0, "entries": {}}')
    choice = choose(models, tmp_path)
    assert choice.cache_problem is None and not list(tmp_path.glob("speed.json.corrupt*"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_as_the_cache_does_not_block(models, tmp_path):
    os.mkfifo(tmp_path / "speed.json")
    try:
        choice = choose(models, tmp_path)
    finally:
        try:  # release a reader stuck in open() (only when this test fails)
            os.close(os.open(tmp_path / "speed.json", os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    assert "named pipe" in choice.cache_problem and (tmp_path / "speed.json").is_file()


def test_an_unwritable_cache_is_told_once(models, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    first, second = (speed.choose_speed("plexus", models_dir=models, thread_options=[1], runs=3,
                                        cache_path=blocker / "speed.json") for _ in range(2))
    assert first.cache_problem.startswith("Cannot save settings: ")
    assert "(kept for this session only)" in first.cache_problem
    assert second.cache_problem is None and not second.from_cache


def test_a_corrupt_model_card_means_the_default_model_and_stays_in_place(tmp_path):
    (tmp_path / "plexus.ship.json").write_text("[" * 100_000)
    assert speed.model_variants("plexus", tmp_path) == [
        speed.Variant(tmp_path / "plexus.onnx", "default")]
    assert (tmp_path / "plexus.ship.json").exists()
