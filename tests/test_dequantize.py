"""sonoguide.training.dequantize: a QDQ int8 model -> a float32 model that answers like it,
same contract."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sonoguide.pipeline.contract import PRESENCE_OUTPUT
from sonoguide.pipeline.segmenter import Segmenter
from sonoguide.training.dequantize import (
    DequantizeError,
    compare_models,
    dequantize_file,
    dequantize_model,
    main,
    speckle_inputs,
)
from tests.model_factory import IR_VERSION, OPSET, PLEXUS, contract_for

pytestmark = pytest.mark.torch  # the training package

SIZE = (32, 32)


def float_net(path, seed: int = 0):
    """A tiny conv net with Relus, a presence head and the SonoGuide contract metadata."""
    rng = np.random.default_rng(seed)
    inits = []

    def init(name, shape, scale):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale)
                                             .astype(np.float32), name))
        return name

    ch = 8
    nodes = [
        helper.make_node("Conv", ["image", init("w1", (ch, 1, 3, 3), 0.5),
                                  init("b1", (ch,), 0.1)], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", init("w2", (ch, ch, 3, 3), math.sqrt(2 / (9 * ch))),
                                  init("b2", (ch,), 0.1)], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", init("w3", (3, ch, 1, 1), 6.0),
                                  init("b3", (3,), 0.2)], ["logits"]),
        helper.make_node("GlobalMaxPool", ["logits"], ["pool"]),
        helper.make_node("Flatten", ["pool"], [PRESENCE_OUTPUT], axis=1),
    ]
    h, w = SIZE
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, h, w]),
         helper.make_tensor_value_info(PRESENCE_OUTPUT, TensorProto.FLOAT, ["N", 3])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    meta = contract_for(PLEXUS, SIZE, "tiny-1", scale=1 / 255, mean=0.2, std=0.2).to_metadata()
    meta["sonoguide.unsure_below"] = '{"nerve": 0.8, "vessel": 0.9}'
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path, meta


def quantized(src, dst, meta):
    """Static int8 QDQ as training/bench.py makes the shipped models (metadata copied over)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    contract = contract_for(PLEXUS, SIZE, scale=1 / 255, mean=0.2, std=0.2)
    calib = speckle_inputs(*SIZE, contract.normalize, n=8, seed=1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calib)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {"image": x[None]}

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    helper.set_model_props(proto, meta)
    onnx.save(proto, str(dst))
    return dst


@pytest.fixture
def int8_model(tmp_path):
    src, meta = float_net(tmp_path / "float.onnx")
    return quantized(src, tmp_path / "m.onnx", meta), meta, src


def ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_float_model_answers_like_the_int8_one_and_keeps_the_contract(int8_model, tmp_path):
    int8, meta, float_src = int8_model
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops(int8)
    out = tmp_path / "m.fp32.onnx"
    # A random tiny net has near-ties on many pixels, so int8 rounding flips more of them than
    # on the shipped models (99.9 % agreement there).
    report = dequantize_file(int8, out, min_agreement=0.9)
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert not {"QuantizeLinear", "DequantizeLinear"} & ops(out)
    assert {p.key: p.value for p in proto.metadata_props} == meta
    assert [o.name for o in proto.graph.output] == ["logits", PRESENCE_OUTPUT]
    assert all(t.data_type != TensorProto.INT8 for t in proto.graph.initializer)
    # No further from the int8 model than the float network it was quantized from.
    baseline = compare_models(int8, float_src)
    assert report["finite"]
    assert report["argmax_agreement"] >= baseline["argmax_agreement"] - 0.005
    assert report["prob_mean_abs_diff"] <= baseline["prob_mean_abs_diff"] * 1.2
    assert report["presence_max_abs_diff"] < 0.01
    # The app takes it as the same model.
    a, b = Segmenter(int8, provider="cpu"), Segmenter(out, provider="cpu")
    assert a.contract == b.contract and a.has_presence and b.has_presence
    image = (np.random.default_rng(3).rayleigh(50, (48, 60))).clip(0, 255).astype(np.uint8)
    pa, pb = a.predict(image), b.predict(image)
    assert np.isfinite(pb.probs).all()
    assert np.abs(pa.probs - pb.probs).mean() < 0.02


def test_the_relu_the_quantizer_folded_away_comes_back_as_a_clip(int8_model, tmp_path):
    """The quantizer drops Relu (its saturation at code 0 does the job); dropping the Q/DQ pair
    without a Clip would leave negative activations through and change the answer."""
    int8, _, float_src = int8_model
    assert "Relu" in ops(float_src) and "Relu" not in ops(int8)
    model, counts = dequantize_model(onnx.load(str(int8)))
    assert counts["activation_pairs_replaced"] > 0 and counts["weights_folded"] > 0
    assert "Clip" in {n.op_type for n in model.graph.node}
    onnx.save(model, str(tmp_path / "d.onnx"))
    # Close to the original float network too: only activation rounding differs from it.
    x = speckle_inputs(*SIZE, contract_for(PLEXUS, SIZE, scale=1 / 255, mean=0.2,
                                           std=0.2).normalize, n=2, seed=5)
    near = compare_models(float_src, tmp_path / "d.onnx", x)
    assert near["argmax_agreement"] > 0.98
    assert near["prob_mean_abs_diff"] < 0.01 and near["presence_max_abs_diff"] < 0.01


def test_a_float_model_is_refused_and_nothing_is_written(tmp_path):
    src, _ = float_net(tmp_path / "float.onnx")
    with pytest.raises(DequantizeError, match="not a QDQ model"):
        dequantize_file(src, tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float.onnx"]


def test_command_line(int8_model, tmp_path, capsys):
    int8, meta, _ = int8_model
    out = tmp_path / "cli.fp32.onnx"
    assert main([str(int8), str(out), "--min-agreement", "0.9"]) == 0
    text = capsys.readouterr().out
    assert "max |diff|" in text and "sonoguide.version" in text
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props} == meta
    assert main([str(int8), str(int8)]) == 1  # never overwrites its own source
