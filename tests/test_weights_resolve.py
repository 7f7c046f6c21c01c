"""Per-net choice between official files and stand-ins, and the CLI's top-level wiring."""

import pytest

from ghostrt.cli import COMMANDS, main
from ghostrt.errors import GhostError
from ghostrt.weights.resolve import resolve_weights


def test_official_files_win_and_missing_ones_are_stand_ins(tmp_path):
    for name in ("G_unet_2blocks.pth", "backbone.pth", "2d106det-symbol.json"):
        (tmp_path / name).write_bytes(b"x")
    ws = resolve_weights(tmp_path, create_standins=False)
    assert ws.path("generator") == tmp_path / "G_unet_2blocks.pth"
    assert ws.path("arcface") == tmp_path / "backbone.pth"
    # the symbol file alone is not an MXNet pair: landmarks fall back to the stand-in
    assert sorted(ws.standin_models) == ["detector", "landmarks"]
    assert ws.path("detector") == tmp_path / "stand-in" / "scrfd_10g_bnkps.onnx"
    assert "STAND-IN" in ws.banner() and "detector" in ws.banner()


def test_complete_official_set_is_not_stand_in(tmp_path):
    for name in ("G_unet_3blocks.pth", "backbone.pth", "scrfd_10g_bnkps.onnx", "2d106det.onnx"):
        (tmp_path / name).write_bytes(b"x")
    ws = resolve_weights(tmp_path, num_blocks=3, create_standins=False)
    assert not ws.standin and ws.path("landmarks").name == "2d106det.onnx"
    assert "official" in ws.banner()


def test_bad_weights_dir_and_block_count(tmp_path):
    with pytest.raises(GhostError, match="does not exist"):
        resolve_weights(tmp_path / "missing")
    with pytest.raises(GhostError, match="1, 2 or 3"):
        resolve_weights(tmp_path, num_blocks=4)


def test_cli_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_export_cli_missing_weights_is_one_line_exit_2(tmp_path, capsys):
    code = main(["export", "arcface", "--weights", str(tmp_path / "backbone.pth"), "--out", str(tmp_path / "a.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "backbone.pth" in err[0] and "no such file" in err[0]
    assert not (tmp_path / "a.onnx").exists()
