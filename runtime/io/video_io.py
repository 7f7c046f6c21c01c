"""Video files in and out with PyAV (FFmpeg). Everything odd about a video is settled here, so a loop sees only
upright RGB uint8 frames with their timestamps:

- probe(): one GhostError line naming the file for anything unusable (missing, empty, not media, truncated or
  corrupt, audio only, no frames), and the facts the writer must keep (size, fps, variable frame rate,
  rotation, pixel format, the other streams).
- read_frames(): decoded frames in presentation order, turned upright by their display rotation (so the face
  detector sees faces the right way up), each with its own pts.
- video_writer.VideoWriter: turns frames back to the stored orientation, encodes them with the input's pts (variable frame
  rate survives), writes the same display rotation, and remuxes audio and subtitle packets untouched.

Stream policy (decided before any frame is decoded, in video_writer.plan_output): the video codec must fit the output
container, else GhostError. Audio the container cannot hold is a GhostError too (losing the sound silently is
worse than asking for .mkv). Subtitle, data and attachment streams the container cannot hold are DROPPED with
a warning naming each one (the swap is the point; .mkv keeps them).

Odd sizes (1921×1081): 4:2:0 and 4:2:2 need even sizes and H.264 cannot crop by one pixel, so an odd-sized
video is encoded as 4:4:4 (yuv444p / yuv444p10le) at exactly the input size, with a note saying so.
"""

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ghostrt.errors import file_error

LABEL_KEY = "ghostrt"            # container tag holding the provenance label as JSON
PASSTHROUGH_TYPES = ("audio", "subtitle", "data", "attachment")
VFR_PACKETS = 120                # packets looked at to tell constant from variable frame rate
VFR_SPREAD_SECONDS = 0.002       # frame steps differing by more than this are variable (ms rounding is not)
UNTAGGED_MATRIX = (0, 2)         # AVCOL_SPC_RGB, AVCOL_SPC_UNSPECIFIED: no YUV matrix to honour
MOV_FAMILY = ("mp4", "mov", "ipod", "3gp", "3g2", "ismv", "f4v", "psp")   # muxers needing use_metadata_tags
CRF_CODECS = ("libx264", "libx265")   # encoders taking --crf; others get a bit rate from the frame size
BITS_PER_PIXEL = 0.3             # for those: about what x264 spends at crf 18 on ordinary footage
AUDIO_LEAD_SECONDS = 0.5         # how far ahead of the video the remuxed packets may run


@dataclass
class StreamInfo:
    index: int
    type: str
    codec: str
    language: str | None = None


@dataclass
class VideoProbe:
    """What a video file holds; the writer's template."""

    path: Path
    container: str
    video_index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    fps: Fraction                  # average frame rate
    time_base: Fraction
    frames: int                    # from the header, else estimated from duration × fps
    frames_exact: bool
    duration: float                # seconds
    variable_frame_rate: bool
    rotation: int                  # display rotation in degrees (PyAV's sign: np.rot90 k = rotation / 90)
    colorspace: int = 2            # FFmpeg AVColorSpace / AVColorRange / primaries / transfer: 2 = unspecified
    color_range: int = 0
    color_primaries: int = 2
    color_trc: int = 2
    streams: list[StreamInfo] = field(default_factory=list)   # every other stream
    notes: list[str] = field(default_factory=list)

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) of the frames read_frames yields."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)


@dataclass
class DecodedFrame:
    index: int
    pts: int
    time_base: Fraction
    rgb: np.ndarray                # upright RGB uint8 H×W×3

    @property
    def seconds(self) -> float:
        return float(self.pts * self.time_base)


# ------------------------------------------------------------------------------------------------- probing

def _open_input(path: Path):
    if not path.exists():
        raise file_error(path, "file does not exist")
    if path.is_dir():
        raise file_error(path, "is a folder, not a video")
    if path.stat().st_size == 0:
        raise file_error(path, "file is empty")
    try:
        return av.open(str(path), "r")
    except PermissionError:
        raise file_error(path, "file is not readable (permissions)") from None
    except av.error.InvalidDataError:
        raise file_error(path, "not a media file, or truncated/corrupt (FFmpeg found no readable container)") from None
    except av.error.EOFError:
        raise file_error(path, "has no frames: the file ends before any media data (empty or truncated)") from None
    except (av.error.FFmpegError, OSError) as err:
        raise file_error(path, f"cannot be opened as a video ({_one_line(err)})") from None


def _one_line(err) -> str:
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__


def _rotation_of(stream, first_frame) -> int:
    """Display rotation from the frame side data (FFmpeg copies the stream's display matrix onto each frame),
    else the legacy `rotate` tag (stored clockwise, hence the minus)."""
    degrees = int(round(first_frame.rotation)) if first_frame is not None else 0
    if degrees == 0 and stream.metadata.get("rotate"):
        try:
            degrees = -int(stream.metadata["rotate"])
        except ValueError:
            degrees = 0
    degrees = ((degrees + 179) % 360) - 179       # into (-180, 180]: 180 and -180 are the same turn
    return degrees if degrees % 90 == 0 else 90 * round(degrees / 90)


def _check_complete(container, path: Path) -> None:
    """A cut-off MP4 whose index sits at the front still opens; its index then points past the file's end."""
    size = path.stat().st_size
    for stream in container.streams:
        end = max((e.pos + e.size for e in stream.index_entries if e.pos >= 0), default=0)
        if end > size:
            raise file_error(path, f"truncated: its index needs {end:,} bytes but the file has {size:,}")


def _scan_start(container, stream, path: Path):
    """Packet pts of the first VFR_PACKETS packets (to tell constant from variable rate) and the first
    decoded frame, in one pass over the file's start (no seek: not every input can seek)."""
    pts, first = [], None
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                pts.append(packet.pts)
            if first is None:
                frames = stream.decode(packet)       # the final empty packet flushes the decoder
                first = frames[0] if frames else None
            if first is not None and len(pts) >= VFR_PACKETS:
                break
    except av.error.FFmpegError as err:
        raise file_error(path, f"corrupt video data ({_one_line(err)})") from None
    if first is None:
        raise file_error(path, "video stream has no frames (zero decodable frames)")
    return sorted(pts), first


def _is_variable_rate(pts: list[int], time_base: Fraction) -> bool:
    steps = np.diff(np.asarray(pts, np.int64))
    steps = steps[steps > 0]
    return len(steps) >= 2 and float((int(steps.max()) - int(steps.min())) * time_base) > VFR_SPREAD_SECONDS


def probe(path) -> VideoProbe:
    """Open, look at the headers and decode the first frame, so a bad file fails now, not mid-swap."""
    path = Path(path)
    container = _open_input(path)
    try:
        # a cover picture in a music file is a "video" stream of one attached picture: not a video
        videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            kinds = ", ".join(sorted({s.type for s in container.streams}))
            raise file_error(path, f"has no video stream ({kinds} only)" if kinds else
                             "has no video stream (no streams at all: an empty recording?)")
        stream = videos[0]
        others = [StreamInfo(s.index, s.type, s.codec_context.name if s.codec_context else "unknown",
                             s.language) for s in container.streams if s.index != stream.index]
        _check_complete(container, path)
        pts, first = _scan_start(container, stream, path)
        pix_fmt = stream.codec_context.pix_fmt or first.format.name
        fps = _frame_rate(stream)
        time_base = stream.time_base or Fraction(1, int(fps) or 25)
        duration = _duration_seconds(container, stream)
        frames_exact = bool(stream.frames)
        frames = int(stream.frames) if frames_exact else max(1, round(duration * float(fps)))
        info = VideoProbe(
            path=path, container=container.format.name, video_index=stream.index,
            codec=stream.codec_context.name, width=first.width, height=first.height, pix_fmt=pix_fmt,
            bit_depth=bit_depth(pix_fmt), fps=Fraction(fps), time_base=Fraction(time_base), frames=frames,
            frames_exact=frames_exact, duration=duration, variable_frame_rate=_is_variable_rate(pts, time_base),
            rotation=_rotation_of(stream, first), colorspace=int(first.colorspace),
            color_range=int(first.color_range), color_primaries=int(first.color_primaries),
            color_trc=int(first.color_trc), streams=others)
    finally:
        container.close()
    if info.bit_depth > 8:
        info.notes.append(f"{info.pix_fmt} is {info.bit_depth}-bit: frames are swapped as 8-bit RGB")
    return info


def _frame_rate(stream) -> Fraction:
    """The nominal rate (24, 30000/1001) when the average agrees with it within 1 %, else the average: a
    clip whose timestamps were rounded to milliseconds averages 24.008 frames/s but is a 24 frames/s clip."""
    average, nominal = stream.average_rate, stream.guessed_rate
    if average and nominal and abs(float(nominal) / float(average) - 1) < 0.01:
        return Fraction(nominal)
    return Fraction(average or nominal or 25)


def _duration_seconds(container, stream) -> float:
    """The video stream's own duration: Matroska keeps it in a DURATION tag, and the container's duration
    may include a longer audio track."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        try:
            h, m, s = tag.split(":")
            return int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            pass
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def bit_depth(pix_fmt: str) -> int:
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, av.error.FFmpegError):
        return 8


# ------------------------------------------------------------------------------------------------ decoding

def read_frames(info: VideoProbe):
    """Yield DecodedFrame in presentation order. Missing pts are filled at the average frame rate."""
    container = _open_input(info.path)
    try:
        stream = container.streams[info.video_index]
        stream.thread_type = "AUTO"
        k = (info.rotation // 90) % 4
        step = max(1, round(1 / (float(info.fps) * float(info.time_base)))) if info.fps else 1
        last = None
        index = 0
        try:
            for frame in container.decode(stream):
                pts = frame.pts if frame.pts is not None else (0 if last is None else last + step)
                if last is not None and pts <= last:
                    pts = last + 1     # a decoder that repeats a pts; the encoder needs them rising
                last = pts
                rgb = frame.to_ndarray(format="rgb24")
                yield DecodedFrame(index, pts, info.time_base, np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb)
                index += 1
        except av.error.FFmpegError as err:
            raise file_error(info.path, f"corrupt video data after frame {index} ({_one_line(err)})") from None
    finally:
        container.close()
