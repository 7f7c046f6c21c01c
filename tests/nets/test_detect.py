"""The detect stage: letterbox, SCRFD decoding against brute force, NMS, batching, and RetinaFace on real
photos (matplotlib's and scikit-image's bundled samples)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from ghostrt.export.parity import ort_session
from ghostrt.runtime.nets.detect import (RetinaFaceDetector, ScrfdDetector, SCRFD_OUTPUTS, anchor_centres,
                                    decode_scrfd, letterbox, make_detector, nms)
from ghostrt.runtime.nets.retinaface_model import prior_count, write_retinaface_onnx

REPO = Path(__file__).resolve().parents[2]


class OrtExecutor:
    """Minimal Executor for tests: ONNX Runtime CPU, tensors by name."""

    def __init__(self, path):
        self.session = ort_session(path)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds):
        return dict(zip(self.output_names, self.session.run(None, dict(feeds))))


# ------------------------------------------------------------------------------------------------ letterbox

def test_letterbox_keeps_aspect_at_top_left():
    frame = np.zeros((300, 600, 3), np.uint8)
    frame[..., 0] = 255                      # pure red: channel 0 must stay first (RGB in, RGB out)
    blob, scale = letterbox(frame, 640)
    assert blob.shape == (1, 3, 640, 640) and blob.dtype == np.float32
    assert scale == pytest.approx(640 / 600)
    inside = blob[0, :, :320, :640]
    np.testing.assert_allclose(inside[0], (255 - 127.5) / 128)
    np.testing.assert_allclose(inside[1:], -127.5 / 128)
    np.testing.assert_allclose(blob[0, :, 320:, :], -127.5 / 128)   # black padding below


def test_anchor_centres_match_a_plain_loop():
    want = []
    for row in range(40):
        for col in range(40):
            want += [(col * 16, row * 16)] * 2
    np.testing.assert_array_equal(anchor_centres(640, 16), np.array(want, np.float32))


# ------------------------------------------------------------------------------------------------- decoding

def empty_outputs(batch: int) -> dict:
    out = {}
    for name in SCRFD_OUTPUTS:
        group, stride = name.split("_")
        width = {"score": 1, "bbox": 4, "kps": 10}[group]
        out[name] = np.zeros((batch, (640 // int(stride)) ** 2 * 2, width), np.float32)
    return out


def plant(out, image, stride, row, col, anchor, score, dist, offs):
    index = (row * (640 // stride) + col) * 2 + anchor
    out[f"score_{stride}"][image, index, 0] = score
    out[f"bbox_{stride}"][image, index] = dist
    out[f"kps_{stride}"][image, index] = np.asarray(offs).reshape(-1)


def test_decode_finds_planted_faces():
    out = empty_outputs(2)
    offs = [(-1, -1), (1, -1), (0, 0), (-1, 1), (1, 1)]
    plant(out, 0, 16, row=5, col=7, anchor=1, score=0.9, dist=(2, 3, 4, 5), offs=offs)
    plant(out, 0, 8, row=60, col=2, anchor=0, score=0.59, dist=(1, 1, 1, 1), offs=offs)   # under 0.6
    plant(out, 1, 32, row=1, col=18, anchor=0, score=0.7, dist=(1, 2, 1, 2), offs=offs)
    faces = decode_scrfd(out, scales=[0.5, 2.0])
    assert [len(f) for f in faces] == [1, 1]

    cx, cy = 7 * 16, 5 * 16                                   # no half-cell offset
    want_box = np.array([cx - 2 * 16, cy - 3 * 16, cx + 4 * 16, cy + 5 * 16]) / 0.5
    np.testing.assert_allclose(faces[0][0].box, want_box, atol=1e-4)
    want_kps = (np.array([cx, cy]) + np.array(offs) * 16) / 0.5
    np.testing.assert_allclose(faces[0][0].kps, want_kps, atol=1e-4)
    assert faces[0][0].score == pytest.approx(0.9)

    cx, cy = 18 * 32, 1 * 32
    np.testing.assert_allclose(faces[1][0].box, np.array([cx - 32, cy - 64, cx + 32, cy + 64]) / 2.0, atol=1e-4)


def test_decode_accepts_the_official_single_image_layout():
    out = empty_outputs(1)
    plant(out, 0, 8, row=10, col=20, anchor=1, score=0.8, dist=(3, 3, 3, 3), offs=np.zeros((5, 2)))
    positional = [out[name][0] for name in SCRFD_OUTPUTS]      # 9 arrays (A, C), no batch axis
    faces = decode_scrfd(positional, scales=[1.0])
    np.testing.assert_allclose(faces[0][0].box, [160 - 24, 80 - 24, 160 + 24, 80 + 24], atol=1e-4)


def test_decode_suppresses_neighbouring_anchors():
    out = empty_outputs(1)
    zero = np.zeros((5, 2))
    plant(out, 0, 8, row=30, col=30, anchor=0, score=0.95, dist=(4, 4, 4, 4), offs=zero)
    plant(out, 0, 8, row=30, col=31, anchor=0, score=0.85, dist=(4, 4, 4, 4), offs=zero)   # IoU 0.6
    plant(out, 0, 8, row=30, col=30, anchor=1, score=0.80, dist=(4, 4, 4, 4), offs=zero)   # same box
    assert [f.score for f in decode_scrfd(out, [1.0])[0]] == [pytest.approx(0.95)]


def test_nms_uses_iou_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [5, 0, 15, 10], [30, 30, 40, 40]], np.float32)
    scores = np.array([0.9, 0.95, 0.8, 0.1], np.float32)
    # IoU(0,1) = 90/110 = 0.82, IoU(1,2) = 60/140 = 0.43, IoU(0,2) = 50/150 = 0.33
    assert nms(boxes, scores, 0.4).tolist() == [1, 3]
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2, 3]
    assert nms(boxes[:0], scores[:0]).tolist() == []


def test_scrfd_detector_batch_equals_single_frames(tmp_path):
    from ghostrt.export.scrfd import add_batch_axis, write_standin_scrfd

    batched = add_batch_axis(write_standin_scrfd(tmp_path), tmp_path / "scrfd_batched.onnx")
    detector = ScrfdDetector(OrtExecutor(batched), threshold=0.5)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((480, 640), (300, 200), (720, 1280))]
    together = detector.detect(frames)
    alone = [detector.detect([f])[0] for f in frames]
    assert sum(len(f) for f in together) > 0             # the untrained stand-in fires somewhere at 0.5
    for a, b in zip(together, alone):
        assert len(a) == len(b)
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fa.box, fb.box, atol=1e-3)
            np.testing.assert_allclose(fa.kps, fb.kps, atol=1e-3)


# ------------------------------------------------------------------------------------------------ RetinaFace

@pytest.fixture(scope="module")
def retinaface(tmp_path_factory):
    path = write_retinaface_onnx(tmp_path_factory.mktemp("retina") / "retinaface.onnx")
    return make_detector("retinaface", OrtExecutor(path))


@pytest.fixture(scope="module")
def photos():
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        hopper = np.asarray(im.convert("RGB"))
    astronaut = skimage.data.astronaut()
    pair = np.zeros((max(hopper.shape[0], astronaut.shape[0]), hopper.shape[1] + astronaut.shape[1], 3), np.uint8)
    pair[:hopper.shape[0], :hopper.shape[1]] = hopper
    pair[:astronaut.shape[0], hopper.shape[1]:] = astronaut
    return {"hopper": hopper, "astronaut": astronaut, "pair": pair, "coffee": skimage.data.coffee(),
            "gradient": np.dstack([np.tile(np.linspace(0, 255, 500).astype(np.uint8), (300, 1))] * 3)}


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def assert_plausible(face, frame):
    x1, y1, x2, y2 = face.box
    h, w = frame.shape[:2]
    assert 0 <= x1 < x2 <= w + 2 and 0 <= y1 < y2 <= h + 2
    k = face.kps
    assert np.all((k[:, 0] >= x1) & (k[:, 0] <= x2) & (k[:, 1] >= y1) & (k[:, 1] <= y2))
    assert k[0, 0] < k[1, 0] and k[3, 0] < k[4, 0]          # image-left eye/mouth first
    assert max(k[0, 1], k[1, 1]) < min(k[3, 1], k[4, 1])     # eyes above the mouth
    assert min(k[0, 1], k[1, 1]) < k[2, 1] < max(k[3, 1], k[4, 1])   # nose between


def test_retinaface_onnx_is_batched_and_fixed_size(tmp_path):
    import onnx

    from retinaface.weights import WEIGHTS

    path = write_retinaface_onnx(tmp_path / "r.onnx")
    model = onnx.load(str(path))
    anchors = (80 * 80 + 40 * 40 + 20 * 20) * 2
    assert prior_count(640) == anchors
    shapes = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.input, *model.graph.output]]
    assert shapes == [["N", 3, 640, 640], ["N", anchors, 4], ["N", anchors, 2], ["N", anchors, 10]]
    assert [o.name for o in model.graph.output] == ["loc", "conf", "landmarks"]

    x = np.random.default_rng(0).uniform(-123, 151, (2, 3, 640, 640)).astype(np.float32)
    got = OrtExecutor(path).run({"input": x})
    import onnxruntime

    packaged = onnxruntime.InferenceSession(WEIGHTS, providers=["CPUExecutionProvider"])
    for i in range(2):
        for name, want in zip(("loc", "conf", "landmarks"), packaged.run(None, {"input": x[i:i + 1]})):
            np.testing.assert_allclose(got[name][i:i + 1], want, rtol=0, atol=1e-4)


def test_retinaface_finds_one_face_per_portrait(retinaface, photos):
    hopper, astronaut = retinaface.detect([photos["hopper"], photos["astronaut"]])
    for faces, name in ((hopper, "hopper"), (astronaut, "astronaut")):
        assert len(faces) == 1, name
        assert faces[0].score > 0.9
        assert_plausible(faces[0], photos[name])
    # Known sample content: Hopper's face is in the upper middle of the 512×600 portrait,
    # the astronaut's head in the upper half of the 512×512 image, left of centre.
    hx, hy = (hopper[0].box[:2] + hopper[0].box[2:]) / 2
    assert 180 < hx < 340 and 150 < hy < 320
    ax, ay = (astronaut[0].box[:2] + astronaut[0].box[2:]) / 2
    assert 150 < ax < 300 and 50 < ay < 200


def test_retinaface_finds_both_faces_side_by_side(retinaface, photos):
    singles = retinaface.detect([photos["hopper"], photos["astronaut"]])
    faces = sorted(retinaface.detect([photos["pair"]])[0], key=lambda f: f.box[0])
    assert len(faces) == 2
    offset = np.array([photos["hopper"].shape[1], 0] * 2, np.float32)
    assert iou(faces[0].box, singles[0][0].box) > 0.8
    assert iou(faces[1].box, singles[1][0].box + offset) > 0.8
    for face in faces:
        assert_plausible(face, photos["pair"])


def test_retinaface_finds_nothing_without_faces(retinaface, photos):
    assert retinaface.detect([photos["coffee"], photos["gradient"]]) == [[], []]


def test_retinaface_maps_huge_frames_back(retinaface, photos):
    hopper = photos["hopper"]
    factor = 4000 / hopper.shape[0]
    huge = cv2.resize(hopper, (round(hopper.shape[1] * factor), 4000), interpolation=cv2.INTER_CUBIC)
    small, = retinaface.detect([hopper])
    big, = retinaface.detect([huge])
    assert len(big) == 1
    assert iou(big[0].box / factor, small[0].box) > 0.9
    np.testing.assert_allclose(big[0].kps / factor, small[0].kps, atol=4.0)
    assert_plausible(big[0], huge)


def test_make_detector_kinds():
    class Dummy:
        input_names, output_names = ["x"], []

    assert isinstance(make_detector("scrfd", Dummy()), ScrfdDetector)
    assert isinstance(make_detector("retinaface", Dummy()), RetinaFaceDetector)
    with pytest.raises(ValueError, match="yolo"):
        make_detector("yolo", Dummy())
