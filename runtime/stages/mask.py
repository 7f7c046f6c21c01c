"""GHOST's blend mask, drawn in the 224 crop from the 106 landmarks of the swapped face and of the target face.

Why the rules: when the swapped face is narrower than the target's (its jaw points 1, 2, 13 sit right of the
target's, or 17, 18, 29 left of them), the target's own cheeks would show around it, so the mask is eroded more
and blurred wider; when it is wider (offset < −3) the hull is dilated instead. The eyebrows are pushed up so
the forehead blends in, by a factor tied to the erosion chosen. In a video the choice is made once per run of
frames (`params`), so the mask edge does not flicker.

Numerics follow GHOST where it is specific: landmarks are cast to int32 (truncation) before the eyebrow push
and the pushed points are truncated again; the hull is filled into a uint8 image with 255; the erosion kernel
is ones(e, e) (dilation ones(5, 5) for e = −5); the 2·σy border band is zeroed before the blur; the blur is
cv2.GaussianBlur on that uint8 image with ksize (0, 0), so OpenCV derives the kernel from σ — for 8-bit input it
takes ksize = 2·round(3σ) + 1 (radius 3σ, not the 4σ it uses for float images), border reflect-101 — and the
result is rounded to uint8 before /255. The offset uses the un-truncated float landmarks.
"""

from typing import NamedTuple, Sequence

import cv2
import numpy as np

from ghostrt.runtime.stages.align import CROP_SIZE
LEFT_JAW = (1, 2, 13)          # swap.x − target.x summed here ...
RIGHT_JAW = (17, 18, 29)       # ... and target.x − swap.x here; the larger is the offset
LEFT_BROW = (43, 48, 49, 51, 50)
LEFT_EYE_TOP = (35, 41, 40, 42, 39)
RIGHT_BROW = (102, 103, 104, 105, 101)
RIGHT_EYE_TOP = (89, 95, 94, 96, 93)


class MaskParams(NamedTuple):
    """The per-run choice: erosion size (negative = dilation), Gaussian σx, σy."""

    erode: int
    sigma_x: int
    sigma_y: int


def jaw_offset(swap_lms: np.ndarray, target_lms: np.ndarray) -> float:
    """How much narrower (> 0) or wider (< 0) the swapped face is than the target's, in crop pixels."""
    swap_lms = np.asarray(swap_lms, np.float64)
    target_lms = np.asarray(target_lms, np.float64)
    left = float(np.sum(swap_lms[list(LEFT_JAW), 0] - target_lms[list(LEFT_JAW), 0]))
    right = float(np.sum(target_lms[list(RIGHT_JAW), 0] - swap_lms[list(RIGHT_JAW), 0]))
    return max(left, right)


def choose_params(offset: float) -> MaskParams:
    """GHOST's (erode, σx, σy) table."""
    if offset > 6:
        return MaskParams(15, 15, 10)
    if offset > 3:
        return MaskParams(10, 10, 8)
    if offset < -3:
        return MaskParams(-5, 5, 10)
    return MaskParams(5, 5, 5)


def eyebrow_factor(params: MaskParams) -> float:
    """Push-up factor of the eyebrows: strong for the widest erosion, weak for dilation."""
    if params.erode == 15:
        return 2.7
    if params.erode == -5:
        return 0.5
    return 2.0


def push_eyebrows(landmarks: np.ndarray, factor: float) -> np.ndarray:
    """int32 copy of the landmarks with each brow point moved by factor·0.5·(brow − eye top point)."""
    pts = np.asarray(landmarks, np.float64).astype(np.int32)
    for brow, eye in ((LEFT_BROW, LEFT_EYE_TOP), (RIGHT_BROW, RIGHT_EYE_TOP)):
        top, bottom = pts[list(brow)], pts[list(eye)]
        pts[list(brow)] = (top + factor * 0.5 * (top - bottom)).astype(np.int32)
    return pts


def hull_mask(points: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """uint8 size×size image, 255 inside the convex hull of the (int) points, 0 outside."""
    mask = np.zeros((size, size), np.uint8)
    hull = cv2.convexHull(np.asarray(points, np.int32).reshape(-1, 1, 2))
    cv2.fillConvexPoly(mask, hull, 255)
    return mask


def erode_and_band(mask: np.ndarray, params: MaskParams) -> np.ndarray:
    """Erode with ones(e, e) (dilate with ones(−e, −e) when e < 0), then zero a 2·σy band along every edge
    so the blurred mask fades out before the crop border."""
    e = int(params.erode)
    if e > 0:
        out = cv2.erode(mask, np.ones((e, e), np.uint8), iterations=1)
    elif e < 0:
        out = cv2.dilate(mask, np.ones((-e, -e), np.uint8), iterations=1)
    else:
        out = mask.copy()
    band = 2 * int(params.sigma_y)
    if band > 0:
        out[:band, :] = 0
        out[-band:, :] = 0
        out[:, :band] = 0
        out[:, -band:] = 0
    return out


def blur(mask: np.ndarray, params: MaskParams) -> np.ndarray:
    """Gaussian blur (σx, σy) of the uint8 mask, kernel size derived by OpenCV (see module docstring)."""
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=float(params.sigma_x), sigmaY=float(params.sigma_y))


def ghost_mask(swap_lms: np.ndarray, target_lms: np.ndarray, size: int = CROP_SIZE,
               params: MaskParams | Sequence[int] | None = None) -> tuple[np.ndarray, MaskParams]:
    """(mask float32 size×size in [0, 1], params). The hull is the swapped face's (eyebrows pushed up);
    the target's landmarks only decide the params, and are not needed when `params` is given."""
    if params is None:
        params = choose_params(jaw_offset(swap_lms, target_lms))
    params = MaskParams(*(int(v) for v in params))
    points = push_eyebrows(swap_lms, eyebrow_factor(params))
    mask = blur(erode_and_band(hull_mask(points, size), params), params)
    return (mask.astype(np.float32) / np.float32(255.0)), params


def ghost_masks(swap_lms: np.ndarray, target_lms: np.ndarray, size: int = CROP_SIZE,
                params: Sequence[MaskParams | None] | None = None) -> tuple[np.ndarray, list[MaskParams]]:
    """Batch of N faces: ([N, size, size] float32, [N params]); params[i] = None chooses afresh."""
    n = len(swap_lms)
    chosen = list(params) if params is not None else [None] * n
    masks = np.zeros((n, size, size), np.float32)
    out_params = []
    for i in range(n):
        masks[i], p = ghost_mask(swap_lms[i], None if target_lms is None else target_lms[i], size, chosen[i])
        out_params.append(p)
    return masks, out_params
