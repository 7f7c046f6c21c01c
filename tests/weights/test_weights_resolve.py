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


# ------------------------------------------------------------------------ stand-ins known wherever they lie

OFFICIAL_STANDIN_FILES = {"G_unet_1block.pth", "G_unet_2blocks.pth", "G_unet_3blocks.pth", "backbone.pth",
                          "scrfd_10g_bnkps.onnx", "2d106det-symbol.json", "2d106det-0000.params"}


@pytest.fixture(scope="module")
def small_standins(tmp_path_factory):
    """The detector and landmark stand-ins of the default seed, written by `ghostrt weights stand-in --out D`
    (only the small parts: the generator and ArcFace are hundreds of MB)."""
    folder = tmp_path_factory.mktemp("standin-out")
    assert main(["weights", "stand-in", "--out", str(folder), "--parts", "detector,landmarks"]) == 0
    assert (folder / "standin.json").is_file()
    return folder


def test_the_checksum_table_covers_every_file_the_writer_makes():
    """A stand-in file missing from the table would pass for trained weights once copied out of its folder."""
    import json

    from ghostrt.weights.standin import CHECKSUMS

    table = json.loads(CHECKSUMS.read_text())
    assert set(table) == OFFICIAL_STANDIN_FILES
    assert all(len(e["sha256"]) == 64 and e["size"] > 0 for e in table.values())


@pytest.mark.slow
def test_the_checksum_table_is_what_the_default_seed_writes_now(tmp_path):
    """Every stand-in regenerated from seed 0 (~2.5 GB, all generator depths) hashes to exactly the committed
    table: changing a stand-in writer without `write_checksum_table` fails here instead of going stale."""
    import json

    from ghostrt.weights.standin import CHECKSUMS, checksum_table, write_standins

    write_standins(tmp_path, seed=0, log=lambda *_: None)
    assert checksum_table(tmp_path) == json.loads(CHECKSUMS.read_text())


def test_weights_standin_cli_rejects_an_unknown_part(tmp_path, capsys):
    assert main(["weights", "stand-in", "--out", str(tmp_path), "--parts", "detector,vae"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--parts" in err[0] and not any(tmp_path.iterdir())


def test_standin_files_are_the_committed_checksums(small_standins):
    """The table is deterministic content, not a guess: the files written now hash to it."""
    from ghostrt.checksum import sha256_file
    from ghostrt.weights.standin import known_checksums

    known = known_checksums()
    for name in ("scrfd_10g_bnkps.onnx", "2d106det-symbol.json", "2d106det-0000.params"):
        path = small_standins / name
        assert sha256_file(path) in known[path.stat().st_size]


def test_a_marked_standin_folder_passed_as_weights_dir_is_stand_in(small_standins, tmp_path):
    for name in ("G_unet_2blocks.pth", "backbone.pth"):          # official names, in the marked folder
        (small_standins / name).write_bytes(b"x")
    lines = []
    ws = resolve_weights(small_standins, create_standins=False, log=lines.append)
    assert sorted(ws.standin_models) == ["arcface", "detector", "generator", "landmarks"]
    assert ws.path("detector") == small_standins / "scrfd_10g_bnkps.onnx"    # used where it lies, said so
    assert all("standin.json marks the folder" in line for line in lines) and len(lines) == 4
    assert "STAND-IN" in ws.banner()


def test_copied_standin_files_without_the_marker_are_known_by_content(small_standins, tmp_path):
    import shutil

    for name in ("scrfd_10g_bnkps.onnx", "2d106det-symbol.json", "2d106det-0000.params"):
        shutil.copy(small_standins / name, tmp_path / name)
    for name in ("G_unet_2blocks.pth", "backbone.pth"):
        (tmp_path / name).write_bytes(b"x")
    lines = []
    ws = resolve_weights(tmp_path, create_standins=False, log=lines.append)
    assert sorted(ws.standin_models) == ["detector", "landmarks"]
    assert len(lines) == 2 and all("its sha256 is a stand-in's" in line for line in lines)
    # one changed byte: no longer the stand-in (content, not the name, decides)
    data = bytearray((tmp_path / "scrfd_10g_bnkps.onnx").read_bytes())
    data[-1] ^= 1
    (tmp_path / "scrfd_10g_bnkps.onnx").write_bytes(bytes(data))
    assert sorted(resolve_weights(tmp_path, create_standins=False, log=lambda *_: None).standin_models) == \
        ["landmarks"]


def test_a_renamed_standin_without_the_marker_is_still_known(small_standins, tmp_path):
    """The content decides, not the name: the stand-in detector renamed, and the stand-in detector put under the
    official ONNX landmark name (2d106det.onnx), are both still stand-ins."""
    import shutil

    from ghostrt.weights.standin import is_standin_file

    shutil.copy(small_standins / "scrfd_10g_bnkps.onnx", tmp_path / "my_detector.onnx")
    assert is_standin_file(tmp_path / "my_detector.onnx") == "its sha256 is a stand-in's"
    shutil.copy(small_standins / "scrfd_10g_bnkps.onnx", tmp_path / "2d106det.onnx")
    for name in ("G_unet_2blocks.pth", "backbone.pth", "scrfd_10g_bnkps.onnx"):
        (tmp_path / name).write_bytes(b"not a stand-in")
    lines = []
    ws = resolve_weights(tmp_path, create_standins=False, log=lines.append)
    assert ws.standin_models == ["landmarks"] and ws.path("landmarks") == tmp_path / "2d106det.onnx"
    assert len(lines) == 1 and "2d106det.onnx" in lines[0] and "STAND-IN" in lines[0]
    assert "landmarks" in ws.banner() and "STAND-IN" in ws.banner()


def test_resolve_onnx_and_the_label_follow_a_standin_found_by_content(small_standins, tmp_path, monkeypatch):
    """ghostrt.loading.resolve_onnx (what Swapper/LoadedNets.standin_models come from) reports the net whose file
    is a copied stand-in, so every banner and label built from it says stand-in."""
    import shutil

    from ghostrt import loading
    from ghostrt.export import models

    for name in ("scrfd_10g_bnkps.onnx", "2d106det-symbol.json", "2d106det-0000.params"):
        shutil.copy(small_standins / name, tmp_path / name)
    for name in ("G_unet_2blocks.pth", "backbone.pth"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setattr(models, "ensure_onnx", lambda model, *a, **k: tmp_path / f"{model}.onnx")
    _, kind, standin, weights = loading.resolve_onnx(tmp_path, tmp_path / "engines", None, 2, log=lambda *_: None)
    assert kind == "retinaface"                 # a stand-in SCRFD detects nothing real: the usual fallback
    assert standin == ["landmarks"] and sorted(weights.standin_models) == ["detector", "landmarks"]
