"""Calibrated doubt: the levels under which the app draws an outline unsure come from held-out
outlines, travel in the model's metadata, and reach the app's analyzer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.torch  # the training package

from sonoguide.pipeline.contract import (  # noqa: E402
    DEFAULT_UNSURE_BELOW,
    KEY_UNSURE,
    ContractError,
    ModelContract,
)
from sonoguide.pipeline.frames import Roi  # noqa: E402
from sonoguide.pipeline.models import load_mode  # noqa: E402
from sonoguide.training.calibrate import cross_check, levels, write_levels  # noqa: E402
from sonoguide.training.data import Sample  # noqa: E402
from sonoguide.training.outlines import Outline, app_outlines, dashed_counts  # noqa: E402
from tests.model_factory import PLEXUS, make_model  # noqa: E402

SIZE = 96


def _frame(true_grey: int, stray_grey: int | None) -> Sample:
    """A nerve (bright square, in the mask) and maybe a fainter bright square outside it: the
    test model's nerve probability rises with brightness, so the stray outline is less sure."""
    image = np.full((SIZE, SIZE), 128, np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    image[16:40, 16:40] = true_grey
    mask[16:40, 16:40] = 1
    if stray_grey is not None:
        image[56:80, 56:80] = stray_grey
    return Sample("f", image, mask)


def _samples() -> list[Sample]:
    # nerve probability: 0.74 * 255 -> ~0.83, 0.9 * 255 -> ~1.0; strays at 0.725 -> ~0.73
    greys = np.linspace(0.74 * 255, 0.9 * 255, 20).round().astype(int)
    return [_frame(int(g), 185 if i % 2 == 0 else None) for i, g in enumerate(greys)]


def test_levels_are_the_budget_quantile_of_correct_outlines_only():
    true = [Outline(i, "nerve", 1, c, False, False)
            for i, c in enumerate(np.linspace(0.8, 0.99, 20))]
    stray = [Outline(i, "nerve", 1, 0.5, False, True) for i in range(10)]
    few = [Outline(i, "vessel", 2, 0.9, False, False) for i in range(3)]
    level = levels(true + stray + few, budget=0.1)
    assert level["nerve"] == pytest.approx(np.quantile(np.linspace(0.8, 0.99, 20), 0.1),
                                           abs=1e-4)
    assert "vessel" not in level  # too few correct outlines to set one: the default stays
    counts = dashed_counts(true + stray, level)["nerve"]
    assert counts == {"true": 20, "true_unsure": 2, "stray": 10, "stray_unsure": 10}


def test_calibration_makes_false_outlines_visible_and_the_app_reads_it(tmp_path):
    model = make_model(tmp_path / "m.onnx", size=(48, 48))
    samples = _samples()
    found = app_outlines(model, samples, PLEXUS, quiet=True)
    nerve = [o for o in found if o.class_name == "nerve"]
    assert sum(o.stray for o in nerve) == 10 and sum(not o.stray for o in nerve) == 20
    # With the fixed default level every false outline is drawn solid: the problem solved here.
    before = dashed_counts(found)["nerve"]  # as the app draws them now
    assert before["stray_unsure"] == 0 and before == dashed_counts(found, {})["nerve"]
    level = levels(found)
    after = dashed_counts(found, level)["nerve"]
    assert after["stray_unsure"] == 10 and after["true_unsure"] <= 2
    held_out = cross_check(found)["nerve"]
    assert held_out["stray_unsure"] == 10 and held_out["true_unsure"] <= 4

    write_levels(model, level)
    segmenter, analyzer = load_mode("plexus", model)
    assert dict(segmenter.contract.unsure_below) == level
    roi = Roi.full(samples[0].image)
    result = analyzer.analyze(segmenter.predict(samples[-2].image), roi, None)
    by_place = {s.centroid[0] > SIZE / 2: s.unsure for s in result.structures}
    assert by_place == {False: False, True: True}  # the true nerve solid, the stray dashed
    assert dashed_counts(app_outlines(model, samples, PLEXUS, quiet=True))["nerve"] == after


def test_contract_carries_levels_and_refuses_bad_ones():
    c = ModelContract(PLEXUS, 8, 8, 1 / 255, 0.0, 1.0, "t", "t", (("nerve", 0.85),))
    back = ModelContract.from_metadata(c.to_metadata())
    assert back.unsure_threshold("nerve") == 0.85
    assert back.unsure_threshold("vessel") == DEFAULT_UNSURE_BELOW
    meta = c.to_metadata()
    for bad in ('{"nerve": 1.5}', '{"artery": 0.8}', '[0.8]', "not json"):
        with pytest.raises(ContractError, match=KEY_UNSURE):
            ModelContract.from_metadata({**meta, KEY_UNSURE: bad})
