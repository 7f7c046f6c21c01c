"""The web app in Chromium over the REAL ghostrt.Swapper (ONNX Runtime, FP32; the tiny stand-in graphs of
test_swap_image with the real RetinaFace detector): the image tab's download must be the CLI's output for the
same inputs, and the video tab must render a clip with its audio, show progress while it runs, and cancel
cleanly. The tiny graphs are untrained stand-ins (the page says so); their output is never a real swap.

GHOSTRT_UPDATE_SCREENSHOT=1 also writes the page with a result to docs/ui.png (the README's screenshot)."""

import io
import os
import re
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data
from PIL import Image

import ghostrt
from ghostrt import loading
from ghostrt.cli import main
from ghostrt.runtime.io import watermark
from test_swap_image import GRACE, onnx_files  # noqa: F401  (fixture)
from ui_browser_support import CHROMIUM, astronaut, chromium, serve

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "ui.png"
SCREENSHOT_MAX_BYTES = 300_000
SAMPLE_RATE = 16000
STANDIN = ["generator", "arcface", "landmarks"]


@contextmanager
def served_real_swapper(onnx_files, tmp_path_factory, live: bool):  # noqa: F811
    """One loaded Swapper behind one served app, and the CLI seeing the same tiny graphs (module-wide patch:
    the CLI call inside a test must load exactly what the app loaded)."""
    from ghostrt.ui.app import create_app

    mp = pytest.MonkeyPatch()
    mp.setattr(loading, "resolve_onnx", lambda *a, log=print: (dict(onnx_files), "retinaface", list(STANDIN), None))
    mp.chdir(tmp_path_factory.mktemp("cwd"))              # auto backends would cache into ./engines
    sw = ghostrt.Swapper.load(backend="ort", precision="fp32", log=lambda *_: None)
    app = create_app(sw, work_dir=tmp_path_factory.mktemp("ui-work"), live=live)
    try:
        with serve(app) as url:
            yield type("Served", (), {"url": url, "app": app, "sw": sw})
    finally:
        sw.close()
        mp.undo()


@pytest.fixture(scope="module")
def real(onnx_files, tmp_path_factory):  # noqa: F811
    with served_real_swapper(onnx_files, tmp_path_factory, live=False) as served:
        yield served


def face_clip(path: Path, frames: int, lead: int = 2, size=(320, 240), fps: int = 12) -> Path:
    """H.264 + AAC: `lead` black frames (no face), then the astronaut drifting a little (the first face is
    frame `lead`), and a tone as long as the video."""
    w, h = size
    base = astronaut((w + 16, h + 16))
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=fps, options={"crf": "18"})
    video.width, video.height, video.pix_fmt = w, h, "yuv420p"
    tb = Fraction(1, 1000)
    video.time_base = video.codec_context.time_base = tb
    sound = out.add_stream("aac", rate=SAMPLE_RATE)
    sound.layout = "mono"
    for i in range(frames):
        dx = int(8 + 6 * np.sin(i / 8))
        rgb = np.zeros((h, w, 3), np.uint8) if i < lead else np.ascontiguousarray(base[8:8 + h, dx:dx + w])
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = round(1000 * i / fps), tb
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    t = np.arange(int(frames / fps * SAMPLE_RATE)) / SAMPLE_RATE
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    for start in range(0, samples.shape[1], 1024):
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]), format="flt",
                                           layout="mono")
        chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
        out.mux(sound.encode(chunk))
    out.mux(sound.encode(None))
    out.close()
    return path


def largest(faces: list) -> int:
    return max(range(len(faces)), key=lambda i: (faces[i]["box"][2] - faces[i]["box"][0])
               * (faces[i]["box"][3] - faces[i]["box"][1]))


def choose_face(page, gallery: str, face: int) -> None:
    """Choose mode: `face` gets source 1, every other face of the gallery is kept."""
    page.select_option(f"#{gallery[:3]}-mode", "choose")
    for i, select in enumerate(page.query_selector_all(f"#{gallery} select")):
        select.select_option("0" if i == face else "")


def face_photo(target: Path, box, path: Path) -> Path:
    """The chosen face cut out with a wide margin: what a CLI user passes as --target-face."""
    rgb = np.asarray(Image.open(target).convert("RGB"))
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * 0.8, (y1 - y0) * 0.8
    h, w = rgb.shape[:2]
    Image.fromarray(rgb[int(max(0, y0 - my)):int(min(h, y1 + my)), int(max(0, x0 - mx)):int(min(w, x1 + mx))]
                    ).save(path)
    return path


def save_screenshot(page, tmp_path: Path) -> Path:
    """The page with its result, palette-reduced so the committed PNG stays small."""
    page.set_viewport_size({"width": 1280, "height": 960})
    page.wait_for_timeout(200)
    shot = Image.open(io.BytesIO(page.screenshot(full_page=False))).convert("RGB")
    target = SCREENSHOT if os.environ.get("GHOSTRT_UPDATE_SCREENSHOT") == "1" else tmp_path / "screenshot.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target


def test_image_tab_download_equals_the_cli_output(real, tmp_path, capsys):
    target = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(target)
    with chromium(tmp_path) as ctx:
        page = ctx.new_page()
        page.goto(real.url)
        page.wait_for_selector("#standin:not([hidden])")
        assert "STAND-IN" in page.inner_text("#standin") and "generator" in page.inner_text("#standin")
        page.set_input_files("#img-sources", str(GRACE))
        page.wait_for_selector("#img-source-list img", timeout=15000)
        page.set_input_files("#img-target", str(target))
        page.wait_for_selector("#img-gallery .face", timeout=15000)
        faces = page.evaluate("ghostrt.imgFaces")
        pick = largest(faces)
        choose_face(page, "img-gallery", pick)
        page.click("#img-run")
        page.wait_for_selector("#img-download:not([hidden])", timeout=30000)
        page.wait_for_function("['#img-result', '#img-sheet'].every((s) => { const i = document.querySelector(s);"
                               " return i.complete && i.naturalWidth > 0; })", timeout=10000)
        assert page.is_hidden("#message")
        info = page.inner_text("#img-info")
        swapped = int(re.match(r"swapped (\d+) of (\d+) face", info).group(1))
        assert swapped >= 1, info
        result, sheet = page.locator("#img-result").bounding_box(), page.locator("#img-sheet").bounding_box()
        assert sheet["x"] >= result["x"] + result["width"] - 1            # the sheet is beside the result
        assert sheet["y"] < result["y"] + result["height"] and result["y"] < sheet["y"] + sheet["height"]
        assert page.evaluate("document.querySelector('#img-sheet').naturalWidth") > 2 * 480
        with page.expect_download() as dl:
            page.click("#img-download")
        got = tmp_path / "ui-result.png"
        dl.value.save_as(got)
        shot = save_screenshot(page, tmp_path)
    assert shot.stat().st_size < SCREENSHOT_MAX_BYTES, shot.stat().st_size
    assert Image.open(shot).size == (1280, 960)

    cli = tmp_path / "cli.png"
    crop = face_photo(target, faces[pick]["box"], tmp_path / "chosen-face.png")
    capsys.readouterr()
    assert main(["swap", "image", "--source", str(GRACE), "--target", str(target), "--target-face", str(crop),
                 "--output", str(cli), "--backend", "ort", "--precision", "fp32"]) == 0
    assert f"swapped {swapped} (matched to --target-face)" in capsys.readouterr().out
    a = np.asarray(Image.open(got).convert("RGB")).astype(np.int16)
    b = np.asarray(Image.open(cli).convert("RGB")).astype(np.int16)
    source = np.asarray(Image.open(target).convert("RGB")).astype(np.int16)
    assert a.shape == b.shape == source.shape
    assert np.abs(a - source).max() > 100                     # something was swapped (the tiny G negates)
    assert np.abs(a - b).max() <= 1
    for path in (got, cli):                                   # both carry the same marks
        assert watermark.decode(np.asarray(Image.open(path).convert("RGB")))["found"], path
        report = ghostrt.verify(path)
        assert report.intact and report.standin, path


def start_video(page, url: str, clip: Path) -> dict:
    page.goto(url)
    page.click("#tab-video")
    page.set_input_files("#vid-sources", str(GRACE))
    page.wait_for_selector("#vid-source-list img", timeout=15000)
    with page.expect_response("**/api/video") as answer:
        page.set_input_files("#vid-target", str(clip))
    upload = answer.value.json()
    page.wait_for_selector("#vid-run:not([disabled])", timeout=15000)
    return upload


def test_video_tab_renders_the_clip_with_its_audio(real, tmp_path):
    clip = face_clip(tmp_path / "clip.mp4", frames=16)
    with chromium(tmp_path) as ctx:
        page = ctx.new_page()
        upload = start_video(page, real.url, clip)
        assert upload["frames"] == 16 and upload["first_face_frame"] == 2 and upload["faces"]
        assert "first face in frame 2" in page.inner_text("#vid-info")
        assert page.locator("#vid-gallery .face").count() == len(upload["faces"])
        choose_face(page, "vid-gallery", largest(upload["faces"]))
        page.click("#vid-run")
        page.wait_for_selector("#vid-download:not([hidden])", timeout=60000)
        assert page.inner_text("#vid-info").startswith("done: 16/16 frames"), page.inner_text("#vid-info")
        assert page.evaluate("[document.querySelector('#vid-progress').value, "
                             "document.querySelector('#vid-progress').max]") == [16, 16]
        with page.expect_download() as dl:
            page.click("#vid-download")
        out = tmp_path / "out.mp4"
        dl.value.save_as(out)
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        audio_packets = sum(1 for p in c.demux(audio=0) if p.size)
    with av.open(str(clip)) as c:
        first = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][5].astype(np.int16)
    assert len(frames) == 16 and audio_packets > 0
    assert np.abs(frames[5].astype(np.int16) - first).max() > 100          # the face was swapped
    report = ghostrt.verify(out)
    assert report.c2pa_ghostrt and report.intact


def test_video_cancel_offers_no_output_and_the_app_goes_on(real, tmp_path):
    clip = face_clip(tmp_path / "long.mp4", frames=300)
    with chromium(tmp_path) as ctx:
        page = ctx.new_page()
        start_video(page, real.url, clip)
        page.click("#vid-run")
        # the progress bar and the line under it while it runs: frames done of the total, fps, ETA
        page.wait_for_function("document.querySelector('#vid-progress').value > 0 && "
                               "document.querySelector('#vid-info').textContent.includes('ETA')", timeout=30000)
        text = page.inner_text("#vid-info")
        done = re.fullmatch(r"running: (\d+)/300 frames, ([\d.]+) fps, ETA ([\d.]+) s", text)
        assert done and 0 < int(done.group(1)) < 300 and float(done.group(2)) > 0, text
        assert page.evaluate("document.querySelector('#vid-progress').max") == 300
        job = page.evaluate("ghostrt.job")
        page.click("#vid-cancel")
        page.wait_for_function("document.querySelector('#vid-info').textContent.startsWith('cancelled')",
                               timeout=30000)
        assert page.is_hidden("#vid-download")
        assert "download" not in page.evaluate("ghostrt.jobDone")
        output = real.app.state.ghost.jobs[job].output
        assert not output.exists() and list(output.parent.iterdir()) == []     # no partial or temp file
        # a later render of the same upload runs (then is cancelled too, to keep the test short)
        page.wait_for_selector("#vid-run:not([disabled])", timeout=10000)
        page.click("#vid-run")
        page.wait_for_function(f"ghostrt.job && ghostrt.job !== '{job}' && "
                               "document.querySelector('#vid-progress').value > 0", timeout=30000)
        page.click("#vid-cancel")
        page.wait_for_function("document.querySelector('#vid-info').textContent.startsWith('cancelled')",
                               timeout=30000)
