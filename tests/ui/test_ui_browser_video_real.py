"""The video tab in Chromium over the REAL ghostrt.Swapper (tiny stand-in graphs, as test_ui_browser_real): the
render is `Swapper.swap_video`, so its download must decode to the frames `ghostrt swap video` writes for the
same inputs, and the preview must be the swap of the first frame with a face for the gallery's choice. A drift
between the page and the CLI (a default, a batch size, smoothing) fails here. The graphs are untrained
stand-ins; the page says so and their output is never a real swap."""

import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from ghostrt.cli import main
from ghostrt.runtime.io import video_io
from ghostrt.runtime.io.provenance_label import read_label
from test_swap_image import GRACE, onnx_files  # noqa: F401  (fixture)
from test_ui_browser_real import choose_face, face_clip, largest, real, start_video  # noqa: F401  (fixture)
from ui_browser_support import CHROMIUM, chromium

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]


def first_face(sw, clip: Path, index: int):
    """The frame the server's gallery came from, read by the same reader, and its faces as the Swapper sees them."""
    for frame in video_io.read_frames(video_io.probe(clip)):
        if frame.index == index:
            return frame.rgb, sw.detect(frame.rgb)
    raise AssertionError(f"no frame {index} in {clip}")


def crop(rgb: np.ndarray, box) -> np.ndarray:
    """The chosen face with the margin the app cuts (what a CLI user passes as --target-face)."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * 0.8, (y1 - y0) * 0.8
    return rgb[int(max(0, y0 - my)):int(min(h, y1 + my)), int(max(0, x0 - mx)):int(min(w, x1 + mx))].copy()


def test_video_tab_download_equals_the_cli_output(real, tmp_path, capsys):  # noqa: F811
    clip = face_clip(tmp_path / "clip.mp4", frames=12)
    with chromium(tmp_path) as ctx:
        page = ctx.new_page()
        upload = start_video(page, real.url, clip)
        pick = largest(upload["faces"])
        choose_face(page, "vid-gallery", pick)
        page.click("#vid-run")
        page.wait_for_selector("#vid-download:not([hidden])", timeout=90000)
        assert page.inner_text("#vid-info").startswith("done: 12/12 frames"), page.inner_text("#vid-info")
        with page.expect_download() as dl:
            page.click("#vid-download")
        got = tmp_path / "ui.mp4"
        dl.value.save_as(got)

    rgb, faces = first_face(real.sw, clip, upload["first_face_frame"])
    assert len(faces) == len(upload["faces"])
    face = tmp_path / "chosen-face.png"
    Image.fromarray(crop(rgb, faces[pick].box)).save(face)
    cli = tmp_path / "cli.mp4"
    capsys.readouterr()
    assert main(["swap", "video", "--source", str(GRACE), "--target", str(clip), "--target-face", str(face),
                 "--output", str(cli), "--backend", "ort", "--precision", "fp32", "--no-progress"]) == 0
    a, b, source = decoded(got), decoded(cli), decoded(clip)
    assert len(a) == len(b) == len(source) == 12
    assert max(int(np.abs(x - y).max()) for x, y in zip(a, b)) <= 1
    assert np.abs(a[5] - source[5]).max() > 100                   # the face was swapped (the tiny G negates)
    with av.open(str(got)) as c:
        assert len(c.streams.audio) == 1


def test_video_preview_is_the_swap_of_the_first_face_frame(real, tmp_path):  # noqa: F811
    clip = face_clip(tmp_path / "clip.mp4", frames=8, lead=3)
    with chromium(tmp_path) as ctx:
        page = ctx.new_page()
        upload = start_video(page, real.url, clip)
        assert upload["first_face_frame"] == 3
        assert page.is_hidden("#vid-preview-box")
        pick = largest(upload["faces"])
        choose_face(page, "vid-gallery", pick)
        page.wait_for_selector("#vid-preview:not([disabled])")
        page.click("#vid-preview")
        page.wait_for_selector("#vid-preview-box:not([hidden])", timeout=30000)
        assert page.evaluate("document.querySelector('#vid-preview-img').naturalWidth") == 320
        note = page.inner_text("#vid-preview-note")
        assert note.startswith("Preview of frame 3: swapped 1 of") and "STAND-IN" in note, note
        assert page.is_hidden("#message") and page.is_hidden("#vid-download")      # no render was started
        url = real.url + page.evaluate("ghostrt.preview.preview")
    shown = tmp_path / "preview.png"
    with urllib.request.urlopen(url, timeout=10) as res:
        shown.write_bytes(res.read())
    label = read_label(shown)
    assert label["altered"] and label["standin_weights"] and label["faces_swapped"] == 1

    rgb, faces = first_face(real.sw, clip, 3)
    sw = real.sw
    expected = sw.swap(rgb, sw.identity(GRACE), targets=[sw.identity([crop(rgb, faces[pick].box)])]).image
    got = np.asarray(Image.open(shown).convert("RGB")).astype(np.int16)
    expected, original = expected.astype(np.int16), rgb.astype(np.int16)
    assert got.shape == expected.shape == original.shape
    x0, y0, x1, y1 = (int(v) for v in faces[pick].box)
    region = (slice(y0, y1), slice(x0, x1))
    assert np.abs(got[region] - original[region]).mean() > 40     # swapped in the face region
    assert np.abs(got[region] - expected[region]).max() <= 1       # ... as Swapper.swap swaps that frame
    band = (slice(got.shape[0] - 10, got.shape[0] - 3), slice(0, 60))
    assert np.abs(got[band] - expected[band]).max() > 50           # the visible mark, bottom left
