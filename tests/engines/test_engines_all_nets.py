"""CI's proof of the engine path: real TensorRT-RTX engines of all four GHOST nets, built ahead of time on this
GPU-less machine from stand-in weights (FP32 and FP16 for all four, INT8 for detector and ArcFace), gated, cached.

Running them needs an RTX-class GPU; building them does not. Slow: exports the 2-block generator and measures
every reduced-precision variant against FP32."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NETS = ("generator", "arcface", "detector", "landmarks")

pytestmark = pytest.mark.slow


def ghostrt(*argv, cwd=REPO):
    run = subprocess.run([sys.executable, "-m", "ghostrt.cli", *argv], capture_output=True, text=True, cwd=cwd)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT-RTX bindings not installed")
    root = tmp_path_factory.mktemp("engines")
    return root / "engines", root / "calibration.npz"


def manifests(engines_dir: Path, precision: str) -> dict[str, dict]:
    found = {}
    for path in engines_dir.glob(f"*-{precision}-trt-rtx.*.json"):
        m = json.loads(path.read_text())
        found[m["model"]] = m
    return found


def test_fp32_engines_of_all_four_build_then_come_from_the_cache(folders):
    engines, _ = folders
    first = ghostrt("build", "--precision", "fp32", "--backend", "trt-rtx", "--engines-dir", str(engines))
    assert all(f"{net:<10} fp32" in first and "built" in first for net in NETS)
    built = manifests(engines, "fp32")
    assert set(built) == set(NETS)
    for m in built.values():
        assert m["target_gpu"] == "any RTX" and m["backend"] == "trt-rtx" and m["engine_bytes"] > 0
        engine = engines / m["engine_file"]
        assert engine.stat().st_size == m["engine_bytes"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in engines.glob("*.engine")}
    again = ghostrt("build", "--precision", "fp32", "--backend", "trt-rtx", "--engines-dir", str(engines))
    assert again.count("cached") == 4 and " built " not in again
    assert {p.name: p.stat().st_mtime_ns for p in engines.glob("*.engine")} == mtimes


def test_fp16_engines_of_all_four_pass_the_gate_and_record_it(folders):
    engines, _ = folders
    ghostrt("build", "--precision", "fp16", "--backend", "trt-rtx", "--engines-dir", str(engines))
    built = manifests(engines, "fp16")
    assert set(built) == set(NETS)
    for net, m in built.items():
        fidelity = m["fidelity"]
        assert fidelity["gate_applied"] is True and fidelity["passed"] is True and fidelity["accepted"] is True, net
        assert m["source_onnx_sha256"] != m["onnx_sha256"]        # built from the FP16 graph, not the FP32 one
    assert built["generator"]["fidelity"]["task"]["psnr_db_min"] >= 40.0
    assert built["arcface"]["fidelity"]["task"]["embedding_cosine_min"] >= 0.999


def test_int8_engines_of_detector_and_arcface_with_numbers_recorded(folders):
    engines, calibration = folders
    ghostrt("calibrate", "--out", str(calibration))
    ghostrt("build", "--precision", "int8", "--backend", "trt-rtx", "--models", "detector,arcface",
            "--engines-dir", str(engines), "--calibration", str(calibration))
    built = manifests(engines, "int8")
    assert set(built) == {"detector", "arcface"}
    for m in built.values():
        assert m["quant_recipe"]["int8_coverage_pct"] > 50.0
        assert m["fidelity"]["gate_applied"] is False      # untrained stand-ins: numbers only, said so
        assert "untrained" in m["fidelity"]["summary"]
    listing = json.loads(ghostrt("engines", "--engines-dir", str(engines), "--json"))
    assert len(listing) == 10
