"""Train, export, evaluate and time several network x loss combinations on one split.

Writes <out>/compare.json, compare.md (table) and compare.png (mean foreground IoU against
inferences/s, the accuracy/speed trade-off Tian 2022 plotted for U-Net vs LinkNet).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from sonoguide.training.bench import bench
from sonoguide.training.evaluate import evaluate_config
from sonoguide.training.export import export_run
from sonoguide.training.train import Config, repo_path, train


def compare(cfg: Config, nets: list[str], losses: list[str], epochs: int, out: Path,
            root: str | Path | None = None, device: str | None = None) -> Path:
    out = repo_path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for arch in nets:
        for loss in losses:
            tag = f"{arch}-{loss.replace('+', '_')}"
            raw = copy.deepcopy(cfg.raw)
            raw["net"]["arch"] = arch
            raw.update(loss=loss, epochs=epochs, out=str(out / tag))
            raw.pop("evaluate_extra", None)  # the comparison is on the validation split only
            variant = Config(raw)
            done = out / f"{tag}.eval.json"
            if done.exists():  # a finished combination is not trained again
                model = out / f"{tag}.onnx"
                val = json.loads(done.read_text())["sets"]["validation"]["classes"]
            else:
                run = train(variant, root, device)
                model = export_run(variant, run, out / f"{tag}.onnx", root)
                report = evaluate_config(variant, model, root, done, quiet=True)
                val = report["sets"]["validation"]["classes"]
            speed = bench(model, runs=100)
            row = {"net": arch, "loss": loss, "epochs": epochs,
                   **{f"dice_{k}": v["dice_mean"] for k, v in val.items()},
                   **{f"iou_{k}": v["iou_mean"] for k, v in val.items()},
                   "iou_mean": round(sum(v["iou_mean"] or 0 for v in val.values()) / len(val), 4),
                   "per_s": speed["per_s"], "median_ms": speed["median_ms"]}
            rows.append(row)
            print(row, flush=True)
            (out / "compare.json").write_text(json.dumps(rows, indent=1))
    write_table(rows, out / "compare.md")
    plot(rows, out / "compare.png", cfg.get("name", ""))
    return out


def rebench(out: Path, title: str = "") -> list[dict]:
    """Time all compared models again in interleaved rounds (fair on a shared machine)."""
    from sonoguide.training.bench import bench_interleaved

    rows = json.loads((out / "compare.json").read_text())
    tags = {f"{r['net']}-{r['loss'].replace('+', '_')}": r for r in rows}
    speed = bench_interleaved({t: out / f"{t}.onnx" for t in tags}, rounds=3, runs=50)
    for tag, r in tags.items():
        r.update(per_s=speed[tag]["per_s"], median_ms=speed[tag]["median_ms"])
    (out / "compare.json").write_text(json.dumps(rows, indent=1))
    write_table(rows, out / "compare.md")
    plot(rows, out / "compare.png", title)
    return rows


def write_table(rows: list[dict], path: Path) -> None:
    keys = [k for k in rows[0] if k not in ("net", "loss", "epochs")]
    lines = ["| net | loss | epochs | " + " | ".join(keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for r in rows:
        lines.append(f"| {r['net']} | {r['loss']} | {r['epochs']} | "
                     + " | ".join(str(r[k]) for k in keys) + " |")
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = {"unet": "o", "linknet": "s", "fcn": "^"}
    for r in rows:
        ax.scatter(r["per_s"], r["iou_mean"], marker=markers.get(r["net"], "x"), s=50)
        ax.annotate(f"{r['net']}/{r['loss']}", (r["per_s"], r["iou_mean"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("inferences/s (ONNX Runtime CPU, 2 threads, batch 1)")
    ax.set_ylabel("mean foreground IoU (validation)")
    ax.set_title(f"{title}: accuracy vs speed")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
