"""Video out: the output plan (decided before any frame is decoded) and the writer that keeps what the input had.

See video_io for the stream policy; this half turns upright RGB frames back into the stored orientation,
encodes them with the input's pts, remuxes the other streams and labels the container."""

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error
from ghostrt.runtime.io.video_io import (AUDIO_LEAD_SECONDS, BITS_PER_PIXEL, CRF_CODECS, LABEL_KEY, MOV_FAMILY,
                                      PASSTHROUGH_TYPES, UNTAGGED_MATRIX, StreamInfo, VideoProbe, bit_depth)


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
    transcoded: dict[int, str] = field(default_factory=dict)   # audio stream index -> encoder (container's own)


# The encoders an extension implies when no --codec is given: what every player expects in that container.
DEFAULT_VIDEO_CODEC = {".webm": "libvpx-vp9"}          # everything else: libx264
CONTAINER_AUDIO_CODEC = {"webm": "libopus", "matroska,webm": "libopus"}   # audio a container cannot hold, else aac


def default_codec(output) -> str:
    """The video encoder the output's extension implies: VP9 for .webm, H.264 for .mp4/.mov/.mkv."""
    return DEFAULT_VIDEO_CODEC.get(Path(output).suffix.lower(), "libx264")


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
        out_depth = bit_depth(wanted)
        notes.append(f"{info.bit_depth}-bit input: frames pass through 8-bit RGB, so the {out_depth}-bit output "
                     "keeps only 8 bits of precision")
    return wanted, notes


def plan_output(output, info: VideoProbe, codec: str | None = None) -> OutputPlan:
    """Check the output name, codec and container against the input's streams; raise before any work.
    `codec` None: the one the extension implies (default_codec); audio the container cannot hold is
    re-encoded to the container's own (Opus for .webm, AAC for .mp4/.mov), never silently dropped."""
    output = Path(output)
    codec = codec or default_codec(output)
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
    keep, dropped, warnings, transcoded = [], [], [], {}
    for s in info.streams:
        if s.type not in PASSTHROUGH_TYPES:
            continue
        if s.codec in supported or (s.type == "attachment" and fmt == "matroska"):
            keep.append(s)
        elif s.type == "audio":
            audio_codec = CONTAINER_AUDIO_CODEC.get(fmt, "aac")
            if audio_codec not in supported and av.codec.Codec(audio_codec, "w").name not in supported:
                raise file_error(output, f"a {fmt} file cannot hold the input's {s.codec} audio (stream "
                                         f"{s.index}); use .mkv, which holds any audio")
            keep.append(s)
            transcoded[s.index] = audio_codec
            notes.append(f"audio stream {s.index} ({s.codec}) re-encoded to {audio_codec}: a {fmt} file cannot "
                         f"hold {s.codec}")
        else:
            dropped.append(s)
            warnings.append(f"{s.type} stream {s.index} ({s.codec}) dropped: a {fmt} file cannot hold it "
                            "(use .mkv to keep it)")
    return OutputPlan(output, fmt, codec, pix_fmt, keep, dropped, notes, warnings, transcoded)


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

    def __init__(self, output, template: VideoProbe, codec: str | None = None, crf: int | None = 18,
                 label: dict | None = None, plan: OutputPlan | None = None, encoder_options: dict | None = None,
                 on_packet=None, provenance=None):
        """`encoder_options`: extra encoder settings (segment renders fix x264's so segments stitch);
        `on_packet(packet)`: sees each encoded video packet before it is muxed (a segment worker keeps them);
        `provenance` (runtime.io.provenance.Provenance): watermark each written frame, and sign the complete
        file with C2PA before it is renamed into place (or write the <output>.c2pa sidecar)."""
        self.template = template
        self.plan = plan or plan_output(output, template, codec)
        self.crf = crf
        self.label = label
        self.encoder_options = dict(encoder_options or {})
        self.on_packet = on_packet
        self.provenance = provenance
        self.frames_written = 0
        self._atomic = None
        self._out = self._src = None

    # ---------------------------------------------------------------------------------------- open / close

    def __enter__(self):
        self._atomic = atomic_path(self.plan.path)
        tmp = self._tmp = self._atomic.__enter__()
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
            if self.provenance is not None:        # after the trailer, before the rename: never half-signed
                self.provenance.sign(self._tmp, self.label, final_name=self.plan.path)
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
        options = {"crf": str(self.crf)} if uses_crf else {}
        video = self._out.add_stream(plan.codec, rate=t.fps, options={**options, **self.encoder_options})
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
                if src.index in plan.transcoded:
                    self._copied[src.index] = self._add_transcoded(src, plan.transcoded[src.index])
                else:
                    self._copied[src.index] = self._out.add_stream_from_template(src, opaque=True)
            for s in plan.passthrough:
                if s.type == "attachment":      # fonts for styled subtitles and the like: no packets, just data
                    src = self._src.streams[s.index]
                    self._out.add_attachment(src.metadata.get("filename", f"attachment{s.index}"),
                                             src.mimetype or "application/octet-stream", src.data)
            self._packets = self._src.demux(*remuxed) if remuxed else iter(())
            self._pending = None
        self._k_back = (-(t.rotation // 90)) % 4

    def _add_transcoded(self, src, codec: str):
        """An audio stream re-encoded to the container's own codec (the rate Opus takes nearest the input's)."""
        rate = src.codec_context.sample_rate or 48000
        if codec == "libopus":
            rate = min((48000, 24000, 16000, 12000, 8000), key=lambda r: (r < rate, abs(r - rate)))
        stream = self._out.add_stream(codec, rate=rate)
        stream.layout = src.codec_context.layout.name if src.codec_context.layout else "stereo"
        return stream

    def _finish(self) -> None:
        for packet in self._video.encode(None):
            self._mux_video(packet)
        self._mux_passthrough_until(None)
        for index in self.plan.transcoded:       # the audio encoders' last packets
            if index in self._copied:
                self._out.mux(self._copied[index].encode(None))
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
        if self.provenance is not None:
            rgb = self.provenance.mark_frame(rgb, altered=bool((self.label or {}).get("altered", True)))
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

    def write_packet(self, packet) -> None:
        """One video packet encoded elsewhere with the same settings (a stitched segment), muxed in order."""
        packet.stream = self._video
        self._mux_video(packet)
        self.frames_written += 1

    def _mux_video(self, packet) -> None:
        if self.on_packet is not None:
            self.on_packet(packet)
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
            index = packet.stream.index
            if index in self.plan.transcoded:
                out = self._copied[index]
                for frame in packet.decode():
                    frame.pts = None          # the encoder times the re-cut frames itself
                    self._out.mux(out.encode(frame))
            else:
                packet.stream = self._copied[index]
                self._out.mux(packet)
            self._pending = None
