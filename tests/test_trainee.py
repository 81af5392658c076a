"""Trainee mode: clicks scored against the phantom's truth (or the model's sure outline), the
session score and its CSV and the phantom scanning task (the practice loop in the window:
test_trainee_window.py)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from sonoguide.phantom.labels import ARTERY, NERVE, VEIN
from sonoguide.phantom.simulator import PhantomSimulator
from sonoguide.pipeline.frames import Frame, Roi, Segmentation, Structure
from sonoguide.pipeline.trainee import (
    MODEL,
    SCAN_KEY,
    TARGET,
    TRUTH,
    TraineeSession,
    mode_classes,
    view_check,
)

SIZE = (256, 256)


def render(simulator: PhantomSimulator, frame_id: int = 1, t: float = 0.0, *,
           spacing: bool = True) -> Frame:
    rendered = simulator.render(t)
    return Frame(rendered.image, frame_id, t, "phantom:test",
                 rendered.pixel_spacing_mm if spacing else None, rendered.labels,
                 roi=Roi.full(rendered.image))


@pytest.fixture(scope="module")
def jugular() -> PhantomSimulator:
    return PhantomSimulator("jugular", seed=0, size=SIZE)


@pytest.fixture
def neck(jugular) -> PhantomSimulator:
    jugular.set_pressure(0.0)
    jugular.set_probe_offset(0.0)
    return jugular


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def test_the_modes_ask_their_models_classes_and_the_target():
    assert TraineeSession("jugular").structures == ("vein", "artery", TARGET)
    assert TraineeSession("plexus").structures == ("nerve", "vessel", TARGET)
    assert mode_classes("plexus") == ("background", "nerve", "vessel")
    with pytest.raises(ValueError):
        mode_classes("knee")


def test_click_on_the_vein_hits_and_on_the_artery_misses_by_the_truth_in_mm(neck):
    frame = render(neck)
    spacing = frame.pixel_spacing_mm
    vein, artery = frame.truth == VEIN, frame.truth == ARTERY
    trainee = TraineeSession("jugular")

    question = trainee.ask(frame, structure="vein")
    assert question.text == "Click the vein" and question.frame is frame
    hit = trainee.answer(question, *centroid(vein))
    assert hit.scored and hit.hit and hit.against == TRUTH and hit.unit == "mm"
    assert hit.distance == pytest.approx(0.0, abs=1e-6) and hit.edge_distance == 0.0
    assert hit.centre == pytest.approx(centroid(vein))
    assert hit.message.startswith("Hit") and "phantom's truth" in hit.message

    question = trainee.ask(frame, structure="vein")
    ax, ay = centroid(artery)
    miss = trainee.answer(question, ax, ay)
    ys, xs = np.nonzero(vein)
    assert not miss.hit and miss.scored and miss.against == TRUTH
    assert miss.edge_distance == pytest.approx(np.hypot(xs - ax, ys - ay).min() * spacing)
    vx, vy = centroid(vein)
    assert miss.distance == pytest.approx(np.hypot(vx - ax, vy - ay) * spacing)
    assert miss.distance > miss.edge_distance > 2.0  # mm: the vessels are apart
    assert "you clicked the artery" in miss.message
    with pytest.raises(ValueError):
        trainee.answer(question, vx, vy)  # one click per question


def test_without_pixel_spacing_distances_are_in_pixels(neck):
    frame = render(neck, spacing=False)
    trainee = TraineeSession("jugular")
    vx, vy = centroid(frame.truth == VEIN)
    verdict = trainee.answer(trainee.ask(frame, structure="vein"), vx + 3.0, vy + 4.0)
    assert verdict.hit and verdict.unit == "px" and verdict.distance == pytest.approx(5.0)
    assert "5.0 px" in verdict.message


def test_the_target_is_the_vein_in_jugular_and_the_plexus_centre_in_plexus(neck):
    frame = render(neck)
    trainee = TraineeSession("jugular")
    question = trainee.ask(frame, structure=TARGET)
    assert question.key == "target (vein)" and "vein" in question.text
    assert trainee.answer(question, *centroid(frame.truth == VEIN)).hit

    plexus = PhantomSimulator("plexus", seed=0, size=SIZE)
    frame = render(plexus)
    trainee = TraineeSession("plexus")
    nerve = frame.truth == NERVE
    target = trainee.answer(trainee.ask(frame, structure=TARGET), *centroid(nerve))
    assert target.hit and target.distance == pytest.approx(0.0, abs=1e-6)
    # plexus "vessel" is any vessel of the truth: artery and vein
    vessel = trainee.answer(trainee.ask(frame, structure="vessel"),
                            *centroid(frame.truth == ARTERY))
    assert vessel.hit and vessel.against == TRUTH
    far = trainee.answer(trainee.ask(frame, structure="nerve"), 2.0, 2.0)
    assert not far.hit and far.edge_distance > 5.0


def test_a_structure_out_of_view_is_not_asked_and_not_scored(neck):
    neck.set_probe_offset(15.0)  # the vein slides off the picture
    frame = render(neck, t=1.0)
    assert not (frame.truth == VEIN).any()
    trainee = TraineeSession("jugular")
    asked = [trainee.ask(frame).structure for _ in range(4)]
    assert asked == ["artery"] * 4  # neither the vein nor the target (the vein) is in view
    verdict = trainee.answer(trainee.ask(frame, structure="vein"), 10.0, 10.0)
    assert not verdict.scored and "no vein in this image" in verdict.message


def _model_seg(frame_id: int, unsure: bool, confidence: float = 0.9) -> Segmentation:
    theta = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    contour = np.stack([60 + 15 * np.cos(theta), 50 + 15 * np.sin(theta)], 1).astype(np.float32)
    vein = Structure("vein", contour, 700.0, (60.0, 50.0), confidence, unsure=unsure)
    return Segmentation(frame_id, 0.0, 0.05, mode_classes("jugular"), Roi(0, 0, 128, 96),
                        np.zeros((96, 128), np.uint8), (vein,), None)


def test_without_truth_a_sure_model_outline_scores_and_says_so_an_unsure_one_refuses():
    frame = Frame(np.zeros((96, 128), np.uint8), 5, 0.0, "clip", 0.2, roi=Roi(0, 0, 128, 96))
    trainee = TraineeSession("jugular")
    verdict = trainee.answer(trainee.ask(frame, _model_seg(5, unsure=False),
                                         structure="vein"), 62.0, 50.0)
    assert verdict.hit and verdict.against == MODEL
    assert verdict.distance == pytest.approx(0.4, abs=0.1)  # 2 px at 0.2 mm/px
    assert "scored against the model's outline (no ground truth for this image)" in \
        verdict.message

    unsure = trainee.answer(trainee.ask(frame, _model_seg(5, unsure=True, confidence=0.4),
                                        structure="vein"), 60.0, 50.0)
    assert not unsure.scored and unsure.against is None
    assert unsure.message == "cannot score: no truth and the model is unsure"
    none = trainee.answer(trainee.ask(frame, structure="vein"), 60.0, 50.0)
    assert not none.scored and "no model result" in none.message

    # The model's answer for the asked frame may land after the question: it is used; one
    # for another frame is not.
    question = trainee.ask(frame, structure="vein")
    assert trainee.answer(question, 60.0, 50.0, _model_seg(5, unsure=False)).scored
    question = trainee.ask(frame, structure="vein")
    assert not trainee.answer(question, 60.0, 50.0, _model_seg(6, unsure=False)).scored


def test_session_scores_per_structure_and_csv_export(neck, tmp_path):
    frame = render(neck)
    spacing = frame.pixel_spacing_mm
    vein, artery = centroid(frame.truth == VEIN), centroid(frame.truth == ARTERY)
    trainee = TraineeSession("jugular")
    trainee.answer(trainee.ask(frame, structure="vein"), *vein)  # hit, 0 mm
    trainee.answer(trainee.ask(frame, structure="vein"), vein[0] + 10, vein[1])  # 10 px
    trainee.answer(trainee.ask(frame, structure="vein"), *artery)  # miss
    trainee.answer(trainee.ask(frame, structure="artery"), *artery)  # hit
    taken_back = trainee.ask(frame, structure="artery")
    trainee.withdraw(taken_back)  # practice stopped before the click: not counted
    trainee.ask(frame, structure=TARGET)  # asked, never answered
    rows = {r.key: r for r in trainee.scores()}
    assert list(rows) == ["vein", "artery", "target (vein)"]
    assert (rows["vein"].asked, rows["vein"].scored, rows["vein"].hits) == (3, 3, 2)
    assert rows["vein"].median_mm == pytest.approx(10 * spacing)
    assert rows["vein"].against == (TRUTH,) and rows["vein"].hit_rate == pytest.approx(2 / 3)
    assert (rows["artery"].asked, rows["artery"].hits) == (1, 1)
    assert (rows["target (vein)"].asked, rows["target (vein)"].scored) == (1, 0)

    path = trainee.export_csv(tmp_path / "out" / "scores.csv")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["scores.csv"]
    table = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [r["structure"] for r in table] == ["vein", "artery", "target (vein)"]
    assert table[0] == {"structure": "vein", "asked": "3", "scored": "3", "hits": "2",
                        "hit_rate": "0.667", "median_distance_mm": f"{10 * spacing:.2f}",
                        "median_distance_px": "", "scored_against": TRUTH,
                        "median_time_s": ""}


def test_scanning_task_ok_and_hints_from_the_phantom(neck):
    good = view_check(render(neck), neck)
    assert good.ok and "both in view" in good.hint and good.vein_mm2 > 20 and good.artery_mm2 > 20

    neck.set_probe_offset(15.0)  # vein slid off the left of the picture
    away = render(neck, t=1.0)
    check = view_check(away, neck)
    assert not check.ok and check.hint.startswith("Slide the probe left (-): the vein")
    assert not view_check(away).ok  # truth alone: still not ok, a gentler hint

    neck.set_probe_offset(0.0)
    neck.set_pressure(0.8)
    pressed = render(neck, t=1.0)
    assert (pressed.truth == VEIN).any()  # still a slit of vein: visible but pressed flat
    check = view_check(pressed, neck)
    assert not check.ok and check.hint == "Less pressure: the vein is compressed"

    clip = Frame(np.zeros((64, 64), np.uint8), 1, 0.0, "clip")
    assert not view_check(clip).ok and "phantom" in view_check(clip).hint


def test_scanning_task_counts_a_view_held_for_a_second(neck):
    frame = render(neck)
    trainee = TraineeSession("jugular")
    trainee.scan_start(10.0)
    assert trainee.scan_update(frame, 12.0).ok  # good from 12 s on
    assert trainee.scan_found_after is None
    found = trainee.scan_update(frame, 13.1)
    assert found.ok and found.hint.startswith("Found in 2.0 s")
    assert trainee.scan_found_after == pytest.approx(2.0)
    row = trainee.scores()[-1]
    assert row.key == SCAN_KEY and (row.asked, row.hits) == (1, 1)
    assert row.median_time_s == pytest.approx(2.0)
    assert f"{SCAN_KEY},1,1,1,1.000,,,,2.00" in trainee.to_csv()
