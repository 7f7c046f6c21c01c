"""GraphStages (crop and paste graphs through make_executor) agree with the OpenCV path on a real photo, on
OpenVINO and on ONNX Runtime, write their graphs once, and answer bad input as the OpenCV path does."""

import cv2
import numpy as np
import pytest
from skimage import data

from ghostrt.runtime.stages import align, blend, graph_stages

# Hand-placed on skimage's astronaut (512×512): eyes, nose tip, mouth corners.
ASTRONAUT_KPS = np.array([[202, 102], [247, 104], [222, 127], [205, 142], [241, 144]], np.float64)
BACKENDS = ("openvino", "ort")


def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut())


def face_matrices() -> np.ndarray:
    """The real face, the same face rotated by 20°, and one half off the frame's bottom-left corner."""
    centre = ASTRONAUT_KPS.mean(axis=0)
    turn = cv2.getRotationMatrix2D(tuple(centre), 20, 1.0)
    rotated = ASTRONAUT_KPS @ turn[:, :2].T + turn[:, 2]
    off_edge = (ASTRONAUT_KPS - centre) * 1.5 + np.array([20.0, 500.0])
    return align.estimate_norm_batch(np.stack([ASTRONAUT_KPS, rotated, off_edge]))[0]


def soft_mask(centre=(112, 120), radius=70) -> np.ndarray:
    m = np.zeros((224, 224), np.float32)
    cv2.circle(m, centre, radius, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), 8)


@pytest.fixture(scope="module", params=BACKENDS)
def stages(request, tmp_path_factory):
    return graph_stages.GraphStages(request.param, tmp_path_factory.mktemp(request.param))


def test_stages_run_on_the_backend_asked_for(stages):
    assert stages.backend in BACKENDS
    assert {c.backend for c in stages.choices.values()} == {stages.backend}
    assert all(c.precision == "fp32" for c in stages.choices.values())


def test_crop_matches_warp_affine_on_a_photo(stages):
    frame = astronaut()
    Ms = face_matrices()
    crops = stages.crop(frame, Ms)
    expected = graph_stages.OpenCvStages().crop(frame, Ms)
    assert crops.shape == (3, 224, 224, 3) and crops.dtype == np.uint8
    diff = np.abs(crops.astype(np.int16) - expected)
    assert diff.max() <= 1 and diff.mean() < 0.01                    # OpenCV interpolates on a 1/32-px grid
    assert (expected[2] == 0).all(axis=-1).sum() > 3000              # the off-frame part is black in both
    assert crops[0].std() > 20                                       # a real face, not a flat patch


def test_paste_matches_paste_back_faces_on_a_photo(stages):
    frame = astronaut()
    Ms = face_matrices()[:2]                                         # two overlapping faces: order matters
    rng = np.random.default_rng(0)
    swapped = rng.integers(0, 256, (2, 224, 224, 3), np.uint8)
    masks = [soft_mask(), soft_mask((100, 110), 60)]
    before = frame.copy()
    out = stages.paste(frame, swapped, masks, Ms)
    expected = graph_stages.OpenCvStages().paste(frame, swapped, masks, Ms)
    assert np.array_equal(frame, before) and out is not frame       # out=None leaves the input alone
    changed = (expected != frame).any(axis=-1)
    assert changed.sum() > 5000
    diff = np.abs(out.astype(np.int16) - expected)
    assert diff.max() <= 2 and diff[changed].mean() < 0.2
    reached = np.zeros(frame.shape[:2], bool)
    for m, M in zip(masks, Ms):
        x0, y0, x1, y1 = blend.paste_region(frame.shape, m, M)
        reached[y0:y1, x0:x1] = True
    assert np.array_equal(out[~reached], frame[~reached])            # outside the regions: the input's bytes
    assert ((out != frame).any(axis=-1) & ~changed).sum() < 0.01 * changed.sum()


def test_paste_in_place_like_paste_back_faces(stages):
    frame = astronaut()
    Ms = face_matrices()[:1]
    swapped = np.full((1, 224, 224, 3), 255, np.uint8)
    target = frame.copy()
    returned = stages.paste(target, swapped, [soft_mask()], Ms, out=target)
    assert returned is target and not np.array_equal(target, frame)
    other = np.zeros_like(frame)
    stages.paste(frame, swapped, [soft_mask()], Ms, out=other)
    assert np.array_equal(other, target)


def test_graph_files_are_written_once_and_reused(tmp_path):
    engines = tmp_path / "engines"
    first = graph_stages.GraphStages("openvino", engines)
    stamps = {p: p.stat().st_mtime_ns for p in first.paths.values()}
    files = sorted(p.name for p in engines.rglob("*"))
    second = graph_stages.GraphStages("openvino", engines)
    assert second.paths == first.paths
    assert {p: p.stat().st_mtime_ns for p in second.paths.values()} == stamps
    assert sorted(p.name for p in engines.rglob("*")) == files       # no second graph, no second blob
    assert sorted(p.name for p in (engines / "onnx").iterdir()) == sorted(p.name for p in stamps)
    assert all(p.parent == engines / "onnx" for p in stamps)


def test_graph_name_changes_with_its_content(tmp_path):
    default = graph_stages.graph_paths(tmp_path)
    other = graph_stages.graph_paths(tmp_path, size=112)
    assert default["crop"] != other["crop"] and default["paste"] != other["paste"]
    assert len(list(tmp_path.iterdir())) == 4


def test_no_faces_like_the_opencv_path(stages):
    frame = astronaut()
    opencv = graph_stages.OpenCvStages()
    empty = np.zeros((0, 2, 3))
    crops = stages.crop(frame, empty)
    assert crops.shape == opencv.crop(frame, empty).shape == (0, 224, 224, 3) and crops.dtype == np.uint8
    out = stages.paste(frame, np.zeros((0, 224, 224, 3), np.uint8), [], empty)
    assert out is not frame and np.array_equal(out, opencv.paste(frame, crops, [], empty))
    empty_mask = np.zeros((1, 224, 224), np.float32)                 # a mask that reaches nothing
    out = stages.paste(frame, np.zeros((1, 224, 224, 3), np.uint8), empty_mask, face_matrices()[:1])
    assert np.array_equal(out, frame)


@pytest.mark.parametrize("shift", [(-700, 0), (0, 700), (-250, 0), (0, 420)],
                         ids=["left-off", "below-off", "left-edge", "bottom-edge"])
def test_faces_off_and_on_the_frame_edge_like_the_opencv_path(stages, shift):
    frame = np.maximum(astronaut(), 8)                               # 0 in a crop then means off the frame
    M = align.estimate_norm(ASTRONAUT_KPS + np.array(shift, np.float64))[0]
    Ms = np.stack([M, M])
    crops = stages.crop(frame, Ms)
    expected = graph_stages.OpenCvStages().crop(frame, Ms)
    assert np.abs(crops.astype(np.int16) - expected).max() <= 1
    off, expected_off = (crops == 0).all(axis=-1), (expected == 0).all(axis=-1)
    assert expected_off.mean() > 0.3                                 # partly or wholly off the frame
    assert np.abs(off.sum() - expected_off.sum()) <= 0.002 * off.size


@pytest.mark.parametrize("x_end", [-1.77, -0.5, 511.5])
def test_crop_squeezed_against_the_frame_edge_like_the_opencv_path(stages, x_end):
    """All samples within two pixels of the left edge (or at the right edge): the window fed to the graph is
    at its narrowest there (the graph normalises sample positions by the width it is fed, minus one)."""
    frame = np.maximum(astronaut(), 8)
    frame_from_crop = np.array([[0.01, 0.0, x_end - 0.01 * 223], [0.0, 1.0, 100.0]])
    M = cv2.invertAffineTransform(frame_from_crop)
    crops = stages.crop(frame, M[None])
    expected = graph_stages.OpenCvStages().crop(frame, M[None])
    assert np.abs(crops.astype(np.int16) - expected).max() <= 1


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.full((2, 3), np.nan), np.full((2, 3), np.inf)],
                         ids=["singular", "nan", "inf"])
def test_degenerate_matrix_crop_like_the_opencv_path(stages, bad):
    frame = astronaut()
    Ms = np.stack([face_matrices()[0], bad])
    crops = stages.crop(frame, Ms)
    expected = graph_stages.OpenCvStages().crop(frame, Ms)
    assert np.abs(crops.astype(np.int16) - expected).max() <= 1
    assert np.array_equal(crops[1], expected[1])                     # flat: frame[0, 0] (singular) or black


def test_degenerate_matrix_paste_like_the_opencv_path(stages):
    frame = astronaut()
    swap = np.full((1, 224, 224, 3), 7, np.uint8)
    singular = np.zeros((1, 2, 3))
    assert np.array_equal(stages.paste(frame, swap, [soft_mask()], singular),
                          graph_stages.OpenCvStages().paste(frame, swap, [soft_mask()], singular))
    for path in (stages, graph_stages.OpenCvStages()):
        with pytest.raises(ValueError):
            path.paste(frame, swap, [soft_mask()], np.full((1, 2, 3), np.nan))


@pytest.mark.parametrize("shape", [(3, 3), (2, 2)])
def test_wrong_shaped_matrix_is_refused_like_the_opencv_path(stages, shape):
    frame = astronaut()
    bad = np.eye(*shape)[None]
    swap = np.zeros((1, 224, 224, 3), np.uint8)
    for path in (stages, graph_stages.OpenCvStages()):
        with pytest.raises(cv2.error):
            path.crop(frame, bad)
        with pytest.raises(cv2.error):
            path.paste(frame, swap, [soft_mask()], bad)
