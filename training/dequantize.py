"""QDQ int8 ONNX model -> float32 model on the same (rounded) weights.

    python -m sonoguide.training.dequantize models/plexus.onnx models/plexus.fp32.onnx

DequantizeLinear nodes of constant tensors (int8 weights, int32 biases) are folded into float32
initializers, exactly as ONNX Runtime computes them ((q - zero_point) * scale, per channel along
`axis`). Every activation QuantizeLinear -> DequantizeLinear pair is replaced by a Clip to the
range its codes can hold, [(qmin - zp) * scale, (qmax - zp) * scale]: ONNX Runtime's quantizer
folds Relu/Relu6 into that saturation (the shipped int8 graphs have no Relu left), so dropping
the pair outright would leave the network without its activations. What goes is the rounding of
activations to 256 levels: the float model computes the int8 model's function, on its rounded
weights, in float32. Everything else is kept: nodes, graph inputs and outputs (names and
shapes), and the model's metadata_props (the SonoGuide contract, sonoguide.*).

The result is written to a temporary file beside the destination, checked with onnx.checker and
against the int8 model in ONNX Runtime on the same inputs (both must give finite outputs and
agree on nearly every pixel's class), and only then moved into place.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

QUANTIZE, DEQUANTIZE = "QuantizeLinear", "DequantizeLinear"
MIN_AGREEMENT = 0.98  # share of pixels whose argmax class must match the int8 model's


class DequantizeError(RuntimeError):
    """The model cannot be dequantized, or the result disagrees with the int8 model."""


def _dequantized(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None,
                 axis: int) -> np.ndarray:
    """ONNX DequantizeLinear on a constant: (q - zero_point) * scale, float32."""
    q = q.astype(np.int64)
    zp = np.zeros((), np.int64) if zero_point is None else zero_point.astype(np.int64)
    scale = scale.astype(np.float32)
    if scale.ndim == 1 and q.ndim > 1:  # per-channel along `axis`
        shape = [1] * q.ndim
        shape[axis % q.ndim] = -1
        scale = scale.reshape(shape)
        zp = zp.reshape(shape) if zp.ndim == 1 else zp
    return ((q - zp).astype(np.float32) * scale).astype(np.float32)


def _axis(node: onnx.NodeProto) -> int:
    for a in node.attribute:
        if a.name == "axis":
            return int(a.i)
    return 1


def _quant_range(zero_point: np.ndarray) -> tuple[int, int]:
    info = np.iinfo(zero_point.dtype)
    return int(info.min), int(info.max)


def dequantize_model(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """A float32 copy of a QDQ model and counts of what was folded / replaced."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    default_domain = ("", "ai.onnx")

    rename: dict[str, str] = {}  # removed tensor -> the tensor that replaces it
    replace: dict[int, list[onnx.NodeProto]] = {}  # id(node) -> nodes in its place (or none)
    new_inits: list[onnx.TensorProto] = []
    folded = pairs = 0

    for node in graph.node:
        if node.op_type != DEQUANTIZE or node.domain not in default_domain:
            continue
        if node.input[0] not in inits:
            continue  # an activation's DequantizeLinear: handled with its QuantizeLinear
        if any(i and i not in inits for i in node.input[1:]):
            raise DequantizeError(f"DequantizeLinear {node.name!r} has a constant input but a "
                                  "non-constant scale or zero point")
        arrays = [numpy_helper.to_array(inits[i]) if i else None for i in node.input]
        zero_point = arrays[2] if len(arrays) > 2 else None
        value = _dequantized(arrays[0], arrays[1], zero_point, _axis(node))
        new_inits.append(numpy_helper.from_array(value, node.output[0]))
        replace[id(node)] = []
        folded += 1

    for node in graph.node:
        if node.op_type != QUANTIZE or node.domain not in default_domain:
            continue
        users = consumers.get(node.output[0], [])
        if (node.output[0] in graph_outputs or not users
                or any(u.op_type != DEQUANTIZE for u in users)):
            raise DequantizeError(f"QuantizeLinear {node.name!r} feeds something other than "
                                  "DequantizeLinear; not a plain QDQ model")
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            raise DequantizeError(f"QuantizeLinear {node.name!r}: scale and zero point must "
                                  "be constants")
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        zero_point = numpy_helper.to_array(inits[node.input[2]])
        if scale.size != 1 or zero_point.size != 1:
            raise DequantizeError(f"QuantizeLinear {node.name!r} is per-channel; only "
                                  "per-tensor activations are supported")
        for u in users:
            if (list(u.input[1:3]) != list(node.input[1:3])
                    and not (np.array_equal(numpy_helper.to_array(inits[u.input[1]]), scale)
                             and np.array_equal(numpy_helper.to_array(inits[u.input[2]]),
                                                zero_point))):
                raise DequantizeError(f"DequantizeLinear {u.name!r} uses another scale than "
                                      f"its QuantizeLinear {node.name!r}")
        # The int8 model saturates every activation to what its uint8/int8 codes can hold; the
        # quantizer folded Relu/Relu6 into exactly that (the graph has no Relu left), so the
        # float model keeps it as a Clip to the same range. Only the rounding goes.
        qmin, qmax = _quant_range(zero_point)
        zp = int(zero_point.reshape(()))
        lo = np.array((qmin - zp) * scale.reshape(()), np.float32)
        hi = np.array((qmax - zp) * scale.reshape(()), np.float32)
        base = node.output[0].removesuffix("_QuantizeLinear_Output") or node.output[0]
        lo_name, hi_name, out = f"{base}_clip_min", f"{base}_clip_max", f"{base}_clipped"
        new_inits += [numpy_helper.from_array(lo, lo_name), numpy_helper.from_array(hi, hi_name)]
        nodes = [onnx.helper.make_node("Clip", [node.input[0], lo_name, hi_name], [out],
                                       name=f"{base}_clip")]
        for u in users:
            if u.output[0] in graph_outputs:  # keep the output's name
                nodes.append(onnx.helper.make_node("Identity", [out], [u.output[0]],
                                                   name=f"{u.output[0]}_identity"))
            else:
                rename[u.output[0]] = out
            replace[id(u)] = []
            pairs += 1
        replace[id(node)] = nodes

    names = {o for n in graph.node for o in n.output} | set(inits)
    clash = {t.name for t in new_inits} & (names - {n.output[0] for n in graph.node
                                                    if n.op_type == DEQUANTIZE})
    if clash:
        raise DequantizeError(f"tensor names already taken: {sorted(clash)[:3]}")

    kept: list[onnx.NodeProto] = []
    for n in graph.node:  # replacements sit where the QuantizeLinear was: order stays valid
        kept.extend(replace.get(id(n), [n]))
    for n in kept:
        for k, name in enumerate(n.input):
            if name in rename:
                n.input[k] = rename[name]
    del graph.node[:]
    graph.node.extend(kept)

    used = {i for n in graph.node for i in n.input} | graph_outputs
    keep_inits = [t for t in list(graph.initializer) + new_inits if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    tensors = used | {o for n in graph.node for o in n.output}
    vi = [v for v in graph.value_info if v.name in tensors and v.name not in rename]
    del graph.value_info[:]
    graph.value_info.extend(vi)

    domains = {n.domain or "" for n in graph.node}
    opsets = [o for o in model.opset_import if (o.domain or "") in domains or o.domain == ""]
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    left = [n.op_type for n in graph.node if n.op_type in (QUANTIZE, DEQUANTIZE)]
    if left:
        raise DequantizeError(f"{len(left)} quantize/dequantize nodes left")
    return model, {"weights_folded": folded, "activation_pairs_replaced": pairs,
                   "nodes": len(graph.node)}


def _session(path: str | Path):
    """A CPU session as sonoguide.training.export makes one (that module needs torch; this one
    does not)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x.astype(np.float64), -60.0, 60.0)))


def compare_models(int8: str | Path, fp32: str | Path,
                   inputs: np.ndarray | None = None) -> dict:
    """Run both models on the same inputs; max / mean |difference| of the class probabilities
    and of the presence probabilities, and the share of pixels with the same argmax class."""
    from sonoguide.pipeline.contract import ModelContract

    a, b = _session(int8), _session(fp32)
    contract = ModelContract.from_metadata(b.get_modelmeta().custom_metadata_map)
    if inputs is None:
        inputs = speckle_inputs(contract.height, contract.width, contract.normalize)
    name_a, name_b = a.get_inputs()[0].name, b.get_inputs()[0].name
    if [o.name for o in a.get_outputs()] != [o.name for o in b.get_outputs()]:
        raise DequantizeError("the float32 model's outputs differ from the int8 model's")
    prob_diff, presence_diff, agree, finite = [], [], [], True
    for x in inputs:
        x = np.ascontiguousarray(x[None], np.float32)
        oa, ob = a.run(None, {name_a: x}), b.run(None, {name_b: x})
        finite &= all(np.isfinite(o).all() for o in ob)
        pa, pb = _softmax(oa[0]), _softmax(ob[0])
        prob_diff.append(np.abs(pa - pb))
        agree.append(float((pa.argmax(1) == pb.argmax(1)).mean()))
        if len(oa) > 1:
            presence_diff.append(np.abs(_sigmoid(oa[1]) - _sigmoid(ob[1])))
    d = np.stack(prob_diff)
    out = {"inputs": len(inputs), "finite": bool(finite),
           "prob_max_abs_diff": round(float(d.max()), 5),
           "prob_mean_abs_diff": round(float(d.mean()), 6),
           "argmax_agreement": round(float(np.mean(agree)), 5)}
    if presence_diff:
        out["presence_max_abs_diff"] = round(float(np.max(np.stack(presence_diff))), 5)
    return out


def speckle_inputs(height: int, width: int, normalize, n: int = 4, seed: int = 0) -> np.ndarray:
    """Preprocessed ultrasound-like inputs [n, 1, H, W]: speckle with dark round 'vessels' and a
    bright band, normalized by the model's own contract."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.rayleigh(45.0, (height, width)).astype(np.float32)
        img = cv2.GaussianBlur(img, (0, 0), 1.0)
        yy, xx = np.mgrid[:height, :width]
        for _ in range(3):
            cy, cx = rng.uniform(0.3, 0.8) * height, rng.uniform(0.15, 0.85) * width
            r = rng.uniform(0.05, 0.12) * min(height, width)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] *= 0.15
        band = int(rng.uniform(0.1, 0.25) * height)
        img[band:band + 4] += 120
        out.append(normalize(np.clip(img, 0, 255).astype(np.uint8))[None])
    return np.stack(out).astype(np.float32)


def dequantize_file(src: str | Path, dst: str | Path, inputs: np.ndarray | None = None,
                    min_agreement: float = MIN_AGREEMENT) -> dict:
    """Write the float32 version of `src` to `dst` if it checks out; return the report.

    Raises DequantizeError (and writes nothing) if the result breaks onnx.checker, gives
    non-finite outputs or agrees with the int8 model on fewer than `min_agreement` of pixels.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise DequantizeError("source and destination are the same file")
    proto = onnx.load(str(src))
    before = {p.key: p.value for p in proto.metadata_props}
    model, counts = dequantize_model(proto)
    if counts["weights_folded"] == 0 and counts["activation_pairs_replaced"] == 0:
        raise DequantizeError(f"{src}: no QuantizeLinear/DequantizeLinear nodes; not a QDQ model")
    onnx.checker.check_model(model)
    after = {p.key: p.value for p in model.metadata_props}
    if after != before:
        raise DequantizeError("metadata_props changed")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=dst.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        report = compare_models(src, tmp, inputs)
        if not report["finite"]:
            raise DequantizeError("the float32 model gives non-finite outputs")
        if report["argmax_agreement"] < min_agreement:
            raise DequantizeError(f"the float32 model agrees with the int8 one on only "
                                  f"{report['argmax_agreement']:.2%} of pixels")
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a model file is for everyone
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {"source": str(src), "output": str(dst), **counts,
            "size_bytes": dst.stat().st_size, "metadata_keys": sorted(after), **report}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sonoguide.training.dequantize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="QDQ int8 ONNX model")
    p.add_argument("output", help="float32 ONNX model to write")
    p.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT,
                   help="least share of pixels whose class must match the int8 model's")
    a = p.parse_args(argv)
    try:
        r = dequantize_file(a.source, a.output, min_agreement=a.min_agreement)
    except DequantizeError as exc:
        print(f"error: {exc}")
        return 1
    print(f"{r['output']}: {r['weights_folded']} constant DequantizeLinear folded, "
          f"{r['activation_pairs_replaced']} activation Q/DQ pairs replaced by Clip, "
          f"{r['nodes']} nodes, "
          f"{r['size_bytes'] / 1e6:.1f} MB; metadata {', '.join(r['metadata_keys'])}")
    line = (f"vs int8 on {r['inputs']} speckle inputs: probabilities max |diff| "
            f"{r['prob_max_abs_diff']}, mean {r['prob_mean_abs_diff']}; same class on "
            f"{r['argmax_agreement']:.2%} of pixels")
    if "presence_max_abs_diff" in r:
        line += f"; presence max |diff| {r['presence_max_abs_diff']}"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
