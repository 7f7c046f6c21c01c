"""`ghostrt doctor`, the `--backend auto` rule, and the torch-free promise of the engine-side runtime modules."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from ghostrt.errors import GhostError
from ghostrt.runtime.backends import trt_backend
from ghostrt.runtime.backends.trt_backend import Backend, GpuInfo, choose_auto, rtx_supports

REPO = Path(__file__).resolve().parents[2]
RTX = Backend("trt-rtx", "1.7.1.116", None)
TRT = Backend("trt", "10.13.0", None)


def test_doctor_runs_and_names_trt_rtx():
    import tensorrt_rtx_bindings

    done = subprocess.run([sys.executable, "-m", "ghostrt.cli", "doctor"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert f"TensorRT-RTX {tensorrt_rtx_bindings.__version__}" in lines["trt-rtx"]
    assert lines["python"].split()[1] == ".".join(map(str, sys.version_info[:3]))
    assert "build" in lines and ("trt-rtx" in lines["build"] or "trt:" in lines["build"])
    assert "swap" in lines and ("OpenVINO on" in lines["swap"] or "engines on" in lines["swap"])
    assert lines["openvino"].split()[1].startswith(__import__("openvino").get_version().split("-")[0])
    assert "capabilities" in lines["cpu"] and "FP32" in lines["cpu"]
    assert "onnxruntime" in lines and "CPUExecutionProvider" in lines["onnxruntime"]
    assert "gpu" in lines and "torch" in lines


def test_doctor_says_what_the_cpu_runs(monkeypatch):
    from ghostrt.cli import doctor
    from ghostrt.runtime.backends import openvino_backend

    def rows():
        return dict(doctor.report())

    real = openvino_backend.probe_cpu()
    for capabilities, bf16 in ((("FP32", "INT8"), "no (needs AVX-512-BF16 or AMX)"),
                               (("FP32", "BF16", "INT8"), "yes: --precision fp16/bf16")):
        fake = openvino_backend.CpuInfo(real.name, real.isa, capabilities)
        monkeypatch.setattr(openvino_backend, "probe_cpu", lambda core=None, fake=fake: fake)
        report = rows()
        assert report["bf16 (cpu)"].startswith(bf16) and report["int8 (cpu)"].startswith("yes")
        assert ", ".join(capabilities) in report["cpu"] and real.name in report["cpu"]
        if trt_backend.probe_gpu()[0] is None:
            assert report["swap (auto)"].startswith(f"OpenVINO on {real.name}")
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "openvino", None)             # as if OpenVINO were not installed
    report = rows()
    assert report["openvino"].startswith(f"not installed (pip install {openvino_backend.PIN})")
    assert "bf16 (cpu)" not in report and "unknown" in report["cpu"]
    assert "ONNX Runtime CPU" in report["swap (auto)"]


def test_engine_side_modules_never_import_torch():
    code = ("import sys\n"
            "from ghostrt.runtime.backends import trt_backend, engine_cache, openvino_backend\n"
            "from ghostrt.cli import engines as engines_cli, doctor\n"
            "doctor.report(); trt_backend.load_backend('auto')\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("cc, supported", [("7.5", True), ("8.6", True), ("8.9", True), ("12.0", True),
                                           ("12.1", True), ("8.0", False), ("9.0", False), ("10.0", False),
                                           ("7.0", False)])
def test_rtx_support_follows_the_support_matrix(cc, supported):
    assert rtx_supports(cc) is supported


def test_auto_prefers_trt_on_a_gpu_else_trt_rtx():
    h200, rtx4090 = GpuInfo("NVIDIA H200", "9.0"), GpuInfo("NVIDIA GeForce RTX 4090", "8.9")
    assert choose_auto([RTX, TRT], h200)[0] is TRT
    assert choose_auto([RTX, TRT], rtx4090)[0] is TRT
    assert choose_auto([RTX, TRT], None)[0] is RTX             # full TensorRT cannot build without a GPU
    assert choose_auto([RTX], rtx4090) == (RTX, "TensorRT-RTX supports the visible GPU (CC 8.9)")
    backend, why = choose_auto([RTX], h200)
    assert backend is RTX and "cannot run its engines" in why
    assert choose_auto([TRT], None)[0] is None
    assert "pip install" in choose_auto([], None)[1]


def test_load_backend_names_the_missing_module():
    with pytest.raises(GhostError, match="unknown backend 'onnx'"):
        trt_backend.load_backend("onnx")
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(GhostError, match="tensorrt cannot be imported"):
            trt_backend.load_backend("trt")
    assert trt_backend.load_backend("trt-rtx").version == __import__("tensorrt_rtx_bindings").__version__


def test_build_target_of_trt_rtx_is_any_rtx():
    target = trt_backend.build_target(trt_backend.load_backend("trt-rtx"))
    assert target.name == "any RTX" and all(rtx_supports(cc) for cc in target.compute_capability.split(","))
