"""The web app in a real browser (Debian's Chromium through Playwright): bad uploads, the image tab, the live tab
over WebRTC with a fake camera (two sessions, one leaving), with a fake swapper where only the page's mechanics
are checked (fast)."""

import json
import time

import numpy as np
import pytest
from PIL import Image

from ui_browser_support import CHROMIUM, astronaut, chromium, serve, write_y4m
from ui_fakes import FakeSwapper

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")


@pytest.fixture(scope="module")
def fake_app(tmp_path_factory):
    from ghostrt.ui.app import create_app

    app = create_app(FakeSwapper(), work_dir=tmp_path_factory.mktemp("ui-work"), max_image_mb=1)
    with serve(app) as url:
        yield url


@pytest.fixture
def photos(tmp_path):
    face = tmp_path / "face.png"
    Image.fromarray(astronaut()).save(face)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), np.uint8)).save(big)
    assert big.stat().st_size > 1 << 20
    return {"face": face, "text": text, "empty": empty, "big": big}


def message(page) -> str:
    page.wait_for_selector("#message:not([hidden])", timeout=10000)
    return page.inner_text("#message")


def test_bad_uploads_show_one_message_and_the_app_keeps_serving(fake_app, photos, tmp_path):
    with chromium(tmp_path) as ctx:
        page = ctx.new_page()
        page.goto(fake_app)
        page.set_input_files("#img-target", str(photos["text"]))
        assert message(page) == "notes.jpg: not an image (no known image format in its content)"
        page.set_input_files("#img-target", str(photos["empty"]))
        page.wait_for_function("document.querySelector('#message').textContent.includes('empty.png')")
        assert page.inner_text("#message") == "empty.png: file is empty"
        page.set_input_files("#img-target", str(photos["big"]))
        page.wait_for_function("document.querySelector('#message').textContent.includes('big.png')")
        assert page.inner_text("#message") == "big.png: file too large (over 1 MB)"
        page.set_input_files("#img-sources", str(photos["text"]))
        page.wait_for_function("document.querySelector('#message').textContent.includes('notes.jpg')")
        # and it goes on serving: a good target now gives its face gallery
        page.set_input_files("#img-target", str(photos["face"]))
        page.wait_for_selector("#img-gallery .face", timeout=10000)
        assert page.is_hidden("#message")
        assert "1 face(s) detected" in page.inner_text("#img-info")


def test_image_tab_with_a_fake_swapper(fake_app, photos, tmp_path):
    with chromium(tmp_path) as ctx:
        page = ctx.new_page()
        page.goto(fake_app)
        page.wait_for_selector("#standin:not([hidden])")
        assert "STAND-IN" in page.inner_text("#standin")
        page.set_input_files("#img-sources", str(photos["face"]))
        page.set_input_files("#img-target", str(photos["face"]))
        page.wait_for_selector("#img-gallery .face")
        page.wait_for_selector("#img-run:not([disabled])")
        page.click("#img-run")
        page.wait_for_selector("#img-download:not([hidden])", timeout=15000)
        with page.expect_download() as dl:
            page.click("#img-download")
        out = tmp_path / "out.png"
        dl.value.save_as(out)
        got = np.asarray(Image.open(out).convert("RGB"))
        src = astronaut()
        h, w = src.shape[:2]
        assert np.array_equal(got[int(h * .3) + 2, int(w * .3) + 2], 255 - src[int(h * .3) + 2, int(w * .3) + 2])
        assert Image.open(out).info.get("ghostrt:altered") is not None


def start_live(page, url, photo):
    page.goto(url)
    page.click("#tab-live")
    page.set_input_files("#live-sources", str(photo))
    page.wait_for_selector("#live-start:not([disabled])", timeout=10000)
    page.click("#live-start")


def live_numbers(page):
    return page.evaluate("({fps: ghostrt.live.fps, p50: ghostrt.live.p50, p99: ghostrt.live.p99, "
                         "server: ghostrt.live.server, sid: ghostrt.live.sid})")


def corner_pixels(page):
    """Mean RGB of the displayed remote frame's bottom-left band (the server's "AI-altered" mark) and centre."""
    return page.evaluate("""() => { const v = document.querySelector('#live-video');
        const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
        const x = c.getContext('2d'); x.drawImage(v, 0, 0);
        const d = x.getImageData(0, c.height - 12, 60, 10).data; let m = 0, s = 0, n = 0;
        for (let i = 0; i < d.length; i += 4) { m = Math.max(m, d[i]); s += d[i]; n++; }
        return {w: c.width, h: c.height, markMax: m, markMean: s / n}; }""")


def test_live_two_sessions_over_webrtc_one_leaves(fake_app, photos, tmp_path):
    clip = write_y4m(tmp_path / "astronaut.y4m")
    with chromium(tmp_path, camera=clip, count=2) as (ctx_a, ctx_b):
        a, b = ctx_a.new_page(), ctx_b.new_page()
        start_live(a, fake_app, photos["face"])
        start_live(b, fake_app, photos["face"])
        for page in (a, b):
            page.wait_for_function("ghostrt.live.fps > 3 && ghostrt.live.p50 !== null", timeout=30000)
            assert "capture→display p50" in page.inner_text("#live-stats")
        na, nb = live_numbers(a), live_numbers(b)
        assert na["sid"] != nb["sid"] and nb["server"]["streams"] == 2
        assert 0 < na["p50"] < 3000 and na["p99"] >= na["p50"]
        frame = corner_pixels(a)
        assert (frame["w"], frame["h"]) == (320, 240)
        assert frame["markMax"] > 200 and frame["markMean"] < 150, frame     # white text on the darkened band (unmarked: ~200)
        assert a.is_visible(".mark") and "AI-altered" in a.inner_text(".mark")
        # one leaves: the other keeps getting frames, and the server freed the session
        a.click("#live-stop")
        a.close()
        before = b.evaluate("ghostrt.live.server.frames_out")
        b.wait_for_function(f"ghostrt.live.server.frames_out > {before + 10} && ghostrt.live.server.streams === 1",
                            timeout=20000)
        assert live_numbers(b)["fps"] > 3
