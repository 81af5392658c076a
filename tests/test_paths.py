"""No path of a development machine in the code, configs, docs or model cards."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# home and work folders of Linux, macOS and Windows machines (system folders such as /tmp,
# /dev or /proc are fine: they are the same on every machine)
MACHINE_PATH = re.compile(r"(?<![\w.])(/work/|/home/\w|/Users/\w|/root/|[A-Za-z]:\\\\Users\\\\)")
TEXT = (".py", ".md", ".json", ".toml", ".txt", ".cfg", ".yaml", ".yml", ".spec", "")


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / name for name in out.splitlines() if Path(name).suffix in TEXT]


def test_no_absolute_path_of_a_development_machine():
    found = []
    for path in tracked_files():
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:80]}")
    assert not found, "\n".join(found)


def test_the_check_finds_such_a_path():
    assert MACHINE_PATH.search('DATA = "/home/alice/data"')
    assert MACHINE_PATH.search("models at /work/main/models")
    assert not MACHINE_PATH.search("temporary files in /tmp/x, devices in /dev/video0")
