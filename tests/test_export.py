"""Export writes a contract-valid ONNX model the app accepts, or refuses and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch  # the training package

from sonoguide.pipeline.contract import ContractError, ModelContract  # noqa: E402
from sonoguide.training.bench import bench, quantize_int8  # noqa: E402
from sonoguide.training.evaluate import (  # noqa: E402
    evaluate_samples,
    hd95_px,
    map_classes,
    markdown_table,
)
from sonoguide.training.export import (  # noqa: E402
    ExportError,
    check_contract,
    export_onnx,
    ort_session,
    verify_against_torch,
)
from sonoguide.training.nets import SegNet  # noqa: E402

CLASSES = ("background", "nerve", "vessel")


def contract(classes=CLASSES) -> ModelContract:
    return ModelContract(tuple(classes), 32, 32, 1 / 255, 0.3, 0.2, "test-1", "unit test")


def tiny_net(n_classes: int = 3, presence: bool = True) -> SegNet:
    torch.manual_seed(0)
    return SegNet("linknet", "simple", n_classes, presence=presence, width=8,
                  pretrained=False).eval()


def test_export_writes_a_model_the_app_accepts(tmp_path):
    path = export_onnx(tiny_net(), contract(), tmp_path / "m.onnx")
    session = ort_session(path)
    got = check_contract(session)
    assert got.classes == CLASSES and (got.height, got.width) == (32, 32)
    assert [o.name for o in session.get_outputs()] == ["logits", "presence"]
    from sonoguide.pipeline.segmenter import Segmenter

    seg = Segmenter(path, provider="cpu")
    pred = seg.predict(np.full((64, 64), 90, np.uint8))
    assert pred.probs.shape == (3, 32, 32) and pred.presence.shape == (3,)


def test_ort_output_matches_torch_on_real_looking_input(tmp_path):
    net = tiny_net()
    path = export_onnx(net, contract(), tmp_path / "m.onnx")
    x = np.random.default_rng(2).normal(0, 1, (3, 1, 32, 32)).astype(np.float32)
    session = ort_session(path)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x))[0].numpy()
    assert np.abs(got - want).max() < 1e-3


def test_export_refuses_a_class_list_that_does_not_fit(tmp_path):
    target = tmp_path / "m.onnx"
    with pytest.raises(ContractError, match="channels"):
        export_onnx(tiny_net(n_classes=2), contract(), target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either


def test_export_refuses_a_contract_without_background_first(tmp_path):
    bad = contract(("nerve", "background", "vessel"))
    with pytest.raises(ContractError, match="background"):
        export_onnx(tiny_net(), bad, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_model_that_disagrees_with_torch_is_refused(tmp_path):
    net = tiny_net(presence=False)
    path = export_onnx(net, contract(), tmp_path / "m.onnx")
    with torch.no_grad():
        net.head.bias += 1.0  # the ONNX file no longer matches these weights
    with pytest.raises(ExportError, match="differs from torch"):
        verify_against_torch(path, net)


def test_int8_copy_keeps_the_contract_and_runs(tmp_path):
    path = export_onnx(tiny_net(), contract(), tmp_path / "m.onnx")
    calib = np.random.default_rng(0).normal(0, 1, (4, 1, 32, 32)).astype(np.float32)
    q = quantize_int8(path, tmp_path / "m.int8.onnx", calib)
    assert check_contract(ort_session(q)).classes == CLASSES
    row = bench(q, runs=5, warmup=1)
    assert row["per_s"] > 0 and row["input"] == [32, 32]


def test_hd95_of_two_shifted_squares_is_the_shift():
    a = np.zeros((64, 64), bool)
    b = np.zeros((64, 64), bool)
    a[10:30, 10:30] = True
    b[10:30, 13:33] = True
    assert hd95_px(a, b) == pytest.approx(3.0, abs=0.1)
    assert hd95_px(a, a) == 0.0


def test_vein_and_artery_merge_into_vessel_for_real_images():
    table = map_classes(("background", "vein", "artery"), CLASSES,
                        {"vein": "vessel", "artery": "vessel"})
    assert table[:3].tolist() == [0, 2, 2]


def test_evaluate_reports_missed_structures_and_false_positives(tmp_path):
    from sonoguide.training.data import Sample

    path = export_onnx(tiny_net(), contract(), tmp_path / "m.onnx")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 1
    samples = [Sample("a", np.full((32, 32), 80, np.uint8), mask, 0.1),
               Sample("b", np.full((32, 32), 80, np.uint8), np.zeros((32, 32), np.uint8), 0.1)]
    r = evaluate_samples(path, samples, CLASSES, quiet=True)
    nerve = r["classes"]["nerve"]
    assert nerve["frames_with"] == 1 and nerve["frames_without"] == 1
    assert 0.0 <= nerve["dice_mean"] <= 1.0
    assert r["classes"]["vessel"]["frames_with"] == 0
    assert r["classes"]["vessel"]["dice_mean"] is None


class BrightIsNerve(torch.nn.Module):
    """A fixed 'model': nerve wherever the input is bright, never vessel."""

    def forward(self, x):
        zero = torch.zeros_like(x)
        return torch.cat([zero, 20 * x, zero - 10], dim=1)


def test_evaluation_crops_to_the_roi_as_the_app_does_and_counts_what_it_cuts_off(tmp_path):
    """A nerve the app's ROI cuts off is a missed nerve, whatever the model could have done."""
    from sonoguide.training.data import Sample

    c = ModelContract(CLASSES, 32, 32, 1 / 255, 0.3, 0.2, "test-1", "unit test")
    path = export_onnx(BrightIsNerve(), c, tmp_path / "m.onnx")
    image = np.zeros((64, 64), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    image[8:24, 8:24] = mask[8:24, 8:24] = 1  # inside the ROI (the left half)
    image[40:56, 40:56] = mask[40:56, 40:56] = 1  # outside it
    image *= 255
    whole = evaluate_samples(path, [Sample("a", image, mask)], CLASSES, quiet=True)
    cut = evaluate_samples(path, [Sample("a", image, mask, roi=(0, 0, 32, 64))], CLASSES,
                           quiet=True)
    assert whole["classes"]["nerve"]["dice_mean"] > 0.95
    assert cut["classes"]["nerve"]["dice_mean"] == pytest.approx(2 / 3, abs=0.05)


def test_a_false_outline_beside_a_found_structure_is_counted_as_stray(tmp_path):
    """A second bright blob away from the labelled nerve is what a user sees as a false nerve:
    Dice only dips, the stray-outline rate says it."""
    from sonoguide.training.data import Sample

    c = ModelContract(CLASSES, 32, 32, 1 / 255, 0.3, 0.2, "test-1", "unit test")
    path = export_onnx(BrightIsNerve(), c, tmp_path / "m.onnx")
    image = np.zeros((64, 64), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    image[8:24, 8:24] = mask[8:24, 8:24] = 1  # the labelled nerve, found
    clean = evaluate_samples(path, [Sample("a", image * 255, mask)], CLASSES, quiet=True)
    image[40:56, 40:56] = 1  # a look-alike with no label
    stray = evaluate_samples(path, [Sample("a", image * 255, mask)], CLASSES, quiet=True)
    assert clean["classes"]["nerve"]["stray_rate"] == 0.0
    assert stray["classes"]["nerve"]["stray_rate"] == 1.0
    assert stray["classes"]["nerve"]["found_share"] == 1.0
    assert "stray outline" in markdown_table(stray)
    # this model is sure of everything it draws: nothing would be dashed
    assert stray["classes"]["nerve"]["outlines"] == {"true": 1, "true_unsure": 0, "stray": 1,
                                                     "stray_unsure": 0}


class FaintIsNerve(torch.nn.Module):
    """Nerve wherever the input is bright, but only just (probability ~0.55)."""

    def forward(self, x):
        zero = torch.zeros_like(x)
        return torch.cat([zero, 0.06 * x, zero - 10], dim=1)


def test_outlines_the_model_is_unsure_of_are_counted_as_drawn_dashed(tmp_path):
    """The app draws a structure under the model's unsure level dashed; the evaluation says how
    many true and stray outlines a user would see dashed, with the level the model carries."""
    from sonoguide.pipeline.contract import DEFAULT_UNSURE_BELOW
    from sonoguide.training.data import Sample

    c = ModelContract(CLASSES, 32, 32, 1 / 255, 0.3, 0.2, "test-1", "unit test")
    path = export_onnx(FaintIsNerve(), c, tmp_path / "m.onnx")
    image = np.zeros((64, 64), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    image[8:24, 8:24] = mask[8:24, 8:24] = 1
    image[40:56, 40:56] = 1
    r = evaluate_samples(path, [Sample("a", image * 255, mask)], CLASSES, quiet=True)
    assert 0.5 < 1 / (1 + np.exp(-0.06 * (1 - 0.3) / 0.2)) < DEFAULT_UNSURE_BELOW  # premise
    assert r["classes"]["nerve"]["outlines"] == {"true": 1, "true_unsure": 1, "stray": 1,
                                                 "stray_unsure": 1}
    assert "1 of 1 / 1 of 1" in markdown_table(r)
    # The same network calibrated to a lower level: the app draws both solid, and so counts
    # the evaluation.
    calibrated = ModelContract(CLASSES, 32, 32, 1 / 255, 0.3, 0.2, "test-1", "unit test",
                               (("nerve", 0.52),))
    path = export_onnx(FaintIsNerve(), calibrated, tmp_path / "calibrated.onnx")
    r = evaluate_samples(path, [Sample("a", image * 255, mask)], CLASSES, quiet=True)
    assert r["classes"]["nerve"]["outlines"] == {"true": 1, "true_unsure": 0, "stray": 1,
                                                 "stray_unsure": 0}
