"""When the app draws an outline as unsure: a level per model and class, from held-out data.

A segmentation network's softmax is over-confident: the false outlines of the shipped models
have a mean probability of 0.75-0.85, far above a fixed 0.6, so none of them was drawn dashed.
The rule here: an outline is unsure when its mean probability is under the level that `budget`
(10 %) of the model's correct outlines on held-out data fall under, i.e. "less sure than nine in
ten of its right answers". It needs only correct outlines, so a held-out set without false ones
(the phantom) still calibrates; how many false outlines the level catches is measured, in
sample and by a two-fold cross-check (levels from half the frames, counted on the other half).

Outlines and confidences come from the app's own Segmenter and Analyzer (training/outlines.py),
so a level is compared with exactly the number the app computes. The levels go into the model's
metadata (sonoguide.unsure_below), which the app reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from sonoguide.pipeline.contract import KEY_UNSURE, ModelContract
from sonoguide.training.export import check_contract, ort_session
from sonoguide.training.outlines import Outline, app_outlines, dashed_counts, dashed_text

BUDGET = 0.10  # share of correct outlines a level may draw unsure
MIN_TRUE = 10  # fewer correct outlines of a class than this: no level, the app's default stays


def levels(outlines: list[Outline], budget: float = BUDGET,
           min_true: int = MIN_TRUE) -> dict[str, float]:
    """Class -> the `budget` quantile of its correct outlines' confidence."""
    out = {}
    for name in sorted({o.class_name for o in outlines}):
        true = [o.confidence for o in outlines if o.class_name == name and not o.stray]
        if len(true) >= min_true:
            out[name] = round(float(np.quantile(true, budget)), 4)
    return out


def cross_check(outlines: list[Outline], budget: float = BUDGET) -> dict[str, dict[str, int]]:
    """Levels from the even frames counted on the odd ones and the other way round, summed:
    what the level does on frames it was not set on."""
    total: dict[str, dict[str, int]] = {}
    for fold in (0, 1):
        fit = [o for o in outlines if o.frame % 2 == fold]
        held = [o for o in outlines if o.frame % 2 != fold]
        for name, c in dashed_counts(held, levels(fit, budget)).items():
            t = total.setdefault(name, dict.fromkeys(c, 0))
            for k, v in c.items():
                t[k] += v
    return total


def write_levels(model: str | Path, level: dict[str, float]) -> ModelContract:
    """Store the levels in the model's metadata (replacing any) and re-check the contract."""
    proto = onnx.load(str(model))
    kept = [p for p in proto.metadata_props if p.key != KEY_UNSURE]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if level:
        entry = proto.metadata_props.add()
        entry.key, entry.value = KEY_UNSURE, json.dumps(level)
    onnx.save(proto, str(model))
    return check_contract(ort_session(model))


def calibrate_config(cfg, model: str | Path, set_name: str | None = None,
                     budget: float | None = None, root: str | Path | None = None,
                     write: bool = True, quiet: bool = False) -> dict:
    """Levels for `model` from one of the config's evaluation sets (by name: "validation" or an
    evaluate_extra set); written into the model unless write=False. Set and budget not given:
    the config's "calibrate" {"set", "budget"}, else the validation data and BUDGET."""
    from sonoguide.paths import data_root
    from sonoguide.training.train import load_sources

    spec = cfg.get("calibrate", {})
    set_name = set_name or spec.get("set", "validation")
    budget = budget or float(spec.get("budget", BUDGET))

    sets = {"validation": {"classes": list(cfg.classes), "sources": cfg["val"]}}
    sets.update({s["name"]: s for s in cfg.get("evaluate_extra", [])})
    if set_name not in sets:
        raise ValueError(f"no evaluation set {set_name!r}; the config has {sorted(sets)}")
    spec = sets[set_name]
    classes = tuple(spec["classes"])
    size = (cfg.contract().height, cfg.contract().width)
    samples = load_sources(spec["sources"], classes, data_root(root), size)
    found = app_outlines(model, samples, classes, spec.get("merge"), quiet)
    level = levels(found, budget)
    report = {"model": str(model), "set": set_name, "frames": len(samples), "budget": budget,
              "unsure_below": level,
              "in_sample": dashed_counts(found, level),
              "cross_check": cross_check(found, budget),
              "before": dashed_counts(found, {})}
    if write:
        write_levels(model, level)
    return report


def report_lines(report: dict) -> list[str]:
    lines = [f"{report['model']}: unsure levels from {report['set']!r} ({report['frames']} "
             f"frames, {report['budget']:.0%} of correct outlines under them): "
             f"{report['unsure_below']}",
             "class | drawn unsure, true / stray: fixed 0.6 | calibrated (in sample) "
             "| two-fold cross-check"]
    for name in report["in_sample"]:
        cells = [report[k][name] for k in ("before", "in_sample", "cross_check")]
        lines.append(f"{name} | " + " | ".join(dashed_text(x) for x in cells))
    return lines
