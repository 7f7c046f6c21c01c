"""The ONNX crop and paste graphs agree with the OpenCV path (ONNX Runtime, CPU provider)."""

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ghostrt.runtime.stages import align, blend, graphs

# Hand-placed on matplotlib's grace_hopper.jpg (512×600): eyes, nose tip, mouth corners.
HOPPER_KPS = np.array([[222, 195], [310, 192], [265, 240], [232, 282], [298, 280]], np.float32)


def hopper() -> np.ndarray:
    from matplotlib import cbook
    import matplotlib.image as mpimg
    return np.ascontiguousarray(mpimg.imread(cbook.get_sample_data("grace_hopper.jpg")))


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def crop_session():
    return session(graphs.build_crop_model())


@pytest.fixture(scope="module")
def paste_session():
    return session(graphs.build_paste_model())


def test_graphs_are_opset_17_with_named_io():
    for model, ins, outs in ((graphs.build_crop_model(), ["frame", "frame_from_crop"], ["crops"]),
                             (graphs.build_paste_model(), ["region", "swap", "mask", "crop_from_region"],
                              ["blended"])):
        assert [o.version for o in model.opset_import if o.domain == ""] == [17]
        assert [i.name for i in model.graph.input] == ins
        assert [o.name for o in model.graph.output] == outs


def test_crop_graph_matches_warp_affine(crop_session):
    frame = hopper()[100:, 150:].copy()                              # second face runs off the frame's edge
    kps = np.stack([HOPPER_KPS - np.float32([150, 100]), HOPPER_KPS * 0.6 + np.float32([-60, 300])])
    Ms = np.stack([align.estimate_norm(k)[0] for k in kps])
    crops = crop_session.run(["crops"], graphs.crop_feeds(frame, Ms))[0]
    expected = np.stack([align.warp_crop(frame, M) for M in Ms])
    assert crops.shape == (2, 224, 224, 3) and crops.dtype == np.uint8
    diff = np.abs(crops.astype(np.int16) - expected)
    assert diff.max() <= 1 and diff.mean() < 0.01                    # OpenCV interpolates on a 1/32-px grid
    assert (expected[1] == 0).sum() > 3000                           # the off-frame part is black in both


def test_paste_graph_matches_paste_back(paste_session):
    frame = hopper()
    rng = np.random.default_rng(0)
    swap = rng.integers(0, 256, (224, 224, 3), np.uint8)
    m = np.zeros((224, 224), np.float32)
    cv2.circle(m, (112, 120), 70, 1.0, -1)
    m = cv2.GaussianBlur(m, (0, 0), 8)
    M, _ = align.estimate_norm(HOPPER_KPS)
    x0, y0, x1, y1 = blend.paste_region(frame.shape, m, M)
    region = frame[y0:y1, x0:x1]
    out = paste_session.run(["blended"], graphs.paste_feeds(region, swap, m, M, x0, y0))[0]
    expected = blend.paste_back(frame, swap, m, M)[y0:y1, x0:x1]
    assert out.shape == region.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - expected)
    assert diff.max() <= 2 and diff.mean() < 0.2
    untouched = (expected == region).all(axis=-1) & (out != region).any(axis=-1)
    assert untouched.sum() < 0.01 * untouched.size


def test_write_model_is_atomic_and_loadable(tmp_path):
    path = tmp_path / "paste.onnx"
    graphs.write_model(graphs.build_paste_model(), path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert [p.name for p in tmp_path.iterdir()] == ["paste.onnx"]
