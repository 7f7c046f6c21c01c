"""The live tab in Chromium over the REAL ghostrt.Swapper (ONNX Runtime FP32, the tiny stand-in graphs with the
real RetinaFace detector): Chromium's fake camera plays the astronaut, and the frames that come back over
WebRTC must be swapped (the server counts faces swapped, and the displayed face differs from every camera
frame's), carry the "AI-altered" mark, and the page must show its fps and capture→display latency. The fake
swapper of test_ui_browser checks the mechanics; this checks the real nets are behind them. The tiny graphs
are untrained stand-ins: their output is never a real swap."""

import numpy as np
import pytest
from PIL import Image

from test_swap_image import GRACE, onnx_files  # noqa: F401  (fixture)
from test_ui_browser import corner_pixels, live_numbers, start_live
from test_ui_browser_real import served_real_swapper
from ui_browser_support import CHROMIUM, astronaut, chromium, write_y4m

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")

SIZE = (320, 240)


@pytest.fixture(scope="module")
def live_real(onnx_files, tmp_path_factory):  # noqa: F811
    with served_real_swapper(onnx_files, tmp_path_factory, live=True) as served:
        yield served


def camera_frames(frames: int = 30) -> list[np.ndarray]:
    """The y4m's frames as write_y4m draws them (before its YUV rounding)."""
    w, h = SIZE
    base = astronaut((w + 16, h + 16))
    shifts = [int(8 + 6 * np.sin(i / frames * 2 * np.pi)) for i in range(frames)]
    return [np.ascontiguousarray(base[8:8 + h, dx:dx + w]) for dx in shifts]


def displayed_region(page, box) -> np.ndarray:
    """The displayed remote frame's pixels inside box (x0, y0, x1, y1), as RGB."""
    x0, y0, x1, y1 = box
    data = page.evaluate(f"""() => {{ const v = document.querySelector('#live-video');
        const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
        const x = c.getContext('2d'); x.drawImage(v, 0, 0);
        return Array.from(x.getImageData({x0}, {y0}, {x1 - x0}, {y1 - y0}).data); }}""")
    return np.asarray(data, np.int16).reshape(y1 - y0, x1 - x0, 4)[..., :3]


def test_live_tab_swaps_the_camera_with_the_real_swapper(live_real, tmp_path):
    clip = write_y4m(tmp_path / "astronaut.y4m", size=SIZE)
    frames = camera_frames()
    faces = live_real.sw.detect(frames[0])
    assert faces, "the detector must find the astronaut for this test to mean anything"
    fx0, fy0, fx1, fy1 = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])).box
    mx, my = (fx1 - fx0) * 0.2, (fy1 - fy0) * 0.2        # the face's middle: inside the pasted crop however it moves
    box = (int(fx0 + mx), int(fy0 + my), int(fx1 - mx), int(fy1 - my))
    photo = tmp_path / "source.png"
    Image.open(GRACE).convert("RGB").save(photo)
    with chromium(tmp_path, camera=clip) as ctx:
        page = ctx.new_page()
        start_live(page, live_real.url, photo)
        page.wait_for_function("ghostrt.live.fps > 0 && ghostrt.live.p50 !== null && ghostrt.live.server "
                               "&& ghostrt.live.server.faces_swapped > 3", timeout=45000)
        stats = page.inner_text("#live-stats")
        assert "displayed" in stats and "fps" in stats and "capture→display p50" in stats, stats
        numbers = live_numbers(page)
        assert numbers["fps"] > 0 and 0 < numbers["p50"] <= numbers["p99"], numbers
        server = numbers["server"]
        assert server["streams"] == 1 and server["frames_out"] > 0 and server["errors"] == 0, server
        assert "faces swapped" in stats, stats
        frame = corner_pixels(page)
        assert (frame["w"], frame["h"]) == SIZE
        assert frame["markMax"] > 200 and frame["markMean"] < 150, frame     # white text on the darkened band
        assert page.is_visible(".mark") and "AI-altered" in page.inner_text(".mark")
        shown = displayed_region(page, box)
        page.click("#live-stop")
    x0, y0, x1, y1 = box
    closest = min(float(np.abs(shown - f[y0:y1, x0:x1].astype(np.int16)).mean()) for f in frames)
    assert closest > 40, closest          # no camera frame looks like what came back: the face was swapped
