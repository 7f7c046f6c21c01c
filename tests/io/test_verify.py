"""`ghostrt verify` and ghostrt.verify: C2PA valid / tampered, the label, the watermark after stripping and
re-encoding (image: JPEG q75 + 0.9× resize; video: H.264 CRF 28), nothing on files ghostrt did not make,
exit 2 on bad input. Videos are written by the real video loop with a Provenance, signed after completion."""


import av
import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

import ghostrt
from ghostrt.cli import main
from ghostrt.runtime.io import c2pa_manifest, image_io, provenance, provenance_label
from ghostrt.runtime.loops.video_loop import swap_video

W, H = 640, 360


@pytest.fixture(autouse=True)
def config(tmp_path, monkeypatch):
    monkeypatch.setenv(c2pa_manifest.CONFIG_ENV, str(tmp_path / "config"))


def _prov(target=None):
    return provenance.Provenance(c2pa_manifest.resolve_signer(log=lambda s: None), target, "onnxruntime", "fp32")


def _label():
    return provenance_label.make_label(1, standin_weights=True, operation="face swap")


def _image(tmp_path, name="out.png"):
    photo = np.ascontiguousarray(cv2.resize(data.astronaut(), (1920, 1080), interpolation=cv2.INTER_CUBIC))
    target = tmp_path / "target.jpg"
    image_io.write_image(target, photo)
    out = tmp_path / name
    image_io.write_image(out, photo, label=_label(), provenance=_prov(target))
    return out


def _clip(path, frames, crf=18):
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=24, options={"crf": str(crf)})
    video.width, video.height, video.pix_fmt = W, H, "yuv420p"
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = i
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    out.close()
    return path


def _pan(n=12):
    base = cv2.resize(data.astronaut(), (W + 40, H + 40))
    return [base[2 * i:2 * i + H, 3 * i:3 * i + W] for i in range(n)]


def _frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _video(tmp_path, name="out.mp4"):
    clip = _clip(tmp_path / "in.mp4", _pan())
    out = tmp_path / name
    swap_video(clip, out, lambda fs: [f.copy() for f in fs], label=_label(), progress=False,
               provenance=_prov(clip))
    return out


def _flip(path, at):
    b = bytearray(path.read_bytes())
    b[at] ^= 0x01
    path.write_bytes(bytes(b))


def test_image_intact_then_tampered(tmp_path, capsys):
    out = _image(tmp_path)
    report = ghostrt.verify(out)
    assert report.intact and report.c2pa["state"] == "trusted" and report.watermark["found"]
    assert report.label["standin_weights"] and report.standin
    assert main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "valid, signer trusted" in text and "compositeWithTrainedAlgorithmicMedia" in text and "STAND-IN" in text
    _flip(out, out.stat().st_size // 2)          # one byte inside the pixel data
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "TAMPERED" in text and "assertion.dataHash.mismatch" in text


def test_image_stripped_jpeg75_resized_still_watermarked(tmp_path, capsys):
    out = _image(tmp_path)
    rgb = np.asarray(Image.open(out).convert("RGB"))
    small = Image.fromarray(rgb).resize((1728, 972), Image.LANCZOS)
    stripped = tmp_path / "reposted.jpg"
    small.save(stripped, "JPEG", quality=75)                  # a new file: no metadata, no manifest
    report = ghostrt.verify(stripped)
    assert report.c2pa["present"] is False and report.label is None
    assert report.watermark["found"] and report.intact
    assert main(["verify", str(stripped)]) == 0
    assert "watermark  found" in capsys.readouterr().out


def test_files_ghostrt_did_not_make_report_nothing(tmp_path, capsys):
    plain = tmp_path / "photo.png"
    Image.fromarray(data.coffee()).save(plain)
    clip = _clip(tmp_path / "plain.mp4", _pan(6))
    for path in (plain, clip):
        report = ghostrt.verify(path)
        assert not report.found and not report.intact
    assert main(["verify", str(plain), str(clip)]) == 1
    assert capsys.readouterr().out.count("no ghostrt provenance found") == 2


def test_video_valid_tampered_and_reencoded(tmp_path, capsys):
    out = _video(tmp_path)
    report = ghostrt.verify(out)
    assert report.kind == "video" and report.c2pa["state"] == "trusted" and report.intact
    acts = [a["action"] for a in report.c2pa["actions"]]
    assert acts == ["c2pa.opened", "c2pa.edited"]
    assert report.c2pa["actions"][1]["digitalSourceType"] == c2pa_manifest.DIGITAL_SOURCE_TYPE
    assert report.watermark["found"] and report.label["altered"]
    reencoded = _clip(tmp_path / "reencoded.mp4", _frames(out), crf=28)   # metadata and manifest gone
    again = ghostrt.verify(reencoded)
    assert not again.c2pa["present"] and again.watermark["found"] and again.intact
    data_at = out.read_bytes().find(b"mdat") + 200
    _flip(out, data_at)
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "TAMPERED" in text and "assertion.bmffHash.mismatch" in text


def test_mkv_gets_a_sidecar(tmp_path):
    out = _video(tmp_path, "out.mkv")
    side = c2pa_manifest.sidecar_path(out)
    assert side.is_file()
    report = ghostrt.verify(out)
    assert report.c2pa["state"] == "trusted" and report.c2pa["sidecar"] == str(side)


@pytest.mark.parametrize("content", [None, b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, bytes(range(256)) * 40])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, content):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err


def test_truncated_image_is_bad_input(tmp_path, capsys):
    plain = tmp_path / "plain.png"
    Image.fromarray(data.coffee()).save(plain)
    plain.write_bytes(plain.read_bytes()[: plain.stat().st_size // 3])
    assert main(["verify", str(plain)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_jpeg_pixel_byte_flip_is_tampering(tmp_path, capsys):
    out = _image(tmp_path, "out.jpg")
    assert ghostrt.verify(out).intact
    _flip(out, out.stat().st_size // 2)
    report = ghostrt.verify(out)
    assert report.tampered and not report.intact and "assertion.dataHash.mismatch" in report.c2pa["codes"]
