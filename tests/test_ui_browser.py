"""The web app in a real browser (Debian's Chromium through Playwright): bad uploads, the image tab, the live tab
over WebRTC with a fake camera (two sessions, one leaving), with a fake swapper where only the page's mechanics
are checked (fast)."""

import json
import time

import numpy as np
import pytest
from PIL import Image

from tests.ui_browser_support import CHROMIUM, astronaut, chromium, serve, write_y4m
from tests.ui_fakes import FakeSwapper

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
