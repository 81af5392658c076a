"""python -m sonoguide.training
{split,train,evaluate,region,export,calibrate,compare,curve,bench,ship} (--help)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _override(cfg, a: argparse.Namespace) -> None:
    """The command line's --epochs and --threads win over the config's."""
    if a.epochs:
        cfg.raw["epochs"] = a.epochs
    if a.threads:
        cfg.raw["threads"] = a.threads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sonoguide.training", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train (or resume) from a config")
    t.add_argument("--config", required=True)
    t.add_argument("--data-root", help="folder holding the datasets (default $SONOGUIDE_DATA_ROOT, "
                   "else ../shared/data beside the repository)")
    t.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    t.add_argument("--epochs", type=int, help="override the config's epochs")
    t.add_argument("--out", help="override the config's run folder")
    t.add_argument("--threads", type=int, help="CPU threads (default: config or 2); use 1 "
                   "each when two runs share 2 cores, oversubscribed threads crawl")

    e = sub.add_parser("export", help="export a trained run to a contract ONNX model")
    e.add_argument("--config", required=True)
    e.add_argument("--run", help="run folder (default: the config's out)")
    e.add_argument("--output", help="ONNX path (default: the config's export)")
    e.add_argument("--data-root")

    v = sub.add_parser("evaluate", help="metrics of an ONNX model on a config's validation data")
    v.add_argument("--config", required=True)
    v.add_argument("--model", required=True)
    v.add_argument("--data-root")
    v.add_argument("--output", help="JSON path; a Markdown table is written beside it")
    v.add_argument("--steadiness", action="store_true",
                   help="also the steadiness figure: mean IoU of each class's drawn mask between "
                   "consecutive frames of small-motion clips and phantom sweeps (slower)")
    v.add_argument("--steadiness-frames", type=int, default=8, help="frames per motion clip")
    v.add_argument("--steadiness-smoothing", type=float, default=1.0,
                   help="the app's temporal smoothing while playing a clip (1.0 = off, each "
                   "frame on its own; the live app uses 0.5)")
    v.add_argument("--sure-hold", type=float, help="the analyzer's sure_hold while the clips "
                   "play (default: the app's); 0 turns the hold off, to see what it costs")

    k = sub.add_parser("calibrate", help="set the model's unsure levels from held-out outlines "
                       "(written into the ONNX metadata the app reads)")
    k.add_argument("--config", required=True)
    k.add_argument("--model", required=True)
    k.add_argument("--set", default=None, help="evaluation set to calibrate on (default: the "
                   "config's calibrate.set, else its validation data)")
    k.add_argument("--budget", type=float, default=None,
                   help="share of correct outlines that may be drawn unsure (default 0.10)")
    k.add_argument("--dry-run", action="store_true", help="report only, leave the model as is")
    k.add_argument("--data-root")

    c = sub.add_parser("compare", help="train+evaluate+bench several nets x losses")
    c.add_argument("--config", required=True)
    c.add_argument("--nets", default="unet,linknet,fcn")
    c.add_argument("--losses", default="combo,ce+lovasz")
    c.add_argument("--epochs", type=int, default=8)
    c.add_argument("--out", default="runs/compare")
    c.add_argument("--data-root")
    c.add_argument("--device")
    c.add_argument("--threads", type=int)
    c.add_argument("--rebench", action="store_true",
                   help="only time the already compared models again and redraw")

    lc = sub.add_parser("curve", help="learning curve: train+evaluate on nested subsets of the "
                        "real training split (how Dice grows with labelled images)")
    lc.add_argument("--config", required=True)
    lc.add_argument("--sizes", default="40,81,163", help="real training images per run")
    lc.add_argument("--epochs", type=int, help="override the config's epochs")
    lc.add_argument("--target", default="", help="e.g. nerve=0.72,vessel=0.82")
    lc.add_argument("--out", default="runs/curve")
    lc.add_argument("--seed", type=int, default=0)
    lc.add_argument("--threads", type=int, help="CPU threads (default: config or 2)")
    lc.add_argument("--data-root")
    lc.add_argument("--device")
    lc.add_argument("--add-point", nargs=3, metavar=("IMAGES", "EVAL_JSON", "LABEL"),
                    help="no training: put another recipe's evaluated model beside the curve "
                    "in --out (its curve.json, or a curve JSON file), e.g. 1764 "
                    "runs/x/plexus.fp32.eval.json 'uns-nerve pretraining'")

    b = sub.add_parser("bench", help="ONNX Runtime CPU speed, batch 1 (and an int8 variant)")
    b.add_argument("models", nargs="+")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--runs", type=int, default=300)
    b.add_argument("--int8-config", help="config whose training data calibrates an int8 copy")
    b.add_argument("--data-root")

    r = sub.add_parser("ship", help="train, export, evaluate, bench fp32 vs int8, keep the "
                       "faster one whose Dice stays within 0.01: the one reproducing command")
    r.add_argument("--config", required=True)
    r.add_argument("--data-root")
    r.add_argument("--device")

    s = sub.add_parser("split", help="write a seeded train/val split file (once; never change "
                       "it); uns-nerve is split by subject into train/val/test")
    s.add_argument("--config", help="config whose first training source is split")
    s.add_argument("--dataset", choices=["uns-nerve"],
                   help="split this dataset by subject instead of a config's source")
    s.add_argument("--root", help="dataset folder under the data root (default: --dataset)")
    s.add_argument("--output", required=True)
    s.add_argument("--stratify", default="vessel")
    s.add_argument("--fractions", default="0.7,0.15,0.15",
                   help="train,val,test shares of the subjects (by-subject splits)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--data-root")

    g = sub.add_parser("region", help="how an ONNX model's drawn nerve sits in a region-labelled "
                       "set (uns-nerve: one outline around the whole plexus)")
    g.add_argument("--model", required=True)
    g.add_argument("--dataset", default="uns-nerve", help="folder under the data root")
    g.add_argument("--split", default="training/splits/uns-nerve.json")
    g.add_argument("--part", default="test")
    g.add_argument("--target", default="nerve", help="model class compared with the region")
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--output", help="JSON path; a Markdown table is written beside it")
    g.add_argument("--data-root")

    w = sub.add_parser("worst", help="picture of the validation frames a model gets most "
                       "wrong (truth and the app's drawn outlines), for its card")
    w.add_argument("--config", required=True)
    w.add_argument("--model", required=True)
    w.add_argument("--out", required=True, help="PNG path")
    w.add_argument("--k", type=int, default=6)
    w.add_argument("--data-root")

    a = p.parse_args(argv)
    from sonoguide.training.train import Config

    cfg = Config.load(a.config) if getattr(a, "config", None) else None
    if a.cmd == "train":
        from sonoguide.training.train import train_all

        _override(cfg, a)
        if a.out:
            cfg.raw["out"] = a.out
        print(*train_all(cfg, a.data_root, a.device), sep="\n")
    elif a.cmd == "export":
        from sonoguide.training.export import export_run

        print(export_run(cfg, a.run, a.output, a.data_root))
    elif a.cmd == "evaluate":
        from sonoguide.training.evaluate import evaluate_config

        steady = None
        if a.steadiness:
            from sonoguide.training.steadiness import SteadinessOptions

            steady = SteadinessOptions(frames=a.steadiness_frames,
                                       smoothing=a.steadiness_smoothing,
                                       sure_hold=a.sure_hold)
        report = evaluate_config(cfg, a.model, a.data_root, a.output, steadiness=steady)
        print(report["markdown"])
    elif a.cmd == "calibrate":
        from sonoguide.training.calibrate import calibrate_config, report_lines

        report = calibrate_config(cfg, a.model, a.set, a.budget, a.data_root,
                                  write=not a.dry_run)
        print("\n".join(report_lines(report)))
    elif a.cmd == "compare":
        from sonoguide.training.compare import compare

        if a.threads:
            cfg.raw["threads"] = a.threads
        if a.rebench:
            from sonoguide.training.compare import rebench

            print(rebench(Path(a.out), cfg.get("name", "")))
            return 0
        print(compare(cfg, a.nets.split(","), a.losses.split(","), a.epochs, Path(a.out),
                      a.data_root, a.device))
    elif a.cmd == "curve" and a.add_point:
        from sonoguide.training.learning_curve import add_point, markdown

        out = Path(a.out)
        images, eval_json, label = a.add_point
        print(markdown(add_point(out if out.suffix == ".json" else out / "curve.json",
                                 int(images), Path(eval_json), label)))
    elif a.cmd == "curve":
        from sonoguide.training.learning_curve import learning_curve, markdown

        _override(cfg, a)
        target = {k: float(v) for k, v in (t.split("=") for t in a.target.split(",") if t)}
        report = learning_curve(cfg, [int(n) for n in a.sizes.split(",")], Path(a.out),
                                a.data_root, a.device, target, a.seed)
        print(markdown(report))
    elif a.cmd == "bench":
        from sonoguide.training.bench import bench_models

        calib = Config.load(a.int8_config) if a.int8_config else None
        bench_models(a.models, a.threads, a.runs, cfg=calib, data_root=a.data_root)
    elif a.cmd == "ship":
        from sonoguide.training.ship import ship
        from sonoguide.training.train import train_all

        train_all(cfg, a.data_root, a.device)
        print(json.dumps(ship(cfg, a.data_root), indent=1))
    elif a.cmd == "split":
        from sonoguide.paths import data_root
        from sonoguide.training.data import (
            FolderSpec,
            list_pairs,
            load_folder,
            make_split,
            make_subject_split,
        )

        if cfg is None and not a.dataset:
            p.error("split needs --config or --dataset")
        src = ({"kind": a.dataset, "root": a.root or a.dataset} if a.dataset
               else cfg["train"][0])
        spec = FolderSpec.from_config(src, base=data_root(a.data_root))
        if spec.layout == "uns-nerve":
            fractions = tuple(float(f) for f in a.fractions.split(","))
            split = make_subject_split([n for n, _, _ in list_pairs(spec)], fractions, a.seed,
                                       dataset=src.get("root", "uns-nerve"))
        else:
            split = make_split(load_folder(spec, cfg.classes), cfg.classes.index(a.stratify),
                               seed=a.seed)
        Path(a.output).write_text(json.dumps(split, indent=1) + "\n")
        print(f"{a.output}: " + ", ".join(f"{k} {len(split[k])}" for k in
                                          ("train", "val", "test") if k in split))
    elif a.cmd == "region":
        from sonoguide.training.evaluate import region_markdown, region_report_split

        report = region_report_split(a.model, a.dataset, a.split, a.part, a.target,
                                     a.data_root, a.threads, a.output)
        print(region_markdown(report, f"{a.dataset} {a.part} part"))
    elif a.cmd == "worst":
        from sonoguide.paths import data_root
        from sonoguide.training.train import load_sources
        from sonoguide.training.worst_frames import worst_frames_figure

        c = cfg.contract()
        samples = load_sources(cfg["val"], c.classes, data_root(a.data_root), (c.height, c.width))
        picked = worst_frames_figure(a.model, samples, c.classes, a.out, a.k,
                                     f"{Path(a.model).name} on {cfg.get('name')} validation")
        print(f"{a.out}: " + ", ".join(samples[i].name for i in picked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
