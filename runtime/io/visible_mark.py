"""The visible corner label on live output (webcam preview, virtual camera), and on files with --visible-mark:
whoever sees the stream is told it is altered, with no tool needed. Rendered once per frame size, then
alpha-blended into the corner, so it costs a small copy per frame."""

from functools import lru_cache

import numpy as np

TEXT = "AI-altered · ghostrt"
NO_MARK_NOTE = ("ghostrt: --no-visible-mark: live output shows no 'AI-altered' label; people watching will not "
                "be told it is altered (the invisible watermark is still applied)")


@lru_cache(maxsize=8)
def _patch(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 patch, alpha float32 0..1) sized for a width×height frame: text height ~3% of the frame."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(10, round(min(width, height) * 0.035))
    try:
        font = ImageFont.load_default(size)
    except TypeError:            # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), TEXT, font=font)
    pad = max(2, size // 3)
    w, h = min(width, x1 - x0 + 2 * pad), min(height, y1 - y0 + 2 * pad)
    text = Image.new("L", (w, h), 0)
    ImageDraw.Draw(text).text((pad - x0, pad - y0), TEXT, fill=255, font=font)
    t = np.asarray(text, np.float32) / 255.0
    box = 0.6                                      # dark box behind the text: legible on any background
    alpha = np.maximum(t, box)
    rgb = np.clip(t * 255.0 / np.maximum(alpha, 1e-6), 0, 255)   # white text over black at `box` opacity
    return np.repeat(rgb[:, :, None], 3, axis=2).astype(np.float32), alpha[:, :, None]


def region(width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) the label covers: the bottom-right corner with a small margin."""
    patch, _ = _patch(width, height)
    h, w = patch.shape[:2]
    margin = max(0, min(width - w, height - h, round(min(width, height) * 0.015)))
    x1, y1 = width - margin, height - margin
    return x1 - w, y1 - h, x1, y1


def apply(rgb: np.ndarray, inplace: bool = False) -> np.ndarray:
    """The frame with the label in its bottom-right corner (a copy unless `inplace`)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"visible_mark.apply wants RGB uint8 H×W×3, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    out = rgb if inplace else rgb.copy()
    patch, alpha = _patch(width, height)
    x0, y0, x1, y1 = region(width, height)
    area = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.rint(area * (1.0 - alpha) + patch * alpha).astype(np.uint8)
    return out
