"""Paste-back: identity swaps on a real photo, faces half outside the frame, untouched pixels, memory."""

import tracemalloc

import cv2
import numpy as np

from ghostrt.runtime.stages import align, blend

# Hand-placed on matplotlib's grace_hopper.jpg (512×600): eyes, nose tip, mouth corners.
HOPPER_KPS = np.array([[222, 195], [310, 192], [265, 240], [232, 282], [298, 280]], np.float32)


def hopper() -> np.ndarray:
    from matplotlib import cbook
    import matplotlib.image as mpimg
    return np.ascontiguousarray(mpimg.imread(cbook.get_sample_data("grace_hopper.jpg")))


def disc_mask(radius: float = 70.0, sigma: float = 8.0) -> np.ndarray:
    """A soft face-sized disc in the 224 crop, 0 near the crop border."""
    m = np.zeros((224, 224), np.float32)
    cv2.circle(m, (112, 120), int(radius), 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), sigma)


def reference_paste(frame, crop, mask, M):
    """GHOST's full-frame formula, written independently: float frame-sized warps and blend."""
    h, w = frame.shape[:2]
    inv = cv2.invertAffineTransform(M)
    swap_t = cv2.warpAffine(crop, inv, (w, h), borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
    mask_t = cv2.warpAffine(mask, inv, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    return mask_t * swap_t + (1 - mask_t) * frame.astype(np.float64), mask_t[..., 0]


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def test_identity_swap_leaves_the_photo_intact():
    frame = hopper()
    crop, M = align.align_crop(frame, HOPPER_KPS)
    mask = disc_mask()
    before = frame.copy()
    out = blend.paste_back(frame, crop, mask, M)
    np.testing.assert_array_equal(frame, before)                       # input untouched, output is a copy
    _, mask_t = reference_paste(frame, crop, mask, M)
    outside = mask_t == 0
    assert outside.sum() > 0.5 * outside.size
    np.testing.assert_array_equal(out[outside], frame[outside])
    inside = mask_t > 0.5
    assert inside.sum() > 5000
    assert psnr(out[inside], frame[inside]) >= 30.0


def test_matches_the_full_frame_formula():
    frame = hopper()[150:350, 150:400].copy()
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (224, 224, 3), np.uint8)               # a very different "swap"
    _, M = align.align_crop(frame, HOPPER_KPS - np.float32([150, 150]))
    mask = disc_mask()
    expected, mask_t = reference_paste(frame, crop, mask, M)
    out = blend.paste_back(frame, crop, mask, M)
    diff = np.abs(out.astype(np.float64) - expected)
    assert np.percentile(diff[mask_t > 0], 99) <= 2.0                  # OpenCV's 1/32-px grids differ a little
    assert (out != frame).sum() > 1000


def test_face_in_a_corner_half_outside_the_frame():
    frame = hopper()[170:, 240:].copy()                                # left half of the face cut away
    kps = HOPPER_KPS - np.float32([240, 170])
    crop, M = align.align_crop(frame, kps)
    mask = disc_mask()
    out = blend.paste_back(frame, crop, mask, M)
    assert out.shape == frame.shape
    _, mask_t = reference_paste(frame, crop, mask, M)
    np.testing.assert_array_equal(out[mask_t == 0], frame[mask_t == 0])
    inside = mask_t > 0.5
    assert inside.sum() > 2000
    assert psnr(out[inside], frame[inside]) >= 30.0
    region = blend.paste_region(frame.shape, mask, M)
    assert region is not None and region[0] == 0                       # clipped at the frame's left edge


def test_only_the_face_rectangle_is_touched():
    frame = hopper()
    rng = np.random.default_rng(1)
    crop = rng.integers(0, 256, (224, 224, 3), np.uint8)
    _, M = align.align_crop(frame, HOPPER_KPS)
    mask = disc_mask()
    out = blend.paste_back(frame, crop, mask, M)
    x0, y0, x1, y1 = blend.paste_region(frame.shape, mask, M)
    changed = np.argwhere((out != frame).any(axis=-1))
    assert changed[:, 0].min() >= y0 and changed[:, 0].max() < y1
    assert changed[:, 1].min() >= x0 and changed[:, 1].max() < x1
    # and the rectangle really covers the warped mask's support
    _, mask_t = reference_paste(frame, crop, mask, M)
    ys, xs = np.nonzero(mask_t > 0)
    assert ys.min() >= y0 and ys.max() < y1 and xs.min() >= x0 and xs.max() < x1


def test_empty_mask_changes_nothing():
    frame = hopper()
    crop, M = align.align_crop(frame, HOPPER_KPS)
    out = blend.paste_back(frame, 255 - crop, np.zeros((224, 224), np.float32), M)
    np.testing.assert_array_equal(out, frame)
    assert blend.paste_region(frame.shape, np.zeros((224, 224), np.float32), M) is None


def test_full_mask_gives_the_swap():
    """m = 1 inside: the output is exactly the warped swap there (no blending residue)."""
    frame = np.zeros((300, 300, 3), np.uint8)
    crop = np.full((224, 224, 3), 200, np.uint8)
    M = np.array([[1.0, 0.0, -40.0], [0.0, 1.0, -30.0]])
    mask = np.zeros((224, 224), np.float32)
    mask[50:150, 60:160] = 1.0
    out = blend.paste_back(frame, crop, mask, M)
    assert (out[81:179, 101:199] == 200).all()                          # crop rows 51..148 + 30, cols + 40
    assert (out[:79] == 0).all() and (out[181:] == 0).all()


def test_several_faces_in_one_frame():
    frame = hopper()
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (2, 224, 224, 3), np.uint8)
    kps = np.stack([HOPPER_KPS, HOPPER_KPS * 0.4 + np.float32([10, 380])])
    Ms = np.stack([align.estimate_norm(k)[0] for k in kps])
    masks = np.stack([disc_mask(), disc_mask(50)])
    out = blend.paste_back_faces(frame, crops, masks, Ms)
    one_by_one = blend.paste_back(blend.paste_back(frame, crops[0], masks[0], Ms[0]), crops[1], masks[1], Ms[1])
    np.testing.assert_array_equal(out, one_by_one)
    in_place = frame.copy()
    assert blend.paste_back_faces(in_place, crops, masks, Ms, out=in_place) is in_place
    np.testing.assert_array_equal(in_place, out)


def test_large_frame_needs_no_frame_sized_float_buffers():
    frame = np.zeros((2000, 3000, 3), np.uint8)                         # 18 MB; float32 copy would be 72 MB
    kps = HOPPER_KPS + np.float32([2000, 1200])
    M, _ = align.estimate_norm(kps)
    crop = np.full((224, 224, 3), 90, np.uint8)
    tracemalloc.start()
    blend.paste_back(frame, crop, disc_mask(), M, out=frame)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8_000_000
    assert frame[1400, 2265].tolist() == [90, 90, 90]                   # the nose is pasted
    assert (frame[:1000] == 0).all()
