"""The synthetic clip the memory bench swaps: the astronaut (scikit-image) drifting over a canvas in face segments
that alternate with faceless ones, with an AAC tone, written frame by frame so making it never holds the clip."""

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

FPS = 30
AUDIO_RATE, TONE_HZ = 48000, 440.0
ORBIT_SECONDS = 45            # the face's ellipse: ~2 px per frame at 1080p, a new place each segment


@dataclass(frozen=True)
class FacePattern:
    """The astronaut is on screen for the first `face_seconds` of every `period_seconds`, absent otherwise."""

    period_seconds: float
    face_seconds: float

    def has_face(self, index: int, fps: int) -> bool:
        return (index / fps) % self.period_seconds < self.face_seconds

    def describe(self) -> str:
        return (f"face (skimage astronaut, moving) for the first {self.face_seconds:g} s of every "
                f"{self.period_seconds:g} s, faceless canvas for the rest")



def _astronaut(side: int) -> np.ndarray:
    import cv2
    import skimage.data

    face = np.ascontiguousarray(skimage.data.astronaut())
    return face if side == face.shape[0] else cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)


def clip_frames(count: int, size: tuple[int, int], pattern: FacePattern, fps: int = FPS):
    """RGB frames one at a time: a grey gradient canvas; in face segments the astronaut drifts along an
    ellipse (one turn per ORBIT_SECONDS), in faceless ones a plain grey square does (so every frame differs
    and the encoder works)."""
    width, height = size
    side = min(512, int(0.6 * min(width, height))) // 2 * 2
    face = _astronaut(side)
    ramp = np.linspace(60, 140, width, dtype=np.float32).astype(np.uint8)
    canvas = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2)
    room_x, room_y = width - side, height - side
    for i in range(count):
        frame = canvas.copy()
        angle = 2 * np.pi * i / (fps * ORBIT_SECONDS)
        x = int(room_x / 2 + room_x / 2 * 0.9 * np.cos(angle))
        y = int(room_y / 2 + room_y / 2 * 0.9 * np.sin(angle))
        if pattern.has_face(i, fps):
            frame[y:y + side, x:x + side] = face
        else:
            frame[y:y + side // 2, x:x + side // 2] = 170
        yield frame


def write_clip(path: Path, seconds: float, size: tuple[int, int], pattern: FacePattern, fps: int = FPS,
               gop: int | None = None) -> dict:
    """H.264 (x264 ultrafast, yuv420p) + AAC tone, muxed as the frames are made: memory stays flat. `gop`: a
    keyframe at least every that many frames (segments are cut only at keyframes)."""
    import av

    count = int(round(seconds * fps))
    samples_per_frame = AUDIO_RATE // fps
    with av.open(str(path), "w") as out:
        options = {"crf": "23", "preset": "ultrafast", **({"g": str(gop)} if gop else {})}
        video = out.add_stream("libx264", rate=fps, options=options)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.time_base = Fraction(1, fps)
        audio = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for i, rgb in enumerate(clip_frames(count, size, pattern, fps)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
            t = (i * samples_per_frame + np.arange(samples_per_frame)) / AUDIO_RATE
            tone = (0.2 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)[None]
            sound = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            sound.sample_rate, sound.pts = AUDIO_RATE, i * samples_per_frame
            out.mux(audio.encode(sound))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    faces = sum(pattern.has_face(i, fps) for i in range(count))
    return {"path": str(path), "seconds": seconds, "frames": count, "face_frames": faces, "size": list(size),
            "fps": fps, "bytes": path.stat().st_size}
