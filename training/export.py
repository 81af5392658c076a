"""Torch network -> ONNX file that meets app/pipeline/contract.py, checked before it is kept.

The model is written to a temporary file, its metadata and shapes are read back through ONNX
Runtime (exactly as the app will read them) and its outputs compared with torch's on sample
inputs; only then is it moved into place. A broken model never replaces a good one.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from sonoguide.pipeline.contract import PRESENCE_OUTPUT, ContractError, ModelContract

INPUT_NAME, LOGITS_NAME = "image", "logits"


class ExportError(RuntimeError):
    """ONNX Runtime disagrees with torch on the same input."""


def ort_session(path: str | Path, threads: int = 2) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_contract(session: ort.InferenceSession) -> ModelContract:
    """Read the contract as the app does; raise ContractError if the model breaks it."""
    contract = ModelContract.from_metadata(session.get_modelmeta().custom_metadata_map)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ContractError(f"model must take one input, it takes {len(inputs)}")
    contract.check_shapes(list(inputs[0].shape), list(outputs[0].shape))
    for extra in outputs[1:]:
        if extra.name != PRESENCE_OUTPUT:
            raise ContractError(f"unexpected output {extra.name!r}; only {PRESENCE_OUTPUT!r} "
                                "may follow the logits")
        shape = list(extra.shape)
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != len(contract.classes)):
            raise ContractError(f"presence output must be [N,{len(contract.classes)}], "
                                f"model has {shape}")
    return contract


def _torch_outputs(model: torch.nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    outs = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in outs]


def export_onnx(model: torch.nn.Module, contract: ModelContract, path: str | Path,
                samples: np.ndarray | None = None, atol: float = 2e-3) -> Path:
    """Write `model` to `path` with the contract metadata; verify it or raise and write nothing.

    samples: preprocessed inputs [K, 1, H, W] float32 to compare torch and ORT on (random
    inputs are added either way). Raises ContractError or ExportError.
    """
    path = Path(path)
    model = model.cpu().eval()
    dummy = torch.zeros(1, 1, contract.height, contract.width)
    first = _torch_outputs(model, dummy.numpy())
    if first[0].shape[1] != len(contract.classes):
        raise ContractError(f"network outputs {first[0].shape[1]} channels but the contract "
                            f"names {len(contract.classes)} classes {contract.classes}")
    if first[0].shape[2:] != (contract.height, contract.width):
        raise ContractError(f"network output {first[0].shape[2:]} is not the input size "
                            f"{(contract.height, contract.width)}")
    names = [LOGITS_NAME] + ([PRESENCE_OUTPUT] if len(first) > 1 else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():  # the TorchScript exporter warns it is legacy
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (dummy,), tmp, dynamo=False, opset_version=17,
                              input_names=[INPUT_NAME], output_names=names,
                              dynamic_axes={n: {0: "N"} for n in [INPUT_NAME, *names]})
        proto = onnx.load(tmp)
        for key, value in contract.to_metadata().items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        verify_against_torch(tmp, model, samples, atol)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def verify_against_torch(path: str | Path, model: torch.nn.Module,
                         samples: np.ndarray | None = None, atol: float = 2e-3) -> None:
    session = ort_session(path)
    contract = check_contract(session)
    rng = np.random.default_rng(0)
    shape = (2, 1, contract.height, contract.width)
    batches = [rng.normal(0, 1, shape).astype(np.float32)]
    if samples is not None and len(samples):
        batches.append(np.ascontiguousarray(samples[:4], np.float32))
    for x in batches:
        want = _torch_outputs(model, x)
        got = session.run(None, {session.get_inputs()[0].name: x})
        for name, w, g in zip([o.name for o in session.get_outputs()], want, got, strict=True):
            err = float(np.max(np.abs(w - g)))
            if not np.isfinite(err) or err > atol:
                raise ExportError(f"ONNX Runtime output {name!r} differs from torch by {err:.2e} "
                                  f"(> {atol:.0e})")
        # Agreement on the decision matters more than on raw logits.
        agree = float((want[0].argmax(1) == got[0].argmax(1)).mean())
        if agree < 0.999:
            raise ExportError(f"ONNX Runtime and torch agree on only {agree:.2%} of pixels")


def export_run(cfg, run: str | Path | None = None, output: str | Path | None = None,
               root: str | Path | None = None) -> Path:
    """Export a training run's last checkpoint (an ensemble config: the mean of its members'),
    verified on real validation inputs."""
    from sonoguide.training.data import preprocess
    from sonoguide.training.nets import MemberMean
    from sonoguide.training.train import (
        data_root,
        load_sources,
        load_trained,
        member_runs,
        repo_path,
    )

    nets = [load_trained(r)[0] for r in member_runs(cfg, run)]
    net = nets[0] if len(nets) == 1 else MemberMean(nets)
    contract = cfg.contract()
    val = load_sources(cfg["val"], contract.classes, data_root(root),
                       (contract.height, contract.width))[:4]
    inputs = [preprocess(s.model_view()[0], contract)[None] for s in val]
    samples = np.stack(inputs) if inputs else None
    return export_onnx(net, contract, repo_path(output or cfg["export"]), samples)
