"""bench/device: the one script a lent GPU runs. A device call is minutes of a 15-minute lease, so everything the
CPU can prove is proven here: the script parses, its ghostrt import shim maps the repo like pyproject does, the
reference nets run (tiny, on the CPU), sections without CUDA are skipped with a reason, the JSON is labelled,
the budget stops sections, every cuda-python / torch.cuda name it calls exists, and its copy plumbing moves the
right bytes in the right direction (through a host-memory stand-in for cuda.bindings.runtime)."""

import ctypes
import enum
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "device"
SCRIPT = BENCH / "device_bench.py"
RUN_SH = REPO / "bench" / "device" / "run.sh"
CUDA_SECTIONS = ("copies", "overlap", "graphs", "ort_cuda")


def load_script():
    """The script as a module, without running main() (its top level imports only stdlib, numpy and its sibling
    modules). Run as a script its folder is sys.path[0]; here the folder is put there the same way."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("device_bench_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_sibling(name: str):
    """One of the script's sibling modules (plumbing, reference_timing, timing), imported as the script does."""
    load_script()
    return importlib.import_module(name)


def run_sh(args, cwd, out=None, timeout=240):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "PYTHONPATH")}
    env["DEVICE_BENCH_PYTHON"] = sys.executable
    if out is not None:
        env["OUT"] = str(out)
    return subprocess.run(["bash", str(RUN_SH), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_cpu_smoke_writes_labelled_json_chart_and_log(tmp_path):
    out = tmp_path / "out"
    proc = run_sh(["--cpu-smoke"], cwd=tmp_path, out=out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "device_bench.json").read_text())
    assert report["schema"] == "ghostrt-device-bench/1"
    assert report["mode"] == "cpu-smoke"

    # The shim maps every package-dirs entry of pyproject onto the working tree, and the modules came from there.
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ghostrt"]["package-dirs"]
    assert report["import_shim"] == {name: str(REPO / folder) for name, folder in package_dir.items()}
    assert Path(report["loaded_from"]["ghostrt.export.aei_net"]) == REPO / "export" / "aei_net.py"
    assert Path(report["loaded_from"]["ghostrt.runtime.backends.trt_backend"]) == REPO / "runtime" / "backends" / "trt_backend.py"

    reference = report["sections"]["reference"]
    assert reference["status"] == "ok", reference
    measured = {(row["model"], row["scope"]) for row in reference["results"]}
    assert measured == {(model, scope) for model in ("G_1block", "arcface") for scope in reference["scopes"]}
    assert len(reference["scopes"]) == 2                          # net alone, and GHOST's stage around it
    for row in reference["results"]:
        assert row["per_call"]["n"] >= 1
        assert 0 < row["per_face_p50_ms"] < float("inf")
    for name, section in report["sections"].items():
        assert section["label"], name
    cuda = torch.cuda.is_available()
    for name in CUDA_SECTIONS:
        section = report["sections"][name]
        if not cuda:
            assert section["status"] == "skipped" and "CUDA" in section["reason"], section
    assert "[reference] ok" in proc.stdout                       # the printed summary
    assert (out / "device_bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "[reference] ok" in (out / "device_bench.log").read_text()


def test_budget_stops_every_section_and_out_defaults_to_cwd(tmp_path):
    proc = run_sh(["--cpu-smoke", "--budget-s", "0"], cwd=tmp_path, out=None, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "out-device" / "device_bench.json").read_text())
    assert report["sections"]["reference"]["status"] == "skipped"
    assert report["sections"]["reference"]["reason"].startswith("budget")
    assert set(report["sections"]) == {"reference", *CUDA_SECTIONS}
    assert all(s["status"] == "skipped" for s in report["sections"].values())


def _attribute_chains(pattern: str) -> set[str]:
    """Every match in the script and its sibling modules (the device runs all of them)."""
    return {chain for path in sorted(BENCH.glob("*.py")) for chain in re.findall(pattern, path.read_text())}


def _resolve(root, chain: str):
    for part in chain.split("."):
        root = getattr(root, part)
    return root


def test_every_cuda_name_the_script_calls_exists():
    """A misspelt cudart or torch.cuda name would only fail on the device, after the machine started."""
    from cuda.bindings import runtime as cudart

    cudart_names = _attribute_chains(r"\bcudart\.(\w+(?:\.\w+)*)")
    assert {"cudaHostAlloc", "cudaMemcpyAsync", "cudaGraphLaunch"} <= cudart_names
    for chain in cudart_names:
        _resolve(cudart, chain)
    torch_names = _attribute_chains(r"\btorch\.((?:cuda|backends)(?:\.\w+)+)")
    assert {"cuda.CUDAGraph", "cuda.Event"} <= torch_names
    for chain in torch_names:
        _resolve(torch, chain)


# --------------------------------------------------------------------- the plumbing on a host-memory cudart

class FakeCudart:
    """The cuda.bindings.runtime calls the copy section makes, on host memory: 'device' buffers are ctypes
    arrays, copies are memmove, events read a host clock. Tracks what is still allocated."""

    class cudaError_t(enum.Enum):
        cudaSuccess = 0

    class cudaMemcpyKind(enum.Enum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    cudaHostAllocDefault = 0
    cudaStreamNonBlocking = 1

    def __init__(self):
        self.live, self.kinds, self.times = {}, [], {}

    def _alloc(self, nbytes):
        buffer = (ctypes.c_byte * nbytes)()
        self.live[ctypes.addressof(buffer)] = buffer
        return self.cudaError_t.cudaSuccess, ctypes.addressof(buffer)

    def _free(self, pointer):
        del self.live[int(pointer)]
        return (self.cudaError_t.cudaSuccess,)

    def cudaHostAlloc(self, nbytes, flags):
        return self._alloc(nbytes)

    def cudaMalloc(self, nbytes):
        return self._alloc(nbytes)

    cudaFree = cudaFreeHost = _free

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        self.kinds.append(kind)
        ctypes.memmove(int(dst), int(src), nbytes)
        return (self.cudaError_t.cudaSuccess,)

    def cudaStreamCreateWithFlags(self, flags):
        return self.cudaError_t.cudaSuccess, object()

    def cudaEventCreate(self):
        return self.cudaError_t.cudaSuccess, object()

    def cudaEventRecord(self, event, stream):
        self.times[id(event)] = time.perf_counter()
        return (self.cudaError_t.cudaSuccess,)

    def cudaEventElapsedTime(self, start, end):
        return self.cudaError_t.cudaSuccess, max((self.times[id(end)] - self.times[id(start)]) * 1e3, 1e-6)

    def ok(self, *args):
        return (self.cudaError_t.cudaSuccess,)

    cudaStreamSynchronize = cudaEventSynchronize = cudaEventDestroy = cudaStreamDestroy = ok


def test_copy_section_moves_bytes_both_ways_and_frees_everything():
    plumbing = load_sibling("plumbing")
    fake = FakeCudart()
    result = plumbing.section_copies(None, plumbing.Budget(120), True, cudart=fake)
    assert [row["buffer"] for row in result["results"]] == ["frame_1080p_rgb_uint8", "faces_40x3x256x256_float32"]
    assert result["results"][0]["bytes"] == 1080 * 1920 * 3
    for row in result["results"]:
        assert row["round_trip_ok"] is True
        for key in ("pinned_h2d", "pinned_d2h", "pageable_h2d", "pageable_d2h"):
            assert row[key]["n"] == 3 and row[key]["GB_per_s_at_p50"] > 0
    kinds = set(fake.kinds)
    assert kinds == {FakeCudart.cudaMemcpyKind.cudaMemcpyHostToDevice, FakeCudart.cudaMemcpyKind.cudaMemcpyDeviceToHost}
    assert fake.live == {}                                        # every pinned and device buffer was released


# ------------------------------------------------------------------------------------------ pure helpers

def test_overlap_percent_spans_serial_to_concurrent():
    plumbing = load_sibling("plumbing")
    assert plumbing.overlap_percent(10.0, 4.0, 10.0) == 100.0    # the shorter job fully hidden
    assert plumbing.overlap_percent(10.0, 4.0, 14.0) == 0.0      # serialised
    assert plumbing.overlap_percent(10.0, 4.0, 12.0) == 50.0
    assert plumbing.overlap_percent(10.0, 4.0, 20.0) == 0.0      # slower together: clamped, not negative


def test_ort_cuda_runs_only_with_a_gpu_and_the_cuda_provider():
    script = load_script()
    gpu_build = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert script.ort_cuda_decision(True, gpu_build)[0] is True
    go, why = script.ort_cuda_decision(False, gpu_build)             # onnxruntime-gpu lists CUDA without a GPU
    assert not go and "no CUDA device" in why
    go, why = script.ort_cuda_decision(True, ["AzureExecutionProvider", "CPUExecutionProvider"])
    assert not go and "CUDAExecutionProvider" in why
    assert script.ort_cuda_decision(True, None)[0] is False


def test_stats_and_budget():
    timing = load_sibling("timing")
    st = timing.stats_ms([3.0, 1.0, 2.0])
    assert st["n"] == 3 and st["p50_ms"] == 2.0 and st["min_ms"] == 1.0
    assert timing.stats_ms([]) == {"n": 0}
    assert timing.Budget(0).expired() and not timing.Budget(60).expired()


class TinyG(torch.nn.Module):
    """G's call shape: (target, z_id) -> (Y, attributes), with an InstanceNorm like the AAD layers."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = torch.nn.InstanceNorm2d(4)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, target, z_id):
        h = self.norm(self.conv(target)) * self.fc(z_id)[:, :, None, None]
        return torch.tanh(h), [h]


def test_half_vs_float_compares_a_half_copy_and_leaves_the_float_net_alone():
    reference_timing = load_sibling("reference_timing")
    torch.manual_seed(0)
    net = TinyG().eval()
    inputs = {"target": np.random.default_rng(0).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32),
              "z_id": np.random.default_rng(1).standard_normal((1, 8)).astype(np.float32)}
    check = reference_timing.half_vs_float(torch, net, lambda batch: inputs, torch.device("cpu"))
    assert check["net16"].conv.weight.dtype == torch.float16
    assert net.conv.weight.dtype == torch.float32                 # a copy was halved, not the reference
    assert check["finite"] is True
    assert 0 < check["rel_l2"] < 1e-2                             # fp16 rounding: small, but never exactly 0
