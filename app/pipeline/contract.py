"""The model contract shared by the app (reads it) and training/export (writes it).

input: one float32 tensor [N, 1, H, W] grayscale; preprocessing = resize the whole ROI to (W, H)
with cv2.INTER_AREA, multiply by `scale`, subtract `mean`, divide by `std`.
output 0: per-class logits [N, C, H, W]; optional output named "presence": [N, C] logits
that each class is present in the frame.
metadata_props: sonoguide.classes (JSON list, index 0 "background"), sonoguide.input
(JSON {height, width, scale, mean, std}), sonoguide.version, sonoguide.trained_on; optional
sonoguide.unsure_below (JSON {class: probability}): an outline whose mean probability is under
its class's value is drawn as unsure. Calibrated per model on held-out data
(training/calibrate.py); a model without it gets DEFAULT_UNSURE_BELOW.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import cv2
import numpy as np

KEY_CLASSES = "sonoguide.classes"
KEY_INPUT = "sonoguide.input"
KEY_VERSION = "sonoguide.version"
KEY_TRAINED_ON = "sonoguide.trained_on"
KEY_UNSURE = "sonoguide.unsure_below"
REQUIRED_KEYS = (KEY_CLASSES, KEY_INPUT, KEY_VERSION, KEY_TRAINED_ON)
PRESENCE_OUTPUT = "presence"
# Uncalibrated models: a structure below this mean probability is drawn unsure (dashed).
DEFAULT_UNSURE_BELOW = 0.6
# What a model's input may be: sides a model of this kind can have (a 100000 x 100000 input
# would try to allocate 37 GiB at warm-up), and a normalisation that keeps 0-255 pixels finite
# and distinguishable ((pixel * scale - mean) / std).
MIN_SIDE, MAX_SIDE = 8, 2048
MIN_SCALE, MAX_SCALE = 1e-6, 1.0
MIN_STD, MAX_STD = 1e-4, 1e4
MAX_ABS_MEAN = 1e4


class ContractError(ValueError):
    """A model that breaks the contract; the message says what is wrong."""


@dataclass(frozen=True)
class ModelContract:
    classes: tuple[str, ...]
    height: int
    width: int
    scale: float
    mean: float
    std: float
    version: str
    trained_on: str
    unsure_below: tuple[tuple[str, float], ...] = ()  # (class, probability), calibrated

    def unsure_threshold(self, name: str) -> float:
        """Mean probability under which an outline of class `name` is drawn unsure."""
        return dict(self.unsure_below).get(name, DEFAULT_UNSURE_BELOW)

    def normalize(self, gray: np.ndarray) -> np.ndarray:
        """(H, W) uint8 image -> float32 (height, width) model input, exactly as the contract says.

        The one implementation: the app's segmenter and training/evaluation both call it, so a
        model never sees data prepared differently from what it was trained on.
        """
        if gray.shape != (self.height, self.width):
            gray = cv2.resize(gray, (self.width, self.height), interpolation=cv2.INTER_AREA)
        x = gray.astype(np.float32) * np.float32(self.scale)
        return (x - np.float32(self.mean)) / np.float32(self.std)

    def to_metadata(self) -> dict[str, str]:
        meta = {
            KEY_CLASSES: json.dumps(list(self.classes)),
            KEY_INPUT: json.dumps({"height": self.height, "width": self.width,
                                   "scale": self.scale, "mean": self.mean, "std": self.std}),
            KEY_VERSION: self.version,
            KEY_TRAINED_ON: self.trained_on,
        }
        if self.unsure_below:
            meta[KEY_UNSURE] = json.dumps(dict(self.unsure_below))
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ModelContract:
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise ContractError(f"model metadata lacks {', '.join(missing)}")
        try:
            classes = json.loads(meta[KEY_CLASSES])
            spec = json.loads(meta[KEY_INPUT])
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise ContractError(f"model metadata is not valid JSON: {exc}") from exc
        if not isinstance(classes, list) or len(classes) < 2 or not all(
            isinstance(c, str) and c.strip() for c in classes
        ):
            raise ContractError(f"{KEY_CLASSES} must be a list of >= 2 non-blank names, "
                                f"got {classes!r}")
        if len(set(classes)) != len(classes):
            raise ContractError(f"{KEY_CLASSES} names a class twice: {classes!r}")
        if classes[0] != "background":
            raise ContractError(f"class 0 must be 'background', got {classes[0]!r}")
        if not isinstance(spec, dict):
            raise ContractError(f"{KEY_INPUT} must be a JSON object, got {spec!r}")
        lacking = [k for k in ("height", "width", "scale", "mean", "std") if k not in spec]
        if lacking:
            raise ContractError(f"{KEY_INPUT} lacks {', '.join(lacking)}")
        height, width = (_whole(spec, k, MIN_SIDE, MAX_SIDE) for k in ("height", "width"))
        scale, mean, std = (_number(spec, k) for k in ("scale", "mean", "std"))
        if not (MIN_SCALE <= scale <= MAX_SCALE and MIN_STD <= std <= MAX_STD
                and abs(mean) <= MAX_ABS_MEAN):
            # "std": Infinity made every pixel one confident vessel, with no error; a scale of
            # 1e38 overflows every input to Inf
            raise ContractError(
                f"{KEY_INPUT} needs {MIN_SCALE:g} <= scale <= {MAX_SCALE:g}, {MIN_STD:g} <= std "
                f"<= {MAX_STD:g} and |mean| <= {MAX_ABS_MEAN:g} (pixels 0-255 in); got scale "
                f"{scale}, mean {mean}, std {std}")
        return cls(tuple(classes), height, width, scale, mean, std,
                   str(meta[KEY_VERSION]), str(meta[KEY_TRAINED_ON]),
                   _unsure_below(meta.get(KEY_UNSURE), classes))

    def check_shapes(self, input_shape: list, output_shape: list) -> None:
        """Raise ContractError unless input is [N,1,H,W] and output 0 is [N,C,H,W]."""

        def fixed(dim: object) -> int | None:
            return dim if isinstance(dim, int) else None

        if len(input_shape) != 4 or fixed(input_shape[1]) not in (1, None):
            raise ContractError(f"input must be [N,1,H,W] grayscale, model has {input_shape}")
        for got, want, what in ((input_shape[2], self.height, "height"),
                                (input_shape[3], self.width, "width")):
            if fixed(got) is not None and got != want:
                raise ContractError(f"input {what} is {got} but metadata says {want}")
        if len(output_shape) != 4:
            raise ContractError(f"output 0 must be [N,C,H,W] logits, model has {output_shape}")
        c = fixed(output_shape[1])
        if c is not None and c != len(self.classes):
            raise ContractError(
                f"output has {c} channels but metadata names {len(self.classes)} classes")


def _whole(spec: dict, key: str, low: int, high: int) -> int:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ContractError(f"{KEY_INPUT} {key} must be a whole number of pixels from {low} to "
                            f"{high}, got {value!r}")
    return value


def _number(spec: dict, key: str) -> float:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        raise ContractError(f"{KEY_INPUT} {key} must be a finite number, got {value!r}")
    return float(value)


def _unsure_below(raw: str | None, classes: list[str]) -> tuple[tuple[str, float], ...]:
    if raw is None:
        return ()
    try:
        values = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ContractError(f"{KEY_UNSURE} is not valid JSON: {exc}") from exc
    if not isinstance(values, dict):
        raise ContractError(f"{KEY_UNSURE} must be a JSON object, got {values!r}")
    out = []
    for name, value in values.items():
        if name not in classes[1:]:
            raise ContractError(f"{KEY_UNSURE} names {name!r}, which is not a foreground class")
        if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
            raise ContractError(f"{KEY_UNSURE}[{name!r}] must be a probability in (0, 1), "
                                f"got {value!r}")
        out.append((name, float(value)))
    return tuple(out)
