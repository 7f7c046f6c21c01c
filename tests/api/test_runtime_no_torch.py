"""The runtime side must run where torch is not installed: importing any module of ghostrt.runtime (every
subpackage, walked), the public API or the CLI modules must not import torch, directly or through another module."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, pkgutil, sys
import ghostrt, ghostrt.cli, ghostrt.runtime as runtime
names = sorted(m.name for m in pkgutil.walk_packages(runtime.__path__, "ghostrt.runtime."))
names += ["ghostrt", "ghostrt.api", "ghostrt.loading"] + sorted(m.name for m in pkgutil.walk_packages(ghostrt.cli.__path__, "ghostrt.cli.") if not m.name.endswith("__main__"))
assert len(names) >= 40, names
failed = []
for name in names:
    importlib.import_module(name)
    if "torch" in sys.modules:
        failed.append(name)
        break
print("imported", len(names))
print("TORCH" if failed else "CLEAN", *failed)
"""


def test_importing_every_runtime_module_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CLEAN" in out.stdout, f"torch imported by {out.stdout.split()[-1]}"


def test_swap_help_does_not_import_torch():
    code = ("import sys\nfrom ghostrt.cli import main\n"
            "try:\n    main(['swap', 'image', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'CLEAN')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--source" in out.stdout and out.stdout.strip().endswith("CLEAN")
