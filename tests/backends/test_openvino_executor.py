"""The OpenVINO CPU executor on the tiny stand-in nets of test_swap_image and the real RetinaFace detector.

OpenVINO must give the same answers as ONNX Runtime (both FP32 here: this AVX2 CPU has no BF16), its compiled
blobs are cached exactly like TensorRT engines (compiled once, recompiled when the ONNX changes, refused in one
line naming the file when made for another CPU / OpenVINO or not gated), and `make_executor` says why it picked
OpenVINO, FP32 instead of bf16, or ONNX Runtime. The CPU's capabilities are monkeypatched to cover a BF16 CPU.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from test_swap_image import GRACE, astronaut, grace, make_swapper, onnx_files  # noqa: F401 (fixtures)
from ghostrt import loading
from ghostrt.cli import main
from ghostrt.errors import GhostError
from ghostrt.cli import swap as swap_cli
from ghostrt.runtime.backends import engine_cache
from ghostrt.runtime.backends import openvino_backend as ovb
from ghostrt.runtime.backends.executors import OrtExecutor, make_executor

INPUT_SHAPES = {"detector": {"input": (3, 640, 640)}, "arcface": {"face": (3, 112, 112)},
                "generator": {"target": (3, 256, 256), "source_embedding": (512,)},
                "landmarks": {"face": (3, 192, 192)}}
FIDELITY = {"accepted": True, "summary": "cos 0.9995 (gate 0.999)"}


@pytest.fixture(scope="module")
def real_cpu():
    return ovb.probe_cpu()


@pytest.fixture(scope="module")
def engines(tmp_path_factory, onnx_files):
    """FP32 blobs for the four nets, compiled once for the module through make_executor."""
    folder = tmp_path_factory.mktemp("ov_engines")
    for path in onnx_files.values():
        assert make_executor(path, "openvino", "fp32", folder).backend == "openvino"
    return folder


def manifest_of(folder: Path, model: str, precision: str = "fp32") -> dict:
    found = [m for m in engine_cache.list_manifests(folder)
             if (m["model"], m["precision"], m["backend"]) == (model, precision, "openvino")]
    assert len(found) == 1, [m["manifest_path"] for m in found]
    return found[0]


def copied_blob(engines: Path, folder: Path, model: str = "arcface", **changes) -> dict:
    """The model's FP32 blob and its manifest copied into `folder`, the manifest edited; returns it re-read."""
    manifest = manifest_of(engines, model)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(engine_cache.engine_file(manifest), folder)
    edited = {k: v for k, v in manifest.items() if k != "manifest_path"} | changes
    target = folder / Path(manifest["manifest_path"]).name
    target.write_text(json.dumps(edited))
    return engine_cache.read_manifest(target)


def with_capabilities(monkeypatch, cpu: ovb.CpuInfo, capabilities) -> None:
    """This very CPU (same name and ISA, so its cached blobs stay valid) claiming other OpenVINO capabilities."""
    fake = ovb.CpuInfo(cpu.name, cpu.isa, tuple(capabilities))
    monkeypatch.setattr(ovb, "probe_cpu", lambda core=None: fake)


def feeds_for(model: str, batch: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(-1, 1, (batch, *shape)).astype(np.float32)
            for name, shape in INPUT_SHAPES[model].items()}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------------------------------------- parity

@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("model", ["detector", "arcface", "generator", "landmarks"])
def test_openvino_matches_onnx_runtime(onnx_files, engines, model, batch):
    choice = make_executor(onnx_files[model], "openvino", "fp32", engines)
    ours, ref = choice.executor, OrtExecutor(onnx_files[model])
    assert isinstance(ours, ovb.OpenVinoExecutor) and ours.input_names == ref.input_names
    assert ours.output_names == ref.output_names
    feeds = feeds_for(model, batch, seed=batch)
    got, want = ours.run(feeds), ref.run(feeds)
    for name in ref.output_names:
        assert got[name].shape == want[name].shape and got[name].dtype == np.float32
        scale = float(np.abs(want[name]).max()) or 1.0
        assert cosine(got[name], want[name]) >= 0.999, name
        assert np.abs(got[name] - want[name]).max() <= 1e-3 * scale, name


def test_outputs_survive_the_next_call(onnx_files, engines):
    """A result kept across calls must not change under us (no shared output buffers)."""
    ex = make_executor(onnx_files["generator"], "openvino", "fp32", engines).executor
    first = ex.run(feeds_for("generator", 1, seed=5))["swapped"]
    kept = first.copy()
    ex.run(feeds_for("generator", 1, seed=6))
    np.testing.assert_array_equal(first, kept)


def test_missing_input_is_named_and_threads_are_set(onnx_files, engines):
    ex = make_executor(onnx_files["generator"], "openvino", "fp32", engines, threads=1).executor
    assert ex.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    with pytest.raises(ValueError, match="source_embedding"):
        ex.run({"target": np.zeros((1, 3, 256, 256), np.float32)})


# ---------------------------------------------------------------------------------------------- the cache

def test_second_make_executor_compiles_nothing(onnx_files, engines, monkeypatch):
    before = {p.name: p.stat().st_mtime_ns for p in engines.iterdir()}
    assert len(before) == 8                                        # 4 blobs + 4 manifests

    def no_compile(*args, **kwargs):
        raise AssertionError("a cached blob was compiled again")
    monkeypatch.setattr(engine_cache, "write_engine", no_compile)
    for path in onnx_files.values():
        choice = make_executor(path, "openvino", "fp32", engines)
        assert choice.backend == "openvino" and "fp32" in choice.reason
    assert {p.name: p.stat().st_mtime_ns for p in engines.iterdir()} == before


def test_a_changed_onnx_gets_a_new_blob(onnx_files, engines, tmp_path):
    folder = tmp_path / "engines"
    shutil.copytree(engines, folder)
    old = manifest_of(folder, "arcface")
    model = onnx.load(str(onnx_files["arcface"]))
    w = numpy_helper.to_array(model.graph.initializer[0])
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w * 2, model.graph.initializer[0].name))
    changed = tmp_path / "arcface.onnx"
    onnx.save(model, str(changed))
    choice = make_executor(changed, "openvino", "fp32", folder)
    fresh = [m for m in engine_cache.list_manifests(folder) if m["model"] == "arcface"]
    assert len(fresh) == 2
    new = next(m for m in fresh if m["engine_file"] != old["engine_file"])
    assert new["onnx_sha256"] == engine_cache.sha256_file(changed) != old["onnx_sha256"]
    assert choice.executor.path == engine_cache.engine_file(new)
    face = feeds_for("arcface", 1, seed=0)
    np.testing.assert_allclose(choice.executor.run(face)["embedding"], OrtExecutor(changed).run(face)["embedding"],
                               rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("changes, words", [
    ({"target_gpu": "CPU Intel(R) Xeon(R) Platinum 8480+"}, "compiled for CPU Intel"),
    ({"target_cc": "avx2,fma,avx512f,avx512bw,avx512_bf16,amx_tile,amx_bf16"}, "amx_bf16"),
    ({"backend_version": "2025.0.0-17942"}, "compiled with OpenVINO 2025.0.0-17942"),
    ({"fidelity": {"accepted": False, "summary": "cos 0.981 (gate 0.999)"}},
     "cos 0.981 (gate 0.999)) and was not accepted; rebuild it with `ghostrt build --backend openvino "
     "--precision fp32 --accept-fidelity`"),
    ({"precision": "bf16", "fidelity": {}}, "never measured"),
])
def test_foreign_or_ungated_blobs_are_refused_in_one_line(engines, tmp_path, changes, words):
    manifest = copied_blob(engines, tmp_path / "copy", **changes)
    blob = engine_cache.engine_file(manifest)
    with pytest.raises(GhostError) as err:
        ovb.blob_for_run(tmp_path / "copy", "arcface", manifest["precision"])
    message = str(err.value)
    assert str(blob) in message and words in message and "\n" not in message
    assert "ghostrt build --backend openvino" in message


def test_a_corrupt_blob_is_refused(engines, tmp_path, real_cpu):
    manifest = copied_blob(engines, tmp_path / "copy")
    blob = engine_cache.engine_file(manifest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(GhostError) as err:
        ovb.validate_for_run(manifest, real_cpu, ovb.version())
    assert str(blob) in str(err.value) and "corrupt" in str(err.value) and "\n" not in str(err.value)
    blob.write_bytes(b"not an OpenVINO blob")
    with pytest.raises(GhostError) as err:
        ovb.OpenVinoExecutor(blob)
    assert str(blob) in str(err.value) and "\n" not in str(err.value)


def test_a_corrupt_cached_fp32_blob_is_compiled_again(onnx_files, engines, tmp_path, capsys):
    """FP32 needs no gate, so make_executor does not trust a damaged cached blob: it says so in one line and
    compiles a good one."""
    folder = tmp_path / "engines"
    shutil.copytree(engines, folder)
    blob = engine_cache.engine_file(manifest_of(folder, "landmarks"))
    capsys.readouterr()
    make_executor(onnx_files["landmarks"], "openvino", "fp32", folder)
    assert "corrupt" not in capsys.readouterr().out                   # an intact cache is reused quietly
    blob.write_bytes(b"\0" * blob.stat().st_size)
    choice = make_executor(onnx_files["landmarks"], "openvino", "fp32", folder)
    said = [line for line in capsys.readouterr().out.splitlines() if "corrupt or replaced" in line]
    assert len(said) == 1 and str(blob) in said[0] and "rebuilding" in said[0]
    assert choice.executor.path == blob
    assert engine_cache.sha256_file(blob) == manifest_of(folder, "landmarks")["engine_sha256"]
    face = feeds_for("landmarks", 1, seed=0)
    np.testing.assert_allclose(choice.executor.run(face)["landmarks"],
                               OrtExecutor(onnx_files["landmarks"]).run(face)["landmarks"], atol=1e-4)


# ------------------------------------------------------------------------------------- precision choices

def test_bf16_on_a_cpu_without_it(onnx_files, engines, monkeypatch, real_cpu):
    with_capabilities(monkeypatch, real_cpu, ("FP32", "INT8", "BIN", "EXPORT_IMPORT"))
    with pytest.raises(GhostError) as err:
        make_executor(onnx_files["arcface"], "openvino", "bf16", engines)
    assert "BF16" in str(err.value) and "\n" not in str(err.value)
    for backend, precision in (("auto", "fp16"), ("auto", "bf16"), ("openvino", "fp16")):
        choice = make_executor(onnx_files["arcface"], backend, precision, engines)
        assert choice.backend == "openvino" and isinstance(choice.executor, ovb.OpenVinoExecutor)
        assert "OpenVINO fp32" in choice.reason and "bf16 unsupported on this CPU" in choice.reason


def test_bf16_supported_but_no_gated_blob(onnx_files, engines, monkeypatch, real_cpu):
    with_capabilities(monkeypatch, real_cpu, ("FP32", "BF16", "INT8"))
    with pytest.raises(GhostError) as err:
        make_executor(onnx_files["arcface"], "openvino", "bf16", engines)
    assert "no arcface bf16 OpenVINO model" in str(err.value) and "\n" not in str(err.value)
    choice = make_executor(onnx_files["arcface"], "auto", "fp16", engines)
    assert choice.backend == "openvino" and "OpenVINO fp32" in choice.reason
    assert "no usable bf16 model" in choice.reason


def test_bf16_supported_with_a_gated_blob_runs_it(onnx_files, engines, monkeypatch, real_cpu, tmp_path):
    """A stand-in bf16 blob: the FP32 one under a manifest that says bf16 and carries an accepted gate."""
    folder = tmp_path / "engines"
    manifest = copied_blob(engines, folder, precision="bf16", fidelity=FIDELITY)
    with_capabilities(monkeypatch, real_cpu, ("FP32", "BF16", "INT8"))
    for backend, precision in (("openvino", "bf16"), ("auto", "fp16")):
        choice = make_executor(onnx_files["arcface"], backend, precision, folder)
        assert choice.backend == "openvino" and choice.executor.path == engine_cache.engine_file(manifest)
        assert "OpenVINO bf16" in choice.reason


def test_int8_needs_an_accepted_gate(onnx_files, engines, tmp_path):
    folder = tmp_path / "engines"
    with pytest.raises(GhostError, match="no arcface int8 OpenVINO model"):
        make_executor(onnx_files["arcface"], "openvino", "int8", folder)
    rejected = copied_blob(engines, folder, precision="int8",
                           fidelity={"accepted": False, "summary": "cos 0.97 (gate 0.995)"})
    refused = make_executor(onnx_files["arcface"], "openvino", "int8", folder)    # measured and refused:
    assert refused.precision == "fp32" and "OpenVINO fp32" in refused.reason      # FP32 for this net, said why
    assert str(engine_cache.engine_file(rejected)) in refused.reason and "int8 refused" in refused.reason
    accepted = copied_blob(engines, folder, precision="int8", fidelity=FIDELITY)
    choice = make_executor(onnx_files["arcface"], "openvino", "int8", folder)
    assert choice.executor.path == engine_cache.engine_file(accepted) and "OpenVINO int8" in choice.reason


def test_without_openvino_auto_uses_onnx_runtime(onnx_files, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)             # `import openvino` now raises ImportError
    choice = make_executor(onnx_files["arcface"], "auto", "fp16", tmp_path)
    assert choice.backend == "ort" and isinstance(choice.executor, OrtExecutor)
    assert "OpenVINO is not installed" in choice.reason
    with pytest.raises(GhostError) as err:
        make_executor(onnx_files["arcface"], "openvino", "fp32", tmp_path)
    assert f"pip install {ovb.PIN}" in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ the swap itself

def test_image_swap_through_openvino_equals_the_onnx_runtime_swap(onnx_files, engines, astronaut, grace):
    results = {}
    for backend in ("ort", "openvino"):
        executors = {m: make_executor(p, backend, "fp32", engines).executor for m, p in onnx_files.items()}
        swapper = make_swapper(executors)
        results[backend] = swapper.swap(astronaut, swapper.embed_photos([(GRACE, grace)], "--source"))
    ort, ov = results["ort"], results["openvino"]
    assert len(ov.swapped) == len(ort.swapped) == 1
    assert ov.swapped[0].roi == ort.swapped[0].roi
    diff = np.abs(ov.frame.astype(int) - ort.frame.astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01
    assert not np.array_equal(ov.frame, astronaut)


def test_cli_openvino_bf16_and_auto(tmp_path, capsys, monkeypatch, onnx_files, astronaut):
    """`swap image --backend openvino --precision bf16` without a gated bf16 blob is a one-line error (on a
    CPU without BF16 and on one with it); auto says in the summary that it ran OpenVINO."""
    monkeypatch.setattr(loading, "resolve_onnx",
                        lambda *args, log=print: (dict(onnx_files), "retinaface", ["generator"], None))
    target, out, engines = tmp_path / "astronaut.png", tmp_path / "out.png", tmp_path / "engines"
    Image.fromarray(astronaut).save(target)
    argv = ["swap", "image", "--source", str(GRACE), "--target", str(target), "--output", str(out),
            "--engines-dir", str(engines)]
    assert main(argv + ["--backend", "openvino", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bf16" in err.lower() and not out.exists()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "OpenVINO fp32" in text and out.exists()


# ------------------------------------------------------------------------------------------ ghostrt engines

def test_engines_lists_blobs_with_their_cpu_and_checks_them(engines, tmp_path, capsys, real_cpu):
    folder = tmp_path / "engines"
    shutil.copytree(engines, folder)
    foreign = copied_blob(engines, tmp_path / "xeon", "landmarks", target_gpu="CPU Intel(R) Xeon(R) w9-3495X")
    shutil.copy(engine_cache.engine_file(foreign), folder / "landmarks-fp32-openvino.0000000000000000.engine")
    (folder / "landmarks-fp32-openvino.0000000000000000.json").write_text(json.dumps(
        {k: v for k, v in foreign.items() if k != "manifest_path"}
        | {"engine_file": "landmarks-fp32-openvino.0000000000000000.engine"}))
    assert main(["engines", "--engines-dir", str(folder), "--check"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert len(rows) == 5
    for name, row in rows.items():
        assert " openvino " in row and " any " in row
        if name.startswith("landmarks-fp32-openvino.0000"):
            assert "CPU Intel(R) Xeon(R) w9-3495X" in row and row.rstrip().endswith(
                f"no: compiled for CPU Intel(R) Xeon(R) w9-3495X ({','.join(real_cpu.isa)}), this is "
                f"{real_cpu.target} ({','.join(real_cpu.isa)})")
        else:
            assert f"{real_cpu.target} ({','.join(real_cpu.isa)})" in row and row.rstrip().endswith("yes")
    assert main(["engines", "--engines-dir", str(folder), "--json", "--check"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(m["runs_here"] == "yes" for m in listed) == [False, True, True, True, True]


# ------------------------------------------------------------------------------ import keeps the precision

def test_a_cached_blob_is_imported_with_its_compile_hints(engines, monkeypatch):
    """import_model does not restore the compile-time hints: on an AMX CPU an fp32 blob imported without
    INFERENCE_PRECISION_HINT runs bf16. Machine-independent: the config handed to import_model is recorded."""
    real = ovb.load_openvino()
    seen = []

    class SpyCore(real.Core):
        def import_model(self, blob, device, config=None):
            seen.append(dict(config or {}))
            return super().import_model(blob, device, config or {})

    monkeypatch.setattr(ovb, "load_openvino", lambda: type("OV", (), {"Core": SpyCore,
                                                                      "get_version": real.get_version}))
    manifest = manifest_of(engines, "arcface")
    ovb.OpenVinoExecutor(engine_cache.engine_file(manifest), threads=1)
    assert seen == [{**ovb.compile_config("fp32", 1)}]
    assert seen[0]["INFERENCE_PRECISION_HINT"] == "f32" and seen[0]["PERFORMANCE_HINT"] == "LATENCY"


def test_an_import_that_runs_other_kernels_than_were_compiled_is_refused(engines, tmp_path):
    """The manifest's runtime precisions (counted at compile time) must be what the imported model runs."""
    manifest = copied_blob(engines, tmp_path, runtime_precisions={"bf16": 7})
    with pytest.raises(GhostError, match=r"imported with kernels in .*compiled in bf16 \(7\)"):
        ovb.OpenVinoExecutor(engine_cache.engine_file(manifest))
