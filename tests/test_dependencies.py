"""Installable everywhere the app runs: exactly one ONNX Runtime for each platform."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _runtimes(requirements: list[str], platform: str, machine: str) -> list[str]:
    env = {"sys_platform": platform, "platform_machine": machine, "extra": ""}
    names = [Requirement(r) for r in requirements]
    return sorted(r.name for r in names if r.name.startswith("onnxruntime")
                  and (r.marker is None or r.marker.evaluate(env)))


@pytest.mark.parametrize("platform, machine, want", [
    ("linux", "x86_64", ["onnxruntime-gpu"]),
    ("win32", "AMD64", ["onnxruntime-gpu"]),
    ("darwin", "arm64", ["onnxruntime"]),  # no onnxruntime-gpu wheels for macOS
    ("darwin", "x86_64", ["onnxruntime"]),
    ("linux", "aarch64", ["onnxruntime"]),
])
def test_exactly_one_onnx_runtime_per_platform(platform, machine, want):
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert _runtimes(declared, platform, machine) == want
    installed = importlib.metadata.requires("sonoguide") or []  # what pip really installs
    assert _runtimes([r for r in installed if "extra ==" not in r], platform, machine) == want, \
        "the installed metadata is older than pyproject.toml: run the README's set-up again"
