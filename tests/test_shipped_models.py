"""The models SonoGuide ships, run as an installed app runs them (ONNX Runtime and numpy only,
no torch): each mode's model finds its target on the built-in phantom patient, sure of it."""

from __future__ import annotations

import numpy as np
import pytest

from sonoguide.phantom.labels import to_model_classes
from sonoguide.phantom.simulator import PhantomSimulator
from sonoguide.pipeline.analysis import MODE_SCENES, MODES, TARGET_CLASS
from sonoguide.pipeline.frames import Roi
from sonoguide.pipeline.models import load_mode


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(int(a.sum() + b.sum()), 1))


@pytest.mark.parametrize("mode", MODES)
def test_each_shipped_model_finds_its_target_on_the_phantom_and_is_sure_of_it(mode):
    """What a new user sees first, the built-in phantom patient of the mode's scene: the target
    found where it is, nothing drawn doubtful; and the model carries a calibrated level for
    every structure it draws."""
    segmenter, analyzer = load_mode(mode, provider="cpu")
    wanted = TARGET_CLASS[mode]
    assert {name for name, _ in segmenter.contract.unsure_below} == set(segmenter.classes[1:])
    sim = PhantomSimulator(MODE_SCENES[mode].removeprefix("phantom:"), seed=0, size=(512, 512))
    for i, t in enumerate((0.0, 0.4, 0.8)):
        frame = sim.render(t)
        truth = to_model_classes(frame.labels, segmenter.classes) == segmenter.classes.index(
            wanted)
        assert truth.sum() > 1000, f"the phantom frame at {t} s shows no {wanted}"
        result = analyzer.analyze(segmenter.predict(frame.image), Roi.full(frame.image),
                                  frame.pixel_spacing_mm, frame_id=i, t_capture=t,
                                  source="phantom")
        target = result.target
        assert target is not None and target.class_name == wanted, f"no {wanted} found at {t} s"
        assert truth[int(target.y), int(target.x)], f"the {wanted} marked off the true one"
        found = result.labels == segmenter.classes.index(wanted)
        assert _dice(found, truth) > 0.7, f"{wanted} outline far from the truth at {t} s"
        assert {s.class_name for s in result.structures} == set(segmenter.classes[1:])
        assert not any(s.unsure for s in result.structures) and not target.unsure
