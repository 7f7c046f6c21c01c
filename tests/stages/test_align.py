"""Alignment: similarity fit, GHOST's five-template choice, the crop warp and the net-input resamplings."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.transform import SimilarityTransform

from ghostrt.runtime.stages import align
from ghostrt.runtime.types import Face

# Hand-placed on matplotlib's grace_hopper.jpg (512×600): eyes, nose tip, mouth corners.
HOPPER_KPS = np.array([[222, 195], [310, 192], [265, 240], [232, 282], [298, 280]], np.float32)


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    c, s = scale * np.cos(a), scale * np.sin(a)
    return np.array([[c, -s, tx], [s, c, ty]], np.float64)


def transform(M: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ M[:, :2].T + M[:, 2]


def skimage_fit(src: np.ndarray, dst: np.ndarray) -> SimilarityTransform:
    """skimage's own estimator (from_estimate since 0.26, estimate before)."""
    if hasattr(SimilarityTransform, "from_estimate"):
        fitted = SimilarityTransform.from_estimate(src, dst)
        assert fitted
        return fitted
    fitted = SimilarityTransform()
    assert fitted.estimate(src, dst)
    return fitted


def hopper() -> np.ndarray:
    from matplotlib import cbook
    import matplotlib.image as mpimg
    return np.ascontiguousarray(mpimg.imread(cbook.get_sample_data("grace_hopper.jpg")))


# -------------------------------------------------------------------------------------------- similarity fit

def test_synthetic_similarity_is_recovered_exactly():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 300, (5, 2))
    truth = similarity(1.7, 23.0, -40.0, 12.5)
    M = align.estimate_similarity(src, transform(truth, src))
    np.testing.assert_allclose(M, truth, atol=1e-9)


def test_similarity_batched_matches_one_by_one():
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, (4, 5, 2))
    dst = rng.uniform(0, 100, (4, 5, 2))
    batch = align.estimate_similarity(src, dst)
    for i in range(4):
        np.testing.assert_allclose(batch[i], align.estimate_similarity(src[i], dst[i]), atol=1e-12)


def test_similarity_matches_skimage_on_noisy_points():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 200, (5, 2))
    dst = transform(similarity(0.6, -71.0, 30.0, 5.0), src) + rng.normal(0, 3.0, (5, 2))
    reference = skimage_fit(src, dst)
    np.testing.assert_allclose(align.estimate_similarity(src, dst), reference.params[:2], atol=1e-9)


def test_similarity_never_reflects():
    rng = np.random.default_rng(4)
    src = rng.uniform(0, 100, (5, 2))
    mirrored = src * np.array([-1.0, 1.0])
    M = align.estimate_similarity(src, mirrored)
    assert np.linalg.det(M[:, :2]) > 0


def test_coincident_points_are_refused():
    with pytest.raises(ValueError):
        align.estimate_similarity(np.ones((5, 2)), np.zeros((5, 2)))


# ------------------------------------------------------------------------------------------ template choice

@pytest.mark.parametrize("index", range(5))
def test_each_template_pose_is_chosen_for_its_own_points(index):
    """Points of template k, moved by any similarity, are fitted best by template k with zero residual."""
    frame_pts = transform(similarity(0.45, 12.0, 300.0, 80.0), align.templates()[index])
    M, chosen = align.estimate_norm(frame_pts)
    assert chosen == index
    np.testing.assert_allclose(transform(M, frame_pts), align.templates()[index], atol=1e-6)


def test_templates_at_224_are_twice_the_112_ones():
    np.testing.assert_allclose(align.templates(224), 2 * align.TEMPLATES_112)
    np.testing.assert_allclose(align.templates(224)[2, 2], [112.0, 136.986])


def test_frontal_rotated_face_picks_frontal_and_lands_on_it():
    rng = np.random.default_rng(5)
    pts = transform(similarity(1.3, -35.0, 50.0, 400.0), align.templates()[2]) + rng.normal(0, 0.5, (5, 2))
    M, chosen = align.estimate_norm(pts)
    assert chosen == align.FRONTAL_TEMPLATE
    assert np.abs(transform(M, pts) - align.templates()[2]).max() < 3.0


def test_choice_agrees_with_an_independent_skimage_search():
    """Poses between two neighbouring templates, with noise: the chosen template is the argmin of the summed
    point distances (not squared distances), each fit computed with skimage."""
    rng = np.random.default_rng(6)
    tpl = align.templates()
    for trial in range(80):
        a, t = trial % 4, rng.uniform(0.3, 0.7)
        base = t * tpl[a] + (1 - t) * tpl[a + 1] + rng.normal(0, 3.0, (5, 2))
        pts = transform(similarity(0.8, rng.uniform(-20, 20), 100.0, 100.0), base)
        errors = [np.sqrt(((skimage_fit(pts, ref)(pts) - ref) ** 2).sum(axis=1)).sum() for ref in tpl]
        _, chosen = align.estimate_norm(pts)
        assert chosen == int(np.argmin(errors))


def test_align_batch_stacks_the_single_face_path():
    frame = hopper()
    faces = [Face(np.zeros(4, np.float32), 0.9, HOPPER_KPS),
             Face(np.zeros(4, np.float32), 0.8, HOPPER_KPS + np.float32([5, -8]))]
    crops, Ms = align.align_batch(frame, faces)
    assert crops.shape == (2, 224, 224, 3) and crops.dtype == np.uint8 and Ms.shape == (2, 2, 3)
    for i, face in enumerate(faces):
        crop, M = align.align_crop(frame, face.kps)
        np.testing.assert_array_equal(crops[i], crop)
        np.testing.assert_allclose(Ms[i], M)
    empty_crops, empty_Ms = align.align_batch(frame, [])
    assert empty_crops.shape == (0, 224, 224, 3) and empty_Ms.shape == (0, 2, 3)


def test_hopper_crop_puts_the_eyes_on_the_template():
    _, M = align.align_crop(hopper(), HOPPER_KPS)
    eyes = transform(M, HOPPER_KPS.astype(np.float64))[:2]
    tpl = align.templates()[align.estimate_norm(HOPPER_KPS)[1]]
    assert np.abs(eyes - tpl[:2]).max() < 6.0          # a hand-placed, nearly frontal face
    assert align.estimate_norm(HOPPER_KPS)[1] in (1, 2, 3)


# ----------------------------------------------------------------------------------------------- the warp

def test_crop_samples_the_frame_through_the_inverse_matrix():
    """A linear ramp frame: bilinear sampling of a linear function is exact, so every crop pixel must equal
    the ramp evaluated at M⁻¹·(u, v); outside the frame the crop is 0."""
    h, w = 300, 400
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    frame = np.stack([xs * 0.5, ys * 0.6, 40 + 0 * xs], axis=-1).round().astype(np.uint8)
    kps = transform(similarity(0.9, 15.0, 20.0, 30.0), align.templates()[2])   # face partly off the frame
    crop, M = align.align_crop(frame, kps)
    inv = np.linalg.inv(np.vstack([M, [0, 0, 1]]))[:2]
    v, u = np.mgrid[0:224, 0:224].astype(np.float64)
    src = np.stack([u, v], -1) @ inv[:, :2].T + inv[:, 2]
    inside = (src[..., 0] >= 1) & (src[..., 0] <= w - 2) & (src[..., 1] >= 1) & (src[..., 1] <= h - 2)
    outside = (src[..., 0] < -1) | (src[..., 0] > w) | (src[..., 1] < -1) | (src[..., 1] > h)
    assert inside.sum() > 1000 and outside.sum() > 1000
    expected_r = np.round(src[..., 0] * 0.5)
    expected_g = np.round(src[..., 1] * 0.6)
    assert np.abs(crop[..., 0][inside] - expected_r[inside]).max() <= 1.5
    assert np.abs(crop[..., 1][inside] - expected_g[inside]).max() <= 1.5
    assert (crop[outside] == 0).all()


# ------------------------------------------------------------------------------------------ net resamplings

def test_arcface_halving_matches_align_corners_sampling():
    """out(i, j) = in(i·223/111, j·223/111), bilinear — checked with scipy's map_coordinates (order 1)."""
    rng = np.random.default_rng(7)
    crops = rng.integers(0, 256, (2, 224, 224, 3), np.uint8)
    out = align.crops_to_arcface(crops)
    assert out.shape == (2, 3, 112, 112) and out.dtype == np.float32
    coords = np.arange(112) * (223.0 / 111.0)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    for n in range(2):
        for c in range(3):
            plane = crops[n, :, :, c].astype(np.float64) / 127.5 - 1.0
            expected = ndimage.map_coordinates(plane, [yy, xx], order=1)
            np.testing.assert_allclose(out[n, c], expected, atol=1e-5)
    # align_corners: the four corners are the input's corners exactly
    np.testing.assert_allclose(out[0, 0, -1, -1], crops[0, -1, -1, 0] / 127.5 - 1.0, atol=1e-6)


def test_generator_input_and_output_ranges():
    crops = np.full((1, 224, 224, 3), 51, np.uint8)
    g = align.crops_to_generator(crops)
    assert g.shape == (1, 3, 256, 256) and g.dtype == np.float32
    np.testing.assert_allclose(g, 51 / 127.5 - 1.0, atol=1e-6)
    y = np.full((2, 3, 256, 256), -0.5, np.float32)
    y[1] = 1.5                                                          # beyond tanh range -> clipped
    back = align.generator_to_crops(y)
    assert back.shape == (2, 224, 224, 3) and back.dtype == np.uint8
    assert (back[0] == 64).all() and (back[1] == 255).all()           # 0.25·255 = 63.75 -> 64


def test_generator_round_trip_keeps_a_real_face():
    crop, _ = align.align_crop(hopper(), HOPPER_KPS)
    back = align.generator_to_crops(align.crops_to_generator(crop[None]))[0]
    mse = np.mean((back.astype(np.float64) - crop) ** 2)
    assert 10 * np.log10(255.0 ** 2 / max(mse, 1e-12)) > 33.0
