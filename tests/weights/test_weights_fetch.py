"""`ghostrt weights fetch` against a loopback HTTP server: download, pin sha256, verify, refuse changes."""

import http.server
import json
import threading
from functools import partial

import pytest

from ghostrt.cli import main
from ghostrt.errors import GhostError
from ghostrt.weights.fetch import OfficialFile, fetch, official_files, sha256_file


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_manifest_names_every_official_file():
    names = {f.name for f in official_files()}
    assert names == {"G_unet_1block.pth", "G_unet_2blocks.pth", "G_unet_3blocks.pth", "backbone.pth",
                     "scrfd_10g_bnkps.onnx", "2d106det-symbol.json", "2d106det-0000.params"}
    assert all(f.url.startswith("https://") for f in official_files())


def test_fetch_pins_then_verifies_then_refuses_a_changed_file(server, tmp_path):
    root, base = server
    (root / "backbone.pth").write_bytes(b"x" * 5000)
    files = [OfficialFile("backbone.pth", "arcface", f"{base}/backbone.pth")]
    dest = tmp_path / "w"
    dest.mkdir()
    record = fetch(dest, files, log=lambda *_: None)
    assert (dest / "backbone.pth").read_bytes() == b"x" * 5000
    assert record["backbone.pth"]["sha256"] == sha256_file(dest / "backbone.pth")
    assert json.loads((dest / "fetched.json").read_text()) == record
    fetch(dest, files, log=lambda *_: None)  # verifies, no change
    (dest / "backbone.pth").write_bytes(b"y" * 5000)
    with pytest.raises(GhostError, match="differs from the pinned"):
        fetch(dest, files, log=lambda *_: None)


def test_offline_fetch_fails_in_one_line_and_leaves_nothing(tmp_path, capsys):
    dest = tmp_path / "w"
    dest.mkdir()
    files = [OfficialFile("backbone.pth", "arcface", "http://127.0.0.1:9/backbone.pth")]
    with pytest.raises(GhostError) as err:
        fetch(dest, files, timeout=5, log=lambda *_: None)
    msg = str(err.value)
    assert "\n" not in msg and "by hand" in msg and str(dest) in msg
    assert list(dest.iterdir()) == []


def test_fetch_cli_missing_folder_exits_2(tmp_path, capsys):
    assert main(["weights", "fetch", "--weights-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "does not exist" in err[0]
