"""Run one contract ONNX model on one grayscale ROI.

Segmenter loads and checks the model (every refusal names the file and what is wrong), picks the
execution provider, warms it up, and turns an ROI into per-class probabilities in model space.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sonoguide.pipeline.contract import PRESENCE_OUTPUT, ContractError, ModelContract
from sonoguide.pipeline.frames import FrameError, as_frame_image
from sonoguide.pipeline.providers import ORT_LOG_SEVERITY, provider_plan, short_name


class ModelLoadError(ContractError):
    """The model file cannot be used; the message starts with the file path."""


@dataclass(frozen=True)
class Prediction:
    probs: np.ndarray  # (C, H, W) float32 softmax probabilities, model input space
    presence: np.ndarray | None  # (C,) float32 probability that each class is in the frame
    inference_ms: float  # preprocess + model run + softmax


class Segmenter:
    def __init__(self, path: str | Path, provider: str = "auto", intra_op_threads: int = 2) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        self._fail_unless_file()
        plan, self.provider_note = provider_plan(provider)
        self._session = self._open_session(plan, intra_op_threads)
        self.contract = self._read_contract()
        self._input_name, self._logits_name, self._presence_name = self._check_io()
        self.provider = short_name(self._session.get_providers()[0])
        wanted = short_name(plan[0] if isinstance(plan[0], str) else plan[0][0])
        if self.provider != wanted and not self.provider_note:
            # A GPU answered but ORT could not use it (e.g. CUDA/cuDNN libraries missing).
            self.provider_note = (f"{wanted} could not be used (see ONNX Runtime's message); "
                                  f"running on {self.provider}")
        self._warm_up()

    # --- public ------------------------------------------------------------------------------
    @property
    def classes(self) -> tuple[str, ...]:
        return self.contract.classes

    @property
    def has_presence(self) -> bool:
        return self._presence_name is not None

    def preprocess(self, gray_roi: np.ndarray) -> np.ndarray:
        """ROI (H, W) uint8 -> float32 [1, 1, h, w] exactly as the contract says."""
        return self.contract.normalize(_as_gray(gray_roi))[np.newaxis, np.newaxis]

    def predict(self, gray_roi: np.ndarray) -> Prediction:
        t0 = time.perf_counter()
        x = self.preprocess(gray_roi)
        outputs = self._run(x)
        probs = _softmax(outputs[0][0])
        presence = None
        if self._presence_name is not None:
            presence = _sigmoid(outputs[1][0].astype(np.float32))
        if not np.isfinite(probs).all() or (presence is not None
                                             and not np.isfinite(presence).all()):
            # never drawn: the worker counts it as an error and the window says so
            raise ValueError(f"{self.name}: the model gave non-finite output (NaN/Inf) on this "
                             "frame; result dropped")
        return Prediction(probs, presence, (time.perf_counter() - t0) * 1000.0)

    def describe(self) -> str:
        return f"{self.name} v{self.contract.version} on {self.provider}"

    # --- loading -----------------------------------------------------------------------------
    def _error(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"{self.path}: {what}")

    def _fail_unless_file(self) -> None:
        if not self.path.exists():
            raise self._error("model file not found")
        if not self.path.is_file():
            raise self._error("is not a file")

    def _open_session(self, plan: list, intra_op_threads: int):
        import onnxruntime as ort

        ort.set_default_logger_severity(ORT_LOG_SEVERITY)
        options = ort.SessionOptions()
        options.log_severity_level = ORT_LOG_SEVERITY
        options.intra_op_num_threads = max(1, int(intra_op_threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads otherwise spin for a while after each run, stealing the few cores
        # the video source and the window need between frames.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(self.path), options, providers=plan)
        except Exception as exc:  # ORT raises its own exception types for bad protobufs
            raise self._error(f"not a loadable ONNX model ({_ort_detail(exc)})") from exc

    def _read_contract(self) -> ModelContract:
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        try:
            return ModelContract.from_metadata(meta)
        except ContractError as exc:
            raise self._error(f"breaks the SonoGuide model contract: {exc}") from exc

    def _check_io(self) -> tuple[str, str, str | None]:
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1:
            raise self._error(f"model must have exactly one input, it has {len(inputs)}")
        if not outputs:
            raise self._error("model has no outputs")
        if inputs[0].type != "tensor(float)":
            raise self._error(f"input must be float32, model has {inputs[0].type}")
        try:
            self.contract.check_shapes(list(inputs[0].shape), list(outputs[0].shape))
        except ContractError as exc:
            raise self._error(f"breaks the SonoGuide model contract: {exc}") from exc
        presence = next((o for o in outputs if o.name == PRESENCE_OUTPUT), None)
        if presence is not None:
            shape = list(presence.shape)
            n_cls = len(self.contract.classes)
            if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != n_cls):
                raise self._error(
                    f"breaks the SonoGuide model contract: output '{PRESENCE_OUTPUT}' must be "
                    f"[N, {n_cls}], model has {shape}")
        if outputs[0].name == PRESENCE_OUTPUT:
            raise self._error("output 0 must be the class logits, not 'presence'")
        return inputs[0].name, outputs[0].name, presence.name if presence is not None else None

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        names = [self._logits_name]
        if self._presence_name is not None:
            names.append(self._presence_name)
        return self._session.run(names, {self._input_name: x})

    def _warm_up(self) -> None:
        """One run at load: the first inference is slow (allocations, kernel choice) and a model
        that cannot run at all should fail now, not on the first frame."""
        c = self.contract
        try:
            outputs = self._run(np.zeros((1, 1, c.height, c.width), np.float32))
        except Exception as exc:
            raise self._error(f"fails on a test input: {str(exc).strip()[:200]}") from exc
        want = (1, len(c.classes), c.height, c.width)
        if not all(np.isfinite(o).all() for o in outputs):
            raise self._error("gives non-finite output (NaN/Inf) on a test input")
        if tuple(outputs[0].shape) != want:
            raise self._error(
                f"breaks the SonoGuide model contract: output 0 has shape "
                f"{tuple(outputs[0].shape)}, expected {want}")
        if len(outputs) > 1 and tuple(outputs[1].shape) != (1, len(c.classes)):
            raise self._error(
                f"breaks the SonoGuide model contract: output '{PRESENCE_OUTPUT}' has shape "
                f"{tuple(outputs[1].shape)}, expected {(1, len(c.classes))}")


def _as_gray(image: np.ndarray) -> np.ndarray:
    """A frame's picture (converted or refused by as_frame_image, one definition) as grey."""
    if isinstance(image, np.ndarray) and image.size == 0:
        raise FrameError("empty ROI: nothing to segment")
    image = as_frame_image(image)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return image


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32, copy=False)
    z = np.exp(z - z.max(axis=0, keepdims=True))
    z /= z.sum(axis=0, keepdims=True)
    return z


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)


def _ort_detail(exc: Exception) -> str:
    """The readable part of an ORT load error: the banner is read at the bedside, so drop
    "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from /path failed:"."""
    text = str(exc).strip()
    detail = text.splitlines()[0] if text else type(exc).__name__
    detail = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*", "", detail)
    detail = re.sub(r"^Load model from .*? failed:\s*", "", detail)
    if "protobuf" in detail.lower():
        detail = f"damaged, or not an ONNX file: {detail}"
    return detail[:160]
