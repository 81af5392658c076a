"""Segmenter: refuses bad models with a clear message, preprocesses exactly per contract."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sonoguide.pipeline.contract import KEY_CLASSES, ContractError
from sonoguide.pipeline.providers import nvidia_gpu_count
from sonoguide.pipeline.segmenter import ModelLoadError, Segmenter
from tests.model_factory import JUGULAR, contract_for, make_model
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def threshold_model(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("m") / "thr.onnx", presence=True)


def _refusal(path, **kwargs) -> str:
    with pytest.raises(ContractError) as info:
        Segmenter(path, provider="cpu", **kwargs)
    assert isinstance(info.value, ModelLoadError)
    message = str(info.value)
    assert str(path) in message, "the message must name the file"
    return message


def test_missing_file_is_refused_by_name(tmp_path):
    assert "not found" in _refusal(tmp_path / "nowhere.onnx")


def test_non_onnx_file_is_refused(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model")
    assert "not a loadable ONNX model" in _refusal(path)


def test_corrupt_model_message_is_readable_at_the_bedside(tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    message = _refusal(path)
    assert "damaged, or not an ONNX file" in message
    assert "ONNXRuntimeError" not in message and "INVALID_PROTOBUF" not in message


def test_model_without_metadata_is_refused(tmp_path):
    message = _refusal(make_model(tmp_path / "bare.onnx", kind="no_metadata"))
    assert "sonoguide.classes" in message and "contract" in message


def test_invalid_metadata_is_refused(tmp_path):
    meta = contract_for(("nerve", "background"), (64, 64)).to_metadata()
    message = _refusal(make_model(tmp_path / "order.onnx", metadata=meta))
    assert "class 0 must be 'background'" in message

    meta[KEY_CLASSES] = "[not json"
    assert "not valid JSON" in _refusal(make_model(tmp_path / "json.onnx", metadata=meta))


def test_wrong_output_channels_are_refused(tmp_path):
    message = _refusal(make_model(tmp_path / "out.onnx", kind="wrong_shape"))
    assert "4 channels" in message and "3 classes" in message


def test_wrong_input_size_is_refused(tmp_path):
    message = _refusal(make_model(tmp_path / "in.onnx", kind="wrong_input", size=(64, 48)))
    assert "height is 128" in message and "says 64" in message


def test_preprocess_follows_the_contract_exactly(tmp_path):
    model = make_model(tmp_path / "norm.onnx", size=(32, 48), scale=1 / 255, mean=0.45, std=0.225)
    seg = Segmenter(model, provider="cpu")
    rng = np.random.default_rng(1)
    roi = rng.integers(0, 256, (150, 211), dtype=np.uint8)

    x = seg.preprocess(roi)

    want = cv2.resize(roi, (48, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    want = (want / 255.0 - 0.45) / 0.225
    assert x.shape == (1, 1, 32, 48) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], want, atol=1e-5)
    # An RGB ROI (capture cards deliver colour) gives the same tensor as its grey version.
    rgb = np.repeat(roi[:, :, None], 3, axis=2)
    np.testing.assert_allclose(seg.preprocess(rgb), x, atol=1e-5)


def test_predict_gives_probabilities_that_follow_the_image(threshold_model):
    seg = Segmenter(threshold_model, provider="cpu")
    roi = np.full((120, 160), 128, np.uint8)
    roi[:, :40] = 10  # dark -> vessel
    roi[:, 120:] = 250  # bright -> nerve

    pred = seg.predict(roi)

    assert pred.probs.shape == (3, 64, 64) and pred.probs.dtype == np.float32
    np.testing.assert_allclose(pred.probs.sum(axis=0), 1.0, atol=1e-5)
    labels = pred.probs.argmax(axis=0)
    assert (labels[:, :10] == 2).all() and (labels[:, -10:] == 1).all()
    assert (labels[:, 24:40] == 0).all()
    assert pred.presence is not None and pred.presence.shape == (3,)
    assert pred.presence[1] > 0.9 and pred.presence[2] > 0.9
    assert pred.inference_ms > 0


def test_constant_presence_head_is_read_as_probability(tmp_path):
    model = make_model(tmp_path / "p.onnx", classes=JUGULAR, presence={"artery": 0.1})
    seg = Segmenter(model, provider="cpu")
    assert seg.has_presence and seg.classes == JUGULAR
    assert seg.predict(np.zeros((64, 64), np.uint8)).presence[2] == pytest.approx(0.1, abs=1e-4)


def test_empty_roi_is_a_clear_error(threshold_model):
    seg = Segmenter(threshold_model, provider="cpu")
    with pytest.raises(ValueError, match="empty ROI"):
        seg.predict(np.zeros((0, 10), np.uint8))


@pytest.mark.skipif(nvidia_gpu_count() > 0, reason="this machine has a usable NVIDIA GPU")
@pytest.mark.parametrize("request_name", ["auto", "cuda", "tensorrt"])
def test_without_gpu_the_provider_falls_back_to_cpu_quietly(threshold_model, capfd,
                                                            request_name):
    seg = Segmenter(threshold_model, provider=request_name)
    seg.predict(np.zeros((64, 64), np.uint8))

    assert seg.provider == "CPU"
    assert (seg.provider_note == "") == (request_name == "auto")
    out, err = capfd.readouterr()
    assert out == "" and err == "", "a CPU-only machine must print no ORT errors"
    assert seg.name == "thr" and seg.contract.version == "test-1"


def test_unknown_provider_is_refused(threshold_model):
    with pytest.raises(ValueError, match="provider must be one of"):
        Segmenter(threshold_model, provider="npu")


@pytest.mark.parametrize("request_name, trt_libs, want, note", [
    ("auto", False, ["CUDA", "CPU"], ""),
    ("auto", True, ["TensorRT", "CUDA", "CPU"], ""),
    ("tensorrt", False, ["CUDA", "CPU"], "TensorRT requested but its libraries are missing"),
    ("cuda", True, ["CUDA", "CPU"], ""),
    ("cpu", True, ["CPU"], ""),
])
def test_provider_plan_when_a_gpu_answers(monkeypatch, request_name, trt_libs, want, note):
    from sonoguide.pipeline import providers

    monkeypatch.setattr(providers, "nvidia_gpu_count", lambda: 1)
    monkeypatch.setattr(providers, "tensorrt_libraries_present", lambda: trt_libs)
    monkeypatch.setattr(providers, "_preload_cuda_libraries", lambda ort: None)

    plan, got_note = providers.provider_plan(request_name)

    names = [providers.short_name(p if isinstance(p, str) else p[0]) for p in plan]
    assert names == want and got_note.startswith(note)


@pytest.mark.parametrize("field,value,message", [
    ("std", float("inf"), "std must be a finite number"),
    ("std", -0.5, "std <= 10000"), ("mean", float("nan"), "mean must be a finite number"),
    ("scale", 0.0, "scale <= 1"), ("scale", 1e38, "scale <= 1")])
def test_non_finite_or_impossible_normalisation_is_refused(tmp_path, field, value, message):
    """'std': Infinity once made the whole picture one confident vessel with no error; a scale
    of 1e38 turned every input into Inf, so every frame was dropped."""
    model = make_model(tmp_path / "odd.onnx", **{field: value})
    with pytest.raises(ModelLoadError, match=message):
        Segmenter(model, provider="cpu")


def test_non_finite_output_is_dropped_never_drawn(tmp_path):
    """A model whose output is NaN on bright pictures (finite on the blank warm-up input):
    the frame's result is refused with a message, and the worker counts it as an error."""
    from sonoguide.pipeline.analysis import Analyzer
    from sonoguide.pipeline.frames import Frame
    from sonoguide.pipeline.worker import InferenceWorker

    segmenter = Segmenter(make_model(tmp_path / "nan.onnx", kind="nan_bright"), provider="cpu")
    image = np.full((64, 64), 200, np.uint8)
    with pytest.raises(ValueError, match="non-finite output"):
        segmenter.predict(image)
    worker = InferenceWorker(segmenter, Analyzer(segmenter.classes, "plexus"))
    try:
        worker.submit(Frame(image, 0, 0.0, "test"))
        assert wait_until(lambda: worker.error_count > 0)
    finally:
        worker.stop()
    assert worker.error_count == 1 and worker.latest() is None
    assert "non-finite" in worker.errors[0]


@pytest.mark.parametrize("image,want", [
    (np.full((40, 50), 200, np.uint16) << 8, "converted"),  # 16-bit capture
    (np.full((40, 50), 200 / 255, np.float32), "converted"),  # float 0..1
    (np.full((40, 50, 4), 200, np.uint8), "converted"),  # RGBA
    (np.full((40, 50), True), "bool"),
    (np.full((40, 50), 100, np.int32), "int32"),
    (np.full((40, 50), 100, np.complex64), "complex64"),
    (np.full((40, 50), np.nan, np.float32), "NaN"),
    (np.full((40, 50), 300.0), "0..1 or 0..255"),
    (np.zeros((40, 50, 2), np.uint8), "shape"),
])
def test_every_kind_of_frame_is_read_right_or_refused_clearly(threshold_model, image, want):
    """One definition of a frame: what can be converted is converted (and reads like the same
    picture in uint8), the rest is refused with a message saying what it is, never an OpenCV
    assertion and never a silent misreading."""
    from sonoguide.pipeline.frames import FrameError

    segmenter = Segmenter(threshold_model, provider="cpu")
    if want == "converted":
        got = segmenter.predict(image).probs
        reference = segmenter.predict(np.full((40, 50), 200, np.uint8)).probs
        np.testing.assert_allclose(got, reference, atol=1e-3)
    else:
        with pytest.raises(FrameError, match=want):
            segmenter.predict(image)


def test_a_source_hands_over_only_uint8_frames():
    """A 16-bit capture is published as uint8: nothing downstream sees another kind."""
    from sonoguide.sources.base import FrameSource

    class Deep(FrameSource):
        def _run(self) -> None:
            self._publish(np.full((32, 32), 0x8000, np.uint16))

    source = Deep("deep")
    source.start()
    frame = source.wait_frame(-1, 2.0)
    source.stop()
    assert frame.image.dtype == np.uint8 and int(frame.image[0, 0]) == 0x80
