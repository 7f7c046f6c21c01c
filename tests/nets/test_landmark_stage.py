"""2d106det pre/post-processing: the 224→192 input warp and the decode back to crop pixels."""

import numpy as np

from ghostrt.runtime.nets import landmarks


def to_input_pixels(p224: np.ndarray) -> np.ndarray:
    """The forward map stated in MODELS.md: [[0.5714286, 0, 32], [0, 0.5714286, 32]]."""
    return p224 * 0.5714286 + 32.0


def test_decode_inverts_the_input_warp():
    rng = np.random.default_rng(0)
    pts224 = rng.uniform(-20, 244, (3, 106, 2))
    raw = (to_input_pixels(pts224) / 96.0 - 1.0).reshape(3, 212)        # what a perfect net would output
    decoded = landmarks.decode_landmarks(raw.astype(np.float32))
    assert decoded.shape == (3, 106, 2) and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, pts224, atol=2e-3)


def test_decode_known_values():
    raw = np.zeros((1, 212), np.float32)                  # (0, 0) = centre of the 192 input
    raw[0, 2:4] = [-1.0, 1.0]                             # point 1 at input (0, 192)
    out = landmarks.decode_landmarks(raw)
    np.testing.assert_allclose(out[0, 0], [112.0, 112.0], atol=1e-4)
    np.testing.assert_allclose(out[0, 1], [-56.0, 280.0], atol=1e-4)


def test_input_is_raw_pixels_with_a_black_margin():
    crops = np.full((2, 224, 224, 3), 200, np.uint8)
    crops[1, :, :, 2] = 17
    x = landmarks.crops_to_landmark_input(crops)
    assert x.shape == (2, 3, 192, 192) and x.dtype == np.float32
    assert (x[:, :, :30, :] == 0).all() and (x[:, :, 162:, :] == 0).all()   # the 128-px face sits at 32..160
    assert (x[:, :, :, :30] == 0).all() and (x[:, :, :, 162:] == 0).all()
    np.testing.assert_array_equal(x[0, :, 40:150, 40:150], 200.0)
    np.testing.assert_array_equal(x[1, 2, 40:150, 40:150], 17.0)           # channel order kept (RGB)


def test_a_dot_lands_where_the_warp_says():
    crop = np.zeros((1, 224, 224, 3), np.uint8)
    crop[0, 140:148, 63:70] = 255                                           # centre (66, 143.5) in the crop
    x = landmarks.crops_to_landmark_input(crop)[0, 0]
    ys, xs = np.nonzero(x > 0)
    weights = x[ys, xs]
    centre = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)])
    np.testing.assert_allclose(centre, to_input_pixels(np.array([66.0, 143.5])), atol=0.6)
