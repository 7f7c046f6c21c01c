"""Every file `ghostrt swap` writes carries its provenance: a signed C2PA manifest with the edit action and
IPTC digital source type, the invisible watermark and the label, and `ghostrt verify` says so; a bad signing
key fails before any net loads, with nothing written."""

import json

import c2pa
import numpy as np
import pytest
from PIL import Image

import ghostrt
from ghostrt import loading
from ghostrt.cli import main
from ghostrt.runtime.io import c2pa_manifest, watermark
from test_swap_image import GRACE, onnx_files, tiny_cli  # noqa: F401  (fixtures)
from test_video_io import make_clip


def _edited(path, mime):
    with open(path, "rb") as fh:
        reader = c2pa.Reader(mime, fh)
        state = str(reader.get_validation_state()).lower()
        store = json.loads(reader.json())
    active = store["manifests"][store["active_manifest"]]
    actions = [a for x in active["assertions"] if x["label"].startswith("c2pa.actions")
               for a in x["data"]["actions"]]
    return state, [a for a in actions if a["action"] == "c2pa.edited"]


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("in") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_swap_image_output_is_signed_marked_and_verified(tmp_path, capsys, tiny_cli, astronaut_png):  # noqa: F811
    out = tmp_path / "swapped.png"
    assert main(["swap", "image", "--source", str(GRACE), "--target", str(astronaut_png), "--output", str(out),
                 "--backend", "ort"]) == 0
    assert "ghostrt verify" in capsys.readouterr().out
    state, edited = _edited(out, "image/png")
    assert state == "valid" and edited
    assert edited[0]["digitalSourceType"] == c2pa_manifest.DIGITAL_SOURCE_TYPE
    assert edited[0]["parameters"]["backend"] == "ort"
    assert watermark.decode(np.asarray(Image.open(out).convert("RGB")))["found"]
    report = ghostrt.verify(out)
    assert report.intact and report.standin                 # stand-in weights said in the report too
    assert main(["verify", str(out)]) == 0


def test_swap_video_output_is_signed_marked_and_verified(tmp_path, tiny_cli):  # noqa: F811
    from skimage import data

    clip = make_clip(tmp_path / "in.mp4", frames=6, size=(256, 256), audio=True)
    del data
    out = tmp_path / "out.mp4"
    assert main(["swap", "video", "--source", str(GRACE), "--target", str(clip), "--output", str(out),
                 "--backend", "ort", "--no-progress"]) == 0
    state, edited = _edited(out, "video/mp4")
    assert state == "valid" and edited[0]["digitalSourceType"] == c2pa_manifest.DIGITAL_SOURCE_TYPE
    report = ghostrt.verify(out)
    assert report.c2pa_ghostrt and report.intact


@pytest.mark.parametrize("flags, says", [
    (["--sign-cert", "missing.pem", "--sign-key", "missing.key"], "signing certificate does not exist"),
    (["--sign-cert", "x.pem"], "--sign-cert and --sign-key go together"),
    (["--sign-cert", "{c2pa}/signer.pem", "--sign-key", "{c2pa}"], "cannot read the signing key"),
    (["--sign-cert", "{c2pa}/ca.pem", "--sign-key", "{c2pa}/signer.key"], "cannot sign"),   # c2pa refuses a CA
    (["--output-name", "out.gif"], "out.gif: unknown output image extension"),   # unsignable: refused up front
    (["--output-name", "out.jpg", "--sign-cert", "{c2pa}/signer.pem", "--sign-key", "junk.pem"], "not a PEM"),
])
def test_bad_signing_key_fails_before_any_net_with_nothing_written(tmp_path, capsys, monkeypatch, astronaut_png,
                                                                   flags, says):
    def no_nets(*a, **k):
        raise AssertionError("a net was loaded before the signing key was checked")
    import os

    from ghostrt.runtime.io import c2pa_manifest

    c2pa_manifest.resolve_signer(log=lambda *_: None)           # the local test CA, made once
    c2pa_dir = os.path.join(os.environ["GHOSTRT_CONFIG_DIR"], "c2pa")
    monkeypatch.setattr(loading, "resolve_onnx", no_nets)
    monkeypatch.chdir(tmp_path)
    flags = [f.format(c2pa=c2pa_dir) for f in flags]
    out = tmp_path / "out.png"
    if "--output-name" in flags:
        at = flags.index("--output-name")
        out = tmp_path / flags[at + 1]
        del flags[at:at + 2]
    if "junk.pem" in flags:
        (tmp_path / "junk.pem").write_text("hello")
    before = set(tmp_path.iterdir())
    assert main(["swap", "image", "--source", str(GRACE), "--target", str(astronaut_png), "--output", str(out),
                 *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0]
    assert not out.exists() and set(tmp_path.iterdir()) == before


def test_swap_api_writes_the_same_provenance(tmp_path, tiny_cli, astronaut_png):  # noqa: F811
    with ghostrt.Swapper.load(backend="ort", precision="fp32", log=lambda *_: None) as sw:
        out = sw.swap_image(astronaut_png, tmp_path / "api.webp", sw.identity(GRACE))
        assert len(out.result.swapped) == 1
    assert ghostrt.verify(tmp_path / "api.webp").intact


def test_standin_files_copied_anywhere_are_labelled_and_announced(tmp_path, capsys, monkeypatch, onnx_files,  # noqa: F811
                                                                   astronaut_png):
    """The issue's repro: stand-in files in a --weights-dir of their own (copied, no marker) under official
    names. Banner, label, C2PA manifest and verify report all say stand-in."""
    import shutil

    from ghostrt.export import models
    from ghostrt.runtime.io.provenance_label import read_label
    from ghostrt.weights.standin import write_standins

    made = tmp_path / "made"
    write_standins(made, seed=0, parts=("detector", "landmarks"), log=lambda *_: None)
    weights = tmp_path / "w"
    weights.mkdir()
    for name in ("scrfd_10g_bnkps.onnx", "2d106det-symbol.json", "2d106det-0000.params"):
        shutil.copy(made / name, weights / name)
    for name in ("G_unet_2blocks.pth", "backbone.pth"):
        (weights / name).write_bytes(b"x")                      # official-looking (the export is faked below)
    monkeypatch.setattr(models, "ensure_onnx", lambda model, *a, **k:
                        onnx_files["detector" if model in ("detector", "retinaface") else model])
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.png"
    assert main(["swap", "image", "--source", str(GRACE), "--target", str(astronaut_png), "--output", str(out),
                 "--backend", "ort", "--weights-dir", str(weights)]) == 0
    text = capsys.readouterr().out
    assert "STAND-IN (untrained) weights: not a real face swap (landmarks untrained" in text
    assert "its sha256 is a stand-in's" in text and "stand-in=True" in text
    assert read_label(out)["standin_weights"] is True
    with open(out, "rb") as fh:
        store = json.loads(c2pa.Reader("image/png", fh).json())
    assert '"standin_weights": true' in json.dumps(store["manifests"][store["active_manifest"]])
    report = ghostrt.verify(out)
    assert report.standin and any("stand-in" in line.lower() for line in report.lines())
