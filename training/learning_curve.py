"""How validation Dice grows with the number of real labelled training images.

The same recipe (a config) is trained on nested, seeded subsets of its real training split
(stratified by vessel presence, as the split itself; the phantom sources stay as they are),
each exported and evaluated on the unchanged validation split. A Dice that grows slowly per
doubling of the labelled images says how far more labels, not another recipe, would carry it.

Writes <out>/curve.json, curve.md and curve.png (Dice against images, log scale), with a
least-squares slope per doubling and the number of images at which that line would reach a
target.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from sonoguide.training.data import read_split
from sonoguide.training.evaluate import evaluate_config
from sonoguide.training.export import export_run
from sonoguide.training.train import Config, data_root, load_sources, repo_path, train


def nested_subsets(names_with: list[str], names_without: list[str], sizes: list[int],
                   seed: int = 0) -> dict[int, list[str]]:
    """Subsets of each size, each one containing the smaller ones; the share of images
    with a vessel is kept as in the whole split."""
    rng = np.random.default_rng(seed)
    order_w = [names_with[i] for i in rng.permutation(len(names_with))]
    order_wo = [names_without[i] for i in rng.permutation(len(names_without))]
    total = len(names_with) + len(names_without)
    out = {}
    for n in sizes:
        if not 0 < n <= total:
            raise ValueError(f"subset size {n} is not within 1..{total}")
        k_wo = int(round(n * len(names_without) / total))
        out[n] = sorted(order_w[:n - k_wo] + order_wo[:k_wo])
    return out


def _real_source(cfg: Config) -> dict:
    real = [s for s in cfg["train"] if "split" in s]
    if len(real) != 1:
        raise ValueError("a learning curve needs exactly one training source with a split file")
    return real[0]


def learning_curve(cfg: Config, sizes: list[int], out: Path, root: str | Path | None = None,
                   device: str | None = None, target: dict[str, float] | None = None,
                   seed: int = 0, max_steps: int | None = None, quiet: bool = False) -> dict:
    out = repo_path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = _real_source(cfg)
    split = read_split(repo_path(src["split"]))
    train_names = split[src.get("part", "train")]
    vessel = cfg.classes.index("vessel") if "vessel" in cfg.classes else len(cfg.classes) - 1
    samples = load_sources([{**src, "part": src.get("part", "train")}], cfg.classes,
                           data_root(root), (cfg.contract().height, cfg.contract().width))
    has = {s.name: bool((s.mask == vessel).any()) for s in samples}
    subsets = nested_subsets([n for n in train_names if has[n]],
                             [n for n in train_names if not has[n]], sizes, seed)
    rows = []
    for n, names in subsets.items():
        tag = f"n{n}"
        part_file = out / f"split_{tag}.json"
        part_file.write_text(json.dumps({**split, "train": names, "val": split["val"]},
                                        indent=1))
        raw = copy.deepcopy(cfg.raw)
        raw["train"] = [{**s, "split": str(part_file), "part": "train"} if s is src else s
                        for s in cfg.raw["train"]]
        raw.pop("evaluate_extra", None)  # the curve is on the validation split only
        raw["members"] = 1  # one network per size: the curve is about data, not ensembling
        raw["out"] = str(out / tag)
        variant = Config(raw)
        done = out / f"{tag}.eval.json"
        if not done.exists():  # a finished size is not trained again
            run = train(variant, root, device, max_steps=max_steps, quiet=quiet)
            model = export_run(variant, run, out / f"{tag}.onnx", root)
            evaluate_config(variant, model, root, done, quiet=quiet)
        rows.append({"images": n, **validation_dice(done)})
    report = {"config": cfg.get("version", cfg.get("name", "")), "seed": seed, "rows": rows,
              "fits": fits(rows, target or {})}
    (out / "curve.json").write_text(json.dumps(report, indent=1))
    (out / "curve.md").write_text(markdown(report))
    plot(report, out / "curve.png")
    return report


def validation_dice(eval_json: Path) -> dict[str, float | None]:
    """Per class, the validation split's mean Dice from an `evaluate` JSON."""
    val = json.loads(Path(eval_json).read_text())["sets"]["validation"]["classes"]
    return {c: v["dice_mean"] for c, v in val.items()}


def add_point(curve_json: Path, images: int, eval_json: Path, label: str) -> dict:
    """Another recipe's model (e.g. pretrained on another dataset's frames) as a point beside
    the curve, at the real labelled images it learnt from: plotted and tabled with its label,
    never part of the fitted line. The curve's JSON and plot are rewritten in place."""
    curve_json = Path(curve_json)
    report = json.loads(curve_json.read_text())
    point = {"images": int(images), "label": label, **validation_dice(eval_json)}
    report["extra"] = [p for p in report.get("extra", []) if p["label"] != label] + [point]
    curve_json.write_text(json.dumps(report, indent=1))
    plot(report, curve_json.with_suffix(".png"))
    return report


def fits(rows: list[dict], target: dict[str, float]) -> dict[str, dict]:
    """Per class: Dice = intercept + b * log2(images); b is the gain per doubling, `reach` the
    images at which the line meets the target (None where it never rises)."""
    out = {}
    if len(rows) < 2:
        return out
    x = np.log2([r["images"] for r in rows])
    for c in rows[0]:
        if c == "images" or any(r[c] is None for r in rows):
            continue
        b, a = np.polyfit(x, [r[c] for r in rows], 1)
        fit = {"per_doubling": round(float(b), 4), "intercept": round(float(a), 4)}
        if c in target:
            fit["target"] = target[c]
            fit["reach"] = int(round(2 ** ((target[c] - a) / b))) if b > 0 else None
        out[c] = fit
    return out


def markdown(report: dict) -> str:
    classes = [c for c in report["rows"][0] if c != "images"]
    lines = ["| real training images | " + " | ".join(f"{c} Dice" for c in classes) + " |",
             "|---|" + "---|" * len(classes)]
    for r in report["rows"]:
        lines.append(f"| {r['images']} | " + " | ".join(
            "n/a" if r[c] is None else f"{r[c]:.3f}" for c in classes) + " |")
    for c, f in report["fits"].items():
        line = f"\n- {c}: {f['per_doubling']:+.3f} Dice per doubling of the images"
        if "target" in f:
            line += (f"; the line reaches {f['target']} at about {f['reach']} images"
                     if f["reach"] else f"; the line never reaches {f['target']}")
        lines.append(line)
    for e in report.get("extra", []):
        lines.append(f"\n- beside the curve, {e['label']} ({e['images']} images): " + ", ".join(
            f"{c} {e[c]:.3f}" for c in classes if e.get(c) is not None))
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(9, 4))
    n = [r["images"] for r in rows]
    colours: dict[str, str] = {}
    for c in (k for k in rows[0] if k != "images"):
        (line,) = ax.plot(n, [r[c] for r in rows], "o-", label=f"{c}")
        colours[c] = line.get_color()
        f = report["fits"].get(c, {})
        if f.get("target") is not None:
            ax.axhline(f["target"], color=line.get_color(), ls=":", lw=1,
                       label=f"{c} target {f['target']}")
        if f.get("reach"):  # the fitted line, carried on to where it meets the target
            x = np.geomspace(min(n), max(max(n), f["reach"]), 20)
            b = f["per_doubling"]
            ax.plot(x, f["intercept"] + b * np.log2(x), "--", color=line.get_color(), lw=1,
                    label=f"{c} fit: {b:+.3f} per doubling, target at ~{f['reach']}")
    extra = report.get("extra", [])
    for e, marker in zip(extra, "s^Dv", strict=False):
        for c, colour in colours.items():
            if e.get(c) is not None:
                ax.plot([e["images"]], [e[c]], marker, color=colour, mfc="none",
                        ms=8, label=f"{c}: {e['label']}")
    n = sorted(set(n) | {e["images"] for e in extra})
    ax.set_xscale("log", base=2)
    ax.set_xticks(n, [str(t) for t in n])
    ax.minorticks_off()
    ax.set_xlabel("real labelled training images (log scale)")
    ax.set_ylabel("mean Dice per frame, validation split")
    ax.set_title(f"{report['config']} recipe, one network per size: learning curve")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
