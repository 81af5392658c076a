"""Metrics of an exported ONNX model on labelled samples, through ONNX Runtime as the app runs it.

Per frame: the ROI crop where the sample has one (the app's detected ROI; background outside it),
the contract's preprocessing, argmax over classes whose presence probability is >= 0.5
(the app hides the others), label map resized back to the image with nearest neighbour.
Per class: Dice and IoU (mean over frames whose truth has the class), 95th-percentile Hausdorff
distance in mm (frames where truth and prediction both have it), share of those frames where the
structure is found (a prediction of >= 0.2% of the image overlapping it, the app's speck limit),
and the false-positive rate on frames without it. From the outlines the app itself draws
(training/outlines.py: its Segmenter and Analyzer): the share of all frames with a stray outline,
one touching none of that structure (a false vein beside the real one, which Dice barely
shows), and how many true and stray outlines are drawn unsure (dashed, by the model's calibrated
levels): whether the user can see the doubt. Artery/vein swaps are counted separately.
With steadiness options, each set also gets the steadiness figure (training/steadiness.py).
A set with "region" (a region-labelled set such as uns-nerve) is reported the region way
instead (region_report: how the drawn target structure sits in the labelled region).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sonoguide.pipeline.contract import ModelContract
from sonoguide.training.data import Sample, preprocess
from sonoguide.training.export import check_contract, ort_session
from sonoguide.training.outlines import app_outlines, dashed_counts, dashed_text, map_classes

MIN_AREA_FRAC = 0.002  # app/pipeline/analysis.py drops components smaller than this
PRESENCE_THRESHOLD = 0.5


def predict(session, contract: ModelContract, image: np.ndarray) -> np.ndarray:
    """Image (H, W) uint8 -> label map (H, W) in the model's classes, presence-gated."""
    x = preprocess(image, contract)[None, None]
    outs = session.run(None, {session.get_inputs()[0].name: x})
    logits = outs[0][0].astype(np.float32)
    if len(outs) > 1:
        presence = 1 / (1 + np.exp(-outs[1][0]))
        hidden = presence < PRESENCE_THRESHOLD
        hidden[0] = False  # background is never hidden
        logits[hidden] = -np.inf
    labels = logits.argmax(0).astype(np.uint8)
    return cv2.resize(labels, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)


def predict_in_roi(session, contract: ModelContract, sample: Sample) -> np.ndarray:
    """The app's way: predict on the ROI crop, background elsewhere in the full frame."""
    crop, _ = sample.model_view()
    x, y = sample.roi[:2] if sample.roi else (0, 0)
    full = np.zeros(sample.image.shape[:2], np.uint8)
    full[y:y + crop.shape[0], x:x + crop.shape[1]] = predict(session, contract, crop)
    return full


def _boundary(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return m & ~cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).astype(bool)


def hd95_px(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th percentile of the symmetric boundary-to-boundary distances, in pixels."""
    bp, bt = _boundary(pred).astype(bool), _boundary(truth).astype(bool)
    # distanceTransform measures the distance to the nearest zero pixel.
    to_t = cv2.distanceTransform((~bt).astype(np.uint8), cv2.DIST_L2, 5)
    to_p = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, 5)
    d = np.concatenate([to_t[bp], to_p[bt]])
    return float(np.percentile(d, 95)) if d.size else 0.0


def evaluate_samples(model: str | Path, samples: list[Sample], data_classes: tuple[str, ...],
                     merge: dict[str, str] | None = None, quiet: bool = False) -> dict:
    session = ort_session(model)
    contract = check_contract(session)
    table = map_classes(contract.classes, data_classes, merge)
    fg = range(1, len(data_classes))
    per = {c: {"dice": [], "iou": [], "hd95_mm": [], "found": [], "fp": []} for c in fg}
    swaps, groups_swapped = 0, {}
    for s in tqdm(samples, desc=f"evaluate {Path(model).name}", disable=quiet, leave=False):
        pred = table[predict_in_roi(session, contract, s)]
        min_area = MIN_AREA_FRAC * pred.size
        swapped = False
        for c in fg:
            p, t = pred == c, s.mask == c
            if t.any():
                inter, union = np.sum(p & t), np.sum(p | t)
                per[c]["dice"].append(2 * inter / (p.sum() + t.sum()))
                per[c]["iou"].append(inter / union)
                per[c]["found"].append(bool(inter > 0 and p.sum() >= min_area))
                if p.any() and s.spacing_mm:
                    per[c]["hd95_mm"].append(hd95_px(p, t) * s.spacing_mm)
                # Swapped: inside this structure another foreground class outvotes the right one.
                others = [np.sum((pred == o) & t) for o in fg if o != c]
                if others and max(others) > inter and max(others) >= min_area:
                    swapped = True
            else:
                per[c]["fp"].append(bool(p.sum() >= min_area))
        swaps += swapped
        groups_swapped.setdefault(s.group or "all", [0, 0])
        groups_swapped[s.group or "all"][0] += swapped
        groups_swapped[s.group or "all"][1] += 1
    drawn = app_outlines(model, samples, data_classes, merge, quiet)
    dashed = dashed_counts(drawn, key=lambda o: o.data_class)
    empty = {"true": 0, "true_unsure": 0, "stray": 0, "stray_unsure": 0}
    classes = {}
    for c in fg:
        d = per[c]
        stray_frames = {o.frame for o in drawn if o.data_class == c and o.stray}
        classes[data_classes[c]] = {
            "frames_with": len(d["dice"]),
            "dice_mean": _mean(d["dice"]), "dice_sd": _sd(d["dice"]),
            "iou_mean": _mean(d["iou"]),
            "hd95_mm_median": _median(d["hd95_mm"]),
            "found_share": _mean(d["found"]),
            "frames_without": len(d["fp"]),
            "false_positive_rate": _mean(d["fp"]),
            "stray_rate": round(len(stray_frames) / len(samples), 4) if samples else None,
            # how many outlines the app draws dashed (unsure), true ones and stray ones
            "outlines": dashed.get(c, empty),
        }
    return {"model": str(model), "model_classes": list(contract.classes),
            "data_classes": list(data_classes), "merge": merge or {}, "frames": len(samples),
            "classes": classes, "swapped_frames": swaps,
            "swapped_by_group": {g: {"swapped": v[0], "frames": v[1]}
                                 for g, v in groups_swapped.items()}}


def _mean(v: list) -> float | None:
    return round(float(np.mean(v)), 4) if v else None


def _sd(v: list) -> float | None:
    return round(float(np.std(v)), 4) if v else None


def _median(v: list) -> float | None:
    return round(float(np.median(v)), 2) if v else None


def _unsure(m: dict) -> str:
    return dashed_text(m["outlines"]) if m.get("outlines") else "n/a"


def markdown_table(report: dict, title: str = "") -> str:
    def f(v, pct=False):
        if v is None:
            return "n/a"
        return f"{v:.1%}" if pct else f"{v:.3f}"

    def hd(v):
        return "n/a" if v is None else f"{v:.2f}"

    lines = [f"**{title}** ({report['frames']} frames)" if title else "",
             "| class | Dice (mean ± sd) | IoU | HD95 mm (median) | found | false-positive rate "
             "| stray outline | outlines drawn unsure: true / stray |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in report["classes"].items():
        lines.append(
            f"| {name} | {f(m['dice_mean'])} ± {f(m['dice_sd'])} (n={m['frames_with']}) "
            f"| {f(m['iou_mean'])} | {hd(m['hd95_mm_median'])} "
            f"| {f(m['found_share'], True)} | {f(m['false_positive_rate'], True)} "
            f"(n={m['frames_without']}) | {f(m.get('stray_rate'), True)} | {_unsure(m)} |")
    if report.get("swapped_frames") is not None and len(report["classes"]) > 1:
        lines.append(f"\nFrames with a structure mostly labelled as another structure "
                     f"(swap): {report['swapped_frames']} of {report['frames']}")
    return "\n".join(line for line in lines if line is not None)


def region_report(model: str | Path, samples: list[Sample], target: str = "nerve",
                  region_class: int = 1, threads: int = 1, quiet: bool = False) -> dict:
    """How the structure the app draws sits in a region label (one outline around the whole
    plexus, as uns-nerve marks it), per frame, from the app's drawn outlines (filled):

    - drawn_share: frames where the app draws `target` at all;
    - inside_share: of the drawn target pixels, the share inside the region (mean over frames
      where it is drawn): 1.0 = never outside the region;
    - coverage: of the region, the share covered by drawn target (mean over all frames; the
      region also holds tissue between the nerves, so well under 1 even when right);
    - hull_dice: Dice of the convex hull of all drawn target pixels with the region (mean over
      all frames, 0 where nothing is drawn): the region-style comparison;
    - touches_share: frames where some drawn target lies inside the region;
    - aim_inside_share: frames where the app's target point (centroid of the largest cluster of
      drawn target, where the guidance aims) lies inside the region;
    - outlines: each drawn `target` outline, "right" when it reaches into the region, "wrong"
      when it lies wholly outside it, and how many of each the app draws dashed (unsure): on a
      scanner the model never saw, a wrong outline should be dashed.
    """
    from sonoguide.training.steadiness import DrawnPredictor, filled

    predict = DrawnPredictor(model, threads=threads)
    idx = predict.segmenter.classes.index(target)
    rows = {k: [] for k in ("drawn", "inside", "coverage", "hull_dice", "touches", "aim")}
    outlines = {"right": 0, "right_dashed": 0, "wrong": 0, "wrong_dashed": 0}
    for s in tqdm(samples, desc=f"region {Path(model).name}", disable=quiet, leave=False):
        labels, analysis = predict.analyze(s.image, s.roi)
        drawn, region = labels == idx, s.mask == region_class
        rows["drawn"].append(bool(drawn.any()))
        rows["coverage"].append(np.sum(drawn & region) / max(int(region.sum()), 1))
        rows["touches"].append(bool(np.any(drawn & region)))
        hull = np.zeros_like(labels)
        if drawn.any():
            rows["inside"].append(np.sum(drawn & region) / drawn.sum())
            pts = cv2.findNonZero(drawn.astype(np.uint8))
            cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
        hull = hull.astype(bool)
        denom = int(hull.sum() + region.sum())
        rows["hull_dice"].append(2 * np.sum(hull & region) / denom if denom else 1.0)
        t = analysis.target
        inside = False
        if t is not None and t.class_name == target:
            x, y = int(round(t.x)), int(round(t.y))
            inside = 0 <= y < region.shape[0] and 0 <= x < region.shape[1] and bool(region[y, x])
        rows["aim"].append(inside)
        for st in (x for x in analysis.structures if x.class_name == target):
            kind = "right" if np.any(filled(st, labels.shape) & region) else "wrong"
            outlines[kind] += 1
            outlines[f"{kind}_dashed"] += int(st.unsure)
    return {"model": str(model), "target": target, "frames": len(samples),
            "drawn_share": _mean(rows["drawn"]), "inside_share": _mean(rows["inside"]),
            "coverage": _mean(rows["coverage"]), "hull_dice": _mean(rows["hull_dice"]),
            "hull_dice_sd": _sd(rows["hull_dice"]), "touches_share": _mean(rows["touches"]),
            "aim_inside_share": _mean(rows["aim"]), "outlines": outlines}


def region_markdown(report: dict, title: str = "") -> str:
    def f(v, pct=False):
        return "n/a" if v is None else (f"{v:.1%}" if pct else f"{v:.3f}")

    r = report
    o = r["outlines"]
    return "\n".join([
        f"**{title or 'Region'}** ({r['frames']} frames; drawn {r['target']} vs the labelled "
        "region)",
        "| drawn | inside region | region covered | hull Dice (mean ± sd) | touches region "
        "| aim point inside | outlines drawn dashed: right / wrong |",
        "|---|---|---|---|---|---|---|",
        f"| {f(r['drawn_share'], True)} | {f(r['inside_share'], True)} "
        f"| {f(r['coverage'], True)} | {f(r['hull_dice'])} ± {f(r['hull_dice_sd'])} "
        f"| {f(r['touches_share'], True)} | {f(r['aim_inside_share'], True)} "
        f"| {o['right_dashed']} of {o['right']} / {o['wrong_dashed']} of {o['wrong']} |"])


def region_report_split(model: str | Path, dataset: str = "uns-nerve",
                        split: str | Path = "training/splits/uns-nerve.json", part: str = "test",
                        target: str = "nerve", root: str | Path | None = None, threads: int = 1,
                        output: str | Path | None = None, quiet: bool = False) -> dict:
    """region_report on one part of a region-labelled set's split (uns-nerve's held-out
    subjects by default), written as JSON plus a Markdown table when `output` is given."""
    import time

    from sonoguide.paths import data_root
    from sonoguide.training.data import UNS_REGION_CLASS, FolderSpec, load_folder, read_split
    from sonoguide.training.train import repo_path

    spec = FolderSpec.from_config({"kind": "uns-nerve", "root": dataset}, base=data_root(root))
    names = read_split(repo_path(split))[part]
    samples = load_folder(spec, ("background", UNS_REGION_CLASS), names)
    t0 = time.perf_counter()
    report = region_report(model, samples, target, 1, threads, quiet)
    report |= {"dataset": dataset, "split": str(split), "part": part,
               "seconds": round(time.perf_counter() - t0, 1)}
    if output:
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        out.with_suffix(".md").write_text(
            region_markdown(report, f"{dataset} {part} part") + "\n")
    return report


def evaluate_config(cfg, model: str | Path, root: str | Path | None = None,
                    output: str | Path | None = None, quiet: bool = False,
                    steadiness=None) -> dict:
    """Evaluate on the config's "val" sources and any "evaluate_extra" sets; with `steadiness`
    (SteadinessOptions) each set also gets the steadiness figure."""
    from sonoguide.paths import data_root
    from sonoguide.training.train import load_sources

    root = data_root(root)
    size = (cfg.contract().height, cfg.contract().width)
    sets = [{"name": "validation", "classes": list(cfg.classes), "sources": cfg["val"]}]
    sets += cfg.get("evaluate_extra", [])
    report = {"sets": {}}
    md = []
    for spec in sets:
        classes = tuple(spec["classes"])
        samples = load_sources(spec["sources"], classes, root, size)
        if "region" in spec:  # {"target": "nerve", "class": "plexus_region"}
            reg = spec["region"]
            r = region_report(model, samples, reg.get("target", "nerve"),
                              classes.index(reg.get("class", classes[1])), quiet=quiet)
            report["sets"][spec["name"]] = r
            md.append(region_markdown(r, spec["name"]))
            continue
        r = evaluate_samples(model, samples, classes, spec.get("merge"), quiet)
        if "report_classes" in spec:  # e.g. only "vessel" when a model has no nerve class
            r["classes"] = {k: v for k, v in r["classes"].items() if k in spec["report_classes"]}
        report["sets"][spec["name"]] = r
        md.append(markdown_table(r, spec["name"]))
        if steadiness is not None:
            from sonoguide.training import steadiness as st

            r["steadiness"] = st.steadiness_of_samples(model, samples, classes,
                                                       spec.get("merge"), steadiness, quiet)
            if "report_classes" in spec:
                r["steadiness"]["classes"] = {k: v for k, v in r["steadiness"]["classes"].items()
                                              if k in spec["report_classes"]}
            md.append(st.markdown(r["steadiness"], spec["name"]))
    report["markdown"] = "\n\n".join(md)
    if output:
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({k: v for k, v in report.items() if k != "markdown"},
                                  indent=1))
        out.with_suffix(".md").write_text(report["markdown"] + "\n")
    return report
