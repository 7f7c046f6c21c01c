"""Memory of `swap video` must not grow with the video's length: a 1080p frame is 6 MB, so a loop or a
swapper that kept every frame (or every frame's float copy) would need gigabytes for a few minutes of video.

Each run happens in a fresh Python process that reports its own peak resident set size (ru_maxrss), so the
clip making and the other tests do not count. The long and the short run must peak within a few frames'
worth of each other. The identity runs check the loop's queues (cheap: 60 vs 240 frames); the swap runs
check VideoSwapper's held frames and books (tiny nets, the real RetinaFace detector; 24 vs 72 frames).
"""

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data

from test_swap_image import tiny_arcface, tiny_generator, tiny_landmarks
from ghostrt.runtime.nets.detect import write_retinaface_onnx

REPO = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 1920, 1080
FRAME_MB = WIDTH * HEIGHT * 3 / 2 ** 20
MARGIN_MB = 12 * FRAME_MB         # queue fill and allocator slack differ by a few frames, a leak by hundreds

RUN = r"""
import json, resource, sys
from pathlib import Path
import numpy as np
from ghostrt.runtime.loops.video_loop import swap_video

mode, clip, out, onnx_dir = sys.argv[1:5]
if mode == "identity":
    def process(frames):
        return frames
else:
    from ghostrt.runtime.nets.detect import make_detector
    from ghostrt.runtime.backends.executors import OrtExecutor
    from ghostrt.runtime.swap.core import Nets
    from ghostrt.runtime.swap.video_swapper import VideoSwapper
    d = Path(onnx_dir)
    nets = Nets(detector=make_detector("retinaface", OrtExecutor(d / "detector.onnx")),
                arcface=OrtExecutor(d / "arcface.onnx"), generator=OrtExecutor(d / "generator.onnx"),
                landmarks=OrtExecutor(d / "landmarks.onnx"))
    process = VideoSwapper(nets, np.ones((1, 512), np.float32), batch=4)
summary = swap_video(clip, out, process, batch=4, codec="mpeg4", progress=False)
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"frames": summary["frames"], "peak_mb": peak_kb / 1024,
                  "swapped": getattr(process, "frames_swapped", None)}))
"""


def frames_1080p(n: int):
    """The astronaut (a detectable face) drifting 3 px per frame over a grey 1080p canvas, made one frame at a
    time so the clip never exists in memory as a whole."""
    astronaut = np.ascontiguousarray(skimage.data.astronaut())
    for i in range(n):
        canvas = np.full((HEIGHT, WIDTH, 3), 96, np.uint8)
        x, y = 600 + 3 * i, 280
        canvas[y:y + 512, x:x + 512] = astronaut
        yield canvas


def write_clip(path: Path, n: int) -> Path:
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24, options={"crf": "23", "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.time_base = Fraction(1, 24)
        for i, rgb in enumerate(frames_1080p(n)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def peak_run(mode: str, clip: Path, out: Path, onnx_dir: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, mode, str(clip), str(out), str(onnx_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_nets")
    write_retinaface_onnx(folder / "detector.onnx")
    tiny_arcface(folder / "arcface.onnx")
    tiny_generator(folder / "generator.onnx")
    tiny_landmarks(folder / "landmarks.onnx")
    return folder


@pytest.mark.slow
def test_loop_peak_memory_does_not_grow_with_length(tmp_path, onnx_dir):
    short = peak_run("identity", write_clip(tmp_path / "short.mp4", 60), tmp_path / "short_out.mp4", onnx_dir)
    long = peak_run("identity", write_clip(tmp_path / "long.mp4", 240), tmp_path / "long_out.mp4", onnx_dir)
    assert (short["frames"], long["frames"]) == (60, 240)
    assert long["peak_mb"] < short["peak_mb"] + MARGIN_MB, (short, long)


@pytest.mark.slow
def test_swap_peak_memory_does_not_grow_with_length(tmp_path, onnx_dir):
    short = peak_run("swap", write_clip(tmp_path / "short.mp4", 24), tmp_path / "short_out.mp4", onnx_dir)
    long = peak_run("swap", write_clip(tmp_path / "long.mp4", 72), tmp_path / "long_out.mp4", onnx_dir)
    assert (short["frames"], long["frames"]) == (24, 72)
    assert (short["swapped"], long["swapped"]) == (24, 72)         # the face was found and swapped throughout
    assert long["peak_mb"] < short["peak_mb"] + MARGIN_MB, (short, long)
