"""The visible 'AI-altered · ghostrt' label: on every webcam-loop output frame by default, off with
visible_mark=False, on files with Provenance(visible_mark=True); the live watermark on every Nth frame."""

import io

import av
import cv2
import numpy as np
from skimage import data

from ghostrt.runtime.io import visible_mark, watermark
from ghostrt.runtime.io.provenance import Provenance, add_provenance_options, from_args
from ghostrt.runtime.loops import webcam_loop

W, H = 320, 240


def _clip(path, n=8):
    base = cv2.resize(data.astronaut(), (W + 16, H + 16))
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=24, options={"crf": "12"})
    video.width, video.height, video.pix_fmt = W, H, "yuv444p"
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[i:i + H, i:i + W]), format="rgb24")
        frame.pts = i
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    out.close()
    return path


def _run(tmp_path, **kw):
    inputs, outputs = [], []

    def process(rgb):
        inputs.append(rgb.copy())
        return rgb.copy()

    summary = webcam_loop.run_webcam(str(_clip(tmp_path / "cam.mp4")), process, frames=6, log=io.StringIO(),
                                     on_output=outputs.append, **kw)
    return inputs, outputs, summary


def _label_pixels_changed(before, after):
    x0, y0, x1, y1 = visible_mark.region(before.shape[1], before.shape[0])
    outside = np.ones(before.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    corner = np.abs(after[y0:y1, x0:x1].astype(int) - before[y0:y1, x0:x1]).mean()
    return corner, np.array_equal(after[outside], before[outside])


def test_webcam_output_carries_the_label_by_default(tmp_path):
    inputs, outputs, summary = _run(tmp_path, watermark_every=0)
    assert len(outputs) == 6 and summary["visible_mark"] is True
    for before, after in zip(inputs, outputs):
        corner, rest_same = _label_pixels_changed(before, after)
        assert corner > 20 and rest_same
    x0, y0, x1, y1 = visible_mark.region(W, H)
    patch = outputs[0][y0:y1, x0:x1]
    assert (patch.min(axis=2) > 230).sum() > 30          # white text pixels ...
    assert (patch.max(axis=2) < 110).mean() > 0.4        # ... on a dark box


def test_no_visible_mark_leaves_frames_alone(tmp_path):
    inputs, outputs, summary = _run(tmp_path, visible_mark=False, watermark_every=0)
    assert summary["visible_mark"] is False
    assert all(np.array_equal(a, b) for a, b in zip(inputs, outputs))


def test_every_nth_live_frame_is_watermarked(tmp_path):
    _, outputs, summary = _run(tmp_path, visible_mark=False, watermark_every=3)
    assert summary["watermark_every"] == 3
    found = [watermark.decode(o)["found"] for o in outputs]
    assert found == [True, False, False, True, False, False]


def test_label_on_files_when_asked_and_flags():
    import argparse
    frame = np.ascontiguousarray(cv2.resize(data.coffee(), (640, 360)))
    plain = Provenance(None, watermark=False).mark_frame(frame)
    labelled = Provenance(None, watermark=False, visible_mark=True).mark_frame(frame)
    assert np.array_equal(plain, frame)
    assert _label_pixels_changed(frame, labelled)[0] > 20
    parser = argparse.ArgumentParser()
    add_provenance_options(parser)
    said = []
    live = from_args(parser.parse_args(["--no-visible-mark"]), live=True, log=said.append)
    assert live.visible_mark is False and len(said) == 1 and "not be told" in said[0]
    assert from_args(parser.parse_args([]), live=True).visible_mark is True
    assert visible_mark.TEXT == "AI-altered · ghostrt"
