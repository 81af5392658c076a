"""The live app must run where torch is not installed: nothing under app/ may import it."""

import os
import subprocess
import sys
import textwrap


def test_app_never_imports_torch() -> None:
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import app
        names = [m.name for m in pkgutil.walk_packages(app.__path__, "app.")]
        for name in names:
            importlib.import_module(name)
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print(len(names), "modules;", "torch imported" if leaked else "no torch")
        sys.exit(1 if leaked else 0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no torch" in proc.stdout
