"""uns-nerve (region labels, split by subject), the steadiness figure and the region report, on
tiny fake folders and tiny real ONNX models."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sonoguide.training.data import (
    UNS_REGION_CLASS,
    DatasetError,
    FolderSpec,
    Sample,
    list_pairs,
    load_folder,
    make_subject_split,
    read_split,
)
from tests.model_factory import make_model

REPO = Path(__file__).resolve().parent.parent
REGION = ("background", UNS_REGION_CLASS)


def write_uns_like(root: Path, subjects: int = 4, per_subject: int = 2, size: int = 32) -> None:
    """images/sSS_NNNN.jpg (grey) + masks/sSS_NNNN.png (0/255 region), as uns-nerve stores them."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(3)
    for s in range(1, subjects + 1):
        for n in range(1, per_subject + 1):
            name = f"s{s:02d}_{n:04d}"
            mask = np.zeros((size, size), np.uint8)
            cv2.rectangle(mask, (8, 10), (24, 20), 255, -1)
            img = (60 + rng.integers(0, 40, (size, size))).astype(np.uint8)
            cv2.imwrite(str(root / "images" / f"{name}.jpg"), img)
            cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)


def uns_spec(root: Path, **cfg) -> FolderSpec:
    return FolderSpec.from_config({"kind": "uns-nerve", "root": str(root), **cfg})


def test_region_mask_reads_as_the_plexus_region_class(tmp_path):
    write_uns_like(tmp_path)
    s = load_folder(uns_spec(tmp_path), REGION)[0]
    assert s.name == "s01_0001" and s.image.shape == (32, 32)
    assert s.mask[15, 16] == 1 and s.mask[2, 2] == 0
    assert set(np.unique(s.mask)) == {0, 1}


def test_config_chooses_the_class_the_region_becomes(tmp_path):
    write_uns_like(tmp_path)
    classes = ("background", "nerve", "vessel")
    s = load_folder(uns_spec(tmp_path, **{"as": "vessel"}), classes)[0]
    assert s.mask[15, 16] == 2
    with pytest.raises(DatasetError, match="plexus_region"):  # not in the config's classes
        load_folder(uns_spec(tmp_path), classes)


def test_missing_mask_is_an_error_naming_the_file(tmp_path):
    write_uns_like(tmp_path)
    (tmp_path / "masks" / "s02_0001.png").unlink()
    with pytest.raises(DatasetError, match="s02_0001"):
        load_folder(uns_spec(tmp_path), REGION)


def test_mask_of_another_size_is_an_error_naming_the_file(tmp_path):
    write_uns_like(tmp_path)
    cv2.imwrite(str(tmp_path / "masks" / "s03_0002.png"), np.zeros((30, 32), np.uint8))
    with pytest.raises(DatasetError, match=r"s03_0002\.png.*32x30"):
        load_folder(uns_spec(tmp_path), REGION)


def test_mid_grey_mask_is_refused_but_compression_noise_is_tolerated(tmp_path):
    write_uns_like(tmp_path)
    noisy = cv2.imread(str(tmp_path / "masks" / "s01_0002.png"), cv2.IMREAD_UNCHANGED)
    noisy[noisy == 0] = 20  # within 31 of 0: JPEG-ish noise, snaps to background
    noisy[noisy == 255] = 230  # within 31 of 255: snaps to the region
    cv2.imwrite(str(tmp_path / "masks" / "s01_0002.png"), noisy)
    s = load_folder(uns_spec(tmp_path), REGION, names=["s01_0002"])[0]
    assert s.mask[15, 16] == 1 and s.mask[2, 2] == 0

    soft = noisy.copy()
    soft[10, 8:25] = 128  # an anti-aliased edge: thresholding would move the outline
    cv2.imwrite(str(tmp_path / "masks" / "s04_0001.png"), soft)
    with pytest.raises(DatasetError, match=r"s04_0001\.png.*mid-grey.*value 128"):
        load_folder(uns_spec(tmp_path), REGION)


def test_a_name_without_its_subject_is_an_error_naming_the_file(tmp_path):
    write_uns_like(tmp_path)
    for sub in ("images", "masks"):
        ext = ".jpg" if sub == "images" else ".png"
        (tmp_path / sub / f"s01_0001{ext}").rename(tmp_path / sub / f"frame7{ext}")
    with pytest.raises(DatasetError, match="frame7"):
        list_pairs(uns_spec(tmp_path))


def test_subject_split_is_seeded_and_keeps_each_subject_on_one_side():
    names = [f"s{s:02d}_{n:04d}" for s in range(1, 21) for n in range(1, 1 + s % 4 + 1)]
    a = make_subject_split(names, (0.7, 0.15, 0.15), seed=0)
    assert a == make_subject_split(list(reversed(names)), (0.7, 0.15, 0.15), seed=0)
    assert a != make_subject_split(names, (0.7, 0.15, 0.15), seed=1)
    assert [len(a["subjects"][k]) for k in ("train", "val", "test")] == [14, 3, 3]
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(names)
    for part in ("train", "val", "test"):
        assert {n[:3] for n in a[part]} == set(a["subjects"][part])
        assert a["frames"][part] == len(a[part])


def test_a_split_with_one_subject_on_both_sides_is_refused_naming_it(tmp_path):
    bad = {"by": "subject", "train": ["s01_0001", "s02_0001"], "val": ["s03_0001"],
           "test": ["s02_0002"]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="subject s02 is in both train and test"):
        read_split(tmp_path / "bad.json")
    # names carrying their subject are checked even when the file does not say "by"
    del bad["by"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="s02"):
        read_split(tmp_path / "bad.json")
    # recorded subjects that disagree with the files are refused too
    ok = make_subject_split([f"s{s:02d}_0001" for s in range(1, 8)], seed=0)
    ok["subjects"]["val"] = ["s99"]
    (tmp_path / "odd.json").write_text(json.dumps(ok))
    with pytest.raises(DatasetError, match="s99"):
        read_split(tmp_path / "odd.json")


def test_split_command_writes_a_subject_split_that_a_config_source_reads(tmp_path):
    from sonoguide.training.__main__ import main
    from sonoguide.training.train import load_sources

    write_uns_like(tmp_path / "data" / "uns-nerve", subjects=10, per_subject=2)
    out = tmp_path / "uns.json"
    assert main(["split", "--dataset", "uns-nerve", "--output", str(out),
                 "--data-root", str(tmp_path / "data")]) == 0
    split = read_split(out)
    assert split["by"] == "subject" and len(split["subjects"]["test"]) == 2
    src = {"kind": "uns-nerve", "root": "uns-nerve", "split": str(out), "part": "test"}
    samples = load_sources([src], REGION, tmp_path / "data", (32, 32))
    assert [s.name for s in samples] == split["test"] and samples[0].group == "uns-nerve"


def test_committed_uns_nerve_split_is_by_subject_70_15_15_of_47():
    split = read_split(REPO / "training" / "splits" / "uns-nerve.json")
    subjects = split["subjects"]
    assert [len(subjects[k]) for k in ("train", "val", "test")] == [33, 7, 7]
    assert len(set(subjects["train"]) | set(subjects["val"]) | set(subjects["test"])) == 47
    assert sum(len(split[k]) for k in ("train", "val", "test")) == 2323


# --- steadiness -------------------------------------------------------------------------------

def disc_sample(name: str = "d", size: int = 64, group: str = "real") -> Sample:
    img = np.full((size, size), 128, np.uint8)
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(img, (30, 34), 12, 240, -1)
    cv2.circle(mask, (30, 34), 12, 1, -1)
    return Sample(name, img, mask, group=group)


def bright_predictor(image: np.ndarray, roi=None) -> np.ndarray:
    """Draws class 1 where the image is bright: follows the image exactly."""
    return (cv2.GaussianBlur(image, (5, 5), 0) > 190).astype(np.uint8)


def test_motion_clips_are_seeded_and_their_truth_moves_with_the_image():
    from sonoguide.training.steadiness import SteadinessOptions, motion_clip

    opt = SteadinessOptions(frames=4)
    a, b = motion_clip(disc_sample(), 0, opt), motion_clip(disc_sample(), 0, opt)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames, strict=True))
    assert not np.array_equal(a.frames[0], a.frames[1])  # fresh motion and noise per frame
    for frame, truth in zip(a.frames, a.truth, strict=True):
        assert frame[truth == 1].mean() > 190 > frame[truth == 0].mean()
    shifts = [np.hypot(*m[:, 2] - a.moves[0][:, 2]) for m in a.moves]
    assert max(shifts) < 2 * 3.0 + 0.03 * 64


def test_a_steady_predictor_scores_near_one_a_blinking_one_low():
    from sonoguide.training.steadiness import SteadinessOptions, build_clips, steadiness

    clips = build_clips([disc_sample(f"d{i}") for i in range(3)], SteadinessOptions(frames=6))
    steady = steadiness(bright_predictor, clips, ("background", "nerve"), quiet=True)
    m = steady["classes"]["nerve"]["motion"]
    assert steady["classes"]["nerve"]["steadiness"] == m["iou_aligned"] > 0.9
    assert m["truth_aligned"] > 0.9 and m["pairs"] == 15 and m["blinks"] == 0
    assert m["iou_on_screen"] <= m["iou_aligned"] + 0.02  # motion undone can only help

    calls = iter(range(10_000))

    def blinking(image, roi=None):  # the same outline, drawn every other frame
        return bright_predictor(image) * (next(calls) % 2)

    flicker = steadiness(blinking, clips, ("background", "nerve"), quiet=True)
    assert flicker["classes"]["nerve"]["motion"]["blinks"] == 15
    assert flicker["classes"]["nerve"]["steadiness"] == 0.0


def test_live_phantom_frames_play_as_one_sweep():
    from sonoguide.training.steadiness import SteadinessOptions, build_clips, steadiness

    live = [disc_sample(f"l{i}", group="plexus-live" + ("-overlap" if i == 2 else ""))
            for i in range(5)]
    clips = build_clips(live + [disc_sample("r")], SteadinessOptions(frames=3))
    assert sorted(len(c.frames) for c in clips) == [3, 5]
    r = steadiness(bright_predictor, clips, ("background", "nerve"), quiet=True)
    assert r["clips"] == {"motion": 1, "sweep": 1}
    assert r["classes"]["nerve"]["sweep"]["iou_on_screen"] == 1.0  # a still sweep: no flicker


def test_steadiness_of_an_onnx_model_through_the_apps_drawing(tmp_path):
    from sonoguide.training.steadiness import (
        SteadinessOptions,
        markdown,
        steadiness_of_samples,
    )

    model = tmp_path / "m.onnx"
    make_model(model)  # threshold: bright -> nerve, dark -> vessel
    samples = [disc_sample(f"d{i}") for i in range(2)]
    r = steadiness_of_samples(model, samples, ("background", "nerve", "vessel"),
                              opt=SteadinessOptions(frames=4), quiet=True)
    assert r["classes"]["nerve"]["steadiness"] > 0.8
    assert r["classes"]["vessel"]["motion"]["pairs"] == 0  # never drawn: no pairs, no figure
    assert r["classes"]["vessel"]["steadiness"] is None
    assert "| nerve |" in markdown(r, "tiny")
    # every drawn outline is counted as the clip plays: on the disc's label (true), or on a
    # frame whose label lies elsewhere (stray)
    s = disc_sample("elsewhere")
    elsewhere = Sample(s.name, s.image, np.pad(np.ones((6, 6), np.uint8), ((0, 58), (0, 58))))
    r = steadiness_of_samples(model, [disc_sample("d"), elsewhere],
                              ("background", "nerve", "vessel"),
                              opt=SteadinessOptions(frames=4, sure_hold=0.0), quiet=True)
    o = r["classes"]["nerve"]["outlines"]
    assert (o["true"], o["stray"]) == (4, 4) and r["options"]["sure_hold"] == 0.0
    assert f"{o['true_dashed']} of 4 / {o['stray_dashed']} of 4" in markdown(r)


def test_region_report_measures_the_drawn_nerve_against_the_region(tmp_path):
    from sonoguide.training.evaluate import region_markdown, region_report

    model = tmp_path / "m.onnx"
    make_model(model)
    s = disc_sample()  # bright disc: the model draws nerve there
    inside = Sample("in", s.image, ((np.indices(s.mask.shape)[0] > 10) & s.mask.astype(bool)
                                    | (np.indices(s.mask.shape)[0] > 14)).astype(np.uint8))
    outside = Sample("out", s.image, np.pad(np.ones((8, 8), np.uint8), ((0, 56), (0, 56))))
    r = region_report(model, [inside, outside], "nerve", quiet=True)
    assert r["frames"] == 2 and r["drawn_share"] == 1.0
    assert r["aim_inside_share"] == 0.5 and r["touches_share"] == 0.5
    assert 0.4 < r["inside_share"] < 0.6  # ~all of it in one frame, none in the other
    assert "aim point inside" in region_markdown(r)
    # the one outline reaches into the region in one frame and lies outside it in the other
    o = r["outlines"]
    assert (o["right"], o["wrong"]) == (1, 1)
    assert f"| {o['right_dashed']} of 1 / {o['wrong_dashed']} of 1 |" in region_markdown(r)


def test_evaluate_config_adds_steadiness_and_reports_a_region_set(tmp_path):
    from sonoguide.training.evaluate import evaluate_config
    from sonoguide.training.steadiness import SteadinessOptions
    from sonoguide.training.train import Config

    write_uns_like(tmp_path / "data" / "uns", subjects=2, per_subject=1)
    model = tmp_path / "m.onnx"
    make_model(model)
    cfg = Config({
        "name": "tiny", "classes": ["background", "nerve", "vessel"],
        "input": {"height": 64, "width": 64, "scale": 1 / 255, "mean": 0.0, "std": 1.0},
        "val": [{"kind": "uns-nerve", "root": "uns", "as": "nerve"}],
        "evaluate_extra": [{"name": "region", "classes": list(REGION), "region": {},
                            "sources": [{"kind": "uns-nerve", "root": "uns"}]}]})
    out = tmp_path / "eval.json"
    evaluate_config(cfg, model, tmp_path / "data", out, quiet=True,
                    steadiness=SteadinessOptions(frames=3))
    sets = json.loads(out.read_text())["sets"]
    assert sets["validation"]["steadiness"]["clips"] == {"motion": 2, "sweep": 0}
    assert sets["region"]["frames"] == 2 and "drawn_share" in sets["region"]
    md = out.with_suffix(".md").read_text()
    assert "**Steadiness: validation**" in md and "aim point inside" in md


def test_worst_frames_picks_the_frame_whose_label_lies_elsewhere_and_draws_it(tmp_path):
    from sonoguide.training.worst_frames import frame_scores, worst, worst_frames_figure

    model = tmp_path / "m.onnx"
    make_model(model)  # threshold: the bright disc is drawn as nerve
    s = disc_sample("elsewhere")
    samples = [disc_sample("d0"), Sample(s.name, s.image, np.pad(np.ones((6, 6), np.uint8),
                                                                 ((0, 58), (0, 58)))),
               disc_sample("d2")]
    scores = frame_scores(model, samples, ("background", "nerve", "vessel"))
    assert scores[1]["nerve"] == 0.0 and scores[0]["nerve"] > 0.8
    assert worst(scores, 1) == [1]
    out = tmp_path / "worst.png"
    assert worst_frames_figure(model, samples, ("background", "nerve", "vessel"), out, k=2) \
        == [1, worst(scores, 2)[1]]
    assert cv2.imread(str(out)) is not None
