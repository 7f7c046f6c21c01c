"""The first run on a GPU, without one: every way the TensorRT path can fail becomes one GhostError naming the
engine and TensorRT's reason, `--backend auto` falls back saying it, an old driver is named as such, the runtime
cache persists, CUDA graphs replay the right shape. On tests/backends/fake_tensorrt.py (the real semantics, host memory):
this proves the fallbacks and the messages, not that a GPU ran. On an RTX GPU, test_engine_build runs a real one."""

import gc
import inspect
import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from ghostrt.errors import GhostError
from ghostrt.runtime.backends import cuda_driver, engine_cache, executors, trt_backend
from ghostrt.runtime.backends.trt_backend import Backend
from ghostrt.runtime.backends.trt_executor import TrtExecutor, runtime_cache_path

import fake_tensorrt
from fake_tensorrt import FakeCudart, engine_blob, make_fake_trt

RTX_TARGET = ("any RTX", "8.6,8.9,12.0,12.1")


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A fake RTX 4090 (driver CUDA 13.0), TensorRT-RTX as the only backend, no nvidia-smi or /proc driver."""
    cudart = FakeCudart()
    trt = make_fake_trt(cudart)
    monkeypatch.setattr(cuda_driver, "load_cudart", lambda: cudart)
    monkeypatch.setattr(cuda_driver, "PROC_NVIDIA", tmp_path / "no-proc-driver")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    monkeypatch.setitem(sys.modules, "tensorrt_rtx_bindings", trt)
    monkeypatch.setitem(sys.modules, "tensorrt", None)            # None in sys.modules: the import fails
    return SimpleNamespace(cudart=cudart, trt=trt, backend=Backend("trt-rtx", trt.__version__, trt,
                                                                    "tensorrt_rtx_bindings"))


def write_engine(folder, trt, model="small", precision="fp16", backend="trt-rtx", blob=None, onnx_sha="0" * 64,
                 target=RTX_TARGET, max_batch=4):
    key = engine_cache.EngineKey(model=model, onnx_sha256=onnx_sha, backend=backend, backend_version=trt.__version__,
                                 target_gpu=target[0], target_cc=target[1], precision=precision,
                                 profiles={"x": [[1, 3, 2, 2], [2, 3, 2, 2], [max_batch, 3, 2, 2]]})
    blob = blob if blob is not None else engine_blob(trt.__version__, batch=(1, 2, max_batch))
    engine_cache.write_engine(folder, key, blob, 0.1, {"max_batch": max_batch})
    return engine_cache.engine_paths(folder, key)[0]


def tiny_onnx(path):
    """y = 2x + 1 as a real ONNX file (what OpenVINO or ONNX Runtime falls back to)."""
    import onnx
    from onnx import TensorProto, helper

    two, one = (helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("two", 2.0), ("one", 1.0)))
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])],
                              "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 2, 2])], [two, one])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def x_of(batch, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, 2, 2), dtype=np.float32)


def assert_released(fake):
    gc.collect()
    assert fake.cudart.live == {} and fake.cudart.streams == set() and fake.cudart.graph_execs == set()
    assert len(fake.trt.contexts) == 0


# ------------------------------------------------------------------------------------ the fake is faithful

def test_the_fake_names_only_what_the_real_modules_have():
    """A fake that invents an API would prove nothing: every name it answers exists in tensorrt_rtx_bindings and
    cuda.bindings.runtime, with the same enum values."""
    real = pytest.importorskip("tensorrt_rtx_bindings")
    from cuda.bindings import runtime as real_cudart

    helpers = {"launch", "too_old", "live", "streams", "graph_execs", "launches", "gpu", "driver_cuda", "runtime_cuda"}
    for name, _ in inspect.getmembers(FakeCudart):
        if not name.startswith("_") and name not in helpers:
            assert hasattr(real_cudart, name), name
    pairs = {fake_tensorrt.Runtime: real.Runtime, fake_tensorrt.FakeEngine: real.ICudaEngine,
             fake_tensorrt.FakeContext: real.IExecutionContext, fake_tensorrt.FakeRuntimeConfig: real.IRuntimeConfig,
             fake_tensorrt.FakeRuntimeCache: real.IRuntimeCache}
    for fake_class, real_class in pairs.items():
        for name, _ in inspect.getmembers(fake_class, inspect.isfunction):
            if not name.startswith("_"):
                assert hasattr(real_class, name), f"{real_class.__name__}.{name}"
    for enum_name in ("EngineValidity", "EngineInvalidityDiagnostics", "TensorIOMode", "DataType", "CudaGraphStrategy"):
        real_members = {n: int(v) for n, v in getattr(real, enum_name).__members__.items()}
        for member in getattr(fake_tensorrt, enum_name):
            assert real_members[member.name] == member.value, (enum_name, member.name)
    assert {n: int(v) for n, v in real.ILogger.Severity.__members__.items()} == \
        {m.name: m.value for m in fake_tensorrt.Severity}
    with pytest.raises(TypeError):                  # the real helper's answer for BF16, which the fake copies
        real.nptype(real.DataType.BF16)


# ------------------------------------------------------------------------- 1. the runtime config's lifetime

def test_runtime_config_lives_as_long_as_the_context(fake, tmp_path):
    engine = write_engine(tmp_path, fake.trt)
    with TrtExecutor(engine, fake.backend) as executor:
        gc.collect()
        config = executor.context.get_runtime_config()     # the fake raises use-after-free once it is gone
        assert config is not None and config.cuda_graph_strategy == fake.trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        assert config.get_runtime_cache() is not None
        np.testing.assert_array_equal(executor.run({"x": x_of(2)})["y"], 2 * x_of(2) + 1)
    assert_released(fake)


# ------------------------------------------------ 2./3. every failure: one GhostError, with TensorRT's reason

@pytest.mark.parametrize("knob, problem", [
    ("fail_context", "could not create an execution context"),
    ("fail_shape", "refused input shape"),
    ("fail_address", "refused the device address of tensor x"),
])
def test_each_refusal_is_one_line_naming_the_engine_and_tensorrts_reason(fake, tmp_path, knob, problem):
    engine = write_engine(tmp_path, fake.trt)
    reason = f"Error Code 2: Internal Error ({knob} for the test: out of memory)"
    setattr(fake.trt, knob, reason)
    with pytest.raises(GhostError) as err:
        TrtExecutor(engine, fake.backend)
    message = str(err.value)
    assert message.startswith(f"{engine}: TensorRT-RTX 1.7.1.116 {problem}") and reason in message
    assert "\n" not in message
    del err                                         # its traceback's frames still hold the context
    assert_released(fake)                           # what was allocated before the failure is freed


def test_a_dtype_numpy_cannot_hold_is_a_ghost_error_not_a_type_error(fake, tmp_path):
    engine = write_engine(tmp_path, fake.trt, blob=engine_blob(fake.trt.__version__, dtypes={"y": "BF16"}))
    with pytest.raises(GhostError, match=r"tensor y is BF16, which numpy has no type for"):
        TrtExecutor(engine, fake.backend)


def test_invalid_and_suboptimal_engines_say_tensorrts_diagnostics(fake, tmp_path):
    garbage = write_engine(tmp_path, fake.trt, model="garbage", blob=b"\0not an engine")
    with pytest.raises(GhostError, match=r"cannot run on this GPU/driver \(MALFORMED_ENGINE: not a valid engine"):
        TrtExecutor(garbage, fake.backend)
    engine = write_engine(tmp_path, fake.trt)
    fake.trt.old_driver_engine = True
    with pytest.raises(GhostError, match=r"OLD_CUDA_DRIVER: CUDA driver too old"):
        TrtExecutor(engine, fake.backend)
    fake.trt.old_driver_engine, fake.trt.cc = False, "12.0"       # a GPU the engine was not specialised for
    said = []
    with TrtExecutor(engine, fake.backend, log=said.append) as executor:
        assert executor.run({"x": x_of(1)})["y"].shape == (1, 3, 2, 2)
    assert len(executor.warnings) == 1 and "SUBOPTIMAL here (UNSUPPORTED_CC" in executor.warnings[0]
    assert said == executor.warnings


def test_auto_falls_back_to_the_cpu_in_one_line_naming_the_engine_and_the_reason(fake, tmp_path):
    onnx_path = tiny_onnx(tmp_path / "small.onnx")
    engine = write_engine(tmp_path, fake.trt)
    fake.trt.fail_context = "[runtime.cpp::createExecutionContext] Error Code 2: JIT compilation failed (sm_89)"
    choice = executors.make_executor(onnx_path, "auto", "fp16", tmp_path)
    assert choice.backend in ("openvino", "ort")
    assert engine.name in choice.reason and "could not create an execution context" in choice.reason
    assert "JIT compilation failed (sm_89)" in choice.reason and "\n" not in choice.reason
    assert "tensorrt cannot be imported" not in choice.reason       # the furthest reason, not the first
    np.testing.assert_allclose(choice.executor.run({"x": x_of(3)})["y"], 2 * x_of(3) + 1, rtol=1e-6)
    choice.close()


def test_auto_runs_the_engine_when_it_opens_and_says_suboptimal(fake, tmp_path):
    onnx_path = tiny_onnx(tmp_path / "small.onnx")
    engine = write_engine(tmp_path, fake.trt)
    fake.trt.cc = "12.0"
    choice = executors.make_executor(onnx_path, "auto", "fp16", tmp_path)
    assert choice.backend == "trt-rtx" and engine.name in choice.reason and "SUBOPTIMAL" in choice.reason
    choice.close()
    assert_released(fake)


# ------------------------------------------------------------------------------------- 4. an old driver

def fake_nvidia_smi(folder, line="NVIDIA GeForce RTX 3080, 550.54.14"):
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{line}'\n")
    script.chmod(0o755)
    return folder


def test_doctor_names_a_driver_too_old_for_cuda_python(fake, tmp_path, monkeypatch, capsys):
    from ghostrt.cli import doctor

    fake.cudart.driver_cuda = 12040                # driver 550: CUDA 12.4; cuda-python 13 links CUDA 13
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin')}:/usr/bin:/bin")
    assert doctor.run(None) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.startswith(("gpu", "swap")))
    gpu = rows["gpu"]
    assert gpu.startswith("present but not usable: NVIDIA GeForce RTX 3080 is present (NVIDIA driver 550.54.14, "
                          "CUDA 12.4) but the driver is too old for cuda-python")
    assert "links the CUDA 13.4 runtime and needs driver >= 580" in gpu
    assert "pip install cuda-python==12.9.10 tensorrt-rtx-cu12-bindings==1.7.1.116" in gpu
    assert "driver problem" in rows["swap"].split(None, 1)[1]


def test_proc_driver_is_evidence_too_and_auto_says_the_driver_problem(fake, tmp_path, monkeypatch):
    fake.cudart.driver_cuda = 12020
    proc = tmp_path / "proc-nvidia"
    (proc / "gpus" / "0000:01:00.0").mkdir(parents=True)
    (proc / "version").write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.161.07  Release "
                                  "Build  (dvs-builder@U16-I3-B03-4-3)  Fri Mar  1 2024\n")
    (proc / "gpus" / "0000:01:00.0" / "information").write_text("Model: \t\t NVIDIA RTX A4000\nIRQ:   140\n")
    monkeypatch.setattr(cuda_driver, "PROC_NVIDIA", proc)
    gpu, why = trt_backend.probe_gpu()
    assert gpu is None and "NVIDIA RTX A4000 is present (NVIDIA driver 535.161.07, CUDA 12.2)" in why
    choice = executors.make_executor(tiny_onnx(tmp_path / "small.onnx"), "auto", "fp16", tmp_path)
    assert choice.backend in ("openvino", "ort") and "needs driver >= 580" in choice.reason
    assert "\n" not in choice.reason


def test_no_driver_at_all_is_not_called_an_old_driver(fake):
    fake.cudart.driver_cuda = 0                    # what cuda-python answers on a machine without libcuda
    gpu, why = trt_backend.probe_gpu()
    assert gpu is None and "no NVIDIA driver or GPU found" in why and "too old" not in why


# ---------------------------------------------------------------------- 5. CUDA graphs, one context per shape

def test_full_tensorrt_replays_each_shape_on_its_own_context(tmp_path, monkeypatch):
    """A, A (captured), B, B (captured), then A replayed right after B ran live: on a single context the replay
    would read B's state and leave A's last rows stale."""
    cudart = FakeCudart()
    trt = make_fake_trt(cudart, name="tensorrt", version="10.13.0", rtx=False)
    monkeypatch.setattr(cuda_driver, "load_cudart", lambda: cudart)
    target = ("NVIDIA GeForce RTX 4090", "8.9")
    engine = write_engine(tmp_path, trt, backend="trt", target=target)
    with TrtExecutor(engine, Backend("trt", "10.13.0", trt, "tensorrt")) as executor:
        for step, batch in enumerate((4, 4, 2, 2, 4, 2, 4, 1, 4)):
            x = x_of(batch, seed=step)
            np.testing.assert_array_equal(executor.run({"x": x})["y"], 2 * x + 1, err_msg=f"step {step}")
        assert cudart.launches == 4                  # steps 4-6 and 8 replayed a graph
        assert len(executor._contexts) == 3          # the live one, and one per captured shape
    gc.collect()
    assert cudart.live == {} and cudart.graph_execs == set() and len(trt.contexts) == 0


# ----------------------------------------------------------------------------------- 6. the runtime cache

def test_runtime_cache_is_saved_beside_the_engine_and_spares_the_next_start(fake, tmp_path):
    onnx_path = tiny_onnx(tmp_path / "small.onnx")
    engine = write_engine(tmp_path, fake.trt)
    choice = executors.make_executor(onnx_path, "auto", "fp16", tmp_path)
    assert choice.backend == "trt-rtx"
    for batch in (1, 2, 2):
        choice.executor.run({"x": x_of(batch)})
    assert fake.trt.jit_compiles == 2
    gpu = trt_backend.probe_gpu()[0]
    cache = runtime_cache_path(engine, gpu)
    assert cache.name.startswith(engine.stem + ".") and cache.name.endswith(".runtime-cache")
    assert json.loads(cache.read_bytes())["kernels"] == [[1, 3, 2, 2], [2, 3, 2, 2]]   # saved without close()
    choice.close()
    assert_released(fake)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]                   # no temp file left

    again = executors.make_executor(onnx_path, "auto", "fp16", tmp_path)
    again.executor.run({"x": x_of(2)})
    again.executor.run({"x": x_of(1)})
    assert fake.trt.jit_compiles == 2                # both shapes came from the cache
    again.close()
    again.close()                                    # twice is harmless

    fake.trt.gpu_tag = "another GPU"                 # the cache is refused, said once, and rebuilt
    with TrtExecutor(engine, fake.backend, cache) as executor:
        executor.run({"x": x_of(1)})
    assert fake.trt.jit_compiles == 3 and "runtime cache is from another GPU" in executor.warnings[0]


# ------------------------------------------------------------------------------------- 7. module names

def test_the_tarball_module_name_tensorrt_rtx_is_found(fake, monkeypatch, capsys):
    from ghostrt.cli import doctor

    tarball = make_fake_trt(fake.cudart, name="tensorrt_rtx")
    monkeypatch.setitem(sys.modules, "tensorrt_rtx_bindings", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", tarball)
    (found,) = trt_backend.available_backends()
    assert (found.name, found.module_name, found.module) == ("trt-rtx", "tensorrt_rtx", tarball)
    assert trt_backend.load_backend("trt-rtx").module is tarball
    said = []
    logger = trt_backend.make_logger(tarball, said.append)
    logger.log(tarball.ILogger.Severity.ERROR, "boom")
    assert logger.errors == ["boom"] and said == ["  [TensorRT-RTX ERROR] boom"]
    doctor.run(None)
    assert "TensorRT-RTX 1.7.1.116 (import tensorrt_rtx)" in capsys.readouterr().out


# ----------------------------------------------------------------------- check: one chunk loop, run_chunked

def test_check_runs_the_engine_through_run_chunked(fake, tmp_path, monkeypatch):
    from ghostrt.export import fidelity_check as check
    from ghostrt.export import fidelity

    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    write_engine(tmp_path, fake.trt, model="arcface", max_batch=2)
    x = x_of(5)
    seen = {}

    def compare(_, outputs):
        seen["y"] = outputs["y"]
        return {"task": {}}

    monkeypatch.setattr(fidelity, "validation_reference", lambda model, fp32: SimpleNamespace(inputs={"x": x},
                                                                                             compare=compare))
    monkeypatch.setattr(fidelity, "gate_failures", lambda model, task, gate: [])
    calls = []
    real = executors.run_chunked
    monkeypatch.setattr(executors, "run_chunked", lambda ex, feeds, limit: calls.append(limit) or real(ex, feeds, limit))
    row = check.engine_numbers("arcface", "fp16", onnx_dir / "arcface.onnx", SimpleNamespace(onnx_dir=onnx_dir))
    assert calls == [2] and "TensorRT-RTX" in row["runner"]
    np.testing.assert_array_equal(seen["y"], 2 * x + 1)
