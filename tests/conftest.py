"""Test-wide setup: C2PA's local test signer goes to a temporary config folder, never the user's
~/.config/ghostrt (every written output is signed, so most tests create or reuse it)."""

import sys
from pathlib import Path

import pytest

# The tests mirror the package's folders (tests/io, tests/swap, ...); shared helpers and fixtures are imported
# by their bare module names (`from test_swap_image import onnx_files`) from any folder, as pytest's default
# import mode names each test module.
for _folder in sorted(p for p in Path(__file__).parent.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))


@pytest.fixture(autouse=True, scope="session")
def _c2pa_config(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GHOSTRT_CONFIG_DIR", str(tmp_path_factory.mktemp("ghostrt-config")))
    for env in ("GHOSTRT_SIGN_CERT", "GHOSTRT_SIGN_KEY"):
        mp.delenv(env, raising=False)
    yield
    mp.undo()
