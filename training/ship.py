"""From a trained run to the shipped model: export, calibrate the unsure levels, evaluate, int8
or not, copy into models/.

The int8 copy becomes `<mode>.onnx` only if every foreground class's validation Dice stays
within 0.01 of the float model's and it runs faster here; otherwise the float model does. Both
precisions ship (the other as `<mode>.<precision>.onnx`) and are listed under "variants" with
their Dice and hash, so the app can time them on the machine that runs it and take the faster
one the card allows (app/pipeline/speed.py). Evaluation JSON/Markdown, speed and the training
curves are written beside the model for its card.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from sonoguide.pipeline.speed import DEFAULT_MAX_DICE_DROP
from sonoguide.training.bench import bench_interleaved, calibration_inputs, quantize_int8
from sonoguide.training.calibrate import calibrate_config
from sonoguide.training.evaluate import evaluate_config
from sonoguide.training.export import export_run
from sonoguide.training.train import REPO, Config, member_runs, repo_path, run_dir

MAX_DICE_LOSS = 0.01


def _dice(report: dict) -> dict[str, float]:
    return {k: v["dice_mean"] for k, v in report["sets"]["validation"]["classes"].items()
            if v["dice_mean"] is not None}


def _models_renamed(record, rename):
    """The record with every "model" entry (at any depth) passed through `rename`."""
    if isinstance(record, dict):
        return {k: rename(v) if k == "model" and isinstance(v, str)
                else _models_renamed(v, rename) for k, v in record.items()}
    if isinstance(record, list):
        return [_models_renamed(v, rename) for v in record]
    return record


def _repo_relative(path: str) -> str:
    """A path inside the repository as relative to it (no machine's path in a committed card)."""
    return str(Path(path).relative_to(REPO)) if Path(path).is_relative_to(REPO) else path


def ship(cfg: Config, root: str | Path | None = None) -> dict:
    run = run_dir(cfg)
    members = member_runs(cfg)
    histories = [json.loads((m / "history.json").read_text()) for m in members]
    name = cfg.get("name", run.name)
    fp32 = export_run(cfg, run, run / f"{name}.fp32.onnx", root)
    int8 = quantize_int8(fp32, run / f"{name}.int8.onnx", calibration_inputs(cfg, root))
    unsure = {v: calibrate_config(cfg, p, root=root) for v, p in (("fp32", fp32), ("int8", int8))}
    reports = {v: evaluate_config(cfg, p, root, run / f"{name}.{v}.eval.json")
               for v, p in (("fp32", fp32), ("int8", int8))}
    speed = bench_interleaved({"fp32": fp32, "int8": int8})
    d32, d8 = _dice(reports["fp32"]), _dice(reports["int8"])
    int8_ok = all(d8.get(k, 0) >= d - MAX_DICE_LOSS for k, d in d32.items())
    pick = "int8" if int8_ok and speed["int8"]["per_s"] > speed["fp32"]["per_s"] else "fp32"
    dest = repo_path(cfg["export"])
    shutil.copyfile(fp32 if pick == "fp32" else int8, dest)
    other = "int8" if pick == "fp32" else "fp32"
    other_dest = dest.with_name(f"{dest.stem}.{other}.onnx")
    shutil.copyfile(int8 if other == "int8" else fp32, other_dest)
    stem = dest.with_suffix("")
    shipped = _repo_relative(str(dest)) if dest.is_relative_to(REPO) else dest.name
    report = json.loads((run / f"{name}.{pick}.eval.json").read_text())
    # the run file's evaluation is the card's record of the shipped copy (the same bytes)
    Path(f"{stem}.eval.json").write_text(
        json.dumps(_models_renamed(report, lambda _: shipped), indent=1))
    shutil.copyfile(run / f"{name}.{pick}.eval.md", f"{stem}.eval.md")
    shutil.copyfile(members[0] / "curves.png", f"{stem}_curves.png")  # an ensemble: member 0
    dice = {"fp32": d32, "int8": d8}
    variants = [{"file": path.name, "precision": "float32" if v == "fp32" else "int8",
                 "dice": dice[v], "dice_set": f"validation ({cfg.get('name', run.name)} config)",
                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                 "bytes": path.stat().st_size}
                for v, path in ((pick, dest), (other, other_dest))]
    summary = {"shipped": pick, "path": dest.name, "unsure_levels": unsure[pick],
               "variants": variants, "max_dice_drop": DEFAULT_MAX_DICE_DROP,
               "dice_fp32": d32, "dice_int8": d8, "speed": speed,
               "members": len(members), "epochs": len(histories[0]),
               "train_seconds": round(sum(h["seconds"] for hist in histories for h in hist), 1)}
    Path(f"{stem}.ship.json").write_text(
        json.dumps(_models_renamed(summary, _repo_relative), indent=1))
    return summary
