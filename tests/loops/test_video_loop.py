"""The video loop (runtime/video_loop.py): any process_batch plugged between decode and encode."""

import io

import numpy as np
import pytest

from ghostrt.errors import GhostError
from ghostrt.runtime.io import video_io, video_writer
from ghostrt.runtime.loops.video_loop import swap_video
from test_video_io import audio_samples, decode_all, frame_times, make_clip

BOX = (slice(32, 80), slice(48, 112))      # rows, cols: multiples of 16 so codec blocks line up
MARGIN = 16                                # pixels around the box a codec may still touch


def identity(frames):
    return [f.copy() for f in frames]


def paint_box(frames):
    out = []
    for f in frames:
        g = f.copy()
        g[BOX] = 255 - g[BOX]
        out.append(g)
    return out


def outside_box_mask(shape) -> np.ndarray:
    keep = np.ones(shape[:2], bool)
    keep[BOX[0].start - MARGIN:BOX[0].stop + MARGIN, BOX[1].start - MARGIN:BOX[1].stop + MARGIN] = False
    return keep


def test_identity_keeps_frames_rate_duration_audio_and_label(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=36)
    out = tmp_path / "out.mp4"
    label = {"tool": "ghostrt", "altered": False, "description": "Processed by ghostrt: test"}
    summary = swap_video(clip, out, identity, batch=5, label=label, progress=False)
    assert summary["frames"] == 36
    info, back = video_io.probe(clip), video_io.probe(out)
    assert back.frames == 36 and back.fps == info.fps
    assert back.duration == pytest.approx(info.duration, abs=0.05)
    assert frame_times(out) == pytest.approx(frame_times(clip), abs=1e-3)
    np.testing.assert_array_equal(audio_samples(out), audio_samples(clip))
    assert video_writer.read_video_label(out) == label
    assert set(summary["stages"]) == {"decode", "process", "encode"}
    assert 1 <= summary["peak_queue"]["decoded"] <= summary["queue_limits"]["decoded"]


def test_box_process_changes_only_the_box(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=16, audio=False)
    plain, boxed = tmp_path / "plain.mkv", tmp_path / "boxed.mkv"
    swap_video(clip, plain, identity, batch=4, progress=False)
    swap_video(clip, boxed, paint_box, batch=4, progress=False)
    a = np.stack([f for _, f in decode_all(plain)]).astype(int)
    b = np.stack([f for _, f in decode_all(boxed)]).astype(int)
    assert a.shape == b.shape == (16, 120, 160, 3)
    outside = outside_box_mask(a.shape[1:])
    assert np.abs(a - b)[:, outside].mean() < 1.5            # codec noise only
    inside = np.abs((255 - a[:, BOX[0], BOX[1]]) - b[:, BOX[0], BOX[1]]).mean()
    assert inside < 4.0                                       # the box holds the inverted picture


def test_progress_line_goes_to_the_log(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=8, audio=False)
    log = io.StringIO()
    swap_video(clip, tmp_path / "out.mp4", identity, batch=3, progress=True, log=log)
    last = log.getvalue().strip().splitlines()[-1]
    assert "8/8 frames" in last and "frames/s" in last


def test_keyboard_interrupt_leaves_no_output(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=24)
    calls = []

    def interrupted(frames):
        calls.append(len(frames))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return identity(frames)

    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        swap_video(clip, tmp_path / "out.mp4", interrupted, batch=4, progress=False, log=log)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
    assert "not written" in log.getvalue()


def test_process_error_leaves_no_output(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=12, audio=False)

    def wrong_size(frames):
        return [f[:10] for f in frames]

    with pytest.raises(ValueError, match="process_batch returned"):
        swap_video(clip, tmp_path / "out.mp4", wrong_size, batch=4, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_truncated_input_fails_before_any_output(tmp_path):
    whole = make_clip(tmp_path / "whole.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(GhostError, match="cut.mp4"):
        swap_video(cut, tmp_path / "out.mp4", identity, progress=False)
    assert not (tmp_path / "out.mp4").exists()


def test_bad_output_extension_fails_before_decoding(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=4)
    called = []
    with pytest.raises(GhostError, match="out.wav"):
        swap_video(clip, tmp_path / "out.wav", lambda f: called.append(1) or f, progress=False)
    assert not called and not (tmp_path / "out.wav").exists()


def test_rotated_input_is_processed_upright_and_written_back_as_stored(tmp_path):
    clip = make_clip(tmp_path / "rot.mp4", frames=6, rotation=90, audio=False)
    shapes = []

    def record(frames):
        shapes.extend(f.shape for f in frames)
        return frames

    out = tmp_path / "out.mp4"
    swap_video(clip, out, record, batch=4, progress=False)
    assert set(shapes) == {(160, 120, 3)}                 # upright: portrait for a 160×120 clip turned 90°
    back = video_io.probe(out)
    assert back.rotation == 90 and (back.width, back.height) == (160, 120)
    a = np.stack([f for _, f in decode_all(clip)]).astype(int)
    b = np.stack([f for _, f in decode_all(out)]).astype(int)
    assert np.abs(a - b).mean() < 2.0                     # stored orientation unchanged


def test_odd_size_kept_through_the_loop(tmp_path):
    clip = make_clip(tmp_path / "odd.mkv", frames=6, size=(161, 121), pix_fmt="yuv444p", audio=False)
    out = tmp_path / "out.mp4"
    summary = swap_video(clip, out, paint_box, batch=4, progress=False)
    back = video_io.probe(out)
    assert (back.width, back.height) == (161, 121) and back.frames == 6
    assert summary["pix_fmt"] == "yuv444p"


def test_batch_must_be_positive(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=4, audio=False)
    with pytest.raises(GhostError, match="--batch"):
        swap_video(clip, tmp_path / "out.mp4", identity, batch=0, progress=False)



# ------------------------------------------------------------------------------------ `ghostrt swap video`

def _video_command(tmp_path, make_process, *extra):
    import argparse

    from ghostrt.cli.swap_video import add_video_parser

    parser = argparse.ArgumentParser()
    add_video_parser(parser.add_subparsers(dest="mode"), make_process)
    return parser.parse_args(["video", "--source", str(tmp_path / "s.jpg"), *extra])


def test_video_command_runs_the_process_and_labels_the_output(tmp_path, capsys):
    clip = make_clip(tmp_path / "in.mp4", frames=10)
    out = tmp_path / "out.mkv"
    built = []

    def make_process(args):
        built.append(args.detect_every)
        return paint_box

    args = _video_command(tmp_path, make_process, "--target", str(clip), "--output", str(out), "--batch", "3",
                          "--detect-every", "2", "--no-progress")
    assert args.func(args) == 0
    assert built == [2] and len(decode_all(out)) == 10 and video_io.probe(out).frames == 10
    label = video_writer.read_video_label(out)
    assert label["tool"] == "ghostrt" and label["operation"] == "video face swap"
    assert "ghostrt swap video" in capsys.readouterr().out


def test_video_command_checks_files_before_building_the_swapper(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=4)
    built = []
    args = _video_command(tmp_path, lambda a: built.append(1) or identity, "--target", str(clip),
                          "--output", str(tmp_path / "out.wav"))
    with pytest.raises(GhostError, match="out.wav"):
        args.func(args)
    assert not built


SIGINT_SCRIPT = """
import sys, time
from ghostrt.runtime.loops.video_loop import swap_video

def slow(frames):
    print("batch", flush=True)
    time.sleep(0.05)
    return frames

try:
    swap_video(sys.argv[1], sys.argv[2], slow, batch=2, progress=False)
except KeyboardInterrupt:
    sys.exit(130)
print("finished", flush=True)
"""


def test_real_ctrl_c_leaves_no_output(tmp_path):
    """SIGINT from outside, as a terminal sends it, while the three stages run."""
    import signal
    import subprocess
    import sys

    clip = make_clip(tmp_path / "in.mp4", frames=96, audio=False)
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, str(clip), str(tmp_path / "out.mp4")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "batch"        # the loop is running
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "finished" not in out and "not written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
