"""Engine cache keys and manifests, on a real TensorRT-RTX engine built here (ahead of time, no GPU)."""

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ghostrt.errors import GhostError
from ghostrt.runtime.backends import engine_cache, trt_backend
from ghostrt.runtime.backends.trt_backend import GpuInfo

REPO = Path(__file__).resolve().parents[2]
RTX_4090 = GpuInfo("NVIDIA GeForce RTX 4090", "8.9")
H200 = GpuInfo("NVIDIA H200", "9.0")


def small_onnx(path: Path, seed: int = 0) -> Path:
    """A few convs and an InstanceNorm with a dynamic batch axis: the op mix of the GHOST generator, tiny."""
    import torch
    from ghostrt.export.onnx_io import export_module

    class Small(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.norm = torch.nn.InstanceNorm2d(8)
            self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
            self.conv3 = torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.conv3(torch.relu(self.conv2(torch.relu(self.norm(self.conv1(x))))))

    torch.manual_seed(seed)
    return export_module(Small(), {"x": np.zeros((1, 3, 32, 32), np.float32)}, ["y"], path)


@pytest.fixture(scope="module")
def rtx():
    return trt_backend.load_backend("trt-rtx")


@pytest.fixture(scope="module")
def built(tmp_path_factory, rtx):
    """(engines dir, onnx path, manifest path) of one real FP32 build."""
    from ghostrt.export.engine_build import build_one

    folder = tmp_path_factory.mktemp("engines")
    onnx_path = small_onnx(folder / "small.onnx")
    result = build_one("small", onnx_path, "fp32", rtx, folder, max_batch=3, opt_batch=2, log=lambda line: None)
    return folder, onnx_path, result.manifest_path


def fresh_manifest(built) -> dict:
    return engine_cache.read_manifest(built[2])


def test_manifest_records_the_key_fields_and_the_engine(built, rtx):
    folder, onnx_path, manifest_path = built
    m = fresh_manifest(built)
    engine = folder / m["engine_file"]
    assert m["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert (m["backend"], m["backend_version"]) == ("trt-rtx", rtx.module.__version__)
    assert m["target_gpu"] == "any RTX"
    assert {"8.6", "8.9", "12.0"} <= set(m["target_cc"].split(",")) and "7.5" not in m["target_cc"]
    assert m["precision"] == "fp32" and m["quant_recipe"] is None
    assert m["profiles"] == {"x": [[1, 3, 32, 32], [2, 3, 32, 32], [3, 3, 32, 32]]}
    assert m["engine_bytes"] == engine.stat().st_size > 0
    assert m["engine_sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()
    assert m["fidelity"] == {} and m["ghostrt_version"] and m["created"].endswith("+00:00")
    key = engine_cache.key_from_manifest(m)
    assert m["key"] == key.digest() and manifest_path.name == f"small-fp32-trt-rtx.{key.digest()}.json"
    assert engine_cache.find_engine(folder, key)[0] == engine


@pytest.mark.parametrize("change", [
    {"onnx_sha256": "0" * 64}, {"backend_version": "1.8.0.1"}, {"backend": "trt"},
    {"target_gpu": "NVIDIA GeForce RTX 4090", "target_cc": "8.9"}, {"precision": "fp16"},
    {"quant_recipe": {"method": "max"}}, {"profiles": {"x": [[1, 3, 32, 32]] * 3}},
])
def test_every_key_field_changes_the_key(built, change):
    key = engine_cache.key_from_manifest(fresh_manifest(built))
    changed = dataclasses.replace(key, **change)
    assert changed.digest() != key.digest()
    assert engine_cache.find_engine(built[0], changed) is None


def test_validate_for_run_accepts_an_rtx_gpu_it_was_built_for(built, rtx):
    m = fresh_manifest(built)
    assert engine_cache.validate_for_run(m, RTX_4090, rtx.version, onnx_sha256=m["onnx_sha256"]) == \
        built[0] / m["engine_file"]


@pytest.mark.parametrize("gpu, version, onnx_sha, words", [
    (H200, None, None, ["any RTX", "NVIDIA H200", "CC 9.0"]),
    (RTX_4090, "1.8.0.1", None, ["built with trt-rtx", "this machine has 1.8.0.1"]),
    (RTX_4090, None, "f" * 64, ["different ONNX"]),
    (None, None, None, ["no CUDA GPU"]),
])
def test_validate_for_run_refuses_foreign_engines_in_one_line(built, rtx, gpu, version, onnx_sha, words):
    m = fresh_manifest(built)
    with pytest.raises(GhostError) as err:
        engine_cache.validate_for_run(m, gpu, version or rtx.version, onnx_sha256=onnx_sha)
    message = str(err.value)
    assert "\n" not in message and m["engine_file"] in message
    for word in words:
        assert word in message


def test_manifest_for_another_gpu_is_refused(built, rtx, tmp_path):
    """A full-TensorRT engine built on an RTX 3090 must not load on an RTX 4090."""
    m = fresh_manifest(built)
    foreign = {**m, "backend": "trt", "target_gpu": "NVIDIA GeForce RTX 3090", "target_cc": "8.6"}
    with pytest.raises(GhostError, match=r"another GPU \(NVIDIA GeForce RTX 3090, CC 8.6\).*RTX 4090 \(CC 8.9\)"):
        engine_cache.validate_for_run(foreign, RTX_4090, rtx.version)


def test_corrupt_engine_is_refused_and_not_found(built, rtx, tmp_path):
    m = fresh_manifest(built)
    copy = tmp_path / m["engine_file"]
    copy.write_bytes((built[0] / m["engine_file"]).read_bytes()[:-1] + b"\x00")
    (tmp_path / Path(m["manifest_path"]).name).write_text(Path(m["manifest_path"]).read_text())
    moved = engine_cache.read_manifest(tmp_path / Path(m["manifest_path"]).name)
    with pytest.raises(GhostError, match="sha256 does not match"):
        engine_cache.validate_for_run(moved, RTX_4090, rtx.version)
    said = []
    assert engine_cache.find_engine(tmp_path, engine_cache.key_from_manifest(moved), log=said.append) is None
    assert len(said) == 1 and str(copy) in said[0] and "corrupt or replaced" in said[0] and "rebuilding" in said[0]


def test_record_fidelity_merges_and_keeps_the_engine_valid(built, rtx):
    folder, _, manifest_path = built
    engine_cache.record_fidelity(manifest_path, {"psnr_db": 41.5})
    engine_cache.record_fidelity(manifest_path, {"cosine": 0.9991, "gate": "pass"})
    m = fresh_manifest(built)
    assert m["fidelity"] == {"psnr_db": 41.5, "cosine": 0.9991, "gate": "pass"}
    assert "manifest_path" not in json.loads(manifest_path.read_text())
    assert engine_cache.find_engine(folder, engine_cache.key_from_manifest(m)) is not None


def test_engine_that_missed_the_gate_unaccepted_is_never_loaded(built, rtx):
    m = dict(fresh_manifest(built), fidelity={"summary": "PSNR 12.0 dB (GATE MISSED)", "accepted": False})
    with pytest.raises(GhostError, match="missed the fidelity gate") as err:
        engine_cache.validate_for_run(m, RTX_4090, rtx.version)
    assert "\n" not in str(err.value)
    # the command to run is whole inside its backticks, as OpenVINO's refusal writes it
    assert f"`ghostrt build --backend {m['backend']} --precision {m['precision']} --accept-fidelity`" in str(err.value)
    m["fidelity"]["accepted"] = True
    assert engine_cache.validate_for_run(m, RTX_4090, rtx.version) == engine_cache.engine_file(m)


def test_unreadable_manifest_is_a_one_line_file_error(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    with pytest.raises(GhostError, match=r"x.json: engine manifest is not valid JSON"):
        engine_cache.read_manifest(bad)
    bad.write_text("{}")
    with pytest.raises(GhostError, match="lacks engine_file"):
        engine_cache.read_manifest(bad)


def test_engines_cli_json_lists_the_manifests(built):
    folder = built[0]
    out = subprocess.run([sys.executable, "-m", "ghostrt.cli", "engines", "--engines-dir", str(folder), "--json"],
                         capture_output=True, text=True, cwd=REPO, check=True).stdout
    listed = json.loads(out)
    assert [m["engine_file"] for m in listed] == [fresh_manifest(built)["engine_file"]]
    table = subprocess.run([sys.executable, "-m", "ghostrt.cli", "engines", "--engines-dir", str(folder)],
                           capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "small" in table and "any RTX" in table and "fp32" in table


def test_engines_cli_missing_folder_exits_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ghostrt.cli", "engines", "--engines-dir", str(tmp_path / "nope")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "nope: engines folder does not exist" in done.stderr


def test_engine_for_run_picks_a_valid_engine_or_says_what_to_build(built, rtx, tmp_path):
    folder = built[0]
    path, manifest = engine_cache.engine_for_run(folder, "small", "fp32", "trt-rtx", RTX_4090, rtx.version)
    assert path == folder / fresh_manifest(built)["engine_file"] and manifest["model"] == "small"
    with pytest.raises(GhostError, match=r"no small fp16 trt-rtx engine; build it with `ghostrt build --precision"):
        engine_cache.engine_for_run(folder, "small", "fp16", "trt-rtx", RTX_4090, rtx.version)
    with pytest.raises(GhostError, match=r"this GPU is NVIDIA H200 \(CC 9.0\)"):
        engine_cache.engine_for_run(folder, "small", "fp32", "trt-rtx", H200, rtx.version)
