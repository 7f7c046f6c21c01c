"""`ghostrt render` jobs (ghostrt/render/jobs.py, driver.py) and the encoder the output's container implies."""

from pathlib import Path

import av
import pytest

from ghostrt.runtime.io import video_io, video_writer
from ghostrt.runtime.loops.video_loop import swap_video
from test_video_io import make_clip


def test_default_encoder_follows_the_container(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=12)            # H.264 + AAC
    info = video_io.probe(clip)
    assert video_writer.plan_output(tmp_path / "o.mp4", info).codec == "libx264"
    assert video_writer.plan_output(tmp_path / "o.mkv", info).codec == "libx264"
    webm = video_writer.plan_output(tmp_path / "o.webm", info)
    assert webm.codec == "libvpx-vp9" and set(webm.transcoded.values()) == {"libopus"}
    swap_video(clip, tmp_path / "o.webm", lambda frames: frames, codec=None, progress=False)
    with av.open(str(tmp_path / "o.webm")) as out:
        assert [s.codec_context.name for s in out.streams] == ["vp9", "opus"]
        assert sum(1 for _ in out.decode(video=0)) == 12
    with av.open(str(tmp_path / "o.webm")) as out:
        rate = out.streams.audio[0].codec_context.sample_rate
        assert sum(f.samples for f in out.decode(audio=0)) / rate > 0.45      # the 0.54 s tone, re-encoded


def test_webm_with_libx264_is_still_refused(tmp_path):
    info = video_io.probe(make_clip(tmp_path / "in.mp4", frames=4))
    with pytest.raises(Exception, match="cannot hold libx264"):
        video_writer.plan_output(tmp_path / "o.webm", info, "libx264")
