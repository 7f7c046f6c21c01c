"""The invisible watermark: survives stripping + JPEG q75 + a 0.9× resize of a 1080p result, stays invisible
(PSNR), and 20 unmarked photos and frames do not decode as marked."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from ghostrt.runtime.io import watermark


def _hd(name):
    a = getattr(data, name)()
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(cv2.resize(a[:, :, :3], (1920, 1080), interpolation=cv2.INTER_CUBIC))


def _jpeg(rgb, quality=75):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)       # a fresh file: no metadata carried over
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.mark.parametrize("name", ["astronaut", "coffee", "camera"])
def test_survives_jpeg75_and_resize_of_1080p(name):
    marked = watermark.embed(_hd(name))
    attacked = cv2.resize(_jpeg(marked), (1728, 972), interpolation=cv2.INTER_AREA)
    got = watermark.decode(attacked)
    assert got["found"] and got["format_id"] == watermark.FORMAT_ID and got["bit_errors"] == 0
    resized_first = watermark.decode(_jpeg(cv2.resize(marked, (1728, 972), interpolation=cv2.INTER_AREA)))
    assert resized_first["found"]


def test_invisible_and_input_untouched():
    frame = _hd("chelsea")
    before = frame.copy()
    marked = watermark.embed(frame)
    assert np.array_equal(frame, before)
    mse = np.mean((marked.astype(np.float64) - frame) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 40.0
    assert not watermark.decode(frame)["found"]


def _unmarked():
    """20 unmarked photos and frames: scikit-image's and matplotlib's samples, crops, resizes, re-encodes."""
    import matplotlib.cbook
    names = ["astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "hubble_deep_field",
             "coins", "moon", "retina", "colorwheel", "brick", "gravel", "clock"]
    out = []
    for n in names:
        a = getattr(data, n)()
        out.append(np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a[:, :, :3])
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        hopper = np.asarray(Image.open(fh).convert("RGB"))
    out += [hopper, hopper[50:400, 100:450], _hd("astronaut")[100:900, 300:1500], _jpeg(_hd("coffee"), 60),
            cv2.resize(out[3], (321, 213)), np.full((720, 1280, 3), 128, np.uint8)]
    return out


def test_no_false_positives_on_20_unmarked_images():
    images = _unmarked()
    assert len(images) == 20
    hits = [i for i, rgb in enumerate(images) if watermark.decode(np.ascontiguousarray(rgb))["found"]]
    assert hits == []


def test_error_detection_rejects_a_corrupted_payload():
    soft = np.where(watermark.payload_bits() > 0, 1.0, -1.0)
    assert watermark._decide(soft)["found"]
    for bit in (0, 30, watermark.N_BITS - 1):          # magic, format id and CRC bits
        broken = soft.copy()
        broken[bit] *= -1
        assert not watermark._decide(broken)["found"]


def test_several_frames_vote_together():
    frames = [watermark.embed(_hd("rocket"))[::2, ::2] for _ in range(2)] + [_hd("coins")]
    got = watermark.decode_frames(frames)
    assert got["found"] and got["frames"] == 3 and got["frames_marked"] == 2
    assert not watermark.decode_frames([_hd("coins"), _hd("moon")])["found"]
