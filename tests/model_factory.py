"""Small, real ONNX models that meet (or deliberately break) the SonoGuide model contract.

Tests use them instead of the trained models so every test runs the real ONNX Runtime path:

    make_model(tmp_path / "m.onnx")              # threshold model, 64x64, plexus classes
    make_model(p, classes=JUGULAR, presence=True)  # plus a "presence" output
    make_model(p, kind="slow")                    # ~150-300 ms per inference on 2 CPU cores

Kinds:
  threshold    class logits from pixel brightness: bright (> 0.7 after scaling) -> class 1,
               dark (< 0.3) -> class 2, in between -> background; any further class never wins.
  slow         threshold output plus a stack of 3x3 convolutions whose result is multiplied by 0:
               same answer, real cost (tune with `slow_layers`).
  conv         like slow, but sized as a stand-in for a shipped model (benchmarks).
  wrong_shape  output has one channel more than the metadata names classes.
  wrong_input  input height differs from the metadata's.
  no_metadata  threshold model without any sonoguide.* metadata.
  nan_bright   threshold model whose logits are NaN when the picture is mostly bright (mean
               input > 0.5): finite on the blank warm-up input, non-finite on such frames.

A model that must be slow for a test (busy while frames arrive, later than the overlay's
budget) is a real one behind a GatedSegmenter: busy until the test releases it, so no test
depends on how fast this machine runs a model.

CLI (for benchmarks): python -m tests.model_factory OUT.onnx --kind conv --size 256 256
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sonoguide.pipeline.contract import PRESENCE_OUTPUT, ModelContract

PLEXUS = ("background", "nerve", "vessel")
JUGULAR = ("background", "vein", "artery")
OPSET = 17
IR_VERSION = 8  # matches opset 17; loadable by every onnxruntime >= 1.14

BRIGHT, DARK, STEEPNESS = 0.7, 0.3, 40.0

KINDS = ("threshold", "slow", "conv", "wrong_shape", "wrong_input", "no_metadata",
         "nan_bright")


def contract_for(classes: Sequence[str], size: tuple[int, int], version: str = "test-1",
                 scale: float = 1.0 / 255.0, mean: float = 0.0, std: float = 1.0) -> ModelContract:
    height, width = size
    return ModelContract(tuple(classes), height, width, scale, mean, std, version, "model_factory")


def make_model(
    path: str | Path,
    classes: Sequence[str] = PLEXUS,
    size: tuple[int, int] = (64, 64),
    kind: str = "threshold",
    presence: bool | Mapping[str, float] = False,
    *,
    slow_layers: int = 24,
    slow_channels: int = 128,
    scale: float = 1.0 / 255.0,
    mean: float = 0.0,
    std: float = 1.0,
    version: str = "test-1",
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write an ONNX model to `path` and return the path.

    size: (height, width) of the model input.
    presence: False -> no presence output; True -> presence logit = max class logit over the
      image (so it follows the picture); a mapping class -> probability -> that constant
      probability for those classes (others 0.99), whatever the image.
    metadata: replaces the generated sonoguide.* metadata entirely (for broken-metadata tests).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {KINDS}")
    path = Path(path)
    classes = tuple(classes)
    height, width = size
    n_cls = len(classes)
    in_h = height * 2 if kind == "wrong_input" else height
    out_c = n_cls + 1 if kind == "wrong_shape" else n_cls

    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    # Threshold logits with one 1x1 convolution: logit_c = w_c * x + b_c.
    w = np.zeros((out_c, 1, 1, 1), np.float32)
    b = np.full(out_c, -10.0, np.float32)
    b[0] = 0.0
    if out_c > 1:
        w[1], b[1] = STEEPNESS, -STEEPNESS * BRIGHT
    if out_c > 2:
        w[2], b[2] = -STEEPNESS, STEEPNESS * DARK
    nodes.append(helper.make_node("Conv", ["input", init("thr_w", w), init("thr_b", b)],
                                  ["thr_logits"]))
    logits = "thr_logits"

    if kind in ("slow", "conv"):
        logits = _add_heavy_branch(nodes, init, logits, out_c, slow_layers, slow_channels)
    if kind == "nan_bright":
        nodes.append(helper.make_node("ReduceMean", ["input"], ["mean_in"], axes=[1, 2, 3],
                                      keepdims=1))
        nodes.append(helper.make_node("Greater", ["mean_in", init("half", np.full(1, 0.5,
                                                                              np.float32))],
                                      ["is_bright"]))
        nodes.append(helper.make_node("Where", ["is_bright", init("nan", np.full(1, np.nan,
                                                                               np.float32)),
                                                init("no_nan", np.zeros(1, np.float32))],
                                      ["poison"]))
        nodes.append(helper.make_node("Add", [logits, "poison"], ["poisoned_logits"]))
        logits = "poisoned_logits"

    nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                             ["N", out_c, in_h, width])]

    if presence is not False:
        nodes.append(helper.make_node("GlobalMaxPool", ["logits"], ["pres_pool"]))
        nodes.append(helper.make_node("Flatten", ["pres_pool"], ["pres_max"], axis=1))
        if presence is True:
            nodes.append(helper.make_node("Identity", ["pres_max"], [PRESENCE_OUTPUT]))
        else:
            probs = np.full(out_c, 0.99, np.float64)
            for name, p in dict(presence).items():
                probs[classes.index(name)] = p
            const = np.log(probs / (1.0 - probs)).astype(np.float32)
            zero = init("zero", np.zeros(1, np.float32))
            nodes.append(helper.make_node("Mul", ["pres_max", zero], ["pres_zero"]))
            nodes.append(helper.make_node("Add", ["pres_zero", init("pres_const", const)],
                                          [PRESENCE_OUTPUT]))
        outputs.append(helper.make_tensor_value_info(PRESENCE_OUTPUT, TensorProto.FLOAT,
                                                     ["N", out_c]))

    graph = helper.make_graph(
        nodes, f"sonoguide_{kind}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, in_h, width])],
        outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="sonoguide-tests")
    model.ir_version = IR_VERSION
    if kind != "no_metadata":
        meta = dict(metadata) if metadata is not None else contract_for(
            classes, size, version, scale, mean, std).to_metadata()
        helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _add_heavy_branch(nodes: list, init, logits: str, out_c: int, layers: int,
                      channels: int) -> str:
    """Costly convolutions whose result is added times zero: real work, unchanged answer."""
    rng = np.random.default_rng(0)
    he = math.sqrt(2.0 / (channels * 9))  # keeps activations bounded through the ReLUs
    prev = "input"
    w0 = (rng.standard_normal((channels, 1, 3, 3)) * math.sqrt(2.0 / 9)).astype(np.float32)
    nodes.append(helper.make_node("Conv", [prev, init("h_w0", w0)], ["h0"], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["h0"], ["h0r"]))
    prev = "h0r"
    # One weight tensor shared by every layer keeps the file small however slow the model is.
    shared = init("h_w", (rng.standard_normal((channels, channels, 3, 3)) * he).astype(np.float32))
    for i in range(1, layers + 1):
        nodes.append(helper.make_node("Conv", [prev, shared], [f"h{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"h{i}"], [f"h{i}r"]))
        prev = f"h{i}r"
    w_out = (rng.standard_normal((out_c, channels, 1, 1)) * 0.01).astype(np.float32)
    nodes.append(helper.make_node("Conv", [prev, init("h_wout", w_out)], ["h_out"]))
    nodes.append(helper.make_node("Tanh", ["h_out"], ["h_tanh"]))
    nodes.append(helper.make_node("Mul", ["h_tanh", init("h_zero", np.zeros(1, np.float32))],
                                  ["h_zeroed"]))
    nodes.append(helper.make_node("Add", [logits, "h_zeroed"], ["heavy_logits"]))
    return "heavy_logits"


class GatedSegmenter:
    """A Segmenter (everything but predict() passes through) whose predict() waits at a gate:
    each call needs one release() by the test (open() lets every call through, for teardown),
    and with `at_least_s` it also takes at least that long (`gated=False`: only that). So "the
    model is busy" is a state the test sets, and "slower than the clip" holds on any machine."""

    def __init__(self, segmenter, *, gated: bool = True, at_least_s: float = 0.0) -> None:
        self._segmenter = segmenter
        self._gated = gated
        self._permits = threading.Semaphore(0)
        self._open = threading.Event()
        self._lock = threading.Lock()
        self.at_least_s = at_least_s
        self.entered = 0  # predict() calls begun
        self.finished = 0  # and ended

    def __getattr__(self, name: str):
        return getattr(self._segmenter, name)

    def predict(self, image: np.ndarray):
        t0 = time.monotonic()
        with self._lock:
            self.entered += 1
        try:
            while self._gated and not (self._open.is_set()
                                       or self._permits.acquire(timeout=0.05)):
                pass
            result = self._segmenter.predict(image)
            self._open.wait(max(0.0, t0 + self.at_least_s - time.monotonic()))
            return result
        finally:
            with self._lock:
                self.finished += 1

    def release(self, n: int = 1) -> None:
        """Let `n` more predict() calls through."""
        self._permits.release(n)

    def open(self) -> None:
        """Let every call through from now on (and end an at_least_s wait)."""
        self._open.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a contract test model.")
    parser.add_argument("out")
    parser.add_argument("--kind", default="conv", choices=KINDS)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"))
    parser.add_argument("--classes", default=",".join(PLEXUS))
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--presence", action="store_true")
    args = parser.parse_args(argv)
    path = make_model(args.out, tuple(args.classes.split(",")), tuple(args.size), args.kind,
                      args.presence, slow_layers=args.layers, slow_channels=args.channels)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
