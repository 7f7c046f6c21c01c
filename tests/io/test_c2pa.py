"""C2PA manifests on written images: signed through write_image, read back valid with c2pa's own Reader with
the action and digital source type, tampering shows, bad keys fail before any work."""

import json

import c2pa
import numpy as np
import pytest

from ghostrt.errors import GhostError
from ghostrt.runtime.io import c2pa_manifest, image_io, provenance, provenance_label

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}


@pytest.fixture(autouse=True)
def config(tmp_path, monkeypatch):
    monkeypatch.setenv(c2pa_manifest.CONFIG_ENV, str(tmp_path / "config"))
    for env in (c2pa_manifest.CERT_ENV, c2pa_manifest.KEY_ENV):
        monkeypatch.delenv(env, raising=False)


def _photo(h=96, w=128):
    rng = np.random.default_rng(1)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def _write(tmp_path, ext, standin=True, target=None):
    out = tmp_path / f"out{ext}"
    prov = provenance.Provenance(c2pa_manifest.resolve_signer(log=lambda s: None), target, "openvino", "int8")
    label = provenance_label.make_label(1, standin_weights=standin)
    image_io.write_image(out, _photo(), label=label, provenance=prov)
    return out


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp"])
def test_written_image_reads_back_valid_with_action_and_source_type(tmp_path, ext):
    target = tmp_path / "target.jpg"
    image_io.write_image(target, _photo())
    out = _write(tmp_path, ext, target=target)
    with open(out, "rb") as fh:
        reader = c2pa.Reader(MIME[ext], fh)
        state = reader.get_validation_state()
        store = json.loads(reader.json())
    assert str(state).lower() == "valid"        # valid; untrusted only because no anchors were given
    active = store["manifests"][store["active_manifest"]]
    actions = [a for x in active["assertions"] if x["label"].startswith("c2pa.actions")
               for a in x["data"]["actions"]]
    edited = [a for a in actions if a["action"] == "c2pa.edited"]
    assert edited and edited[0]["digitalSourceType"] == c2pa_manifest.DIGITAL_SOURCE_TYPE
    assert edited[0]["softwareAgent"]["name"] == "ghostrt"
    assert edited[0]["parameters"]["backend"] == "openvino"
    assert [i["relationship"] for i in active["ingredients"]] == ["parentOf"]
    ours = c2pa_manifest.read(out)
    assert ours["state"] == "trusted" and ours["ghostrt"]["standin_weights"] is True
    assert ours["ghostrt"]["target_sha256"] == c2pa_manifest.sha256_file(target)
    assert provenance_label.read_label(out)["standin_weights"] is True     # the old label is still there


def test_flipped_pixel_byte_is_tampering(tmp_path):
    out = _write(tmp_path, ".png")
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    out.write_bytes(bytes(data))
    got = c2pa_manifest.read(out)
    assert got["state"] == "tampered" and "assertion.dataHash.mismatch" in got["codes"]


def test_local_signer_created_once_and_said_once(tmp_path):
    said = []
    c2pa_manifest.resolve_signer(log=said.append)
    c2pa_manifest.resolve_signer(log=said.append)
    assert len(said) == 1 and "trust list" in said[0]
    key = tmp_path / "config" / "c2pa" / "signer.key"
    assert key.is_file() and key.stat().st_mode & 0o077 == 0


def test_bad_key_or_cert_fails_up_front(tmp_path):
    c2pa_manifest.resolve_signer(log=lambda s: None)
    folder = tmp_path / "config" / "c2pa"
    with pytest.raises(GhostError, match="does not exist"):
        c2pa_manifest.resolve_signer(tmp_path / "nope.pem", folder / "signer.key")
    with pytest.raises(GhostError, match="go together"):
        c2pa_manifest.resolve_signer(folder / "signer.pem", None)
    ca_only = tmp_path / "ca-only.pem"
    ca_only.write_bytes((folder / "ca.pem").read_bytes())
    with pytest.raises(GhostError, match="cannot sign"):      # a CA certificate is not a signing certificate
        c2pa_manifest.resolve_signer(ca_only, folder / "signer.key")
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(GhostError, match="not a PEM"):
        c2pa_manifest.resolve_signer(folder / "signer.pem", junk)


def test_user_signer_from_env(tmp_path, monkeypatch):
    c2pa_manifest.resolve_signer(log=lambda s: None)
    folder = tmp_path / "config" / "c2pa"
    monkeypatch.setenv(c2pa_manifest.CERT_ENV, str(folder / "signer.pem"))
    monkeypatch.setenv(c2pa_manifest.KEY_ENV, str(folder / "signer.key"))
    signer = c2pa_manifest.resolve_signer()
    assert not signer.local and signer.source == str(folder / "signer.pem")


def test_unsignable_output_is_refused_and_sidecar_formats_named():
    with pytest.raises(GhostError, match="cannot carry a C2PA manifest"):
        c2pa_manifest.sign_mode("out.gif")
    assert c2pa_manifest.sign_mode("out.mkv") == "sidecar" and c2pa_manifest.sign_mode("o.MP4") == "embed"


def test_no_manifest_reads_as_none(tmp_path):
    out = tmp_path / "plain.png"
    image_io.write_image(out, _photo())
    got = c2pa_manifest.read(out)
    assert got["present"] is False and got["state"] == "none" and got["error"] is None
