"""Video files in and out with PyAV (FFmpeg). Everything odd about a video is settled here, so a loop sees only
upright RGB uint8 frames with their timestamps:

- probe(): one GhostError line naming the file for anything unusable (missing, empty, not media, truncated or
  corrupt, audio only, no frames), and the facts the writer must keep (size, fps, variable frame rate,
  rotation, pixel format, the other streams).
- read_frames(): decoded frames in presentation order, turned upright by their display rotation (so the face
  detector sees faces the right way up), each with its own pts.
- VideoWriter: turns frames back to the stored orientation, encodes them with the input's pts (variable frame
  rate survives), writes the same display rotation, and remuxes audio and subtitle packets untouched.

Stream policy (decided before any frame is decoded, in plan_output): the video codec must fit the output
container, else GhostError. Audio the container cannot hold is a GhostError too (losing the sound silently is
worse than asking for .mkv). Subtitle, data and attachment streams the container cannot hold are DROPPED with
a warning naming each one (the swap is the point; .mkv keeps them).

Odd sizes (1921×1081): 4:2:0 and 4:2:2 need even sizes and H.264 cannot crop by one pixel, so an odd-sized
video is encoded as 4:4:4 (yuv444p / yuv444p10le) at exactly the input size, with a note saying so.
"""

import io
import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error

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
            bit_depth=_bit_depth(pix_fmt), fps=Fraction(fps), time_base=Fraction(time_base), frames=frames,
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


def _bit_depth(pix_fmt: str) -> int:
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


# ------------------------------------------------------------------------------------------------ planning

@dataclass
class OutputPlan:
    """Everything decided about the output before any frame is decoded."""

    path: Path
    container: str
    codec: str
    pix_fmt: str
    passthrough: list[StreamInfo]
    dropped: list[StreamInfo]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _output_format(output: Path):
    """The container FFmpeg would pick for this file name (probed on an in-memory file: nothing is written)."""
    memory = io.BytesIO()
    memory.name = output.name
    try:
        return av.open(memory, "w")
    except (ValueError, av.error.FFmpegError):
        raise file_error(output, f"unknown video container extension '{output.suffix}' "
                                 "(use .mp4, .mkv, .mov or .webm)") from None


def _choose_pix_fmt(info: VideoProbe, codec: str, output: Path) -> tuple[str, list[str]]:
    formats = [f.name for f in av.codec.Codec(codec, "w").video_formats or []]
    odd = info.width % 2 or info.height % 2
    deep = info.bit_depth > 8
    wanted = info.pix_fmt
    if odd:
        wanted = "yuv444p10le" if deep else "yuv444p"
        if wanted not in formats and "yuv444p" in formats:
            wanted = "yuv444p"
        if wanted not in formats:
            raise file_error(output, f"codec {codec} cannot encode the odd size {info.width}×{info.height} "
                                     "exactly (it has no 4:4:4 format); use --codec libx264")
    elif wanted not in formats:
        wanted = "yuv420p10le" if deep and "yuv420p10le" in formats else "yuv420p"
        if wanted not in formats:
            wanted = formats[0]
    notes = []
    if odd:
        notes.append(f"odd size {info.width}×{info.height}: 4:2:0 needs even sizes, so the video is encoded as "
                     f"{wanted} at exactly that size (some players cannot play 4:4:4 H.264)")
    if wanted != info.pix_fmt:
        notes.append(f"pixel format {info.pix_fmt} in → {wanted} out ({codec})")
    if deep:
        out_depth = _bit_depth(wanted)
        notes.append(f"{info.bit_depth}-bit input: frames pass through 8-bit RGB, so the {out_depth}-bit output "
                     "keeps only 8 bits of precision")
    return wanted, notes


def plan_output(output, info: VideoProbe, codec: str = "libx264") -> OutputPlan:
    """Check the output name, codec and container against the input's streams; raise before any work."""
    output = Path(output)
    if output.resolve() == info.path.resolve():
        raise file_error(output, "output would overwrite the input video")
    if output.is_dir():
        raise file_error(output, "is a folder; give an output file name such as out.mp4")
    try:
        av.codec.Codec(codec, "w")
    except (ValueError, av.error.FFmpegError):
        raise GhostError(f"--codec {codec}: no such video encoder in this FFmpeg build") from None
    probe_out = _output_format(output)
    try:
        fmt, supported = probe_out.format.name, probe_out.supported_codecs
    finally:
        probe_out.close()
    out_codec_name = av.codec.Codec(codec, "w").name
    if out_codec_name not in supported and codec not in supported:
        raise file_error(output, f"a {fmt} file cannot hold {codec} video; choose another --codec or extension")
    pix_fmt, notes = _choose_pix_fmt(info, codec, output)
    keep, dropped, warnings = [], [], []
    for s in info.streams:
        if s.type not in PASSTHROUGH_TYPES:
            continue
        if s.codec in supported or (s.type == "attachment" and fmt == "matroska"):
            keep.append(s)
        elif s.type == "audio":
            raise file_error(output, f"a {fmt} file cannot hold the input's {s.codec} audio (stream {s.index}); "
                                     "use .mkv, which holds any audio")
        else:
            dropped.append(s)
            warnings.append(f"{s.type} stream {s.index} ({s.codec}) dropped: a {fmt} file cannot hold it "
                            "(use .mkv to keep it)")
    return OutputPlan(output, fmt, codec, pix_fmt, keep, dropped, notes, warnings)


# ------------------------------------------------------------------------------------------------- writing

def label_metadata(label: dict) -> dict[str, str]:
    """Container tags carrying the label: a human line in `comment`, the whole label as JSON under `ghostrt`."""
    return {"comment": label["description"], LABEL_KEY: json.dumps(label, sort_keys=True)}


def read_video_label(path) -> dict | None:
    """The ghostrt label of a video file, or None when it carries none."""
    with av.open(str(path), "r") as container:
        tags = {k.lower(): v for k, v in container.metadata.items()}
    text = tags.get(LABEL_KEY)
    if text:
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return None
    return None


class VideoWriter:
    """Encode frames to `output` keeping the template's timestamps, rotation and other streams.

    Use as a context manager: the file appears (renamed from a temporary name) only when the block ends
    without an exception; an exception or KeyboardInterrupt leaves nothing behind."""

    def __init__(self, output, template: VideoProbe, codec: str = "libx264", crf: int | None = 18,
                 label: dict | None = None, plan: OutputPlan | None = None):
        self.template = template
        self.plan = plan or plan_output(output, template, codec)
        self.crf = crf
        self.label = label
        self.frames_written = 0
        self._atomic = None
        self._out = self._src = None

    # ---------------------------------------------------------------------------------------- open / close

    def __enter__(self):
        self._atomic = atomic_path(self.plan.path)
        tmp = self._atomic.__enter__()
        try:
            self._open(tmp)
        except BaseException as err:
            self._abort(err)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None:
            self._abort(exc)
            return False
        try:
            self._finish()
        except BaseException as err:
            self._abort(err)
            raise
        self._atomic.__exit__(None, None, None)
        return False

    def _open(self, tmp: Path) -> None:
        t, plan = self.template, self.plan
        options = {}
        if plan.container in MOV_FAMILY:
            options["movflags"] = "+use_metadata_tags"      # arbitrary tags (the label) as mdta keys
        if plan.container in ("matroska", "webm"):
            # Matroska stores presentation times and takes negative ones (AAC priming); FFmpeg's default shift
            # to non-negative would move every timestamp by the audio's encoder delay.
            options["avoid_negative_ts"] = "disabled"
        self._out = av.open(str(tmp), "w", format=plan.container.split(",")[0], options=options)
        if self.label is not None:
            self._out.metadata.update(label_metadata(self.label))
        uses_crf = self.crf is not None and plan.codec in CRF_CODECS
        video = self._out.add_stream(plan.codec, rate=t.fps, options={"crf": str(self.crf)} if uses_crf else {})
        if not uses_crf:      # FFmpeg's default for such codecs is 200 kbit/s whatever the size: far too low
            video.bit_rate = int(BITS_PER_PIXEL * t.width * t.height * float(t.fps))
        video.width, video.height = t.width, t.height
        video.pix_fmt = plan.pix_fmt
        video.time_base = t.time_base
        video.codec_context.time_base = t.time_base
        # the same colour tags as the input; write() converts RGB → YUV with the same matrix and range that
        # read_frames used for YUV → RGB (FFmpeg picks BT.601 limited range for untagged video both ways)
        video.codec_context.colorspace = 2 if t.colorspace in UNTAGGED_MATRIX else t.colorspace
        video.codec_context.color_range = t.color_range
        video.codec_context.color_primaries = t.color_primaries
        video.codec_context.color_trc = t.color_trc
        if t.rotation:
            video.set_display_rotation(t.rotation)
        self._video = video
        self._src = av.open(str(t.path), "r") if plan.passthrough else None
        self._copied = {}
        if self._src is not None:
            remuxed = [self._src.streams[s.index] for s in plan.passthrough if s.type != "attachment"]
            for src in remuxed:
                self._copied[src.index] = self._out.add_stream_from_template(src, opaque=True)
            for s in plan.passthrough:
                if s.type == "attachment":      # fonts for styled subtitles and the like: no packets, just data
                    src = self._src.streams[s.index]
                    self._out.add_attachment(src.metadata.get("filename", f"attachment{s.index}"),
                                             src.mimetype or "application/octet-stream", src.data)
            self._packets = self._src.demux(*remuxed) if remuxed else iter(())
            self._pending = None
        self._k_back = (-(t.rotation // 90)) % 4

    def _finish(self) -> None:
        for packet in self._video.encode(None):
            self._mux_video(packet)
        self._mux_passthrough_until(None)
        self._close()

    def _close(self) -> None:
        for c in (self._out, self._src):
            if c is not None:
                c.close()
        self._out = self._src = None

    def _abort(self, err) -> None:
        try:
            self._close()
        except Exception:
            pass
        self._atomic.__exit__(type(err), err, None)

    # ------------------------------------------------------------------------------------------- frames

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """One upright RGB uint8 frame with its input pts (in the template's time base)."""
        if self._k_back:
            rgb = np.ascontiguousarray(np.rot90(rgb, self._k_back))
        if rgb.shape != (self.template.height, self.template.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame {self.frames_written}: got {rgb.shape} {rgb.dtype}, expected "
                             f"{(self.template.height, self.template.width, 3)} uint8")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if self.template.colorspace not in UNTAGGED_MATRIX or self.template.color_range:
            frame = frame.reformat(format=self.plan.pix_fmt,
                                   dst_colorspace=None if self.template.colorspace in UNTAGGED_MATRIX
                                   else self.template.colorspace,
                                   dst_color_range=self.template.color_range or None)
        frame.pts = pts
        frame.time_base = self.template.time_base
        for packet in self._video.encode(frame):
            self._mux_video(packet)
        self.frames_written += 1

    def _mux_video(self, packet) -> None:
        if packet.dts is not None and packet.time_base is not None:
            self._mux_passthrough_until(float(packet.dts * packet.time_base) + AUDIO_LEAD_SECONDS)
        self._out.mux(packet)

    def _mux_passthrough_until(self, seconds: float | None) -> None:
        """Remux the other streams' packets up to `seconds` (None: all), so the file stays interleaved."""
        if self._src is None:
            return
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            packet = self._pending
            if packet.dts is None and packet.pts is None:
                self._pending = None     # the demuxer's empty flush packets
                continue
            stamp = packet.dts if packet.dts is not None else packet.pts
            if seconds is not None and float(stamp * packet.time_base) > seconds:
                return
            packet.stream = self._copied[packet.stream.index]
            self._out.mux(packet)
            self._pending = None
