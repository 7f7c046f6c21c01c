"""GHOST's mask rules on constructed 106-point landmark sets."""

import math

import numpy as np
import pytest

from ghostrt.runtime.stages import mask

BROW_Y, EYE_Y = 70.3, 90.6


def face_landmarks() -> np.ndarray:
    """106 points: every point on the lower half of an ellipse (the jaw), except the brows (top of the hull,
    y = 70.3) and the eye tops (y = 90.6, inside the hull)."""
    angles = np.linspace(0.0, np.pi, 106)
    pts = np.stack([112.0 + 60.0 * np.cos(angles), 130.0 + 70.0 * np.sin(angles)], axis=1) + 0.3
    xs = np.linspace(75.0, 150.0, 5)
    pts[list(mask.LEFT_BROW)] = np.stack([xs - 10, np.full(5, BROW_Y)], 1)
    pts[list(mask.LEFT_EYE_TOP)] = np.stack([xs - 10, np.full(5, EYE_Y)], 1)
    pts[list(mask.RIGHT_BROW)] = np.stack([xs + 10, np.full(5, BROW_Y)], 1)
    pts[list(mask.RIGHT_EYE_TOP)] = np.stack([xs + 10, np.full(5, EYE_Y)], 1)
    return pts


def shifted(pts: np.ndarray, indices, dx: float) -> np.ndarray:
    out = pts.copy()
    out[list(indices), 0] += dx
    return out


# ------------------------------------------------------------------------------------------ the offset rule

@pytest.mark.parametrize("left_dx, right_dx, expected", [
    (+2.5, 0.0, (15, 15, 10)),       # swap jaw right of target on 1,2,13: left = 7.5 > 6
    (0.0, -2.5, (15, 15, 10)),       # target right of swap on 17,18,29: right = 7.5
    (+1.5, 0.0, (10, 10, 8)),        # 4.5 in (3, 6]
    (0.0, -1.5, (10, 10, 8)),
    (-2.0, +2.0, (-5, 5, 10)),       # both sums −6 < −3: the swapped face is wider
    (-2.0, 0.0, (5, 5, 5)),          # max(−6, 0) = 0
    (0.0, 0.0, (5, 5, 5)),
    (+0.9, 0.0, (5, 5, 5)),          # 2.7 is not > 3
])
def test_offset_branches(left_dx, right_dx, expected):
    target = face_landmarks()
    swap = shifted(shifted(target, mask.LEFT_JAW, left_dx), mask.RIGHT_JAW, right_dx)
    m, params = mask.ghost_mask(swap, target)
    assert tuple(params) == expected
    assert m.shape == (224, 224) and m.dtype == np.float32
    assert m.min() >= 0.0 and m.max() <= 1.0
    assert m[150, 112] > 0.99                                   # deep inside the face


def test_offset_is_the_larger_side():
    target = face_landmarks()
    swap = shifted(shifted(target, mask.LEFT_JAW, 1.0), mask.RIGHT_JAW, -2.0)
    assert mask.jaw_offset(swap, target) == pytest.approx(6.0)


def test_given_params_are_reused_without_target_landmarks():
    target = face_landmarks()
    swap = shifted(target, mask.LEFT_JAW, 1.5)
    first, params = mask.ghost_mask(swap, target)
    again, same = mask.ghost_mask(swap, None, params=params)
    assert same == params
    np.testing.assert_array_equal(first, again)
    forced, p = mask.ghost_mask(swap, target, params=(15, 15, 10))
    assert tuple(p) == (15, 15, 10) and not np.array_equal(forced, first)


def test_batch_equals_single_faces():
    target = face_landmarks()
    swaps = np.stack([shifted(target, mask.LEFT_JAW, 2.5), target])
    masks, params = mask.ghost_masks(swaps, np.stack([target, target]), params=[None, (-5, 5, 10)])
    assert [tuple(p) for p in params] == [(15, 15, 10), (-5, 5, 10)]
    np.testing.assert_array_equal(masks[0], mask.ghost_mask(swaps[0], target)[0])
    np.testing.assert_array_equal(masks[1], mask.ghost_mask(swaps[1], None, params=(-5, 5, 10))[0])


# --------------------------------------------------------------------------------------------- the eyebrows

@pytest.mark.parametrize("erode, factor", [(15, 2.7), (-5, 0.5), (10, 2.0), (5, 2.0)])
def test_eyebrow_factor_table(erode, factor):
    assert mask.eyebrow_factor(mask.MaskParams(erode, 5, 5)) == factor


def test_eyebrow_push_moves_the_hull_up_by_the_factor():
    pts = face_landmarks()
    brow, eye = int(BROW_Y), int(EYE_Y)                            # GHOST truncates to int first
    tops = []
    for factor in (0.5, 2.0, 2.7):
        pushed = mask.push_eyebrows(pts, factor)
        expected_y = int(brow + factor * 0.5 * (brow - eye))
        assert (pushed[list(mask.LEFT_BROW), 1] == expected_y).all()
        assert (pushed[list(mask.RIGHT_BROW), 1] == expected_y).all()
        hull = mask.hull_mask(pushed)
        top = int(np.flatnonzero(hull.any(axis=1))[0])
        assert top == expected_y
        tops.append(top)
    assert tops[0] > tops[1] > tops[2]
    np.testing.assert_array_equal(mask.push_eyebrows(pts, 2.0)[:35], pts[:35].astype(np.int32))


# ------------------------------------------------------------------------------ erosion, band and blur

def top_row(img: np.ndarray) -> int:
    return int(np.flatnonzero(img.any(axis=1))[0])


def test_erosion_and_dilation_move_the_edge():
    hull = mask.hull_mask(face_landmarks())
    top = top_row(hull)
    eroded = mask.erode_and_band(hull, mask.MaskParams(15, 15, 1))
    dilated = mask.erode_and_band(hull, mask.MaskParams(-5, 5, 1))
    assert top_row(eroded) == top + 7                                  # a 15×15 square removes 7 px per side
    assert top_row(dilated) == top - 2                                 # a 5×5 square adds 2
    assert (eroded > 0).sum() < (hull > 0).sum() < (dilated > 0).sum()


@pytest.mark.parametrize("params", [(15, 15, 10), (10, 10, 8), (-5, 5, 10), (5, 5, 5)])
def test_border_band_is_zero_then_fades(params):
    params = mask.MaskParams(*params)
    full = np.full((224, 224), 255, np.uint8)
    banded = mask.erode_and_band(full, params)
    b = 2 * params.sigma_y
    assert (banded[:b] == 0).all() and (banded[-b:] == 0).all()
    assert (banded[:, :b] == 0).all() and (banded[:, -b:] == 0).all()
    assert (banded[b:-b, b:-b] == 255).all()
    blurred = mask.blur(banded, params) / 255.0
    # At the edge only the Gaussian tail beyond the band reaches in, twice (reflect-101 mirrors it); the
    # first lit row is b, so the discrete tail starts half a pixel earlier.
    phi = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    assert blurred[0].max() <= 2 * phi(-(b - 0.5) / params.sigma_y) + 1.5 / 255
    assert blurred[:, 0].max() <= 2 * phi(-(b - 0.5) / params.sigma_x) + 1.5 / 255
    assert blurred[0].max() < 0.07 and blurred[:, 0].max() < 0.3
    assert blurred[112, 112] > 0.99
