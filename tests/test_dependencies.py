"""Installable everywhere the app runs: exactly one ONNX Runtime for each platform, and never a
Qt binding known to break the app."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

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


# PySide6 6.12.0 drops a reference to True on every signal emit: the live view aborts within
# seconds (a refcount can only show it where True is not immortal, Python < 3.12). pyproject pins
# PySide6-Essentials below 6.12; this range is what no install may have until a fixed release
# has been checked and the pin moved.
BAD_PYSIDE = SpecifierSet(">=6.12")


def bad_pyside(version: str) -> bool:
    """Is this PySide6 (or shiboken6) version one the app must not run on?"""
    return BAD_PYSIDE.contains(Version(version), prereleases=True)


def _installed(*names: str) -> str:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    pytest.fail(f"none of {names} is installed")


@pytest.mark.parametrize("version, bad", [
    ("6.12.0", True), ("6.12.1", True), ("6.13.0rc1", True),
    ("6.11.1", False), ("6.11.3", False), ("6.6.0", False),
])
def test_the_check_knows_the_bad_pyside6(version, bad):
    assert bad_pyside(version) is bad


def test_the_installed_qt_binding_is_not_a_known_bad_one():
    for names in (("PySide6-Essentials", "PySide6"), ("shiboken6",)):
        version = _installed(*names)
        assert not bad_pyside(version), \
            f"{names[0]} {version} drops a reference per signal emit: install one below 6.12"


def test_the_pin_keeps_the_bad_pyside6_out():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (pin,) = [Requirement(r) for r in declared if Requirement(r).name == "PySide6-Essentials"]
    assert not pin.specifier.contains("6.12.0", prereleases=True)
    assert pin.specifier.contains("6.11.1")
