"""Training pieces on tiny inputs: datasets refuse bad folders, losses fall, runs resume."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch  # the training package

from sonoguide.training.augment import AugmentConfig, augment  # noqa: E402
from sonoguide.training.data import (  # noqa: E402
    DatasetError,
    FolderSpec,
    load_folder,
    make_split,
    preprocess,
    read_split,
)
from sonoguide.training.losses import LOSSES, get_loss, presence_loss  # noqa: E402
from sonoguide.training.nets import ARCHS, SegNet  # noqa: E402
from sonoguide.training.train import Config, load_trained, train  # noqa: E402

CLASSES = ("background", "nerve", "vessel")
REPO = Path(__file__).resolve().parent.parent


def disc_mask(size: int, cx: int, cy: int, r: int, cls: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (cx, cy), r, cls, -1)
    return m


def write_usgra_like(root: Path, n: int = 3, size: int = 32) -> None:
    """images/ + RGB colour masks/ as usgra-seg stores them (nerve red, vessel green)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        idx = disc_mask(size, 10, 12, 5, 1) | disc_mask(size, 22, 20, 4, 2)
        img = (40 + 120 * (idx == 1) + 60 * (idx == 2) + rng.integers(0, 20, idx.shape))
        rgb = np.zeros((size, size, 3), np.uint8)
        rgb[idx == 1] = (128, 0, 0)
        rgb[idx == 2] = (0, 128, 0)
        cv2.imwrite(str(root / "images" / f"{i:04d}.png"), img.astype(np.uint8))
        cv2.imwrite(str(root / "masks" / f"{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def usgra_spec(root: Path) -> FolderSpec:
    return FolderSpec.from_config({"kind": "usgra-seg", "root": str(root)})


def test_colour_masks_read_as_rgb_not_bgr(tmp_path):
    write_usgra_like(tmp_path)
    s = load_folder(usgra_spec(tmp_path), CLASSES)[0]
    assert s.mask[12, 10] == 1, "red (128,0,0) must be nerve"
    assert s.mask[20, 22] == 2, "green (0,128,0) must be vessel"
    assert s.mask[0, 0] == 0


def test_missing_mask_is_an_error_naming_the_file(tmp_path):
    write_usgra_like(tmp_path)
    (tmp_path / "masks" / "0001.png").unlink()
    with pytest.raises(DatasetError, match="0001"):
        load_folder(usgra_spec(tmp_path), CLASSES)


def test_mask_of_another_size_is_an_error_naming_the_file(tmp_path):
    write_usgra_like(tmp_path)
    cv2.imwrite(str(tmp_path / "masks" / "0002.png"), np.zeros((30, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match="0002.png.*size"):
        load_folder(usgra_spec(tmp_path), CLASSES)


def test_unknown_mask_colour_is_an_error_naming_the_file(tmp_path):
    write_usgra_like(tmp_path)
    bad = np.zeros((32, 32, 3), np.uint8)
    bad[5, 5] = (255, 255, 255)
    cv2.imwrite(str(tmp_path / "masks" / "0000.png"), bad)
    with pytest.raises(DatasetError, match="0000.png.*unknown mask colour"):
        load_folder(usgra_spec(tmp_path), CLASSES)


def test_index_palette_folder_and_unknown_value(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((16, 16), 90, np.uint8))
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 2
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask)
    spec = FolderSpec.from_config({"root": str(tmp_path),
                                   "values": {"0": "background", "2": "vessel"}})
    assert (load_folder(spec, CLASSES)[0].mask == 2).sum() == 16
    mask[0, 0] = 7
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask)
    with pytest.raises(DatasetError, match="a.png.*unknown mask value"):
        load_folder(spec, CLASSES)


def test_kaggle_layout_pairs_name_with_name_mask(tmp_path):
    img = np.full((16, 20), 80, np.uint8)
    mask = np.zeros((16, 20), np.uint8)
    mask[2:6, 3:9] = 255
    cv2.imwrite(str(tmp_path / "1_1.tif"), img)
    cv2.imwrite(str(tmp_path / "1_1_mask.tif"), mask)
    cv2.imwrite(str(tmp_path / "1_2.tif"), img)
    spec = FolderSpec.from_config({"kind": "kaggle", "root": str(tmp_path)})
    with pytest.raises(DatasetError, match="1_2.tif.*1_2_mask.tif"):
        load_folder(spec, CLASSES)
    cv2.imwrite(str(tmp_path / "1_2_mask.tif"), mask)
    samples = load_folder(spec, CLASSES)
    assert [s.name for s in samples] == ["1_1", "1_2"]
    assert (samples[0].mask == 1).sum() == 24


def test_split_is_seeded_stratified_and_disjoint():
    samples = []
    for i in range(20):
        m = disc_mask(8, 4, 4, 2, 2 if i < 10 else 1)
        samples.append(type("S", (), {"name": f"{i:02d}", "mask": m})())
    a, b = make_split(samples, 2, seed=3), make_split(samples, 2, seed=3)
    assert a == b
    assert not set(a["train"]) & set(a["val"])
    assert sum(int(n) < 10 for n in a["val"]) == 2  # 20% of each stratum


def test_committed_usgra_split_is_disjoint_and_covers_204_files():
    split = read_split(REPO / "training" / "splits" / "usgra-seg.json")
    assert len(split["train"]) + len(split["val"]) == 204
    assert len(split["val"]) == 41


def test_preprocess_matches_the_contract_formula():
    from sonoguide.pipeline.contract import ModelContract

    c = ModelContract(CLASSES, 8, 8, 1 / 255, 0.15, 0.15, "t", "t")
    img = np.full((16, 16), 51, np.uint8)
    x = preprocess(img, c)
    assert x.shape == (8, 8) and x.dtype == np.float32
    assert np.allclose(x, (51 / 255 - 0.15) / 0.15, atol=1e-5)


def test_augmentation_moves_mask_with_image():
    img = np.zeros((64, 64), np.uint8)
    img[10:30, 5:20] = 200
    mask = (img > 0).astype(np.uint8)
    cfg = AugmentConfig(p_flip=1.0, max_rotate_deg=0, depth_scale=(1, 1), max_shift=0,
                        p_elastic=0, gain=(1, 1), gamma=(1, 1), p_speckle=0, noise_sigma=0,
                        p_shadow=0)
    out_img, out_mask = augment(img, mask, cfg, np.random.default_rng(0))
    assert out_mask[15, 50] == 1 and out_img[15, 50] == 200  # flipped together
    assert out_mask[15, 10] == 0
    rich = AugmentConfig(p_elastic=1.0, p_shadow=1.0, p_speckle=1.0)
    out_img, out_mask = augment(img, mask, rich, np.random.default_rng(1))
    assert out_img.dtype == np.uint8 and set(np.unique(out_mask)) <= {0, 1}
    assert out_mask.sum() > 0


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_each_loss_decreases_on_a_tiny_batch(loss_name):
    torch.manual_seed(0)
    net = SegNet("unet", "simple", 3, presence=True, width=8, pretrained=False)
    y = torch.from_numpy(np.stack([disc_mask(32, 12, 14, 6, 1) | disc_mask(32, 24, 22, 4, 2),
                                   disc_mask(32, 20, 10, 5, 1)])).long()
    x = (y.float()[:, None] - 0.5) + 0.1 * torch.randn(2, 1, 32, 32)
    fn = get_loss(loss_name)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(12):
        logits, pres = net(x)
        loss = fn(logits, y) + presence_loss(pres, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9, losses


@pytest.mark.parametrize("arch", ARCHS)
def test_networks_give_full_size_logits_and_presence(arch):
    net = SegNet(arch, "simple", 3, presence=True, width=8, pretrained=False).eval()
    logits, pres = net(torch.zeros(2, 1, 32, 48))
    assert logits.shape == (2, 3, 32, 48) and pres.shape == (2, 3)


def test_lite0_loads_imagenet_weights_for_one_channel():
    from sonoguide.training.encoders import EfficientNetLite0, lite0_weights_path

    enc = EfficientNetLite0(depth=4)
    rgb = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    stem = enc._conv_stem.weight
    assert stem.shape == (32, 1, 3, 3)
    assert torch.allclose(stem, rgb["_conv_stem.weight"].sum(1, keepdim=True))
    assert [f.shape[1] for f in enc(torch.zeros(1, 1, 32, 32))] == [16, 24, 40, 112]


def tiny_config(tmp_path: Path, arch: str = "unet", **extra) -> Config:
    """A config training a tiny net on the usgra-like folder at tmp_path/data/tiny."""
    return Config({
        "name": "tiny", "version": "tiny-1", "classes": list(CLASSES),
        "input": {"height": 32, "width": 32, "scale": 1 / 255, "mean": 0.3, "std": 0.2},
        "net": {"arch": arch, "encoder": "simple", "presence": True, "width": 8,
                "pretrained": False},
        "loss": "combo", "epochs": 2, "batch": 2, "lr": 0.01, "threads": 1,
        "train": [{"kind": "usgra-seg", "root": "tiny"}],
        "val": [{"kind": "usgra-seg", "root": "tiny"}],
        "out": str(tmp_path / "run"), **extra,
    })


def test_train_writes_a_checkpoint_and_resumes(tmp_path):
    write_usgra_like(tmp_path / "data" / "tiny")
    cfg = tiny_config(tmp_path, arch="linknet")
    run = train(cfg, root=tmp_path / "data", device="cpu", max_steps=1, quiet=True)
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1 and (run / "curves.png").exists()
    train(cfg, root=tmp_path / "data", device="cpu", quiet=True)  # resumes at epoch 2
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())] == [1, 2]
    net, loaded = load_trained(run)
    assert loaded.classes == CLASSES


def test_a_split_naming_absent_files_is_an_error(tmp_path):
    write_usgra_like(tmp_path)
    with pytest.raises(DatasetError, match="9999"):
        load_folder(usgra_spec(tmp_path), CLASSES, names=["0000", "9999"])


def test_ema_weights_differ_from_raw_and_are_what_export_loads(tmp_path):
    write_usgra_like(tmp_path / "data" / "tiny", n=4)
    cfg = tiny_config(tmp_path, ema=0.9)
    run = train(cfg, root=tmp_path / "data", device="cpu", max_steps=2, quiet=True)
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["ema"]["updates"] == 2
    train(cfg, root=tmp_path / "data", device="cpu", quiet=True)  # resume keeps the average
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["ema"]["updates"] == 4  # 2 steps per epoch x 2 epochs
    raw, ema = state["model"], state["ema"]["model"]
    assert raw.keys() == ema.keys()
    assert any(not torch.equal(raw[k], ema[k]) for k in raw if raw[k].is_floating_point())
    bn = [k for k in raw if k.endswith("running_mean")]
    assert bn and any(not torch.equal(raw[k], ema[k]) for k in bn)  # BN stats averaged too
    net, _ = load_trained(run)  # export_run exports what load_trained returns
    assert all(torch.equal(v, ema[k]) for k, v in net.state_dict().items())
    net_raw, _ = load_trained(run, raw=True)
    assert all(torch.equal(v, raw[k]) for k, v in net_raw.state_dict().items())


def test_domain_randomisation_keeps_labels_exact_and_values_in_range():
    # Two "vessels" (classes 1 and 2) as dark discs with bright rings on a grey background.
    img = np.full((96, 96), 90, np.uint8)
    mask = np.zeros((96, 96), np.uint8)
    for c, (x, y) in ((1, (30, 40)), (2, (64, 56))):
        cv2.circle(img, (x, y), 14, 230, 3)
        cv2.circle(img, (x, y), 12, 0, -1)
        cv2.circle(mask, (x, y), 12, c, -1)
    photo_only = AugmentConfig(
        p_flip=0, max_rotate_deg=0, depth_scale=(1, 1), max_shift=0, p_elastic=0,
        p_wall=1, p_lumen=1, p_resynth=1, p_fascia=1, p_blotch=1, p_tone=1, p_gain_field=1,
        p_blur=1)
    for seed in range(8):
        out_img, out_mask = augment(img, mask, photo_only, np.random.default_rng(seed))
        assert out_img.dtype == np.uint8 and out_img.shape == img.shape
        assert np.array_equal(out_mask, mask)  # intensity steps never touch the labels
        assert out_img.std() > 0
    # The new geometric steps move image and mask together: the dark lumens stay under the labels.
    geo = AugmentConfig(p_flip=0, max_rotate_deg=0, depth_scale=(1, 1), max_shift=0,
                        p_elastic=0, p_fine_elastic=1, p_letterbox=1, gain=(1, 1),
                        gamma=(1, 1), p_speckle=0, noise_sigma=0, p_shadow=0)
    for seed in range(8):
        out_img, out_mask = augment(img, mask, geo, np.random.default_rng(seed))
        assert set(np.unique(out_mask)) == {0, 1, 2}
        # Away from the 1-px edge (area-resampled image vs nearest-neighbour mask).
        inside = cv2.erode((out_mask > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert np.mean(out_img[inside] < 45) > 0.95  # lumen pixels are still the dark ones
        assert out_img[:, :3].max() == 0 or out_img[:3].max() == 0 or out_img[-3:].max() == 0 \
            or out_img[:, -3:].max() == 0  # some black band from the letterbox
    assert AugmentConfig.from_dict({}).p_wall == 0  # off unless a config names it


def test_frame_dice_weighs_a_missed_small_nerve_like_a_missed_large_one():
    """Batch-pooled Dice barely notices a small structure missed beside a large one found;
    the per-frame Dice (what the evaluation and the doctor see) counts it as half the frames."""
    from sonoguide.training.losses import frame_dice, soft_dice

    big, small = disc_mask(64, 32, 32, 20, 1), disc_mask(64, 10, 10, 3, 1)
    target = torch.from_numpy(np.stack([big, small])).long()
    found_big_only = torch.from_numpy(np.stack([big, np.zeros_like(small)])).long()
    logits = 50 * torch.nn.functional.one_hot(found_big_only, 3).permute(0, 3, 1, 2).float()
    assert soft_dice(logits, target) < 0.1
    assert frame_dice(logits, target) > 0.45


def test_training_sees_the_roi_crop_the_app_feeds_the_model():
    from sonoguide.pipeline.contract import ModelContract
    from sonoguide.training.data import Sample
    from sonoguide.training.train import to_model_size

    image = np.zeros((40, 80), np.uint8)
    image[:, 40:] = 200  # the right half is the "image"; the ROI is there
    mask = np.zeros((40, 80), np.uint8)
    mask[10:20, 50:60] = 1
    c = ModelContract(("background", "nerve", "vessel"), 40, 40, 1 / 255, 0.0, 1.0, "t", "t")
    (s,) = to_model_size([Sample("a", image, mask, roi=(40, 0, 40, 40))], c)
    assert s.image.shape == (40, 40) and s.image.min() == 200
    assert s.mask[10:20, 10:20].all() and s.mask.sum() == 100


def test_live_phantom_source_is_the_apps_default_patient_over_time(tmp_path):
    """The "phantom-live" evaluation set is what the app shows at start: one patient (the
    live source's seed and size) whose artery pulses from frame to frame, labels included."""
    from sonoguide.phantom.simulator import PhantomSimulator
    from sonoguide.training.train import load_sources

    jug = ("background", "vein", "artery")
    src = {"kind": "phantom-live", "scene": "jugular", "seed": 0, "n": 12, "fps": 30,
           "size": [128, 128]}
    frames = load_sources([src], jug, tmp_path, (64, 64))
    assert len(frames) == 12 and frames[0].image.shape == (128, 128)
    first = PhantomSimulator("jugular", seed=0, size=(128, 128)).render(0.0)
    assert np.array_equal(frames[0].image, first.image)
    areas = [int((f.mask == 2).sum()) for f in frames]
    assert min(areas) > 0 and max(areas) > min(areas)  # the carotid pulses
    assert all((f.mask == 1).any() for f in frames)  # the vein is there in every frame
    again = load_sources([src], jug, tmp_path, (64, 64))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again, strict=True))


def test_realism_figures_see_enhancement_soft_edges_and_a_bright_near_field():
    """The phantom-vs-real table must measure what it names: posterior enhancement, how sharp a
    vessel's edge is, and brightness by depth."""
    from sonoguide.training.data import Sample
    from sonoguide.training.realism import depth_profile, vessel_stats

    img = np.full((256, 256), 60, np.uint8)
    img[:26] = 120  # bright near field
    mask = disc_mask(256, 128, 100, 20, 2)
    img[121:150, 108:149] = 90  # brighter band just below the vessel: enhancement
    img[mask == 2] = 10
    crisp = vessel_stats(Sample("a", img, mask), 2)
    soft = vessel_stats(Sample("b", cv2.GaussianBlur(img, (0, 0), 4), mask), 2)
    assert len(crisp) == 1 and crisp[0].below > crisp[0].ring > crisp[0].lumen
    assert soft[0].edge < 0.6 * crisp[0].edge
    prof = depth_profile(Sample("a", img, mask))
    assert prof[0] > 1.5 * prof[5]
    # the scanner's black margins are not tissue: the same picture letterboxed reads the same
    boxed = np.zeros((320, 300), np.uint8)
    boxed[40:296, 22:278] = img
    boxed_mask = np.zeros_like(boxed)
    boxed_mask[40:296, 22:278] = mask
    np.testing.assert_allclose(depth_profile(Sample("c", boxed, boxed_mask)), prof)


def test_realism_critic_reports_what_a_real_trained_model_finds_in_phantom_frames(tmp_path):
    """--critic runs a model on phantom frames of each scene: one that calls dark pixels vessel
    finds the phantom's dark lumens; one whose presence head hides vessels finds none."""
    from sonoguide.training.realism import _critic_table, critic
    from tests.model_factory import make_model

    classes = ("background", "nerve", "vessel")
    dark = make_model(tmp_path / "dark.onnx", classes, (64, 64), scale=1 / 255)
    blind = make_model(tmp_path / "blind.onnx", classes, (64, 64), presence={"vessel": 0.01})
    seen = critic(dark, ["jugular", "femoral"], frames=4, size=128)
    assert set(seen) == {"jugular", "femoral"}
    assert seen["jugular"]["vessels found"] > 0.5 and seen["jugular"]["vessel Dice"] > 0.1
    hidden = critic(blind, ["jugular"], frames=4, size=128)["jugular"]
    assert hidden["vessels found"] == 0 and hidden["vessel Dice"] == 0
    table = _critic_table(seen)
    assert "| jugular |" in table and "| mean |" in table


def test_an_ensemble_config_trains_members_by_seed_and_exports_their_mean(tmp_path):
    """"members": 2 trains two seeds in run/m0 and run/m1; the exported model's logits are the
    mean of theirs (what the app then runs as one model)."""
    from sonoguide.training.export import export_run, ort_session
    from sonoguide.training.train import member_configs, train_all

    write_usgra_like(tmp_path / "data" / "tiny", n=4)
    cfg = tiny_config(tmp_path, epochs=1, members=2)
    assert [m.get("seed") for m in member_configs(cfg)] == [0, 1]
    runs = train_all(cfg, root=tmp_path / "data", device="cpu")
    assert runs == [tmp_path / "run" / "m0", tmp_path / "run" / "m1"]
    nets = [load_trained(r)[0] for r in runs]
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 32, 32)).astype(np.float32))
    with torch.no_grad():
        logits = [n(x)[0] for n in nets]
    assert not torch.allclose(logits[0], logits[1])  # two seeds, two different networks
    path = export_run(cfg, output=tmp_path / "ens.onnx", root=tmp_path / "data")
    session = ort_session(path)
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.allclose(out, ((logits[0] + logits[1]) / 2).numpy(), atol=1e-4)


def test_learning_curve_subsets_are_nested_and_keep_the_vessel_free_share():
    from sonoguide.training.learning_curve import nested_subsets

    with_v = [f"v{i}" for i in range(80)]
    without = [f"n{i}" for i in range(20)]
    subsets = nested_subsets(with_v, without, [25, 50, 100])
    assert set(subsets[25]) < set(subsets[50]) < set(subsets[100])
    assert sum(n.startswith("n") for n in subsets[50]) == 10  # 20 % as in the whole split
    with pytest.raises(ValueError, match="101"):
        nested_subsets(with_v, without, [101])


def test_learning_curve_trains_each_size_on_the_same_validation_split(tmp_path):
    from sonoguide.training.learning_curve import add_point, learning_curve, markdown

    write_usgra_like(tmp_path / "data" / "tiny", n=6)
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["0000", "0001", "0002", "0003"],
                                 "val": ["0004", "0005"]}))
    src = {"kind": "usgra-seg", "root": "tiny", "split": str(split)}
    cfg = tiny_config(tmp_path, epochs=1, train=[{**src, "part": "train"}],
                      val=[{**src, "part": "val"}])
    report = learning_curve(cfg, [2, 4], tmp_path / "curve", tmp_path / "data", "cpu",
                            {"nerve": 0.99}, max_steps=1, quiet=True)
    assert [r["images"] for r in report["rows"]] == [2, 4]
    small = json.loads((tmp_path / "curve" / "split_n2.json").read_text())
    assert len(small["train"]) == 2 and small["val"] == ["0004", "0005"]
    assert "per_doubling" in report["fits"]["nerve"]
    assert (tmp_path / "curve" / "curve.png").exists()
    assert "real training images" in (tmp_path / "curve" / "curve.md").read_text()
    # another recipe's model beside the curve: plotted and tabled, never part of the fit
    other = tmp_path / "other.eval.json"
    other.write_text(json.dumps({"sets": {"validation": {"classes": {
        "nerve": {"dice_mean": 0.5}, "vessel": {"dice_mean": None}}}}}))
    before = (tmp_path / "curve" / "curve.png").stat().st_mtime_ns
    again = add_point(tmp_path / "curve" / "curve.json", 50, other, "pretrained")
    assert again["fits"] == report["fits"] and again["rows"] == report["rows"]
    assert again["extra"] == [{"images": 50, "label": "pretrained", "nerve": 0.5, "vessel": None}]
    assert "pretrained (50 images): nerve 0.500" in markdown(again)
    assert (tmp_path / "curve" / "curve.png").stat().st_mtime_ns != before
    # the same label again replaces its point
    assert len(add_point(tmp_path / "curve" / "curve.json", 60, other, "pretrained")["extra"]) == 1


def test_a_split_with_a_file_in_val_and_test_is_refused(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["0000"], "val": ["0001"], "test": ["0001", "0002"]}))
    with pytest.raises(DatasetError, match="both val and test.*0001"):
        read_split(path)


def test_split_command_still_splits_a_config_source_by_file(tmp_path):
    from sonoguide.training.__main__ import main

    write_usgra_like(tmp_path / "data" / "tiny", n=5)
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(tiny_config(tmp_path).raw))
    out = tmp_path / "split.json"
    assert main(["split", "--config", str(cfg), "--output", str(out),
                 "--data-root", str(tmp_path / "data")]) == 0
    split = read_split(out)
    assert sorted(split["train"] + split["val"]) == [f"{i:04d}" for i in range(5)]
    assert "test" not in split and "by" not in split


def test_init_from_copies_a_pretrained_body_but_not_another_label_sets_head(tmp_path):
    from sonoguide.training.nets import build_net
    from sonoguide.training.train import init_from

    write_usgra_like(tmp_path / "data" / "tiny")
    cfg = tiny_config(tmp_path)
    run = train(cfg, root=tmp_path / "data", device="cpu", max_steps=1, quiet=True)
    pretrained, _ = load_trained(run)  # the weights that ship: the EMA's, as init_from takes
    net = build_net(cfg["net"], len(CLASSES) + 1, pretrained=False)  # another label set
    copied, skipped = init_from(net, run, torch.device("cpu"))
    assert copied > 0 and skipped > 0  # the body came over, the differently sized head did not
    own, theirs = net.state_dict(), pretrained.state_dict()
    same = [k for k in own if k in theirs and own[k].shape == theirs[k].shape]
    assert len(same) == copied
    assert all(torch.equal(own[k], theirs[k]) for k in same)
