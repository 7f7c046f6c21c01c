"""Image files in and out. Everything odd about a file (grayscale, alpha, 16 bits, CMYK, EXIF rotation, a PNG
named .jpg) is settled here, so every stage sees RGB uint8 H×W×3 only. Any unusable file is a GhostError of
one line naming it; outputs are checked before any work and written atomically with the provenance label.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ghostrt.atomic import atomic_path
from ghostrt.errors import file_error
from ghostrt.runtime.io import provenance_label

# 16384 × 16384: 805 MB as RGB uint8. Beyond that the swap would not fit a small machine anyway.
MAX_PIXELS = 16384 * 16384
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
JPEG_QUALITY = 95


@dataclass
class ImageInfo:
    """What the file was, and what reading it changed (shown in the summary when not plain RGB 8-bit)."""

    path: Path
    format: str
    mode: str
    width: int
    height: int
    bit_depth: int = 8
    icc_profile: bytes | None = None
    notes: list[str] = field(default_factory=list)


def _png_bit_depth(path: Path) -> int:
    """Bit depth from the PNG header; PIL hides it for 16-bit RGB (it reads only the high bytes)."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 26 and head[12:16] == b"IHDR":
        return head[24]
    return 8


def _open_fully(path: Path) -> Image.Image:
    """Open and decode every pixel now, so a truncated file fails here and not halfway through a swap."""
    if not path.exists():
        raise file_error(path, "file does not exist")
    if path.is_dir():
        raise file_error(path, "is a folder, not an image")
    if not os.access(path, os.R_OK):
        raise file_error(path, "file is not readable (permissions)")
    if path.stat().st_size == 0:
        raise file_error(path, "file is empty")
    saved = ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = False, MAX_PIXELS
    try:
        image = Image.open(path)
        image.load()
        return image
    except UnidentifiedImageError:
        raise file_error(path, "not an image (no known image format in its content)") from None
    except Image.DecompressionBombError:
        raise file_error(path, f"image too large (over {MAX_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise file_error(path, f"truncated or corrupt image ({str(err).splitlines()[0][:120]})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS = saved


def _to_uint8(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """High-bit-depth integer or float pixels scaled to 0..255 with rounding (PIL's own I;16→L clips)."""
    if values.dtype == np.uint8:
        return values
    if np.issubdtype(values.dtype, np.floating):
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if bit_depth == 16 or values.max(initial=0) > 255:
        return ((values.astype(np.uint32) + 128) // 257).clip(0, 255).astype(np.uint8)
    return values.clip(0, 255).astype(np.uint8)


def read_image(path) -> tuple[np.ndarray, np.ndarray | None, ImageInfo]:
    """RGB uint8 H×W×3 (C-contiguous), alpha uint8 H×W or None, and what the file was."""
    path = Path(path)
    image = _open_fully(path)
    bit_depth = _png_bit_depth(path) if image.format == "PNG" else 8
    info = ImageInfo(path, image.format or "?", image.mode, image.width, image.height, bit_depth)
    if getattr(image, "n_frames", 1) > 1:
        info.notes.append(f"{image.n_frames} frames: only the first is used")
    if image.getexif().get(0x0112, 1) not in (1, None):
        image = ImageOps.exif_transpose(image)
        info.notes.append("EXIF orientation applied (the output is stored upright)")
    mode = image.mode
    if mode in ("RGB", "RGBA") and "icc_profile" in image.info:
        info.icc_profile = image.info["icc_profile"]
    alpha = None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        rgb_gray = _to_uint8(np.asarray(image), bit_depth if mode.startswith("I;16") else 8)
        rgb = np.ascontiguousarray(np.repeat(rgb_gray[:, :, None], 3, axis=2))
        info.notes.append(f"grayscale {mode}: converted to 8-bit RGB for the nets")
    else:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info) \
                or (mode in ("RGB", "L") and "transparency" in image.info):
            image = image.convert("RGBA")
            channels = np.asarray(image)
            alpha = np.ascontiguousarray(channels[:, :, 3])
            rgb = np.ascontiguousarray(channels[:, :, :3])
            del channels
        else:
            if mode == "CMYK":
                info.notes.append("CMYK: converted to RGB")
            elif mode in ("L", "1"):
                info.notes.append("grayscale: converted to RGB for the nets")
            rgb = np.asarray(image.convert("RGB") if mode != "RGB" else image)
            rgb = np.ascontiguousarray(rgb)
    if bit_depth == 16:
        info.notes.append("16-bit PNG: converted to 8-bit for the nets; the output is written 8-bit")
    if alpha is not None:
        info.notes.append("alpha channel kept and written back")
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    return rgb, alpha, info


def check_output_path(path, what: str = "output") -> str:
    """The PIL format name for `path`; a GhostError now (before any work) if it cannot be written."""
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise file_error(path, f"unknown {what} image extension {path.suffix or '(none)'!r}; "
                               f"use {', '.join(WRITE_FORMATS)}")
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise file_error(path, f"{what} path is a folder")
    if not folder.is_dir():
        raise file_error(path, f"{what} folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise file_error(path, f"{what} folder {folder} is not writable")
    return fmt


def write_image(path, rgb: np.ndarray, alpha: np.ndarray | None = None, label: dict | None = None,
                icc_profile: bytes | None = None, provenance=None) -> list[str]:
    """Write atomically in the format the extension names, with the provenance label; returns notes.
    `provenance` (runtime.io.provenance.Provenance): watermark the pixels and sign a C2PA manifest into the
    temporary file before the rename, so the file never appears unsigned."""
    path = Path(path)
    fmt = check_output_path(path)
    notes = []
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_image wants RGB uint8 H×W×3, got {rgb.dtype} {rgb.shape}")
    if provenance is not None:
        rgb = provenance.mark_frame(rgb, altered=bool((label or {}).get("altered", True)))
    image = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        if fmt == "JPEG":
            notes.append(f"{path.name}: JPEG has no alpha channel; transparency dropped (use .png or .webp)")
        else:
            image.putalpha(Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8), "L"))
    options = provenance_label.save_options(fmt, label) if label is not None else {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    if fmt == "JPEG":
        options.update(quality=JPEG_QUALITY, subsampling=0)
    elif fmt == "WEBP":
        options.update(quality=JPEG_QUALITY)
    with atomic_path(path) as tmp:
        try:
            image.save(tmp, format=fmt, **options)
        except OSError as err:
            raise file_error(path, f"cannot write image ({err})") from err
        if provenance is not None:
            provenance.sign(tmp, label, final_name=path)
    return notes
