"""`ghostrt bench --memory` end to end on tiny durations: clips made, the real `swap video` CLI run in one child
per duration, the JSON written with its fields, and a deliberate leak (the module's test-only hook makes the
child keep every frame) turned into a failing verdict.

The three GHOST nets are the tiny graphs of test_swap_image in a temporary engines folder (their sidecars carry
the stand-in weights' fingerprints, so the CLI takes them as fresh), so each child starts in seconds; the
detector is the real RetinaFace. Frames are 960×540 (1.5 MB): the 12-frame margin is 18 MB, the leak over the
extra 4 s (120 frames) is ~180 MB.
"""

import json
from pathlib import Path

import pytest

from test_swap_image import tiny_arcface, tiny_generator, tiny_landmarks
from ghostrt.errors import GhostError
from ghostrt.export.models import _fingerprint, sidecar_path
from ghostrt.bench import memory_bench
from ghostrt.runtime.nets.detect import write_retinaface_onnx
from ghostrt.weights.resolve import resolve_weights

SIZE = (960, 540)
DURATIONS = [2, 6]
SETTINGS = memory_bench.SwapSettings(pattern=memory_bench.FacePattern(period_seconds=2.0, face_seconds=1.0),
                                     detect_every=5, batch=4, reason="test: tiny nets")


@pytest.fixture(scope="module")
def engines_dir(tmp_path_factory):
    """engines/onnx with tiny nets whose sidecars match the stand-in weights (no export, no torch)."""
    folder = tmp_path_factory.mktemp("engines")
    onnx_dir = folder / "onnx"
    onnx_dir.mkdir()
    weights = resolve_weights(None, num_blocks=2, log=lambda *_: None)
    makers = {"generator": tiny_generator, "arcface": tiny_arcface, "landmarks": tiny_landmarks}
    for model, make in makers.items():
        make(onnx_dir / f"{model}.onnx")
        fingerprint = _fingerprint(model, weights.path(model), 2)
        sidecar_path(onnx_dir / f"{model}.onnx").write_text(json.dumps({"fingerprint": fingerprint}))
    write_retinaface_onnx(onnx_dir / "retinaface.onnx")
    sidecar_path(onnx_dir / "retinaface.onnx").write_text(
        json.dumps({"fingerprint": _fingerprint("retinaface", None, 2)}))
    return folder


def bench(tmp_path: Path, engines_dir: Path, leak: bool) -> tuple[dict, Path]:
    return memory_bench.run_memory_bench(DURATIONS, tmp_path, frame_size=SIZE, settings=SETTINGS,
                                         options={"engines_dir": engines_dir}, leak=leak,
                                         log=lambda *_: None)


@pytest.mark.slow
def test_memory_bench_writes_json_and_passes_without_leak(tmp_path, engines_dir):
    report, path = bench(tmp_path, engines_dir, leak=False)
    assert path.parent == tmp_path and path.name.startswith("memory-") and path.suffix == ".json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(report))
    assert report["weights"] == "stand-in (untrained)"
    assert report["settings"]["pattern_text"].startswith("face (skimage astronaut")
    assert report["settings"]["detect_every"] == 5 and report["settings"]["batch"] == 4
    assert report["complete"] and report["durations"] == DURATIONS
    runs = report["runs"]
    assert [r["seconds"] for r in runs] == DURATIONS
    assert [r["frames"] for r in runs] == [60, 180]                 # every frame came out of the real CLI
    assert [r["clip"]["face_frames"] for r in runs] == [30, 90]     # 1 s of face in every 2 s
    for r in runs:
        assert r["standin_banner"]                                  # the CLI itself said: stand-in weights
        assert any(line.startswith("frames ") for line in r["cli_summary"])
        assert set(r["code"]["sha256"]) >= {"runtime/swap/video_swapper.py", "runtime/loops/video_loop.py"}
        assert r["peak_rss_mb"] > 50 and r["wall_s"] > 0 and r["fps"] > 0
        assert r["peak_device_mb"] is None and r["peak_device_reason"] == "no GPU"
        assert max(mb for _, mb in r["rss_samples_mb"] or [(0, 0)]) <= r["peak_rss_mb"] + 1
    v = report["verdict"]
    assert v["growth_mb"] == pytest.approx(runs[1]["peak_rss_mb"] - runs[0]["peak_rss_mb"], abs=0.11)
    assert v["margin_frames"] == memory_bench.MARGIN_FRAMES
    assert v["pass"], v
    summary = memory_bench.format_summary(report)
    assert "verdict: PASS" in summary and "peak device memory: null (no GPU)" in summary


@pytest.mark.slow
def test_memory_bench_catches_a_leak(tmp_path, engines_dir):
    report, _ = bench(tmp_path, engines_dir, leak=True)
    v = report["verdict"]
    assert report["settings"]["leak_hook"] is True
    assert not v["pass"], v
    assert v["growth_frames"] > 60, v            # 120 extra frames kept; allocator slack cannot hide it
    assert "verdict: FAIL" in memory_bench.format_summary(report)


def test_parse_durations():
    assert memory_bench.parse_durations("600,60") == [60.0, 600.0]
    for bad in ("", "a,60", "0,60", "-5"):
        with pytest.raises(GhostError):
            memory_bench.parse_durations(bad)


def test_face_pattern_alternates():
    pattern = memory_bench.FacePattern(period_seconds=20.0, face_seconds=1.0)
    flags = [pattern.has_face(i, 30) for i in range(1200)]
    assert flags[:30] == [True] * 30 and not any(flags[30:600]) and all(flags[600:630]) and not any(flags[630:])
