"""Video probing, decoding and writing (runtime/video_io.py) on small clips made here with PyAV."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from skimage import data

from ghostrt.errors import GhostError
from ghostrt.runtime.io import video_io, video_writer

SAMPLE_RATE = 16000
TONE_HZ = 440.0


# ------------------------------------------------------------------------------------------- clip making

def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A real photo (astronaut) cropped and scaled to width×height; seed shifts it so frames differ."""
    photo = data.astronaut()[::3, ::3]
    photo = np.roll(photo, 3 * seed, axis=1)
    reps = (-(-height // photo.shape[0]), -(-width // photo.shape[1]), 1)
    return np.ascontiguousarray(np.tile(photo, reps)[:height, :width])


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def make_clip(path: Path, frames: int = 24, size=(160, 120), fps: int = 24, pts_ms=None, rotation: int = 0,
              audio: bool = True, subtitles: bool = False, attachment: bool = False, pix_fmt: str = "yuv420p", codec: str = "libx264",
              crf: int = 18, colorspace: int | None = None, color_range: int | None = None,
              encoder_options: dict | None = None) -> Path:
    """A clip of `frames` photo frames; `pts_ms` gives each frame's time in milliseconds (variable rate);
    `encoder_options` go to x264 beside crf (e.g. a fixed GOP)."""
    width, height = size
    out = av.open(str(path), "w")
    video = out.add_stream(codec, rate=fps, options={"crf": str(crf), **(encoder_options or {})}
                           if codec == "libx264" else {})
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    tb = Fraction(1, 1000)
    video.time_base = tb
    video.codec_context.time_base = tb
    if rotation:
        video.set_display_rotation(rotation)
    if colorspace is not None:
        video.codec_context.colorspace, video.codec_context.color_range = colorspace, color_range
    sound = None
    if audio:
        sound = out.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
    subs = None
    if subtitles:
        subs = out.add_mux_stream("subrip")
        subs.time_base = tb
    if attachment:       # streams must all exist before the first packet is muxed
        out.add_attachment("font.ttf", "font/ttf", b"not really a font " * 8)
    times = pts_ms if pts_ms is not None else [round(1000 * i / fps) for i in range(frames)]
    for i, t in enumerate(times):
        frame = av.VideoFrame.from_ndarray(picture(width, height, i), format="rgb24")
        if colorspace is not None:
            frame = frame.reformat(format=pix_fmt, dst_colorspace=colorspace, dst_color_range=color_range)
        frame.pts, frame.time_base = t, tb
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    if sound is not None:
        samples = tone(times[-1] / 1000 + 1 / fps)[None]
        for start in range(0, samples.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, start:start + 1024]),
                                               format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    if subs is not None:
        for k in range(2):
            packet = av.Packet(f"subtitle line {k}".encode())
            packet.stream, packet.time_base = subs, tb
            packet.pts = packet.dts = 300 * k
            packet.duration = 200
            out.mux(packet)
    out.close()
    return path


def decode_all(path: Path) -> list[tuple[int, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def audio_samples(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])


def audio_packet_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(p.pts * p.time_base) for p in c.demux(audio=0) if p.pts is not None]


def copy_frames(info, output: Path, **writer_args) -> video_writer.VideoWriter:
    """Identity: every decoded frame written back with its own pts."""
    with video_writer.VideoWriter(output, info, **writer_args) as writer:
        for frame in video_io.read_frames(info):
            writer.write(frame.rgb, frame.pts)
    return writer


# ------------------------------------------------------------------------------------------------ probe

def test_probe_reads_size_rate_frames_and_streams(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=24, fps=24)
    info = video_io.probe(clip)
    assert (info.width, info.height) == (160, 120)
    assert info.fps == 24 and info.frames == 24 and info.frames_exact
    assert not info.variable_frame_rate and info.rotation == 0
    assert info.pix_fmt == "yuv420p" and info.bit_depth == 8
    assert [s.type for s in info.streams] == ["audio"]
    assert info.duration == pytest.approx(1.0, abs=0.1)


def test_probe_sees_variable_frame_rate(tmp_path):
    pts = [0, 20, 60, 80, 120, 140, 180, 200, 240, 260, 300, 320]
    info = video_io.probe(make_clip(tmp_path / "vfr.mp4", pts_ms=pts, audio=False))
    assert info.variable_frame_rate


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_probe_reads_rotation(tmp_path, degrees):
    info = video_io.probe(make_clip(tmp_path / "rot.mp4", frames=4, rotation=degrees, audio=False))
    assert info.rotation == degrees
    assert info.upright_size == ((120, 160) if degrees % 180 else (160, 120))


# ---------------------------------------------------------------------------------------------- bad input

def _truncated(tmp_path):
    whole = make_clip(tmp_path / "whole.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(whole[: len(whole) // 2])
    return path


def _truncated_index_first(tmp_path):
    """An MP4 with its index at the front (faststart), cut at 60 %: it opens, but frames are missing."""
    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        for i in range(24):
            frame = av.VideoFrame.from_ndarray(picture(160, 120, i), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    whole = path.read_bytes()
    cut = tmp_path / "faststart_cut.mp4"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    return cut


def _mux_tone(out) -> None:
    """A 0.2 s mono AAC tone as one more stream of `out`."""
    sound = out.add_stream("aac", rate=SAMPLE_RATE)
    sound.layout = "mono"
    chunk = av.AudioFrame.from_ndarray(tone(0.2)[None], format="flt", layout="mono")
    chunk.sample_rate, chunk.pts = SAMPLE_RATE, 0
    out.mux(sound.encode(chunk))
    out.mux(sound.encode(None))


def _audio_only(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        _mux_tone(out)
    return path


def _written(name: str, content: bytes):
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(content)
        return folder / name
    return make


def _zero_frames(tmp_path, name="empty_track.mkv", with_audio=False):
    """A video track declared in the header with no frame in it (optionally beside a real audio track)."""
    path = tmp_path / name
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        if with_audio:
            _mux_tone(out)
        out.start_encoding()
    return path


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.mp4", "does not exist"),
    "empty": (_written("empty.mp4", b""), "empty"),
    "text": (_written("notes.mp4", b"not a video\n" * 50), "not a media file"),
    "truncated": (_truncated, "truncated"),
    "truncated_index_first": (_truncated_index_first, "truncated"),
    "audio_only": (_audio_only, "no video stream"),
    "zero_frames_mkv": (_zero_frames, "no frames"),
    "zero_frames_beside_audio": (lambda d: _zero_frames(d, "silent_video.mkv", with_audio=True), "no frames"),
    "empty_mp4": (lambda d: _zero_frames(d, "empty_track.mp4"), "no video stream"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_ghost_error_naming_the_file(tmp_path, kind):
    make, words = BAD_INPUTS[kind]
    path = make(tmp_path)
    with pytest.raises(GhostError) as err:
        video_io.probe(path)
    message = str(err.value)
    assert str(path) in message and words in message and "\n" not in message


# ------------------------------------------------------------------------------------------------ writing

def test_identity_copy_keeps_frames_rate_audio_and_label(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=24)
    info = video_io.probe(clip)
    label = {"tool": "ghostrt", "altered": True, "description": "Altered by ghostrt: test"}
    out = tmp_path / "out.mp4"
    copy_frames(info, out, label=label)
    back = video_io.probe(out)
    assert back.frames == 24 and back.fps == 24 and (back.width, back.height) == (160, 120)
    assert back.duration == pytest.approx(info.duration, abs=0.05)
    assert frame_times(out) == pytest.approx(frame_times(clip), abs=1e-3)
    # audio packets are copied, so the decoded samples are identical, not just close
    np.testing.assert_array_equal(audio_samples(out), audio_samples(clip))
    assert audio_packet_times(out) == pytest.approx(audio_packet_times(clip), abs=1e-4)
    assert video_writer.read_video_label(out) == label
    pixels_in = np.stack([f for _, f in decode_all(clip)]).astype(int)
    pixels_out = np.stack([f for _, f in decode_all(out)]).astype(int)
    assert np.abs(pixels_out - pixels_in).mean() < 2.0    # one more crf-18 generation


def test_variable_frame_rate_timestamps_survive(tmp_path):
    pts = [0, 20, 60, 80, 120, 140, 180, 200, 240, 260, 300, 320, 400, 410, 420, 500]
    clip = make_clip(tmp_path / "vfr.mp4", pts_ms=pts)
    out = tmp_path / "out.mp4"
    copy_frames(video_io.probe(clip), out)
    assert frame_times(out) == pytest.approx([p / 1000 for p in pts], abs=1e-3)


@pytest.mark.parametrize("degrees", [90, -90])
def test_rotation_metadata_kept_and_frames_are_upright(tmp_path, degrees):
    clip = make_clip(tmp_path / "rot.mp4", frames=4, rotation=degrees, audio=False)
    info = video_io.probe(clip)
    frames = list(video_io.read_frames(info))
    coded = decode_all(clip)[0][1]
    # np.rot90 turns counter-clockwise for k > 0; PyAV's rotation is the display matrix angle, same sign
    np.testing.assert_array_equal(frames[0].rgb, np.rot90(coded, degrees // 90))
    out = tmp_path / "out.mp4"
    copy_frames(info, out)
    back = video_io.probe(out)
    assert back.rotation == degrees and (back.width, back.height) == (160, 120)


def test_odd_size_is_kept_exactly(tmp_path):
    clip = make_clip(tmp_path / "odd.mkv", frames=6, size=(161, 121), pix_fmt="yuv444p", audio=False)
    info = video_io.probe(clip)
    out = tmp_path / "out.mp4"
    writer = copy_frames(info, out)
    back = video_io.probe(out)
    assert (back.width, back.height) == (161, 121) and back.frames == 6
    assert any("odd size" in note for note in writer.plan.notes)


@pytest.mark.parametrize("color_range", [1, 2])          # AVCOL_RANGE_MPEG (limited), AVCOL_RANGE_JPEG (full)
def test_bt709_colours_survive_a_copy(tmp_path, color_range):
    clip = make_clip(tmp_path / "hd.mp4", frames=4, colorspace=1, color_range=color_range, audio=False, crf=10)
    info = video_io.probe(clip)
    assert (info.colorspace, info.color_range) == (1, color_range)
    out = tmp_path / "out.mp4"
    copy_frames(info, out, crf=10)
    back = video_io.probe(out)
    assert (back.colorspace, back.color_range) == (1, color_range)
    a = np.stack([f for _, f in decode_all(clip)]).astype(int)
    b = np.stack([f for _, f in decode_all(out)]).astype(int)
    saturated = a.max(-1) - a.min(-1) > 60       # where a BT.601/BT.709 matrix mix-up shows most
    assert np.abs(a - b)[saturated].mean() < 3.0


def test_mpeg4_codec_for_even_sizes_and_a_clear_error_for_odd_ones(tmp_path):
    info = video_io.probe(make_clip(tmp_path / "in.mp4", frames=6, audio=False))
    out = tmp_path / "out.mp4"
    writer = copy_frames(info, out, codec="mpeg4")
    assert writer.plan.pix_fmt == "yuv420p"
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    assert len(decode_all(out)) == 6
    odd = video_io.probe(make_clip(tmp_path / "odd.mkv", frames=2, size=(161, 121), pix_fmt="yuv444p", audio=False))
    with pytest.raises(GhostError, match="odd size 161×121"):
        video_writer.plan_output(tmp_path / "odd_out.mp4", odd, codec="mpeg4")


def test_ten_bit_input_says_what_comes_out(tmp_path):
    clip = make_clip(tmp_path / "deep.mkv", frames=4, pix_fmt="yuv420p10le", audio=False)
    info = video_io.probe(clip)
    assert info.bit_depth == 10
    out = tmp_path / "out.mkv"
    writer = copy_frames(info, out)
    assert video_io.probe(out).pix_fmt == "yuv420p10le"
    assert any("10-bit input" in note for note in writer.plan.notes)


def test_subtitles_and_attachments_copied_to_mkv_and_dropped_with_warning_for_mp4(tmp_path):
    clip = make_clip(tmp_path / "subs.mkv", frames=12, subtitles=True, attachment=True)
    info = video_io.probe(clip)
    assert sorted(s.type for s in info.streams) == ["attachment", "audio", "subtitle"]
    mkv = tmp_path / "out.mkv"
    copy_frames(info, mkv)
    with av.open(str(mkv)) as c:
        texts = [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]
        fonts = [(s.metadata.get("filename"), s.data) for s in c.streams if s.type == "attachment"]
    assert texts == [b"subtitle line 0", b"subtitle line 1"]
    assert fonts == [("font.ttf", b"not really a font " * 8)]
    plan = video_writer.plan_output(tmp_path / "out.mp4", info)
    assert sorted(s.type for s in plan.dropped) == ["attachment", "subtitle"]
    assert all("dropped" in w for w in plan.warnings) and len(plan.warnings) == 2
    copy_frames(info, tmp_path / "out.mp4", plan=plan)
    assert sorted(s.type for s in video_io.probe(tmp_path / "out.mp4").streams) == ["audio"]


@pytest.mark.parametrize("name, words", [("out.wav", "cannot hold"), ("out.xyz123", "unknown video container"),
                                         ("in.mp4", "overwrite the input")])
def test_bad_output_name_fails_before_work(tmp_path, name, words):
    info = video_io.probe(make_clip(tmp_path / "in.mp4", frames=4))
    with pytest.raises(GhostError, match=words):
        video_writer.plan_output(tmp_path / name, info)


def test_error_while_writing_leaves_no_file(tmp_path):
    info = video_io.probe(make_clip(tmp_path / "in.mp4", frames=8))
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with video_writer.VideoWriter(out, info) as writer:
            for frame in video_io.read_frames(info):
                writer.write(frame.rgb, frame.pts)
                if frame.index == 3:
                    raise RuntimeError("stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_unknown_codec_is_a_one_line_error(tmp_path):
    info = video_io.probe(make_clip(tmp_path / "in.mp4", frames=2, audio=False))
    with pytest.raises(GhostError, match="--codec nosuchcodec"):
        video_writer.plan_output(tmp_path / "out.mp4", info, codec="nosuchcodec")
