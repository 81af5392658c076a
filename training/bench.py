"""Inference speed through ONNX Runtime on CPU (2 intra-op threads, batch 1), and int8 variants.

Speed is printed as median / p95 milliseconds and median inferences per second; the machine may
be shared, so the host load average is printed with it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from sonoguide.training.export import check_contract, ort_session


def bench(path: str | Path, runs: int = 200, warmup: int = 20, threads: int = 2) -> dict:
    session = ort_session(path, threads=threads)
    contract = check_contract(session)
    x = np.random.default_rng(0).normal(0, 1, (1, 1, contract.height, contract.width))
    feed = {session.get_inputs()[0].name: x.astype(np.float32)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000
    median = float(np.median(ms))
    return {"model": str(path), "input": [contract.height, contract.width],
            "median_ms": round(median, 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "per_s": round(1000 / median, 1), "threads": threads, "runs": runs,
            "loadavg_1min": round(os.getloadavg()[0], 2)}


def bench_interleaved(paths: dict[str, Path], rounds: int = 5, runs: int = 60) -> dict[str, dict]:
    """Time several models in alternating rounds so a shared machine's load hits all alike.

    Each model's figures are the median over rounds of each round's median / p95.
    """
    per: dict[str, list[dict]] = {k: [] for k in paths}
    for _ in range(rounds):
        for key, path in paths.items():
            per[key].append(bench(path, runs=runs, warmup=10))
    out = {}
    for key, rows in per.items():
        median = float(np.median([r["median_ms"] for r in rows]))
        out[key] = {**rows[-1], "median_ms": round(median, 2),
                    "p95_ms": round(float(np.median([r["p95_ms"] for r in rows])), 2),
                    "per_s": round(1000 / median, 1), "runs": rounds * runs}
    return out


class _Calibration(CalibrationDataReader):
    def __init__(self, name: str, inputs: np.ndarray):
        self.name, self.items = name, iter(inputs)

    def get_next(self) -> dict | None:
        x = next(self.items, None)
        return None if x is None else {self.name: x[None].astype(np.float32)}


def quantize_int8(src: str | Path, dst: str | Path, calibration: np.ndarray) -> Path:
    """Static int8 (QDQ, per-channel weights) calibrated on preprocessed inputs [K, 1, H, W].

    Metadata (the contract) is carried over, so the quantized file is a drop-in model.
    """
    import onnx

    src, dst = Path(src), Path(dst)
    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    name = ort_session(src).get_inputs()[0].name
    try:
        quantize_static(str(pre), str(dst), _Calibration(name, calibration),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(dst))
    check_contract(ort_session(dst))
    return dst


def format_row(r: dict) -> str:
    return (f"{Path(r['model']).name}: {r['input'][0]}x{r['input'][1]} median {r['median_ms']} ms"
            f", p95 {r['p95_ms']} ms, {r['per_s']} inferences/s ({r['threads']} threads, "
            f"load {r['loadavg_1min']})")


def calibration_inputs(cfg, root=None, n: int = 32) -> np.ndarray:
    """Preprocessed training inputs (never validation ones) for int8 calibration."""
    from sonoguide.paths import data_root
    from sonoguide.training.data import preprocess
    from sonoguide.training.train import load_sources

    c = cfg.contract()
    samples = load_sources(cfg["train"], c.classes, data_root(root), (c.height, c.width))
    pick = np.random.default_rng(0).permutation(len(samples))[:n]
    return np.stack([preprocess(samples[i].model_view()[0], c)[None] for i in pick])


def bench_models(models: list[str], threads: int = 2, runs: int = 300, cfg=None,
                 data_root=None) -> list[dict]:
    """Print and return the speed of each model; with cfg, also of an int8 copy of each."""
    rows = []
    for m in models:
        rows.append(bench(m, runs=runs, threads=threads))
        print(format_row(rows[-1]), flush=True)
        if cfg is not None:
            q = quantize_int8(m, Path(m).with_suffix(".int8.onnx"),
                              calibration_inputs(cfg, data_root))
            rows.append(bench(q, runs=runs, threads=threads))
            print(format_row(rows[-1]), flush=True)
    return rows
