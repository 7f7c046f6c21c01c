"""One PNG that shows what the swap did and why: the input with every detected box and its five keypoints,
per swapped face the aligned crop, the generator's output and the blend mask, the result, per-stage times,
and, loudly, a banner when stand-in weights made it (such a sheet must never pass for a real swap)."""

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ghostrt.atomic import atomic_path
from ghostrt.runtime.io import provenance_label
from ghostrt.runtime.io.image_io import check_output_path

PANEL = 480          # longest side of the input and result panels
TILE = 160           # side of each crop / swap / mask tile
PAD = 12
TEXT_W = 300
BG = (32, 32, 32)
FG = (235, 235, 235)
SWAPPED = (40, 220, 90)
SKIPPED = (240, 170, 40)
KPS_COLOURS = ((255, 60, 60), (60, 160, 255), (255, 255, 60), (255, 60, 255), (60, 255, 255))
BANNER = (200, 20, 20)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:           # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _panel(rgb: np.ndarray) -> tuple[Image.Image, float]:
    """The frame shrunk to fit PANEL (never enlarged), and the scale used; fine for 12000×9000 inputs."""
    image = Image.fromarray(rgb, "RGB")
    scale = min(1.0, PANEL / max(image.size))
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return image, scale


def _draw_faces(panel: Image.Image, scale: float, faces, swapped_ids: set[int]) -> None:
    draw = ImageDraw.Draw(panel)
    font = _font(13)
    for i, face in enumerate(faces):
        colour = SWAPPED if i in swapped_ids else SKIPPED
        x1, y1, x2, y2 = (float(v) * scale for v in face.box)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        draw.text((x1 + 2, max(0, y1 - 15)), f"#{i + 1} {face.score:.2f}", fill=colour, font=font)
        for (x, y), c in zip(np.asarray(face.kps, np.float32) * scale, KPS_COLOURS):
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=c)


def _tile(array: np.ndarray) -> Image.Image:
    if array.ndim == 2:
        image = Image.fromarray(np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    else:
        image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), "RGB")
    return image.resize((TILE, TILE), Image.Resampling.BILINEAR)


def render_debug_sheet(input_rgb: np.ndarray, result, seconds: dict[str, float], standin_models=(),
                       title: str = "") -> Image.Image:
    """The sheet as a PIL image (write_debug_sheet saves it); `result` is a pipeline.SwapResult."""
    face_index = {id(f): i for i, f in enumerate(result.faces)}
    swapped_ids = {face_index.get(id(s.face), -1) for s in result.swapped}
    before, scale = _panel(input_rgb)
    after, _ = _panel(result.frame)
    _draw_faces(before, scale, result.faces, swapped_ids)

    banner_h = 44 if standin_models else 0
    top = banner_h + 30
    rows_h = len(result.swapped) * (TILE + 22 + PAD) if result.swapped else 30
    width = PAD * 4 + before.width * 2 + TEXT_W
    height = max(top + max(before.height, 1) + PAD * 2 + 22 + rows_h + PAD, top + 24 * 18)
    sheet = Image.new("RGB", (max(width, PAD * 2 + TILE * 3 + PAD * 2 + TEXT_W), height), BG)
    draw = ImageDraw.Draw(sheet)
    big, small = _font(20), _font(14)
    if standin_models:
        draw.rectangle([0, 0, sheet.width, banner_h], fill=BANNER)
        draw.text((PAD, 10), "STAND-IN (untrained) weights: not a real face swap  (" +
                  ", ".join(standin_models) + ")", fill=(255, 255, 255), font=big)
    draw.text((PAD, banner_h + 6), title, fill=FG, font=small)

    sheet.paste(before, (PAD, top))
    sheet.paste(after, (PAD * 2 + before.width, top))
    draw.text((PAD, top + before.height + 4), f"input: {len(result.faces)} face(s) detected "
              "(green = swapped, orange = left alone)", fill=FG, font=small)
    draw.text((PAD * 2 + before.width, top + before.height + 4), "result", fill=FG, font=small)

    y = top + before.height + PAD * 2 + 22
    if not result.swapped:
        draw.text((PAD, y), "no face swapped: " + "; ".join(result.warnings), fill=SKIPPED, font=small)
    for k, face in enumerate(result.swapped):
        label = f"face #{face_index.get(id(face.face), -1) + 1}"
        if face.target_index is not None:
            label += f"  target-face {face.target_index + 1}, similarity {face.similarity:.3f}"
        draw.text((PAD, y), label + "   aligned crop | swapped | mask", fill=FG, font=small)
        for col, tile in enumerate((face.crop, face.swapped, face.mask)):
            sheet.paste(_tile(np.asarray(tile)), (PAD + col * (TILE + PAD), y + 18))
        y += TILE + 22 + (PAD if k + 1 < len(result.swapped) else 0)

    x_text, y_text = sheet.width - TEXT_W + PAD, top
    rows = [("stage", "ms")] + [(name, f"{sec * 1000:.1f}") for name, sec in seconds.items()]
    rows.append(("total", f"{sum(seconds.values()) * 1000:.1f}"))
    font = _font(14)
    for name, value in rows:
        draw.text((x_text, y_text), name, fill=FG, font=font)
        draw.text((x_text + 150, y_text), value, fill=FG, font=font, anchor="ra")
        y_text += 18
    for warning in result.warnings:
        y_text += 6
        draw.multiline_text((x_text, y_text), "\n".join(textwrap.wrap(f"warning: {warning}", 34)), fill=SKIPPED,
                            font=font, spacing=4)
        y_text += 18 * len(textwrap.wrap(warning, 34))
    return sheet


def write_debug_sheet(path, input_rgb: np.ndarray, result, seconds: dict[str, float], standin_models=(),
                      title: str = "", label: dict | None = None) -> Path:
    """Saved atomically; it shows the swapped result, so it carries the provenance label too."""
    path = Path(path)
    fmt = check_output_path(path, "debug sheet")
    sheet = render_debug_sheet(input_rgb, result, seconds, standin_models, title)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format=fmt, **(provenance_label.save_options(fmt, label) if label else {}))
    return path
