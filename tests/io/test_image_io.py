"""Image files in and out: every unusual-but-valid file reads as RGB uint8, every unusable one is a one-line
GhostError naming it (exit 2 through the CLI, no file left behind), and every output carries the label."""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ghostrt.cli import main
from ghostrt.errors import GhostError
from ghostrt.runtime.io.image_io import check_output_path, read_image, write_image
from ghostrt.runtime.io.provenance_label import DIGITAL_SOURCE_TYPE, make_label, read_label

REPO = Path(__file__).resolve().parents[2]


def _noise(h, w, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


# ---------------------------------------------------------------------------------------- unusual but valid

def test_one_by_one_png(tmp_path):
    path = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    rgb, alpha, info = read_image(path)
    assert rgb.shape == (1, 1, 3) and rgb.dtype == np.uint8 and alpha is None
    assert rgb[0, 0].tolist() == [10, 20, 30]
    assert (info.width, info.height) == (1, 1)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = _noise(7, 9, 1)[:, :, 0]
    path = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(path)
    rgb, alpha, _ = read_image(path)
    assert rgb.shape == (7, 9, 3) and alpha is None
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], gray)


def test_rgba_alpha_is_kept_and_written_back(tmp_path):
    rgba = _noise(6, 5, 4, seed=1)
    src = tmp_path / "in.png"
    Image.fromarray(rgba, "RGBA").save(src)
    rgb, alpha, info = read_image(src)
    np.testing.assert_array_equal(rgb, rgba[:, :, :3])
    np.testing.assert_array_equal(alpha, rgba[:, :, 3])
    out = tmp_path / "out.png"
    write_image(out, rgb, alpha, make_label(1, False))
    back = np.asarray(Image.open(out))
    assert back.shape == (6, 5, 4)
    np.testing.assert_array_equal(back, rgba)


def test_16bit_gray_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000], [32768, 65535, 128]], np.uint16)
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), values)
    rgb, _, info = read_image(path)
    # 8-bit = 16-bit · 255 / 65535 rounded: 65535 → 255, 257 → 1 (PIL's own I;16→L would clip 1000 to 255)
    expected = np.rint(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(rgb[:, :, 0], expected)
    assert info.bit_depth == 16
    assert any("8-bit" in n for n in info.notes)


def test_16bit_rgb_png(tmp_path):
    values = np.random.default_rng(3).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    path = tmp_path / "c16.png"
    assert cv2.imwrite(str(path), values[:, :, ::-1])   # OpenCV writes BGR
    rgb, _, info = read_image(path)
    assert info.bit_depth == 16 and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(int) - values.astype(int) / 257).max() <= 1.0


def test_cmyk_jpeg_reads_as_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=100)   # pure red in CMYK
    rgb, _, info = read_image(path)
    assert info.mode == "CMYK" and rgb.shape == (16, 16, 3)
    r, g, b = rgb[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_png_named_jpg_is_sniffed_by_content(tmp_path):
    pixels = _noise(5, 4, seed=2)
    path = tmp_path / "actually_png.jpg"
    Image.fromarray(pixels).save(path, format="PNG")
    rgb, _, info = read_image(path)
    assert info.format == "PNG"
    np.testing.assert_array_equal(rgb, pixels)   # lossless: it was decoded as PNG, not JPEG


def test_exif_orientation_is_applied(tmp_path):
    pixels = _noise(4, 8, seed=4)   # 8 wide, 4 tall
    exif = Image.Exif()
    exif[0x0112] = 6                # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=100)
    rgb, _, _ = read_image(path)
    assert rgb.shape[:2] == (8, 4)


def test_12000_by_9000_reads_without_a_decompression_bomb_warning(tmp_path, recwarn):
    """108 Mpixel is over PIL's default bomb warning threshold (89 Mpixel) but a real camera/scan size."""
    path = tmp_path / "big.jpg"
    Image.new("RGB", (12000, 9000), (100, 120, 140)).save(path, quality=90)
    rgb, _, info = read_image(path)
    assert rgb.shape == (9000, 12000, 3) and rgb.flags.c_contiguous
    assert np.abs(rgb[4500, 6000].astype(int) - [100, 120, 140]).max() <= 3
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


# ------------------------------------------------------------------------------------------------- unusable

def _truncated(tmp_path, fmt, name):
    full = tmp_path / f"full.{fmt}"
    Image.fromarray(_noise(64, 64)).save(full, format=fmt.upper().replace("JPG", "JPEG"))
    data = full.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    return path


def _unusable(tmp_path, case) -> Path:
    if case == "missing":
        return tmp_path / "nope.png"
    if case == "empty":
        (tmp_path / "empty.png").write_bytes(b"")
        return tmp_path / "empty.png"
    if case == "truncated-jpeg":
        return _truncated(tmp_path, "jpg", "cut.jpg")
    if case == "truncated-png":
        return _truncated(tmp_path, "png", "cut.png")
    if case == "text":
        (tmp_path / "notes.jpg").write_text("this is not an image\n")
        return tmp_path / "notes.jpg"
    if case == "folder":
        (tmp_path / "adir.png").mkdir()
        return tmp_path / "adir.png"
    raise AssertionError(case)


UNUSABLE = ["missing", "empty", "truncated-jpeg", "truncated-png", "text", "folder"]


@pytest.mark.parametrize("case", UNUSABLE)
def test_unusable_input_is_one_line_naming_the_file(tmp_path, case):
    path = _unusable(tmp_path, case)
    with pytest.raises(GhostError) as err:
        read_image(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("case", UNUSABLE)
@pytest.mark.parametrize("role", ["--source", "--target", "--target-face"])
def test_cli_exits_2_on_unusable_input_and_writes_nothing(tmp_path, capsys, case, role):
    good = tmp_path / "good.png"
    Image.fromarray(_noise(8, 8)).save(good)
    bad = _unusable(tmp_path, case)
    out = tmp_path / "out" / "result.png"
    out.parent.mkdir()
    files = {"--source": good, "--target": good, "--target-face": None}
    files[role] = bad
    argv = ["swap", "image", "--source", str(files["--source"]), "--target", str(files["--target"]),
            "--output", str(out), "--weights-dir", str(tmp_path / "no-weights")]
    if files["--target-face"] is not None:
        argv += ["--target-face", str(files["--target-face"])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []


def _bad_output(tmp_path, case) -> Path:
    if case == "missing-folder":
        return tmp_path / "not-there" / "out.png"
    if case == "under-a-file":      # not writable even as root: a regular file is no folder
        (tmp_path / "plain.txt").write_text("x")
        return tmp_path / "plain.txt" / "out.png"
    if case == "unknown-extension":
        return tmp_path / "out.tiff"
    if case == "no-extension":
        return tmp_path / "out"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing-folder", "under-a-file", "unknown-extension", "no-extension"])
def test_bad_output_path_fails_before_any_work(tmp_path, capsys, case):
    good = tmp_path / "good.png"
    Image.fromarray(_noise(8, 8)).save(good)
    out = _bad_output(tmp_path, case)
    with pytest.raises(GhostError):
        check_output_path(out)
    before = sorted(p.name for p in tmp_path.iterdir())
    # weights dir that does not exist: had the CLI got past output checks it would fail on that instead
    argv = ["swap", "image", "--source", str(good), "--target", str(good), "--output", str(out),
            "--weights-dir", str(tmp_path / "no-weights")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_read_only_output_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permission bits: make the access check see what a user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder else real_access(p, mode, **kw))
    try:
        with pytest.raises(GhostError, match="not writable"):
            check_output_path(folder / "out.png")
    finally:
        folder.chmod(0o755)


def test_write_is_atomic_when_encoding_fails(tmp_path):
    out = tmp_path / "out.png"
    with pytest.raises(ValueError):
        write_image(out, np.zeros((4, 4), np.uint8))   # not H×W×3: refused before anything is written
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------- label

@pytest.mark.parametrize("ext", ["png", "jpg", "jpeg", "webp"])
@pytest.mark.parametrize("standin", [True, False])
def test_label_round_trips(tmp_path, ext, standin):
    label = make_label(2, standin)
    out = tmp_path / f"out.{ext}"
    write_image(out, _noise(12, 10), None, label)
    back = read_label(out)
    assert back == label
    assert back["altered"] is True and back["standin_weights"] is standin
    assert back["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert ("STAND-IN" in back["description"]) is standin


def test_label_is_also_in_standard_fields(tmp_path):
    """Other tools read EXIF ImageDescription/Software and the XMP IPTC DigitalSourceType, not our JSON."""
    out = tmp_path / "out.jpg"
    write_image(out, _noise(12, 10), None, make_label(1, True))
    with Image.open(out) as image:
        exif = image.getexif()
        xmp = image.info["xmp"].decode()
    assert exif[0x0131].startswith("ghostrt") and "Altered by ghostrt" in exif[0x010E]
    assert "Iptc4xmpExt:DigitalSourceType" in xmp and DIGITAL_SOURCE_TYPE in xmp


def test_unlabelled_image_has_no_label(tmp_path):
    path = tmp_path / "plain.png"
    Image.fromarray(_noise(4, 4)).save(path)
    assert read_label(path) is None


def test_unswapped_output_is_not_labelled_as_synthetic(tmp_path):
    out = tmp_path / "same.png"
    write_image(out, _noise(4, 4), None, make_label(0, False))
    label = read_label(out)
    assert label["altered"] is False and label["digital_source_type"] == ""


def test_engines_dir_under_a_file_fails_before_any_work(tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.fromarray(_noise(8, 8)).save(good)
    (tmp_path / "plain.txt").write_text("x")
    engines = tmp_path / "plain.txt" / "engines"
    argv = ["swap", "image", "--source", str(good), "--target", str(good), "--output", str(tmp_path / "o.png"),
            "--engines-dir", str(engines)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(engines) in err and "not a folder" in err
    assert not (tmp_path / "o.png").exists()
