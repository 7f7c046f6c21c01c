"""`ghostrt build --backend openvino` and `ghostrt check --backend openvino` on a tiny ArcFace-shaped net.

The FP32 net (face [N,3,112,112] → embedding [N,512]: two convolutions and a projection) stands in for the real
ArcFace through a monkeypatched fp32_onnx; its INT8 variant is a real Q/DQ graph made by ONNX Runtime's static
quantizer (standing in for ModelOpt through a monkeypatched precision_onnx), so OpenVINO really compiles u8
kernels. Everything else is the real path: OpenVINO compiles and caches the blob, the blob runs the real-photo
validation set, the fidelity gate reads its numbers, the manifest keeps the verdict, and make_executor loads or
refuses the blob by that verdict.

The OpenVINO-gated INT8 search (export.openvino_gate) runs for real on the same net, with only ModelOpt
replaced by ONNX Runtime's Q/DQ quantizer and OpenVINO's runs spied on (see the `gated` fixture).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ghostrt.cli import main
from ghostrt.errors import GhostError
from ghostrt.export import engine_build, fidelity, openvino_build, openvino_gate
from ghostrt.export import precision as variants
from ghostrt.runtime.backends import engine_cache, executors
from ghostrt.runtime.backends import openvino_backend as ovb

QUIET = dict(log=lambda line: None)


# ------------------------------------------------------------------------------------------- tiny nets

def tiny_arcface(path: Path) -> Path:
    """face [N,3,112,112] → embedding [N,512]: conv 4×4/4, ReLU, conv 3×3/2, ReLU, global pool, projection."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((16, 3, 4, 4)) * 0.2).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal((16, 512)).astype(np.float32), "proj")]
    nodes = [helper.make_node("Conv", ["face", "w1"], ["c1"], name="conv1", strides=[4, 4]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="pool"),
             helper.make_node("Flatten", ["g"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "proj"], ["embedding"], name="proj")]
    graph = helper.make_graph(nodes, "tiny_arcface",
                              [helper.make_tensor_value_info("face", TensorProto.FLOAT, ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 512])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def qdq_int8(src: Path, dst: Path, exclude=()) -> Path:
    """A Q/DQ INT8 graph (u8 activations, i8 weights) calibrated on the real validation faces; the nodes named
    in `exclude` stay FP32 (ModelOpt's nodes_to_exclude)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from ghostrt.calibration.build import validation_inputs

    faces = validation_inputs("arcface")["face"][:8]

    class Faces(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter({"face": faces[i:i + 1]} for i in range(len(faces)))

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(src), str(dst), Faces(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                    extra_options={"QDQKeepRemovableActivations": True})   # an edited-out Q/DQ keeps its ReLU
    return dst


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """engines_dir with the tiny FP32 ArcFace in engines_dir/onnx; fp32_onnx and precision_onnx patched."""
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    fp32 = tiny_arcface(onnx_dir / "arcface.onnx")
    made = []

    def fake_fp32_onnx(model, weights_dir, onnx_dir_, log=print):
        assert model == "arcface"
        return fp32

    def fake_precision_onnx(src, precision, model, calibration_npz=None, weights_dir=None, log=print):
        dst = src.with_name(f"{src.stem}.{precision}.onnx")
        if not dst.exists():
            qdq_int8(src, dst)
            made.append(dst)
        return dst, {"precision": precision, "method": "onnxruntime qdq (test)"}, \
            {"model": model, "precision": precision, "task": {"embedding_cosine_min": 0.99},
             "precision_plan": {"int8_coverage_pct": 100.0}}

    def fake_openvino_int8_onnx(src, model, calibration_npz, gate, weights_dir=None, methods=None, log=print):
        dst = openvino_gate.variant_path(src)
        if not dst.exists():
            qdq_int8(src, dst)
            made.append(dst)
        return dst, {"precision": "int8", "method": "onnxruntime qdq (test)"}, \
            {"model": model, "precision": "int8", "task": {"embedding_cosine_min": 0.99},
             "precision_plan": {"int8_coverage_pct": 100.0}}

    monkeypatch.setattr(engine_build, "fp32_onnx", fake_fp32_onnx)
    monkeypatch.setattr(engine_build, "precision_onnx", fake_precision_onnx)
    monkeypatch.setattr(openvino_gate, "openvino_int8_onnx", fake_openvino_int8_onnx)
    return {"dir": tmp_path, "fp32": fp32, "made": made}


def build(tiny, precision, accept=False):
    return openvino_build.build_models(["arcface"], precision, engines_dir=tiny["dir"], accept_fidelity=accept,
                                       calibration_npz=tiny["dir"] / "unused.npz", **QUIET)


def manifest_of(result) -> dict:
    return engine_cache.read_manifest(result.manifest_path)


def cpu_with(capabilities):
    """probe_cpu as on this machine, but claiming exactly `capabilities` (the rest of the key stays true)."""
    real = ovb.probe_cpu

    def probe(core=None):
        return dataclasses.replace(real(core), capabilities=tuple(capabilities))
    return probe


# ------------------------------------------------------------------------------------------------ tests

def test_int8_blob_is_built_gated_then_cached_and_loads(tiny):
    first, = build(tiny, "int8")
    assert not first.cached and first.engine_path.is_file() and "built" in first.line()
    manifest = manifest_of(first)
    assert (manifest["backend"], manifest["precision"]) == ("openvino", "int8")
    assert manifest["onnx_file"].endswith("arcface.int8-openvino.onnx")      # trained: the OpenVINO-gated plan
    assert manifest["source_onnx_sha256"] == engine_cache.sha256_file(tiny["fp32"])
    assert set(manifest["runtime_precisions"]) & {"u8", "i8"}, manifest["runtime_precisions"]   # real INT8
    record = manifest["fidelity"]
    assert record["accepted"] is True and record["passed"] is True and record["gate_applied"] is True
    assert record["runner"].startswith(f"{openvino_build.openvino_title(ovb.version())} int8 on ")
    assert record["gate"] == dataclasses.asdict(fidelity.GATES["int8"])
    assert 0.99 <= record["task"]["embedding_cosine_min"] < 1.0          # measured, and INT8 is not exact

    again, = build(tiny, "int8")
    assert again.cached and "cached" in again.line() and again.engine_path == first.engine_path
    assert len(tiny["made"]) == 1 and len(list(tiny["dir"].glob("*.engine"))) == 1

    choice = executors.make_executor(tiny["fp32"], "openvino", "int8", engines_dir=tiny["dir"])
    assert choice.backend == "openvino" and first.engine_path.name in choice.reason
    face = np.random.default_rng(1).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    got = choice.executor.run({"face": face})["embedding"]
    want = executors.OrtExecutor(tiny["fp32"]).run({"face": face})["embedding"]
    assert got.shape == (2, 512) and fidelity.cosine(got, want) > 0.99


def test_missed_gate_fails_in_one_line_blob_refused_until_accepted(tiny, monkeypatch):
    monkeypatch.setitem(fidelity.GATES, "int8", fidelity.Gate(generator_psnr_db=30.0, arcface_cosine=0.999999))
    with pytest.raises(GhostError) as err:
        build(tiny, "int8")
    message = str(err.value)
    assert "\n" not in message and "misses the fidelity gate: embedding cosine" in message
    assert "--accept-fidelity" in message
    manifest_path = Path(message.split(": ")[0])
    assert engine_cache.read_manifest(manifest_path)["fidelity"]["accepted"] is False
    refused = executors.make_executor(tiny["fp32"], "openvino", "int8", engines_dir=tiny["dir"])
    assert refused.precision == "fp32" and "missed the fidelity gate" in refused.reason    # never loaded

    accepted, = build(tiny, "int8", accept=True)
    assert accepted.cached and accepted.manifest_path == manifest_path
    record = manifest_of(accepted)["fidelity"]
    assert record["accepted"] is True and record["passed"] is False and record["failures"]
    choice = executors.make_executor(tiny["fp32"], "openvino", "int8", engines_dir=tiny["dir"])
    assert accepted.engine_path.name in choice.reason


def test_bf16_on_a_cpu_without_bf16_is_a_one_line_error(tiny, monkeypatch, capsys):
    """This machine (AVX2 EPYC) has no BF16; the patched probe makes the test mean the same on one that has."""
    monkeypatch.setattr(ovb, "probe_cpu", cpu_with(("FP32", "INT8", "EXPORT_IMPORT")))
    with pytest.raises(GhostError) as err:
        build(tiny, "bf16")
    assert "\n" not in str(err.value) and "has no BF16 support in OpenVINO" in str(err.value)
    assert not list(tiny["dir"].glob("*.engine"))
    code = main(["build", "--backend", "openvino", "--precision", "bf16", "--models", "arcface",
                 "--engines-dir", str(tiny["dir"])])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "no BF16 support" in lines[0]


def test_real_cpu_capabilities_decide_bf16():
    """Unpatched: the error above is what this very CPU says exactly when OpenVINO lists no BF16 for it."""
    cpu = ovb.probe_cpu()
    if cpu.supports("bf16"):
        assert openvino_build.require_precision("bf16") == cpu
    else:
        with pytest.raises(GhostError, match=rf"this CPU \({cpu.name}, .*\) has no BF16 support"):
            openvino_build.require_precision("bf16")


def test_bf16_plumbing_on_a_cpu_that_claims_bf16(tiny, monkeypatch):
    """The probe is patched to claim BF16. On a CPU without it OpenVINO silently compiles f32 for the bf16 hint
    (runtime_precisions shows f32): fine here, where only the build → gate → manifest → load plumbing is tested."""
    monkeypatch.setattr(ovb, "probe_cpu", cpu_with(("FP32", "BF16", "INT8", "EXPORT_IMPORT")))
    result, = build(tiny, "bf16")
    manifest = manifest_of(result)
    assert manifest["precision"] == "bf16" and manifest["onnx_file"] == str(tiny["fp32"])
    assert manifest["runtime_precisions"], "OpenVINO reported no Convolution/MatMul precisions"
    record = manifest["fidelity"]
    assert record["gate"] == dataclasses.asdict(fidelity.GATES["bf16"]) == dataclasses.asdict(fidelity.GATES["fp16"])
    assert record["gate_applied"] is True and record["passed"] is True and record["accepted"] is True
    choice = executors.make_executor(tiny["fp32"], "openvino", "bf16", engines_dir=tiny["dir"])
    assert result.engine_path.name in choice.reason


def test_build_command_fp32_prints_built_then_cached_with_numbers(tiny, capsys):
    argv = ["build", "--backend", "openvino", "--precision", "fp32", "--models", "arcface",
            "--engines-dir", str(tiny["dir"])]
    assert main(argv) == 0
    built = [l for l in capsys.readouterr().out.splitlines() if l.startswith("arcface")]
    assert main(argv) == 0
    cached = [l for l in capsys.readouterr().out.splitlines() if l.startswith("arcface")]
    assert len(built) == len(cached) == 1
    assert " built " in built[0] and " cached " in cached[0] and "OpenVINO" in built[0]
    assert "(fp32: numbers only)" in built[0] and "runtime f32 3" in built[0]
    blob = next(tiny["dir"].glob("arcface-fp32-openvino.*.engine"))
    assert str(blob) in built[0] and str(blob) in cached[0]
    cosine = engine_cache.read_manifest(blob.with_suffix(".json"))["fidelity"]["task"]["embedding_cosine_min"]
    assert cosine > 0.99999                           # OpenVINO FP32 against ONNX Runtime FP32


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_cached_blob_with_one_flipped_byte_is_said_and_compiled_again(tmp_path):
    """compile_blob never reuses a blob whose sha256 no longer matches its manifest: one line names the file
    (corrupt or replaced; rebuilding), the blob is compiled again, and the rebuilt one is reused quietly."""
    fp32 = tiny_arcface(tmp_path / "arcface.onnx")
    engines = tmp_path / "engines"
    said = []
    blob, manifest, cached = ovb.compile_blob("arcface", fp32, "fp32", engines, log=lambda _: None, warn=said.append)
    assert not cached and not said
    assert ovb.compile_blob("arcface", fp32, "fp32", engines, log=lambda _: None, warn=said.append)[2] is True
    assert not said                                                    # an intact blob is reused quietly
    flip_one_byte(blob)
    assert engine_cache.sha256_file(blob) != manifest["engine_sha256"]
    again, manifest2, cached = ovb.compile_blob("arcface", fp32, "fp32", engines, log=lambda _: None,
                                                warn=said.append)
    assert cached is False, "a corrupt cached blob was used"
    assert len(said) == 1 and str(blob) in said[0] and "corrupt or replaced" in said[0] and "rebuilding" in said[0]
    assert "\n" not in said[0]
    assert again == blob and engine_cache.sha256_file(blob) == manifest2["engine_sha256"]
    ovb.OpenVinoExecutor(blob, 1)                                      # the rebuilt blob loads


def test_build_command_says_a_corrupt_cached_blob_and_rebuilds_it(tiny, capsys):
    argv = ["build", "--backend", "openvino", "--precision", "fp32", "--models", "arcface",
            "--engines-dir", str(tiny["dir"])]
    assert main(argv) == 0
    blob = next(tiny["dir"].glob("arcface-fp32-openvino.*.engine"))
    capsys.readouterr()
    flip_one_byte(blob)
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    said = [line for line in out if "corrupt or replaced" in line]
    assert len(said) == 1 and str(blob) in said[0]
    assert any(line.startswith("arcface") and " built " in line for line in out)     # not " cached "
    assert engine_cache.sha256_file(blob) == engine_cache.read_manifest(blob.with_suffix(".json"))["engine_sha256"]


def test_tensorrt_build_refuses_bf16_and_openvino_refuses_fp16(tiny):
    with pytest.raises(GhostError, match="bf16 is a CPU precision: build it with --backend openvino"):
        engine_build.build_models(["arcface"], "bf16", backend="auto", engines_dir=tiny["dir"], **QUIET)
    with pytest.raises(GhostError, match="--precision fp16: the OpenVINO backend builds fp32, bf16, int8"):
        engine_build.build_models(["arcface"], "fp16", backend="openvino", engines_dir=tiny["dir"], **QUIET)


def test_check_records_the_openvino_gated_numbers_and_leaves_the_tensorrt_row(tiny, monkeypatch, capsys):
    """Trained INT8 with --backend openvino: the OpenVINO-gated plan's blob is measured and recorded under
    'int8/openvino'; the ONNX Runtime row TensorRT builds from ('int8') is neither remade nor overwritten."""
    from ghostrt.export import fidelity_check as check_cli
    from ghostrt.export import models

    def no_make_variant(*_, **__):
        raise AssertionError("the ONNX-Runtime-gated TensorRT variant must not be remade for OpenVINO")

    monkeypatch.setattr(models, "ensure_onnx", lambda model, **_: tiny["fp32"])
    monkeypatch.setattr(check_cli, "make_variant", no_make_variant)
    out = tiny["dir"] / "fidelity.json"
    out.write_text(json.dumps({"results": {"arcface": {"int8": {"runner": "tensorrt row"}}}}))
    calibration = tiny["dir"] / "calibration.npz"
    np.savez(calibration, face=np.zeros((1, 3, 112, 112), np.float32))
    code = main(["check", "--backend", "openvino", "--precision", "int8", "--models", "arcface", "--calibration",
                 str(calibration), "--onnx-dir", str(tiny["dir"] / "onnx"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    results = json.loads(out.read_text())["results"]["arcface"]
    assert results["int8"] == {"runner": "tensorrt row"}
    ov_row = results["int8/openvino"]
    assert ov_row["backend"] == "openvino" and ov_row["onnx"].endswith("arcface.int8-openvino.onnx")
    assert ov_row["runner"].startswith("OpenVINO ") and ov_row["machine"]["openvino"]
    assert set(ov_row["runtime_precisions"]) & {"u8", "i8"} and ov_row["gate_applied"] and ov_row["passed"]
    assert ov_row["precision_plan"]["int8_coverage_pct"] == 100.0
    assert "int8/openvino" in printed and Path(ov_row["blob"]).is_file()
    # The recorded numbers are the blob's own: run it once more, all faces in one batch, and recompute.
    from ghostrt.calibration.build import validation_inputs

    faces = validation_inputs("arcface")["face"]
    want = executors.OrtExecutor(tiny["fp32"]).run({"face": faces})["embedding"]
    got = ovb.OpenVinoExecutor(ov_row["blob"]).run({"face": faces})["embedding"]
    cosine_min = min(fidelity.cosine(w, g) for w, g in zip(want, got))
    assert ov_row["task"]["embedding_cosine_min"] == pytest.approx(cosine_min, abs=1e-6)


# ------------------------------------------------------------------------ the OpenVINO-gated INT8 search

DAMAGED_ON_OPENVINO = "conv2"


@pytest.fixture
def gated(tmp_path, monkeypatch):
    """The real openvino_int8_onnx / quantize_with_fallback on the tiny net, with ModelOpt replaced by ONNX
    Runtime's Q/DQ quantizer (honouring the exclusions) and OpenVINO's runs spied on: a candidate that OpenVINO
    runs with conv2 in INT8 gets its embeddings damaged, standing in for a u8 kernel that rounds worse than
    ONNX Runtime's simulation. ONNX Runtime runs are recorded with their sample count."""
    fp32 = tiny_arcface(tmp_path / "arcface.onnx")
    calibration = tmp_path / "calibration.npz"
    np.savez(calibration, face=np.zeros((1, 3, 112, 112), np.float32))
    log = {"modelopt": [], "openvino": [], "ort": []}

    def fake_make_int8_onnx(src, dst, model, calibration_npz, method="entropy", exclude=(), max_samples=None):
        log["modelopt"].append(sorted(exclude))
        qdq_int8(Path(src), Path(dst), exclude)
        macs = variants.layer_macs(src, {"face": np.zeros((1, 3, 112, 112), np.float32)})
        return Path(dst), {"method": method, "calibration_samples": 8, "high_precision_layers": sorted(exclude),
                           **variants.coverage(macs, variants.int8_layers(onnx.load(str(dst))))}

    real_run, real_ort = openvino_gate.OpenVinoReference.run, fidelity.run_onnx

    def spied_run(self, test_onnx):
        outputs = real_run(self, test_onnx)
        graph = onnx.load_from_string(test_onnx) if isinstance(test_onnx, bytes) else onnx.load(str(test_onnx))
        damaged = DAMAGED_ON_OPENVINO in variants.int8_layers(graph)
        log["openvino"].append(damaged)
        if damaged:
            noise = np.random.default_rng(0).standard_normal(outputs["embedding"].shape).astype(np.float32)
            outputs["embedding"] = outputs["embedding"] + noise * np.abs(outputs["embedding"]).mean()
        return outputs

    def spied_ort(onnx_path, inputs, chunk=4):
        log["ort"].append((onnx_path if isinstance(onnx_path, bytes) else str(onnx_path),
                           len(next(iter(inputs.values())))))
        return real_ort(onnx_path, inputs, chunk)

    monkeypatch.setattr(variants, "make_int8_onnx", fake_make_int8_onnx)
    monkeypatch.setattr(openvino_gate.OpenVinoReference, "run", spied_run)
    monkeypatch.setattr(fidelity, "run_onnx", spied_ort)

    def search(**kw):
        return openvino_gate.openvino_int8_onnx(fp32, "arcface", calibration, fidelity.GATES["int8"],
                                                methods=["max"], **QUIET, **kw)
    return {"fp32": fp32, "calibration": calibration, "log": log, "search": search}


def test_gate_decisions_come_from_openvino_and_reject_what_only_onnxruntime_passes(gated):
    path, recipe, row = gated["search"]()
    log = gated["log"]
    assert path.name == "arcface.int8-openvino.onnx" and not (path.parent / "arcface.int8.onnx").exists()
    # ONNX Runtime alone would accept the all-INT8 graph ...
    all_int8 = qdq_int8(gated["fp32"], path.parent / "all_int8.onnx")
    reference = fidelity.validation_reference("arcface", gated["fp32"])
    assert not fidelity.gate_failures("arcface", reference.compare(all_int8)["task"], fidelity.GATES["int8"])
    # ... OpenVINO refused it, so the chosen plan keeps conv2 out of INT8 and passes on OpenVINO.
    plan = row["precision_plan"]
    assert plan["methods"][0]["all_int8"]["embedding_cosine_min"] < 0.99 and plan["methods"][0]["passed"]
    assert DAMAGED_ON_OPENVINO in plan["high_precision_layers"] == recipe["high_precision_layers"]
    assert DAMAGED_ON_OPENVINO not in variants.int8_layers(onnx.load(str(path)))
    assert row["passed"] and row["runner"].startswith("OpenVINO ") and plan["runner"] == row["runner"]
    assert True in log["openvino"] and log["openvino"][-1] is False
    # Every full-validation-set run went through OpenVINO: ONNX Runtime ran only the FP32 reference and the
    # 2-sample probe (the damage ranking).
    full = len(reference.inputs["face"])
    assert [name for name, count in log["ort"] if count == full and name != str(gated["fp32"])] == [str(all_int8)]
    assert all(count == 2 for name, count in log["ort"] if name != str(gated["fp32"]) and name != str(all_int8))
    assert plan["openvino_runs"] == len(log["openvino"]) - 1          # the row's own measurement is the last


def test_variant_is_reused_until_openvino_or_the_isa_changes(gated, monkeypatch):
    first = gated["search"]()
    searches = len(gated["log"]["modelopt"])
    sha = engine_cache.sha256_file(first[0])
    again = gated["search"]()
    assert len(gated["log"]["modelopt"]) == searches and again == first          # reused: nothing run
    assert engine_cache.sha256_file(first[0]) == sha

    sidecar = first[0].with_name(first[0].name + ".json")
    recorded = json.loads(sidecar.read_text())
    assert recorded["inputs"]["openvino_version"] == ovb.version()
    assert recorded["inputs"]["cpu_isa"] == list(ovb.probe_cpu().isa)
    recorded["inputs"]["openvino_version"] = "2025.0.0-older"
    sidecar.write_text(json.dumps(recorded))
    gated["search"]()
    assert len(gated["log"]["modelopt"]) > searches                             # another OpenVINO: searched
    searches = len(gated["log"]["modelopt"])
    gated["search"]()
    assert len(gated["log"]["modelopt"]) == searches

    real = ovb.probe_cpu
    monkeypatch.setattr(ovb, "probe_cpu", lambda core=None: dataclasses.replace(real(core), isa=("avx2", "fma",
                                                                                                "avx512f")))
    gated["search"]()
    assert len(gated["log"]["modelopt"]) > searches                             # another ISA: searched
    assert json.loads(sidecar.read_text())["inputs"]["cpu_isa"] == ["avx2", "fma", "avx512f"]


def test_build_uses_the_openvino_gated_variant_and_reuses_it(gated, monkeypatch):
    monkeypatch.setattr(engine_build, "fp32_onnx", lambda model, weights_dir, onnx_dir, log=print: gated["fp32"])
    engines = gated["fp32"].parent / "engines"

    def build_it():
        return openvino_build.build_models(["arcface"], "int8", engines_dir=engines,
                                           calibration_npz=gated["calibration"], **QUIET)

    first, = build_it()
    manifest = manifest_of(first)
    assert manifest["onnx_file"].endswith("arcface.int8-openvino.onnx")
    assert DAMAGED_ON_OPENVINO in manifest["quant_recipe"]["high_precision_layers"]
    assert manifest["fidelity"]["accepted"] is True and manifest["fidelity"]["passed"] is True
    searches = len(gated["log"]["modelopt"])
    again, = build_it()
    assert again.cached and again.engine_path == first.engine_path and len(gated["log"]["modelopt"]) == searches
