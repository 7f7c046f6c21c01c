"""`ghostrt ui`'s command line: it binds to loopback unless told otherwise (no accounts: a wider bind is the
user's explicit choice and is announced), rejects impossible ports/limits with exit 2 before loading any net,
and picks cross-stream batching from what the generator really runs on (bench --streams measured no gain on
CPU cores, so auto is off there)."""

import sys
import types

import pytest

import ghostrt
import ghostrt.ui.app as ui_app
from ghostrt.cli import main
from ghostrt.cli.ui import batching_for, check_host
from ghostrt.errors import GhostError


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_flag(host):
    assert check_host(host, allow_remote=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.4", "example.org"])
def test_other_hosts_need_allow_remote_and_get_a_warning(host):
    with pytest.raises(GhostError, match="--allow-remote"):
        check_host(host, allow_remote=False)
    assert "WARNING" in check_host(host, allow_remote=True) and host in check_host(host, allow_remote=True)


def described(backend):
    return {"generator": {"backend": backend}, "detector": {"backend": "ort"}}


@pytest.mark.parametrize("backend, expected", [("trt", True), ("trt-rtx", True), ("openvino", False), ("ort", False)])
def test_auto_batching_follows_the_generator_backend(backend, expected):
    assert batching_for("auto", described(backend)) is expected
    assert batching_for("on", described(backend)) is True
    assert batching_for("off", described(backend)) is False


@pytest.fixture()
def no_server(monkeypatch):
    """Swapper.load, create_app and uvicorn replaced by recorders: the command's wiring, not a server."""
    seen = {"loads": 0}

    class FakeSwapper:
        standin_models = ["generator"]

        def __init__(self, backend):
            self.backend, self.closed = backend, False

        def describe(self):
            return described(self.backend)

        def close(self):
            self.closed = True

    def load(**kw):
        seen["loads"] += 1
        seen["sw"] = FakeSwapper("trt" if kw["backend"] == "trt" else "openvino")
        return seen["sw"]

    def create_app(sw, **kw):
        seen["app_options"] = kw
        return "app"

    monkeypatch.setattr(ghostrt.Swapper, "load", staticmethod(load))
    monkeypatch.setattr(ui_app, "create_app", create_app)
    monkeypatch.setitem(sys.modules, "uvicorn", types.SimpleNamespace(
        run=lambda app, host, port, log_level: seen.update(served=(app, host, port))))
    return seen


def test_ui_on_cpu_serves_loopback_without_batching(no_server, capsys):
    assert main(["ui", "--backend", "openvino", "--port", "7999"]) == 0
    out = capsys.readouterr().out
    assert no_server["served"] == ("app", "127.0.0.1", 7999)
    assert no_server["app_options"]["scheduler_options"] == {"batching": False}
    assert "cross-stream batching off (--batching auto, generator on openvino)" in out
    assert "STAND-IN" in out and no_server["sw"].closed


def test_ui_batching_on_a_gpu_engine_and_forced(no_server, capsys):
    assert main(["ui", "--backend", "trt"]) == 0
    assert no_server["app_options"]["scheduler_options"] == {"batching": True}
    assert main(["ui", "--backend", "openvino", "--batching", "on"]) == 0
    assert no_server["app_options"]["scheduler_options"] == {"batching": True}
    assert main(["ui", "--backend", "trt", "--no-batching"]) == 0
    assert no_server["app_options"]["scheduler_options"] == {"batching": False}
    assert "cross-stream batching off (--batching off)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0: not a loopback address; add --allow-remote to serve other machines"),
    (["--port", "70000"], "--port 70000: must lie in 1..65535"),
    (["--max-video-mb", "0"], "--max-image-mb and --max-video-mb must be at least 1"),
])
def test_bad_options_exit_2_with_one_line_before_loading(no_server, capsys, argv, message):
    assert main(["ui", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ghostrt: error: {message}"]
    assert no_server["loads"] == 0


def test_remote_host_with_the_flag_warns_on_stderr(no_server, capsys):
    assert main(["ui", "--host", "0.0.0.0", "--allow-remote"]) == 0
    assert "WARNING: serving on 0.0.0.0" in capsys.readouterr().err
    assert no_server["served"][1] == "0.0.0.0"
