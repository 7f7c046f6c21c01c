"""Test-wide setup: C2PA's local test signer goes to a temporary config folder, never the user's
~/.config/ghostrt (every written output is signed, so most tests create or reuse it)."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _c2pa_config(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GHOSTRT_CONFIG_DIR", str(tmp_path_factory.mktemp("ghostrt-config")))
    for env in ("GHOSTRT_SIGN_CERT", "GHOSTRT_SIGN_KEY"):
        mp.delenv(env, raising=False)
    yield
    mp.undo()
