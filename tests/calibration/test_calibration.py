"""The calibration set: real faces through detect → align, the .npz layout, provenance, and `ghostrt calibrate`."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ghostrt.calibration import build

EXPECTED_KEYS = {"arcface/face": (3, 112, 112), "generator/target": (3, 256, 256),
                 "generator/source_embedding": (512,), "detector/input.1": (3, 640, 640),
                 "retinaface/input": (3, 640, 640), "landmarks/face": (3, 192, 192)}


@pytest.fixture(scope="module")
def one_photo_set(tmp_path_factory):
    """`ghostrt calibrate` on a folder holding one real photo (Grace Hopper, from matplotlib)."""
    import matplotlib.cbook

    from ghostrt.cli import main

    folder = tmp_path_factory.mktemp("photos")
    photo = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    shutil.copy(photo, folder / "hopper.jpg")
    out = tmp_path_factory.mktemp("sets") / "hopper.npz"
    code = main(["calibrate", "--images", str(folder), "--out", str(out), "--no-embed"])
    return code, folder / "hopper.jpg", out


def test_calibrate_cli_writes_npz_and_provenance(one_photo_set):
    code, photo, out = one_photo_set
    assert code == 0 and out.is_file() and out.with_suffix(".json").is_file()


def test_npz_layout_is_keyed_by_net_and_onnx_input(one_photo_set):
    _, _, out = one_photo_set
    with np.load(out) as data:
        assert set(data.files) == set(EXPECTED_KEYS)
        for key, shape in EXPECTED_KEYS.items():
            assert data[key].shape[1:] == shape, key
        crops = {len(data[k]) for k in ("arcface/face", "generator/target", "generator/source_embedding",
                                        "landmarks/face")}
        frames = {len(data[k]) for k in ("detector/input.1", "retinaface/input")}
    # One photo → 2 flips × 2 gains, plus a 3×3 and a 4×4 grid of its face.
    assert frames == {2 * len(build.CALIBRATION_GAINS) + 2}
    assert len(crops) == 1 and crops.pop() >= 2 * len(build.CALIBRATION_GAINS) + 9 + 16 - 4
    arrays = build.load_calibration(out, "generator")
    assert list(arrays) == ["target", "source_embedding"] and arrays["target"].dtype == np.float32
    assert -1.0 <= arrays["target"].min() and arrays["target"].max() <= 1.0
    assert list(build.load_calibration(out, "detector")) == ["input.1"]
    lm = build.load_calibration(out, "landmarks")["face"]
    assert lm.max() > 100 and lm.min() >= 0            # raw 0–255 pixels: the net normalises itself


def test_detector_canvas_is_the_runtime_letterbox_of_the_first_frame(one_photo_set):
    from ghostrt.runtime.nets import detect, retinaface_model

    _, photo, out = one_photo_set
    frame = build._decode(photo.read_bytes(), photo)
    first = np.clip(frame.astype(np.float32) * build.CALIBRATION_GAINS[0], 0, 255).astype(np.uint8)
    canvas, _ = detect.letterbox_image(first)
    want = retinaface_model.normalise(canvas[None])[0]
    got = build.load_calibration(out, "retinaface")["input"][0]
    assert np.array_equal(got, want)                  # float16 storage is exact for these values
    scrfd = build.load_calibration(out, "detector")["input.1"][0]
    assert np.array_equal(scrfd, detect.letterbox(first)[0][0])


def test_provenance_names_sources_hashes_and_counts(one_photo_set):
    _, photo, out = one_photo_set
    prov = json.loads(out.with_suffix(".json").read_text())
    assert prov["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    source, = prov["sources"]
    assert source["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert source["origin"] == str(photo)
    assert prov["count"]["detector_frames"] == len(prov["frames"]) == 6
    assert prov["count"]["source_embedding"].startswith("synthetic")
    assert any("flip" in t for t in prov["transforms"])
    with np.load(out) as data:
        assert prov["arrays"]["arcface/face"]["shape"] == list(data["arcface/face"].shape)


def test_aligned_crops_put_the_eyes_on_the_template():
    """Detect → align really aligns: detecting again in the 224 crop finds the eyes where the template says."""
    import skimage.data

    image = skimage.data.astronaut()
    crop, = build.face_crops(image)
    image_kps = build.find_faces(image)[0].kps
    again = build.find_faces(crop)
    assert again, "no face found in the aligned crop"
    eyes = again[0].kps[:2]
    # A least-squares fit of 5 points leaves a few px of residual per point (smile, head tilt); a wrong warp
    # would be off by tens of px.
    from ghostrt.runtime.stages import align

    _, chosen = align.estimate_norm(image_kps)
    template = align.templates(224)[chosen]
    inter_ocular = float(np.linalg.norm(template[1] - template[0]))
    assert np.linalg.norm(eyes - template[:2], axis=1).max() < 0.15 * inter_ocular


def test_packaged_default_has_the_three_public_domain_photos():
    names = [p.name for p in build.packaged_photos()]
    assert names == ["grace_hopper", "astronaut", "camera"]
    assert all(len(build.find_faces(p.image)) == 1 for p in build.packaged_photos())


def test_bad_source_is_a_ghost_error(tmp_path, capsys):
    from ghostrt.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["calibrate", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "x.npz"),
                 "--no-embed"]) == 2
    assert "no images" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists()
