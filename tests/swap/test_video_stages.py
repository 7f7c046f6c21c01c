"""The video swap with its crop and paste run as graphs through the nets' executor (`--graph-stages`), and the
`--overlap` and `--graph-stages` options of `ghostrt swap video` end to end."""

import numpy as np
import pytest

from ghostrt import loading
from ghostrt.cli import main
from ghostrt.cli import swap as swap_cli
from ghostrt.runtime.stages.graph_stages import GraphStages
from ghostrt.runtime.swap.image_swapper import ImageSwapper
from ghostrt.runtime.swap.video_swapper import VideoSwapper
from ghostrt.runtime.io.video_writer import read_video_label
from test_swap_image import GRACE, onnx_files, executors  # noqa: F401  (fixtures)
from test_video_io import decode_all
from test_video_swapper import grace, moving, real_swapper_nets, run_stream, two_faces, write_face_clip  # noqa: F401


def test_video_graph_stages_equal_image_graph_stages_and_opencv(executors, two_faces, grace, tmp_path):
    frame, _ = two_faces
    frames = moving(frame, 3) + [np.full_like(frame, 128)] + moving(frame, 2, step=3)
    stages = GraphStages("ort", tmp_path / "engines")
    image_nets = real_swapper_nets(executors)
    image_nets.stages = stages
    image = ImageSwapper(image_nets, faces="all")
    sources = image.embed_photos([(GRACE, grace)], "--source")
    reference = [image.swap(f, sources).frame for f in frames]
    video_nets = real_swapper_nets(executors)
    video_nets.stages = stages
    video = VideoSwapper(video_nets, sources, faces="all", batch=3, smoothing=False)
    out = run_stream(video, frames, 3)
    assert len(out) == len(frames) and video.faces_swapped == 10           # 2 faces × 5 face frames
    for a, b in zip(out, reference):
        np.testing.assert_array_equal(a, b)
    opencv = run_stream(VideoSwapper(real_swapper_nets(executors), sources, faces="all", batch=3,
                                     smoothing=False), frames, 3)
    for a, b in zip(out, opencv):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.max() <= 3 and diff.mean() < 0.05
    np.testing.assert_array_equal(out[3], frames[3])                      # the face-free frame is untouched


@pytest.mark.parametrize("options", [["--overlap"], ["--graph-stages"], ["--overlap", "--graph-stages"]])
def test_swap_video_options_run_end_to_end(tmp_path, capsys, monkeypatch, onnx_files, two_faces, options):
    def fake_resolve(*args, log=print):
        return dict(onnx_files), "retinaface", ["generator", "arcface", "landmarks"], None

    monkeypatch.setattr(loading, "resolve_onnx", fake_resolve)
    made = []
    real_init = VideoSwapper.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)
    monkeypatch.setattr(VideoSwapper, "__init__", spy)
    frame, _ = two_faces
    clip = write_face_clip(tmp_path / "in.mp4", moving(frame[:, :320], 7))
    out = tmp_path / "out.mp4"
    rc = main(["swap", "video", "--source", str(GRACE), "--target", str(clip), "--output", str(out),
               "--backend", "openvino", "--engines-dir", str(tmp_path / "engines"), "--batch", "3",
               "--no-progress", *options])
    assert rc == 0, capsys.readouterr()
    assert len(decode_all(out)) == 7 and read_video_label(out)["altered"] is True
    (swapper,) = made
    assert swapper.overlap is ("--overlap" in options)
    assert type(swapper.nets.stages).__name__ == ("GraphStages" if "--graph-stages" in options else "OpenCvStages")
    assert swapper.frames_swapped == 7
