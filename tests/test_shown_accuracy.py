"""What the user sees during a probe sweep when the model is slower than the video: the
overlay on each displayed frame, scored against that frame's phantom truth."""

from __future__ import annotations

import numpy as np
import pytest

from sonoguide.pipeline.frames import Frame, Segmentation
from sonoguide.pipeline.session import FOLLOW_MOTION, HIDE, HOLD, OverlayPolicy
from sonoguide.pipeline.shown_accuracy import (
    Sweep,
    overlay_masks,
    phantom_frames,
    schedule,
    shown_dice,
    truth_masks,
)

CLASSES = ("background", "vein", "artery")


def oracle(frame: Frame) -> Segmentation:
    """A perfect model: its result is the frame's own truth."""
    masks = truth_masks(frame, CLASSES)
    labels = np.zeros(frame.image.shape[:2], np.uint8)
    for i, name in enumerate(CLASSES[1:], start=1):
        labels[masks[name]] = i
    return Segmentation(frame.frame_id, frame.t_capture, frame.t_capture, CLASSES, frame.roi,
                        labels)


@pytest.fixture(scope="module")
def sweep_frames() -> list[Frame]:
    return phantom_frames("jugular", seconds=1.5, sweep=Sweep(speed_mm_s=20.0), size=(256, 256))


def test_worker_schedule_takes_the_newest_frame_when_free():
    # 30 fps video, 100 ms per inference: frames 0, 3, 6, ... each landing 100 ms later
    plan = schedule(10, 30.0, 0.1)
    assert [k for k, _ in plan] == [0, 3, 6, 9]
    assert plan[1][1] == pytest.approx(0.2)
    assert [k for k, _ in schedule(5, 30.0, 0.0)] == [0, 1, 2, 3, 4]


def test_a_perfect_model_on_every_frame_scores_one(sweep_frames):
    got = shown_dice(sweep_frames, oracle, CLASSES, OverlayPolicy(follow=HIDE), 0.0)
    assert got["dice"] == {"vein": pytest.approx(1.0), "artery": pytest.approx(1.0)}
    assert got["overlay_time"] == pytest.approx(1.0)


def test_motion_following_keeps_a_slow_models_overlay_on_the_anatomy(sweep_frames):
    """At 10 inferences/s on a 2 cm/s sweep: hiding between results shows nothing, an unmoved
    old outline drifts off the vessels, the motion-followed one stays on them."""
    slow = 1 / 10.0
    follow = shown_dice(sweep_frames, oracle, CLASSES, OverlayPolicy(follow=FOLLOW_MOTION), slow)
    hold = shown_dice(sweep_frames, oracle, CLASSES, OverlayPolicy(follow=HOLD), slow)
    hide = shown_dice(sweep_frames, oracle, CLASSES, OverlayPolicy(follow=HIDE), slow)
    assert hide["overlay_time"] == 0.0 and hide["dice"]["vein"] == 0.0
    for name in ("vein", "artery"):
        assert follow["dice"][name] > hold["dice"][name] + 0.03, (follow, hold)
        assert follow["dice"][name] > 0.85, follow
    assert follow["overlay_time"] > 0.9


def test_an_overlay_older_than_the_budget_is_never_shown(sweep_frames):
    """At 3 inferences/s every result lands 333 ms after its frame: past a 200 ms budget,
    however well the motion is measured, so nothing is drawn; a 400 ms budget draws them."""
    policy = OverlayPolicy(budget_s=0.2, follow=FOLLOW_MOTION)
    assert shown_dice(sweep_frames, oracle, CLASSES, policy, 1 / 3.0)["overlay_time"] == 0.0
    policy = OverlayPolicy(budget_s=0.4, follow=FOLLOW_MOTION)
    assert shown_dice(sweep_frames, oracle, CLASSES, policy, 1 / 3.0)["overlay_time"] > 0.1


def test_overlay_masks_place_roi_labels_in_the_frame(sweep_frames):
    seg = oracle(sweep_frames[0])
    masks = overlay_masks(seg, sweep_frames[0].image.shape[:2], CLASSES)
    truth = truth_masks(sweep_frames[0], CLASSES)
    assert all(np.array_equal(masks[c], truth[c]) for c in CLASSES[1:])
    assert not any(m.any() for m in overlay_masks(None, (8, 8), CLASSES).values())
