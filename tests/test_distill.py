"""Distillation: a shipped model labels the batches a student trains on, region labels bound the
nerve, and a big unlabelled group is drawn a few samples per epoch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch  # the training package

from sonoguide.training.distill import (  # noqa: E402
    DistillError,
    Teacher,
    bound_class,
    epoch_order,
)
from sonoguide.training.train import Config, load_trained, train  # noqa: E402
from tests.model_factory import PLEXUS, contract_for, make_model  # noqa: E402

# Image zones of the fake region-labelled frames: (grey level, inside the region?)
LEFT_OUT, LEFT_IN, RIGHT_OUT, RIGHT_IN = 230, 190, 30, 60


def write_region_frames(root: Path, n: int = 4, size: int = 32) -> None:
    """uns-nerve-like frames: a bright left half and a dark right half, the labelled region a
    band across the middle of both (drawn a little darker / lighter so a net can see it)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        region = np.zeros((size, size), np.uint8)
        region[10:22, :] = 255
        img = np.where(np.arange(size) < size // 2, LEFT_OUT, RIGHT_OUT)[None].repeat(size, 0)
        img[10:22, : size // 2] = LEFT_IN
        img[10:22, size // 2:] = RIGHT_IN
        cv2.imwrite(str(root / "images" / f"s{i + 1:02d}_0001.png"), img.astype(np.uint8))
        cv2.imwrite(str(root / "masks" / f"s{i + 1:02d}_0001.png"), region)


def student_config(tmp_path: Path, teacher: Path, **distill) -> Config:
    return Config({
        "name": "student", "version": "student-1", "classes": list(PLEXUS),
        "input": {"height": 32, "width": 32, "scale": 1 / 255, "mean": 0.0, "std": 1.0},
        "net": {"arch": "unet", "encoder": "simple", "presence": True, "width": 8,
                "pretrained": False},
        "loss": "combo", "epochs": 40, "batch": 4, "lr": 0.01, "threads": 1, "augment": None,
        "train": [{"kind": "uns-nerve", "root": "region", "as": "nerve"}],
        "val": [{"kind": "uns-nerve", "root": "region", "as": "nerve"}],
        "distill": {"teacher": str(teacher), "label": ["uns-nerve"], **distill},
        "out": str(tmp_path / "run"),
    })


def test_bound_moves_the_class_outside_the_region_to_the_background():
    probs = torch.tensor([0.2, 0.7, 0.1]).view(1, 3, 1, 1).repeat(1, 1, 2, 2)
    mask = torch.tensor([[[1, 0], [0, 1]]])
    out = bound_class(probs, mask, cls=1)
    assert torch.allclose(out.sum(1), torch.ones(1, 2, 2))
    assert out[0, 1, 0, 0] == pytest.approx(0.7) and out[0, 1, 0, 1] == 0
    assert out[0, 0, 0, 1] == pytest.approx(0.9) and out[0, 2, 0, 1] == pytest.approx(0.1)


def test_each_epoch_draws_a_fresh_subset_of_a_capped_group_and_all_of_the_rest():
    groups = ["usgra-seg"] * 5 + ["uns-nerve"] * 50
    rng = np.random.default_rng(0)
    a, b = (epoch_order(groups, {"uns-nerve": 10}, rng) for _ in range(2))
    for order in (a, b):
        assert len(order) == 15 and len(set(order)) == 15
        assert set(range(5)) <= set(order)
    assert set(a) != set(b)


def test_a_teacher_with_other_classes_or_another_normalisation_is_refused(tmp_path):
    path = make_model(tmp_path / "t.onnx", classes=PLEXUS, size=(48, 48))
    with pytest.raises(DistillError, match="classes"):
        Teacher(path, contract_for(("background", "vein", "artery"), (32, 32)))
    with pytest.raises(DistillError, match="normalises"):
        Teacher(path, contract_for(PLEXUS, (32, 32), mean=0.2))
    with pytest.raises(DistillError, match="does not exist"):
        Teacher(tmp_path / "none.onnx", contract_for(PLEXUS, (32, 32)))


def test_teacher_labels_follow_the_batch_at_the_students_size(tmp_path):
    path = make_model(tmp_path / "t.onnx", classes=PLEXUS, size=(48, 48), presence=True)
    teacher = Teacher(path, contract_for(PLEXUS, (32, 32)))
    x = torch.zeros(2, 1, 32, 32)
    x[0, :, :, :16] = 0.9  # bright: the threshold model's nerve
    probs, presence = teacher(x)
    assert probs.shape == (2, 3, 32, 32) and presence.shape == (2, 3)
    assert probs[0, 1, :, :12].min() > 0.9 and probs[1, 2].min() > 0.9  # dark: its vessel


def test_student_learns_the_teacher_not_the_region_mask_and_keeps_nerve_in_the_region(tmp_path):
    """The threshold teacher calls bright pixels nerve and dark ones vessel. On region-labelled
    frames the student must learn exactly that, except that nerve outside the region becomes
    background: learning the mask as truth would give nerve in the whole band and no vessel."""
    write_region_frames(tmp_path / "data" / "region")
    teacher = make_model(tmp_path / "t.onnx", classes=PLEXUS, size=(48, 48), presence=True)
    cfg = student_config(tmp_path, teacher, teacher_only=["uns-nerve"],
                         bound={"uns-nerve": "nerve"})
    run = train(cfg, root=tmp_path / "data", device="cpu", quiet=True)
    net, _ = load_trained(run)
    img = cv2.imread(str(tmp_path / "data" / "region" / "images" / "s01_0001.png"), 0)
    with torch.no_grad():
        pred = net(torch.from_numpy(img / 255.0).float()[None, None])[0].argmax(1)[0].numpy()
    zones = {LEFT_OUT: 0, LEFT_IN: 1, RIGHT_OUT: 2, RIGHT_IN: 2}  # what the student should say
    for grey, cls in zones.items():
        share = float(np.mean(pred[img == grey] == cls))
        assert share > 0.8, f"grey {grey}: {share:.0%} class {cls}"
