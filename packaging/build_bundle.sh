#!/usr/bin/env bash
# Build SonoGuide's one-folder desktop bundle with PyInstaller and smoke-test it.
#
#   bash packaging/build_bundle.sh            # -> dist/sonoguide/sonoguide (+ its folder)
#   SMOKE_ONLY=1 bash packaging/build_bundle.sh   # re-run only the smoke test
#
# The bundle is built in an environment of its own (build/bundle-venv) where SonoGuide is
# installed from its wheel without the training extras, so no torch can slip in; then the
# bundle runs `sonoguide --headless --source phantom --max-frames 100 --report r.json` and the
# script prints its size and start-up time. Not part of the test run (it takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUILD=build/bundle
VENV=build/bundle-venv
DIST=dist

if [ -z "${SMOKE_ONLY:-}" ]; then
  rm -rf "$BUILD" "$DIST/sonoguide"
  mkdir -p "$BUILD/wheel"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  if ! "$VENV/bin/pip" install -q --upgrade "pyinstaller>=6.10" setuptools wheel; then
    # CI calls this when time allows; a machine that cannot fetch PyInstaller skips, says so
    echo "PyInstaller could not be installed: the bundle was not built" >&2
    [ -n "${BUNDLE_OPTIONAL:-}" ] && exit 0
    exit 1
  fi
  "$VENV/bin/pip" wheel -q --no-deps --no-build-isolation -w "$BUILD/wheel" .
  "$VENV/bin/pip" install -q --force-reinstall --no-deps "$BUILD"/wheel/sonoguide-*.whl
  "$VENV/bin/pip" install -q "$BUILD"/wheel/sonoguide-*.whl  # its dependencies, not torch
  if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "torch is installed in $VENV: the bundle must not carry it" >&2
    exit 1
  fi
  (cd packaging && "../$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
      --distpath "../$DIST" --workpath "../$BUILD/work" sonoguide.spec)
fi

BUNDLE="$DIST/sonoguide"
echo "bundle: $BUNDLE ($(du -sh "$BUNDLE" | cut -f1), $(find "$BUNDLE" -type f | wc -l) files)"
if find "$BUNDLE" -path '*torch*' | grep -q .; then
  echo "torch found in the bundle" >&2
  exit 1
fi
SMOKE=$(mktemp -d)
# run from an empty folder with no checkout around it and a home of its own
export HOME="$SMOKE/home" QT_QPA_PLATFORM=offscreen
mkdir -p "$HOME"
BIN="$(pwd)/$BUNDLE/sonoguide"
now() { date +%s.%N; }
since() { "$VENV/bin/python" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
START=$(now)
(cd "$SMOKE" && "$BIN" --version)
echo "start-up (to --version): $(since "$START") s"
START=$(now)
(cd "$SMOKE" && "$BIN" --headless --source phantom --max-frames 100 --report r.json)
TOTAL=$(since "$START")
"$VENV/bin/python" - "$SMOKE/r.json" "$TOTAL" "$(pwd)/$BUNDLE" <<'PY'
import json, sys
report, total, bundle = json.load(open(sys.argv[1])), float(sys.argv[2]), sys.argv[3]
model = report.get("model") or {}
assert report["frames_inferred"] > 0, "the bundle inferred nothing"
assert str(model.get("path", "")).startswith(bundle), f"model not from the bundle: {model}"
print(f"headless smoke run: {total:.1f} s in all, of which start-up (to the first frame) "
      f"{total - report['wall_s']:.1f} s; {report['frames_inferred']} frames inferred with "
      f"{model['name']} ({model['version']}) on {report['provider']}, from the bundle")
PY
