"""The webcam loop (runtime/webcam_loop.py) on a video file played as a camera."""

import io
import sys
import time

import numpy as np
import pytest

from ghostrt.errors import GhostError
from ghostrt.runtime.loops import webcam_loop
from test_video_io import make_clip

SLOW_SECONDS = 0.12        # three frame intervals at 24 frames/s


def test_slow_process_drops_frames_and_reports_latency(tmp_path):
    clip = make_clip(tmp_path / "loop.mp4", frames=48, fps=24, audio=False)
    seen = []

    def slow(frame):
        seen.append(frame.shape)
        time.sleep(SLOW_SECONDS)
        return frame

    log = io.StringIO()
    summary = webcam_loop.run_webcam(str(clip), slow, frames=10, log=log)
    assert summary["frames"] == 10 and set(seen) == {(120, 160, 3)}
    # the camera delivers 24 frames/s, the process takes 3 intervals per frame: most frames are dropped
    assert summary["dropped"] > 0
    assert summary["captured"] - summary["dropped"] - summary["frames"] in (0, 1)   # at most one left unread
    lat = summary["latency_ms"]
    assert lat["p99"] >= lat["p50"] >= SLOW_SECONDS * 1000     # a frame's latency includes its processing
    lines = log.getvalue().splitlines()
    assert any(line.strip().startswith("webcam") and "p99" in line for line in lines)   # the once-a-second line
    assert lines[-1].strip().startswith("total") and "dropped" in lines[-1]


def test_file_camera_loops_and_process_output_is_what_is_counted(tmp_path):
    clip = make_clip(tmp_path / "short.mp4", frames=4, fps=24, audio=False)
    outputs = []

    def record(frame):
        outputs.append(frame.copy())
        return frame

    summary = webcam_loop.run_webcam(clip, record, frames=9, log=io.StringIO())
    assert summary["frames"] == len(outputs) == 9              # more than the 4 frames in the file: it looped
    assert all(o.dtype == np.uint8 and o.shape == (120, 160, 3) for o in outputs)


def test_virtual_camera_without_pyvirtualcam_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)      # import pyvirtualcam -> ImportError
    clip = make_clip(tmp_path / "loop.mp4", frames=4, audio=False)
    with pytest.raises(GhostError) as err:
        webcam_loop.run_webcam(clip, lambda f: f, frames=1, virtual_camera=True, log=io.StringIO())
    message = str(err.value)
    assert "pyvirtualcam" in message and "v4l2loopback" in message and "\n" not in message


def test_preview_without_window_support_is_one_line_error(tmp_path, monkeypatch):
    import cv2

    def no_gui(name):
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    clip = make_clip(tmp_path / "loop.mp4", frames=4, audio=False)
    with pytest.raises(GhostError, match="--preview"):
        webcam_loop.run_webcam(clip, lambda f: f, frames=1, preview=True, log=io.StringIO())


def test_camera_that_cannot_be_opened_is_one_line_error():
    with pytest.raises(GhostError, match="--camera 97"):
        webcam_loop.run_webcam(97, lambda f: f, frames=1, log=io.StringIO())


def test_missing_camera_file_names_it(tmp_path):
    with pytest.raises(GhostError, match="nope.mp4"):
        webcam_loop.run_webcam(tmp_path / "nope.mp4", lambda f: f, frames=1, log=io.StringIO())


def test_frames_must_be_positive(tmp_path):
    clip = make_clip(tmp_path / "loop.mp4", frames=4, audio=False)
    with pytest.raises(GhostError, match="--frames"):
        webcam_loop.run_webcam(clip, lambda f: f, frames=0, log=io.StringIO())


def test_latest_frame_mailbox_keeps_only_the_newest():
    box = webcam_loop.LatestFrame()
    for i in range(5):
        box.put(np.full((2, 2, 3), i, np.uint8), float(i))
    rgb, t = box.take(timeout=0.1)
    assert t == 4.0 and rgb[0, 0, 0] == 4
    assert box.captured == 5 and box.dropped == 4
    box.end()
    assert box.take(timeout=0.1) is None


def test_webcam_command_on_a_camera_file(tmp_path, capsys):
    import argparse

    from ghostrt.cli.swap_video import add_webcam_parser

    clip = make_clip(tmp_path / "loop.mp4", frames=6, audio=False)
    calls = []

    def make_process(args):
        def process_batch(frames):
            calls.append(len(frames))
            return frames
        return process_batch

    parser = argparse.ArgumentParser()
    add_webcam_parser(parser.add_subparsers(dest="mode"), make_process)
    args = parser.parse_args(["webcam", "--source", "s.jpg", "--camera-file", str(clip), "--frames", "3"])
    assert args.func(args) == 0
    assert calls == [1, 1, 1]                                  # batch 1
    assert "latency p50" in capsys.readouterr().out
