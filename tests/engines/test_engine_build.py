"""Real TensorRT-RTX builds (ahead of time; no GPU needed): cache reuse, rebuild on change, the RetinaFace
ONNX, FP16 graphs, the `ghostrt build` command, and running an engine where an RTX GPU is present."""

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ghostrt.errors import GhostError
from ghostrt.export import engine_build
from ghostrt.runtime.backends import engine_cache, trt_backend, trt_executor

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_cache import small_onnx  # noqa: E402  (one definition of the small test net)

QUIET = dict(log=lambda line: None)


@pytest.fixture(scope="module")
def rtx():
    return trt_backend.load_backend("trt-rtx")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_second_identical_build_is_cached_not_rebuilt(tmp_path, rtx):
    onnx_path = small_onnx(tmp_path / "small.onnx")
    first = engine_build.build_one("small", onnx_path, "fp32", rtx, tmp_path, max_batch=2, **QUIET)
    assert not first.cached and first.engine_path.exists()
    before = (first.engine_path.stat().st_mtime_ns, digest(first.engine_path), first.manifest_path.read_text())
    second = engine_build.build_one("small", onnx_path, "fp32", rtx, tmp_path, max_batch=2, **QUIET)
    assert second.cached and second.engine_path == first.engine_path
    assert (second.engine_path.stat().st_mtime_ns, digest(second.engine_path),
            second.manifest_path.read_text()) == before
    assert "cached" in second.line() and "built" in first.line()


def test_changed_onnx_version_or_shapes_rebuild(tmp_path, rtx):
    onnx_path = small_onnx(tmp_path / "small.onnx", seed=0)
    first = engine_build.build_one("small", onnx_path, "fp32", rtx, tmp_path, max_batch=2, **QUIET)
    small_onnx(onnx_path, seed=1)                         # same graph, other weights
    changed = engine_build.build_one("small", onnx_path, "fp32", rtx, tmp_path, max_batch=2, **QUIET)
    assert not changed.cached and changed.engine_path != first.engine_path
    other_version = dataclasses.replace(rtx, version=rtx.version + ".post1")
    rebuilt = engine_build.build_one("small", onnx_path, "fp32", other_version, tmp_path, max_batch=2, **QUIET)
    assert not rebuilt.cached and rebuilt.engine_path not in (first.engine_path, changed.engine_path)
    bigger = engine_build.build_one("small", onnx_path, "fp32", rtx, tmp_path, max_batch=4, **QUIET)
    assert not bigger.cached
    assert len(list(tmp_path.glob("*.engine"))) == 4 and len(list(tmp_path.glob("*.json"))) == 4


def test_retinaface_onnx_builds_with_a_batch_profile(tmp_path, rtx):
    from ghostrt.runtime.nets.retinaface_model import write_retinaface_onnx

    onnx_path = write_retinaface_onnx(tmp_path / "retinaface.onnx")
    result = engine_build.build_one("retinaface", onnx_path, "fp32", rtx, tmp_path, max_batch=2, **QUIET)
    manifest = engine_cache.read_manifest(result.manifest_path)
    assert manifest["profiles"] == {"input": [[1, 3, 640, 640], [2, 3, 640, 640], [2, 3, 640, 640]]}
    assert manifest["model"] == "retinaface" and manifest["engine_bytes"] == result.engine_path.stat().st_size
    assert result.engine_bytes > 1_000_000                 # ~1.7 MB of FP32 weights live inside the engine


def test_dynamic_spatial_axes_are_refused_naming_the_file(tmp_path):
    from retinaface.weights import WEIGHTS                 # the packaged ONNX: N×3×H×W, all dynamic

    raw = tmp_path / "raw.onnx"
    raw.write_bytes(WEIGHTS)
    with pytest.raises(GhostError, match=r"raw.onnx: input input has a dynamic axis other than the batch"):
        engine_build.profiles_for(raw, max_batch=2)


def test_unparsable_onnx_is_a_one_line_error(tmp_path, rtx):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(GhostError) as err:
        trt_backend.build_engine(rtx, bad, {}, None, **QUIET)
    assert str(err.value).startswith(f"{bad}: TensorRT-RTX") and "\n" not in str(err.value)


def fp16_copy(src: Path, dst: Path) -> Path:
    """FP16 graph with FP32 I/O, by ONNX Runtime's converter (a stand-in for D2's make_fp16_onnx)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def test_fp16_variant_by_the_real_converter_builds_strongly_typed(tmp_path, rtx):
    import onnx

    from ghostrt.export.precision import make_fp16_onnx

    src = small_onnx(tmp_path / "small.onnx")
    fp16 = make_fp16_onnx(src, tmp_path / "small.fp16.onnx", "small")
    recipe = {"precision": "fp16", "method": "autocast"}
    assert onnx.TensorProto.FLOAT16 in {init.data_type for init in onnx.load(str(fp16)).graph.initializer}
    result = engine_build.build_one("small", fp16, "fp16", rtx, tmp_path, max_batch=2, quant_recipe=recipe,
                                    source_onnx=src, **QUIET)
    fp32 = engine_build.build_one("small", src, "fp32", rtx, tmp_path, max_batch=2, **QUIET)
    assert result.engine_path != fp32.engine_path
    manifest = engine_cache.read_manifest(result.manifest_path)
    assert (manifest["precision"], manifest["quant_recipe"]) == ("fp16", recipe)
    assert manifest["source_onnx_sha256"] == digest(src) and manifest["onnx_sha256"] == digest(fp16)


def test_precision_variant_is_reused_until_its_source_changes(tmp_path, monkeypatch):
    calls = []

    def convert(src, dst, model, precision, calibration_npz, weights_dir=None):
        calls.append(src)
        fp16_copy(src, dst)
        return {"method": "float16 test converter"}, {"model": model, "passed": True, "psnr": len(calls)}

    monkeypatch.setattr(engine_build, "convert_precision", convert)
    monkeypatch.setattr(engine_build, "converter_sha256", lambda: "test-converter")
    src = small_onnx(tmp_path / "small.onnx")
    first, recipe, fidelity = engine_build.precision_onnx(src, "fp16", "small", **QUIET)
    again, _, fidelity_again = engine_build.precision_onnx(src, "fp16", "small", **QUIET)
    assert first == again == tmp_path / "small.fp16.onnx" and len(calls) == 1
    assert recipe == {"method": "float16 test converter"}
    assert fidelity == fidelity_again == {"model": "small", "passed": True, "psnr": 1}   # measured once, kept
    small_onnx(src, seed=3)
    engine_build.precision_onnx(src, "fp16", "small", **QUIET)
    assert len(calls) == 2
    with pytest.raises(GhostError, match="INT8 calibration set not found"):
        engine_build.precision_onnx(src, "int8", "small", tmp_path / "missing.npz", **QUIET)


def test_build_command_prints_built_then_cached(tmp_path):
    command = [sys.executable, "-m", "ghostrt.cli", "build", "--precision", "fp32", "--backend", "trt-rtx",
               "--models", "retinaface", "--max-batch", "2", "--engines-dir", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert second.returncode == 0, second.stderr
    built = [l for l in first.stdout.splitlines() if l.startswith("retinaface fp32")]
    cached = [l for l in second.stdout.splitlines() if l.startswith("retinaface fp32")]
    assert len(built) == 1 and built[0].split()[-2] == "built" and "TensorRT-RTX" in built[0]
    assert len(cached) == 1 and cached[0].split()[-2] == "cached"
    assert built[0].split()[-1] == cached[0].split()[-1]
    listed = json.loads(subprocess.run([sys.executable, "-m", "ghostrt.cli", "engines", "--engines-dir",
                                        str(tmp_path), "--json"], capture_output=True, text=True, cwd=REPO,
                                       check=True).stdout)
    assert [m["model"] for m in listed] == ["retinaface"]


def test_build_command_rejects_unknown_model(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ghostrt.cli", "build", "--precision", "fp16", "--models",
                           "generatr", "--engines-dir", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "unknown model(s) generatr" in done.stderr


def rtx_gpu():
    gpu, _ = trt_backend.probe_gpu()
    return gpu if gpu is not None and trt_backend.rtx_supports(gpu.compute_capability) else None


@pytest.mark.skipif(rtx_gpu() is None, reason=trt_backend.RUN_NEEDS_GPU)
def test_engine_runs_and_matches_onnxruntime(tmp_path, rtx):
    import onnxruntime

    onnx_path = small_onnx(tmp_path / "small.onnx")
    result = engine_build.build_one("small", onnx_path, "fp32", rtx, tmp_path, max_batch=3, **QUIET)
    manifest = engine_cache.read_manifest(result.manifest_path)
    engine_cache.validate_for_run(manifest, rtx_gpu(), rtx.version)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with trt_executor.TrtExecutor(result.engine_path, rtx, runtime_cache_path=tmp_path / "rt.cache") as executor:
        assert executor.input_names == ["x"] and executor.output_names == ["y"]
        for batch in (1, 3, 3, 3, 2):                   # repeats exercise the CUDA-graph replay
            x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32), dtype=np.float32)
            got = executor.run({"x": x})["y"]
            want = session.run(["y"], {"x": x})[0]
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
        with pytest.raises(GhostError, match="outside the engine's profile"):
            executor.run({"x": np.zeros((4, 3, 32, 32), np.float32)})


def test_executor_opens_on_an_rtx_gpu_and_refuses_in_one_line_elsewhere(tmp_path, rtx):
    """No GPU, or a GPU TensorRT-RTX cannot run on: one line naming the engine, never a crash inside CUDA."""
    result = engine_build.build_one("small", small_onnx(tmp_path / "small.onnx"), "fp32", rtx, tmp_path, **QUIET)
    if rtx_gpu() is not None:
        with trt_executor.TrtExecutor(result.engine_path, rtx) as executor:
            assert executor.input_names == ["x"] and executor.output_names == ["y"]
        return
    with pytest.raises(GhostError) as err:
        trt_executor.TrtExecutor(result.engine_path, rtx)
    message = str(err.value)
    assert message.startswith(f"{result.engine_path}: ") and "\n" not in message
    if trt_backend.probe_gpu()[0] is None:
        assert "cannot run: no usable CUDA GPU" in message


def test_turing_gets_an_engine_of_its_own(tmp_path, rtx):
    """TensorRT-RTX has no FP32 GEMM for Turing, so CC 7.5 is a separate target, not part of "any RTX"."""
    onnx_path = small_onnx(tmp_path / "small.onnx")                # convolutions only: builds for Turing
    shared = engine_build.build_one("small", onnx_path, "fp32", rtx, tmp_path, **QUIET)
    turing = engine_build.build_one("small", onnx_path, "fp32", rtx, tmp_path, rtx_target="turing", **QUIET)
    assert not turing.cached and turing.engine_path != shared.engine_path
    manifest = engine_cache.read_manifest(turing.manifest_path)
    assert (manifest["target_gpu"], manifest["target_cc"]) == ("RTX Turing", "7.5")
    rtx2080, rtx4090 = trt_backend.GpuInfo("NVIDIA GeForce RTX 2080 Ti", "7.5"), trt_backend.GpuInfo("RTX 4090", "8.9")
    assert engine_cache.validate_for_run(manifest, rtx2080, rtx.version) == turing.engine_path
    with pytest.raises(GhostError, match=r"built for RTX Turing \(CC 7.5\), this GPU is RTX 4090 \(CC 8.9\)"):
        engine_cache.validate_for_run(manifest, rtx4090, rtx.version)
    with pytest.raises(GhostError, match=r"built for any RTX .* this GPU is NVIDIA GeForce RTX 2080 Ti"):
        engine_cache.validate_for_run(engine_cache.read_manifest(shared.manifest_path), rtx2080, rtx.version)


def test_failed_build_names_the_onnx_and_the_reason(tmp_path, rtx):
    """TensorRT-RTX has no FP32 GEMM kernels for Turing (support matrix): an FP32 Linear cannot build there."""
    import torch
    from ghostrt.export.onnx_io import export_module

    onnx_path = export_module(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 8)),
                              {"x": np.zeros((1, 3, 4, 4), np.float32)}, ["y"], tmp_path / "linear.onnx")
    with pytest.raises(GhostError) as err:
        engine_build.build_one("linear", onnx_path, "fp32", rtx, tmp_path, rtx_target="turing", **QUIET)
    message = str(err.value)
    assert message.startswith(f"{onnx_path}: TensorRT-RTX") and "build failed: " in message
    assert "Turing" in message and "\n" not in message
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.json"))
