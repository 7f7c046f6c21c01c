"""One long video as independent segments, so several workers can render it: split at keyframes from the
packets alone, render a segment with the warm-up and lookahead frames that make its temporal state equal to
the one-process render's, and stitch the encoded segments by remuxing their packets (no re-encode).

A segment is the pts range [keyframe_i, keyframe_j) in presentation order, so open-GOP leading frames are
neither lost nor doubled. Frames keep their input pts through the encoder, so stitching needs no offset;
every segment is encoded with one fixed x264 setting (STITCH_OPTIONS) and therefore one codec header.
"""

import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.io import video_io, video_writer

STITCHABLE_CODECS = ("libx264",)
# One encoder setting for every segment: the same SPS/PPS, so packets from different encoders join.
STITCH_OPTIONS = {"x264-params": "stitchable=1", "preset": "medium", "bf": "3"}
WARMUP_FRAMES = 4          # frames decoded and processed (then dropped) before a segment's start
LOOKAHEAD_FRAMES = 2       # frames past its end: the keypoint smoothing's 2-frame lookahead


@dataclass(frozen=True)
class Scan:
    """The video's frames in presentation order, from its packets (no decoding)."""

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]       # frame indexes (presentation order) of the keyframes
    time_base: Fraction


@dataclass(frozen=True)
class Segment:
    index: int
    start: int                       # global frame index of the first frame it outputs
    end: int                         # ... one past its last
    warm_start: int                  # first frame decoded and processed (start minus the warm-up)
    stop: int                        # one past the last frame processed (end plus the lookahead)
    seek_pts: int                    # the keyframe at or before warm_start, where decoding begins

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass
class EncodedSegment:
    index: int
    frames: int
    time_base: Fraction
    packets: list[tuple[int, int | None, bool, int, bytes]]    # (pts, dts, keyframe, duration, data)
    seconds: float = 0.0
    worker: str = ""
    label: dict | None = None        # the provenance label the worker's swapper gives its output
    generator: tuple[str, str] | None = None     # (backend, precision) of the worker's generator
    standin: tuple[str, ...] = ()    # the worker's nets running untrained stand-in weights


def scan(info: video_io.VideoProbe) -> Scan:
    """Every video packet's pts and keyframe flag: 36k packets in ~0.1 s."""
    pts, keys = [], []
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams[info.video_index]
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    raise file_error(info.path, "a video packet has no timestamp: it cannot be split into segments")
                pts.append(packet.pts)
                keys.append(packet.is_keyframe)
    except av.error.FFmpegError as err:
        raise file_error(info.path, f"corrupt video data ({str(err).splitlines()[0][:160]})") from None
    order = np.argsort(np.asarray(pts, np.int64), kind="stable")
    sorted_pts = tuple(int(pts[i]) for i in order)
    keyframes = tuple(rank for rank, i in enumerate(order) if keys[i])
    if not sorted_pts:
        raise file_error(info.path, "video stream has no frames (zero packets)")
    return Scan(sorted_pts, keyframes or (0,), Fraction(info.time_base))


def plan_segments(found: Scan, seconds: float, detect_every: int = 1, warmup: int = WARMUP_FRAMES,
                  lookahead: int = LOOKAHEAD_FRAMES) -> list[Segment]:
    """Segments of about `seconds` each, cut only at keyframes. The warm-up starts on a detection frame (a
    multiple of detect_every) so tracking and smoothing see what the one-process render saw there."""
    n, tb = len(found.pts), found.time_base
    cuts = [0]
    for k in found.keyframes:
        if k > cuts[-1] and float((found.pts[k] - found.pts[cuts[-1]]) * tb) >= seconds:
            cuts.append(k)
    cuts.append(n)
    segments = []
    for i, (start, end) in enumerate(zip(cuts[:-1], cuts[1:])):
        warm = max(0, start - max(warmup, detect_every))
        warm -= warm % detect_every
        seek = max((k for k in found.keyframes if k <= warm), default=0)
        segments.append(Segment(i, start, end, warm, min(n, end + lookahead), found.pts[seek]))
    return segments


def decode_segment(info: video_io.VideoProbe, found: Scan, seg: Segment):
    """Yield (global index, pts, upright RGB) for frames warm_start … stop-1: seek to the keyframe, decode,
    drop the frames before warm_start (open-GOP leading frames among them)."""
    index_of = {p: i for i, p in enumerate(found.pts)}
    k = (info.rotation // 90) % 4
    expected = seg.warm_start
    try:
        with av.open(str(info.path)) as container:
            stream = container.streams[info.video_index]
            stream.thread_type = "AUTO"
            if seg.seek_pts != found.pts[0]:
                container.seek(seg.seek_pts, backward=True, any_frame=False, stream=stream)
            for frame in container.decode(stream):
                index = index_of.get(frame.pts)
                if index is None or index < seg.warm_start:
                    continue
                if index != expected:
                    raise file_error(info.path, f"segment {seg.index}: decoded frame {index} where frame "
                                                f"{expected} was due (the seek landed past it)")
                rgb = frame.to_ndarray(format="rgb24")
                yield index, frame.pts, (np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb)
                expected += 1
                if expected >= seg.stop:
                    return
    except av.error.FFmpegError as err:
        raise file_error(info.path, f"corrupt video data in segment {seg.index} "
                                    f"({str(err).splitlines()[0][:160]})") from None
    if expected < seg.stop:
        raise file_error(info.path, f"segment {seg.index}: the video ends at frame {expected}, "
                                    f"{seg.stop} were expected")


def render_segment(info: video_io.VideoProbe, found: Scan, seg: Segment, stream, suffix: str = ".mp4",
                   crf: int = 18, batch: int = 8, marks=None, label: dict | None = None) -> EncodedSegment:
    """Decode, process and encode one segment. `stream` is a fresh stateful processor (process_batch,
    flush; its first_index already set to seg.warm_start); frames outside [start, end) are processed for
    their state only and dropped. Returns the encoded packets (the temporary file is removed).
    `marks` (a Provenance): applied to each written frame by the same VideoWriter.write as `swap video`'s,
    so the stitched pixels equal its output; never signed here (the stitched file is, on the driver)."""
    import time

    started = time.perf_counter()
    packets: list = []
    time_base = [Fraction(info.time_base)]

    def keep(packet) -> None:
        time_base[0] = Fraction(packet.time_base)
        packets.append((packet.pts, packet.dts, packet.is_keyframe, packet.duration or 0, bytes(packet)))

    template = replace(info, streams=[])
    with tempfile.TemporaryDirectory(prefix="ghostrt-seg-") as tmp:
        out = Path(tmp) / f"segment{seg.index}{suffix}"
        marks = marks.marks_only() if marks is not None else None
        with video_writer.VideoWriter(out, template, codec="libx264", crf=crf, encoder_options=STITCH_OPTIONS,
                                      on_packet=keep, label=label, provenance=marks) as writer:
            pts_of = {}
            emitted = [seg.warm_start]

            def emit(frames) -> None:
                for rgb in frames:
                    index = emitted[0]
                    emitted[0] += 1
                    if seg.start <= index < seg.end:
                        writer.write(rgb, pts_of.pop(index))
                    else:
                        pts_of.pop(index, None)

            pending = []
            for index, pts, rgb in decode_segment(info, found, seg):
                pts_of[index] = pts
                pending.append(rgb)
                if len(pending) == batch:
                    emit(stream.process_batch(pending))
                    pending = []
            if pending:
                emit(stream.process_batch(pending))
            flush = getattr(stream, "flush", None)
            if flush is not None:
                emit(flush())
            if emitted[0] < seg.end:
                raise GhostError(f"segment {seg.index}: the processor returned {emitted[0] - seg.warm_start} "
                                 f"frames of {seg.stop - seg.warm_start}")
    return EncodedSegment(seg.index, seg.frames, time_base[0], packets, time.perf_counter() - started)


def stitch(output, info: video_io.VideoProbe, encoded: list[EncodedSegment], crf: int = 18,
           label: dict | None = None, provenance=None) -> int:
    """Write the segments' packets, in order, into `output` (atomically) beside the input's audio and
    subtitles, remuxed once. dts are kept rising across joins. Returns the frames written.
    `provenance`: the packets are already marked (in the workers); the writer signs the complete file at its
    temporary name and only then renames it, exactly as it finishes `swap video`'s output."""
    encoded = sorted(encoded, key=lambda e: e.index)
    last_dts = None
    with video_writer.VideoWriter(output, info, codec="libx264", crf=crf, label=label,
                                  encoder_options=STITCH_OPTIONS, provenance=provenance) as writer:
        for seg in encoded:
            for pts, dts, key, duration, data in seg.packets:
                packet = av.Packet(data)
                packet.time_base = seg.time_base
                packet.pts = pts
                if dts is not None and last_dts is not None and dts <= last_dts:
                    dts = last_dts + 1
                    if dts > pts:
                        raise GhostError(f"{output}: segment {seg.index} cannot join the one before it "
                                         "(decode timestamps overlap)")
                packet.dts = dts
                packet.is_keyframe = key
                if duration:
                    packet.duration = duration
                last_dts = dts if dts is not None else last_dts
                writer.write_packet(packet)
        return writer.frames_written
