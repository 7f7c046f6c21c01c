"""Segments of one video (ghostrt/render/segments.py): keyframe split from packets, warm-up/lookahead so the
temporal state does not seam, and the stitch by remuxing: equal to the one-process render."""

from pathlib import Path

import av
import numpy as np
import pytest

from ghostrt.render import segments
from ghostrt.runtime.io import video_io
from ghostrt.runtime.loops.video_loop import swap_video
from test_video_io import make_clip


def keyframed_clip(path: Path, frames: int = 40, gop: int = 8, size=(64, 48), fps: int = 24,
                   pts_ms=None, audio: bool = True) -> Path:
    """A clip with a keyframe every `gop` frames (B-frames on), AAC audio, millisecond time base."""
    return make_clip(path, frames, size, fps, pts_ms=pts_ms, audio=audio, crf=20,
                     encoder_options={"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "2"})


class TemporalStub:
    """A stand-in for the swapper's video stream with the same two kinds of state: a cadence on the global
    frame index (a mark every `every` frames, like --detect-every) and a 2-frame lookahead (each output is the
    mean of frames i-2 … i+2, like the keypoint smoothing). Any seam would change pixels."""

    def __init__(self, every: int = 3):
        self.first_index, self.every = 0, every
        self.frames: list[np.ndarray] = []
        self.emitted = 0

    def _emit(self, upto: int) -> list[np.ndarray]:
        out = []
        while self.emitted < upto:
            e = self.emitted
            window = np.stack(self.frames[max(0, e - 2):e + 3]).astype(np.float32)
            frame = window.mean(axis=0).round().astype(np.uint8)
            if (self.first_index + e) % self.every == 0:
                frame[:8, :8] = 255
            out.append(frame)
            self.emitted += 1
        return out

    def process_batch(self, frames):
        self.frames += list(frames)
        return self._emit(len(self.frames) - 2)

    def flush(self):
        return self._emit(len(self.frames))


def stub_stream(first_index: int) -> TemporalStub:
    stream = TemporalStub()
    stream.first_index = first_index
    return stream


def decoded(path: Path):
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24").astype(np.int16)) for f in c.decode(video=0)]


def audio_packets(path: Path):
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(audio=0) if p.size]


class _Loop:
    """video_loop's process_batch with the stub's flush."""

    def __init__(self, stream):
        self.stream = stream
        self.flush = stream.flush

    def __call__(self, frames):
        return self.stream.process_batch(frames)


def render_segmented(clip: Path, out: Path, seconds: float, batch: int = 4):
    info = video_io.probe(clip)
    found = segments.scan(info)
    plan = segments.plan_segments(found, seconds, detect_every=3)
    encoded = [segments.render_segment(info, found, seg, stub_stream(seg.warm_start), suffix=out.suffix,
                                       crf=0, batch=batch) for seg in reversed(plan)]
    segments.stitch(out, info, encoded, crf=0)
    return plan


def test_scan_finds_the_keyframes_without_decoding(tmp_path):
    clip = keyframed_clip(tmp_path / "in.mp4", frames=40, gop=8)
    found = segments.scan(video_io.probe(clip))
    assert len(found.pts) == 40 and list(found.pts) == sorted(found.pts)
    assert found.keyframes == (0, 8, 16, 24, 32)
    plan = segments.plan_segments(found, seconds=0.5, detect_every=3)       # 12 frames → cut at 16, 32
    assert [(s.start, s.end) for s in plan] == [(0, 16), (16, 32), (32, 40)]
    assert all(s.warm_start % 3 == 0 and s.warm_start <= s.start - 2 for s in plan[1:])
    assert [s.stop for s in plan] == [18, 34, 40]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_segmented_render_equals_the_one_process_render(tmp_path, suffix):
    clip = keyframed_clip(tmp_path / "in.mp4", frames=40, gop=8)
    ref = tmp_path / f"ref{suffix}"
    swap_video(clip, ref, _Loop(stub_stream(0)), batch=4, crf=0, progress=False)
    plan = render_segmented(clip, tmp_path / f"seg{suffix}", seconds=0.5)
    assert len(plan) >= 3
    a, b = decoded(ref), decoded(tmp_path / f"seg{suffix}")
    assert len(a) == len(b) == 40
    assert [p for p, _ in a] == [p for p, _ in b]
    assert max(int(np.abs(x - y).max()) for (_, x), (_, y) in zip(a, b)) <= 1
    assert audio_packets(ref) == audio_packets(tmp_path / f"seg{suffix}") != []


def test_variable_frame_rate_timestamps_survive_the_stitch(tmp_path):
    times = np.cumsum([0] + [33 if i % 3 else 50 for i in range(29)]).tolist()
    clip = keyframed_clip(tmp_path / "vfr.mp4", pts_ms=times, gop=6, audio=False)
    ref = tmp_path / "ref.mp4"
    swap_video(clip, ref, _Loop(stub_stream(0)), batch=4, crf=0, progress=False)
    render_segmented(clip, tmp_path / "seg.mp4", seconds=0.2)
    a, b = decoded(ref), decoded(tmp_path / "seg.mp4")
    assert [p for p, _ in a] == [p for p, _ in b] and len(b) == 30
    assert max(int(np.abs(x - y).max()) for (_, x), (_, y) in zip(a, b)) <= 1


def test_a_seam_would_show(tmp_path):
    """The check above can fail: without warm-up the lookahead window is cut at the segment start."""
    clip = keyframed_clip(tmp_path / "in.mp4", frames=24, gop=8, audio=False)
    info = video_io.probe(clip)
    found = segments.scan(info)
    plan = segments.plan_segments(found, 0.3, detect_every=3, warmup=0, lookahead=0)
    encoded = [segments.render_segment(info, found, s, stub_stream(s.warm_start), crf=0) for s in plan]
    segments.stitch(tmp_path / "seam.mp4", info, encoded, crf=0)
    ref = tmp_path / "ref.mp4"
    swap_video(clip, ref, _Loop(stub_stream(0)), batch=4, crf=0, progress=False)
    diffs = [int(np.abs(x - y).max()) for (_, x), (_, y) in zip(decoded(ref), decoded(tmp_path / "seam.mp4"))]
    assert max(diffs) > 1
