"""One call on a lent GPU: the GHOST-style anchor ghostrt must beat, and ghostrt's own device plumbing.

The device image has its own python3 and packages (PyTorch, cuda-bindings, CuPy; no TensorRT), and the repo is
copied there as a plain working tree, not installed; so the `ghostrt` namespace is mapped onto the repo's folders
here (from pyproject's package-dir), and every section is fenced by a hard time budget, because the lease is
minutes. Results (JSON + PNG) are rewritten after every section, so a run cut short still returns what it measured.
Sections that cannot run (no CUDA, no CUDA provider in ONNX Runtime, budget spent) say why in the JSON.

    python3 bench/device/device_bench.py --out DIR [--budget-s 330] [--cpu-smoke]
"""

import argparse
import ctypes
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "ghostrt-device-bench/1"
VIDEO_BATCH = 40                      # GHOST's default --batch_size for G in video mode
FRAME_1080P = (1080, 1920, 3)         # RGB uint8, the runtime's frame layout
LABEL_REFERENCE = ("reference: GHOST-style PyTorch eager (G fully fp16, ArcFace fp32) on {gpu}, stand-in weights "
                   "(same shapes and FLOPs as the released files) -- the anchor ghostrt must beat on a TensorRT GPU")
LABEL_REFERENCE_CPU = "cpu-smoke: PyTorch eager fp32 on the CPU at tiny size -- proves the code runs, not a measurement"
LABEL_PLUMBING = ("ghostrt plumbing: cuda-python (cuda.bindings.runtime) through runtime/trt_backend.py's helpers "
                  "on {gpu}")
LABEL_GRAPH = "graph replay vs eager launch on {gpu}: what ghostrt's per-shape CUDA-graph capture saves"
LABEL_ORT = "comparison: ghostrt's exported ONNX on ONNX Runtime CUDA EP fp32 on {gpu}"
OPTIONAL_MODULES = ("onnx", "onnxruntime", "av", "cv2", "skimage", "matplotlib", "cupy", "cuda.bindings",
                    "tensorrt", "tensorrt_rtx_bindings")


# ------------------------------------------------------------------------------------------------ set-up

def install_import_shim(repo: Path = REPO) -> dict[str, str]:
    """Map ghostrt, ghostrt.export, ghostrt.runtime, ... onto the working tree exactly as pyproject's
    package-dir does (the device image has no editable install). Parents first; returns name -> folder."""
    import tomllib

    package_dir = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    loaded = {}
    for name in sorted(package_dir, key=lambda n: n.count(".")):
        folder = repo / package_dir[name]
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(sys.modules[parent], child, module)
        loaded[name] = str(folder)
    return loaded


class Budget:
    """A hard wall-clock budget for the whole run; sections ask before starting and loops before each rep."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def expired(self) -> bool:
        return self.left() <= 0


def stats_ms(samples: list[float]) -> dict:
    """p50/p99 of per-call milliseconds; with few samples p99 is close to the max, so n is reported too."""
    if not samples:
        return {"n": 0}
    a = np.asarray(samples, np.float64)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "min_ms": float(a.min())}


def overlap_percent(alone_a: float, alone_b: float, together: float) -> float:
    """Share of the shorter job hidden under the longer one: 100 = fully concurrent, 0 = serialised."""
    shorter = min(alone_a, alone_b)
    if shorter <= 0:
        return 0.0
    return float(np.clip(100.0 * (alone_a + alone_b - together) / shorter, 0.0, 100.0))


def ort_cuda_decision(cuda_available: bool, providers: list[str] | None) -> tuple[bool, str]:
    """(run the ORT-CUDA comparison?, why). onnxruntime-gpu lists its CUDA provider even with no GPU."""
    if providers is None:
        return False, "onnxruntime is not importable in this image"
    if not cuda_available:
        return False, "no CUDA device visible to PyTorch"
    if "CUDAExecutionProvider" not in providers:
        return False, (f"onnxruntime here offers {providers}: no CUDAExecutionProvider (the image ships the "
                       f"CPU-only onnxruntime wheel; onnxruntime-gpu is far over the 64 MiB carry limit)")
    return True, "CUDAExecutionProvider available"


def module_versions() -> dict:
    found = {}
    for name in OPTIONAL_MODULES:
        try:
            present = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            present = False
        found[name] = present
    for dist in ("torch", "cuda-bindings", "cuda-python", "cupy-cuda13x", "onnxruntime", "onnxruntime-gpu", "onnx",
                 "numpy"):
        try:
            found[f"version:{dist}"] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def nvidia_smi_snapshot() -> str | None:
    """Read-only query of clocks/temperature/power (settings are never changed)."""
    query = "name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(torch) -> dict:
    from ghostrt.runtime.trt_backend import probe_gpu

    try:                                       # ghostrt's own probe; a surprise here must not cost the call
        gpu, how = probe_gpu()
    except Exception as err:
        gpu, how = None, f"probe_gpu raised {type(err).__name__}: {err}"
    info = {"python": platform.python_version(), "host": platform.node(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "ghostrt_probe_gpu": {"gpu": None if gpu is None else vars(gpu), "how": how},
            "modules": module_versions(), "nvidia_smi_before": nvidia_smi_snapshot()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                    multiprocessors=props.multi_processor_count, gpu_memory_bytes=props.total_memory,
                    cudnn=torch.backends.cudnn.version(), cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    cudnn_benchmark=torch.backends.cudnn.benchmark,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return info


# -------------------------------------------------------------------------------- 1. reference anchor

def time_calls(torch, fn, warmup: int, reps: int, budget: Budget, cuda: bool) -> tuple[list[float], bool]:
    """Per-call ms; each call is synchronised, as GHOST reads every result back. (samples, stopped early)."""
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        if budget.expired():
            return samples, True
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return samples, False


SCOPE_NET = "net only: inputs already on the device in the net's dtype, output left there; CUDA events"
SCOPE_STAGE = ("GHOST stage via ghostrt's ReferencePipeline: uint8 224 crops in, host resize/normalise, "
               "copies, net, .cpu() readback; host clock")


def measure(torch, model, precision, scope, make_call, batches, plan, budget, cuda) -> list[dict]:
    """One row per batch; make_call(batch) prepares inputs and returns the no-argument call to time."""
    rows = []
    for batch in batches:
        if budget.expired():
            rows.append({"model": model, "batch": batch, "scope": scope, "status": "skipped: budget spent"})
            continue
        call = make_call(batch)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with torch.inference_mode():
            samples, stopped = time_calls(torch, call, plan["warmup"], plan["reps"][batch], budget,
                                          cuda and scope == SCOPE_NET)
        per_call = stats_ms(samples)
        row = {"model": model, "precision": precision, "batch": batch, "scope": scope, "per_call": per_call,
               "per_face_p50_ms": per_call["p50_ms"] / batch if samples else None,
               "per_face_p99_ms": per_call["p99_ms"] / batch if samples else None, "stopped_early": stopped}
        if cuda:
            row["peak_memory_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        rows.append(row)
        del call
    return rows


def net_call(torch, net, make_inputs, dtype, device):
    def make_call(batch):
        feeds = [torch.from_numpy(v).to(device, dtype) for v in make_inputs(batch).values()]
        return lambda: net(*feeds)
    return make_call


def stage_call(method, with_identities: bool):
    """ReferencePipeline.generate / .embed on random uint8 224 crops (random, never zeros) and identities."""
    from ghostrt.export.aei_net import seeded_embeddings

    def make_call(batch):
        crops = np.random.default_rng(batch).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
        if not with_identities:
            return lambda: method(crops)
        identities = seeded_embeddings(batch, batch + 1)
        return lambda: method(crops, identities)
    return make_call


def half_vs_float(torch, net32, make_inputs, device) -> dict:
    """The fp16 G is only a fair anchor if it computes the same function: ‖y16 − y32‖/‖y32‖ at batch 1
    (fp32 with TF32 off as the reference), and whether fp16 stayed finite."""
    import copy

    feeds = list(make_inputs(1).values())
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    with torch.inference_mode():
        y32 = net32(*[torch.from_numpy(v).to(device) for v in feeds])[0].double()
        net16 = copy.deepcopy(net32).half()
        y16 = net16(*[torch.from_numpy(v).to(device, torch.float16) for v in feeds])[0].double()
    torch.backends.cudnn.allow_tf32 = previous
    rel = float(torch.linalg.vector_norm(y16 - y32) / torch.linalg.vector_norm(y32))
    return {"rel_l2": rel if np.isfinite(rel) else None, "finite": bool(torch.isfinite(y16).all()), "net16": net16}


def section_reference(torch, budget, cuda, smoke) -> dict:
    """GHOST's nets the way GHOST runs them: G.half() as a whole on a GPU (InstanceNorm included; fp32 on a
    CPU), ArcFace in fp32. Each net alone, then the first G and ArcFace as GHOST's stages (host work included)."""
    from ghostrt.export.aei_net import generator_inputs, standin_generator
    from ghostrt.export.iresnet import arcface_inputs, standin_arcface
    from ghostrt.export.reference_pipeline import ReferenceNets, ReferencePipeline

    device = torch.device("cuda" if cuda else "cpu")
    if smoke:
        blocks, batches = (1,), (1,)
        plan = {"warmup": 0, "reps": {1: 1}}
    else:
        blocks, batches = (2, 1), (1, VIDEO_BATCH)
        plan = {"warmup": 10, "reps": {1: 200, VIDEO_BATCH: 50}}
    out = {"results": [], "plan": {"g_blocks": list(blocks), "batches": list(batches), "warmup": plan["warmup"],
                                   "reps": {str(k): v for k, v in plan["reps"].items()}},
           "scopes": [SCOPE_NET, SCOPE_STAGE], "cuda_events": cuda}
    half = torch.float16 if cuda else torch.float32
    precision = "fp16" if cuda else "fp32"
    for num_blocks in blocks:
        model = f"G_{num_blocks}block"
        if budget.left() < 20:
            out["results"].append({"model": model, "status": "skipped: budget spent"})
            continue
        net = standin_generator(num_blocks).to(device)
        if cuda:
            check = half_vs_float(torch, net, generator_inputs, device)
            net = check.pop("net16")
            out[f"{model}_fp16_vs_fp32"] = check
        out["results"] += measure(torch, model, precision, SCOPE_NET, net_call(torch, net, generator_inputs, half,
                                                                               device), batches, plan, budget, cuda)
        if num_blocks == blocks[0]:
            pipeline = ReferencePipeline(ReferenceNets(None, None, net, None, device, g_half=cuda))
            out["results"] += measure(torch, model, precision, SCOPE_STAGE, stage_call(pipeline.generate, True),
                                      batches, plan, budget, cuda)
            del pipeline
        del net
        if cuda:
            torch.cuda.empty_cache()
    if budget.left() < 10:
        out["results"].append({"model": "arcface", "status": "skipped: budget spent"})
        return out
    arcface = standin_arcface().to(device)
    out["results"] += measure(torch, "arcface", "fp32", SCOPE_NET, net_call(torch, arcface, arcface_inputs,
                                                                            torch.float32, device),
                              batches, plan, budget, cuda)
    pipeline = ReferencePipeline(ReferenceNets(None, arcface, None, None, device))
    out["results"] += measure(torch, "arcface", "fp32", SCOPE_STAGE, stage_call(pipeline.embed, False), batches, plan,
                              budget, cuda)
    return out


# -------------------------------------------------------------------------------- 2. ghostrt plumbing

def pinned_array(cudart, check, nbytes: int, dtype=np.uint8):
    """Page-locked host memory as a numpy view, the way TrtExecutor allocates its host buffers."""
    pointer = check(cudart, cudart.cudaHostAlloc(nbytes, cudart.cudaHostAllocDefault), "cudaHostAlloc")
    raw = (ctypes.c_byte * nbytes).from_address(int(pointer))
    return pointer, np.frombuffer(raw, dtype=dtype)


class Plumbing:
    """The cudart handles one section needs, created and released the way runtime/trt_backend.py does."""

    def __init__(self, cudart=None):
        from ghostrt.runtime.trt_backend import _check, _cudart

        self.cudart, self.check = cudart or _cudart(), _check
        self.pinned, self.device, self.streams, self.events = [], [], [], []

    def stream(self):
        cudart = self.cudart
        s = self.check(cudart, cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "stream create")
        self.streams.append(s)
        return s

    def host(self, nbytes: int, dtype=np.uint8):
        pointer, array = pinned_array(self.cudart, self.check, nbytes, dtype)
        self.pinned.append(pointer)
        return array

    def malloc(self, nbytes: int):
        pointer = self.check(self.cudart, self.cudart.cudaMalloc(nbytes), "cudaMalloc")
        self.device.append(pointer)
        return pointer

    def event(self):
        e = self.check(self.cudart, self.cudart.cudaEventCreate(), "event create")
        self.events.append(e)
        return e

    def copy(self, dst, src, nbytes: int, to_device: bool, stream) -> None:
        cudart = self.cudart
        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice if to_device else \
            cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.check(self.cudart, self.cudart.cudaMemcpyAsync(dst, src, nbytes, kind, stream), "cudaMemcpyAsync")

    def timed_ms(self, enqueue, stream, reps: int, budget: Budget) -> list[float]:
        """Event-timed calls of `enqueue(stream)` on one stream, after two warm-ups."""
        cudart, check = self.cudart, self.check
        start, end = self.event(), self.event()
        for _ in range(2):
            enqueue(stream)
        check(cudart, cudart.cudaStreamSynchronize(stream), "stream synchronize")
        samples = []
        for _ in range(reps):
            if budget.expired():
                break
            check(cudart, cudart.cudaEventRecord(start, stream), "event record")
            enqueue(stream)
            check(cudart, cudart.cudaEventRecord(end, stream), "event record")
            check(cudart, cudart.cudaEventSynchronize(end), "event synchronize")
            samples.append(check(cudart, cudart.cudaEventElapsedTime(start, end), "event elapsed"))
        return samples

    def close(self) -> None:
        cudart = self.cudart
        for e in self.events:
            cudart.cudaEventDestroy(e)
        for p in self.device:
            cudart.cudaFree(p)
        for p in self.pinned:
            cudart.cudaFreeHost(p)
        for s in self.streams:
            cudart.cudaStreamDestroy(s)


def section_copies(torch, budget, smoke, cudart=None) -> dict:
    """Pinned vs pageable bandwidth, both directions, for one 1080p frame and one G batch of faces; every
    buffer first proves a round trip returns the bytes it sent (poisoned destination, random data).
    `cudart` is injected only by the CPU test, with a host-memory stand-in for cuda.bindings.runtime."""
    faces = (VIDEO_BATCH, 3, 256, 256)
    sizes = {"frame_1080p_rgb_uint8": int(np.prod(FRAME_1080P)),
             f"faces_{VIDEO_BATCH}x3x256x256_float32": int(np.prod(faces)) * 4}
    plumbing, rng, rows = Plumbing(cudart), np.random.default_rng(0), []
    try:
        stream = plumbing.stream()
        for label, nbytes in sizes.items():
            device = plumbing.malloc(nbytes)
            pinned = plumbing.host(nbytes)
            pageable = np.empty(nbytes, np.uint8)
            pinned[:] = rng.integers(0, 256, nbytes, dtype=np.uint8)
            pageable[:] = 0xA5
            plumbing.copy(device, pinned.ctypes.data, nbytes, True, stream)
            plumbing.copy(pageable.ctypes.data, device, nbytes, False, stream)
            plumbing.check(plumbing.cudart, plumbing.cudart.cudaStreamSynchronize(stream), "stream synchronize")
            row = {"buffer": label, "bytes": nbytes, "round_trip_ok": bool(np.array_equal(pinned, pageable))}
            for host_kind, host in (("pinned", pinned), ("pageable", pageable)):
                for direction, to_device in (("h2d", True), ("d2h", False)):
                    src, dst = (host.ctypes.data, device) if to_device else (device, host.ctypes.data)
                    samples = plumbing.timed_ms(lambda s: plumbing.copy(dst, src, nbytes, to_device, s), stream,
                                                3 if smoke else 20, budget)
                    st = stats_ms(samples)
                    st["GB_per_s_at_p50"] = nbytes / (st["p50_ms"] * 1e6) if samples else None
                    row[f"{host_kind}_{direction}"] = st
            rows.append(row)
    finally:
        plumbing.close()
    return {"results": rows, "timing": "cudaEventRecord around each cudaMemcpyAsync on a non-blocking stream"}


def section_overlap(torch, budget, smoke) -> dict:
    """The video loop's pattern: upload batch n+1 and download batch n-1 (two cudart streams) while a torch
    stream computes. The GEMM count is sized so compute takes about as long as the copies."""
    nbytes = VIDEO_BATCH * 3 * 256 * 256 * 4
    copies = 4 if smoke else 20
    plumbing = Plumbing()
    cudart, check = plumbing.cudart, plumbing.check
    try:
        up, down = plumbing.stream(), plumbing.stream()
        h_in, h_out = plumbing.host(nbytes), plumbing.host(nbytes)
        h_in[:] = 7
        d_in, d_out = plumbing.malloc(nbytes), plumbing.malloc(nbytes)
        compute = torch.cuda.Stream()
        a = torch.rand(4096, 4096, device="cuda", dtype=torch.float16)
        b = torch.rand(4096, 4096, device="cuda", dtype=torch.float16)
        c = torch.empty_like(a)
        compute.wait_stream(torch.cuda.current_stream())     # a, b were filled on the default stream

        def sync_all():
            check(cudart, cudart.cudaStreamSynchronize(up), "stream synchronize")
            check(cudart, cudart.cudaStreamSynchronize(down), "stream synchronize")
            compute.synchronize()

        def uploads():
            for _ in range(copies):
                plumbing.copy(d_in, h_in.ctypes.data, nbytes, True, up)

        def downloads():
            for _ in range(copies):
                plumbing.copy(h_out.ctypes.data, d_out, nbytes, False, down)

        def gemms(count):
            with torch.cuda.stream(compute):
                for _ in range(count):
                    torch.mm(a, b, out=c)

        def wall_ms(*jobs):
            sync_all()
            t0 = time.perf_counter()
            for job in jobs:
                job()
            sync_all()
            return (time.perf_counter() - t0) * 1e3

        gemms(3)
        one_gemm = wall_ms(lambda: gemms(20)) / 20
        copies_ms = wall_ms(uploads, downloads)
        count = max(1, round(copies_ms / max(one_gemm, 1e-3)))
        reps = 3 if smoke else 7
        keys = ("h2d_alone", "d2h_alone", "h2d_and_d2h", "compute_alone", "all_three")
        jobs = {"h2d_alone": (uploads,), "d2h_alone": (downloads,), "h2d_and_d2h": (uploads, downloads),
                "compute_alone": (lambda: gemms(count),), "all_three": (lambda: gemms(count), uploads, downloads)}
        runs = {k: [] for k in keys}
        for _ in range(reps):
            if budget.expired():
                break
            for key in keys:
                runs[key].append(wall_ms(*jobs[key]))
        p50 = {k: float(np.median(v)) if v else None for k, v in runs.items()}
        result = {"bytes_per_copy": nbytes, "copies_each_way": copies, "gemm": "fp16 4096^3 torch.mm",
                  "gemm_count": count, "wall_ms_p50": p50, "reps": len(runs["all_three"])}
        if runs["all_three"]:
            result["duplex_overlap_percent"] = overlap_percent(p50["h2d_alone"], p50["d2h_alone"], p50["h2d_and_d2h"])
            result["copy_compute_overlap_percent"] = overlap_percent(p50["h2d_and_d2h"], p50["compute_alone"],
                                                                     p50["all_three"])
        return result
    finally:
        plumbing.close()


def section_graphs(torch, budget, smoke) -> dict:
    """(a) ArcFace fp32 batch 1 eagerly vs as a torch CUDA graph (a launch-bound fixed-shape step);
    (b) an engine call's copy plumbing (H2D input, D2H output) enqueued eagerly vs captured with cudart the
    way TrtExecutor._try_capture does it (ThreadLocal capture on a non-blocking stream, then cudaGraphLaunch)."""
    from ghostrt.export.iresnet import arcface_inputs, standin_arcface

    calls, reps = (5, 3) if smoke else (50, 7)
    net = standin_arcface().cuda()
    x = torch.from_numpy(arcface_inputs(1)["face"]).cuda()
    out = {"calls_per_sample": calls}
    with torch.inference_mode():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                eager_y = net(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            graph_y = net(x)
        graph.replay()
        torch.cuda.synchronize()
        out["arcface_graph_max_abs_diff"] = float((graph_y - net(x)).abs().max())
        del eager_y
        for name, fn in (("arcface_b1_eager", lambda: net(x)), ("arcface_b1_graph", graph.replay)):
            samples, _ = time_calls(torch, lambda: [fn() for _ in range(calls)], 2, reps, budget, True)
            out[name] = {**stats_ms(samples), "per_call_ms_p50": stats_ms(samples).get("p50_ms", 0.0) / calls}

    plumbing = Plumbing()
    cudart, check = plumbing.cudart, plumbing.check
    try:
        stream = plumbing.stream()
        n_in, n_out = 3 * 112 * 112 * 4, 512 * 4
        h_in, h_out = plumbing.host(n_in), plumbing.host(n_out)
        d_in, d_out = plumbing.malloc(n_in), plumbing.malloc(n_out)

        def enqueue(s):
            plumbing.copy(d_in, h_in.ctypes.data, n_in, True, s)
            plumbing.copy(h_out.ctypes.data, d_out, n_out, False, s)

        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(cudart, cudart.cudaStreamBeginCapture(stream, mode), "begin capture")
        enqueue(stream)
        captured = check(cudart, cudart.cudaStreamEndCapture(stream), "end capture")
        graph_exec = check(cudart, cudart.cudaGraphInstantiate(captured, 0), "graph instantiate")
        cudart.cudaGraphDestroy(captured)
        launch = lambda s: check(cudart, cudart.cudaGraphLaunch(graph_exec, s), "graph launch")  # noqa: E731
        for name, step in (("copies_b1_eager", enqueue), ("copies_b1_graph", launch)):
            samples = plumbing.timed_ms(lambda s: [step(s) for _ in range(calls)], stream, reps, budget)
            out[name] = {**stats_ms(samples), "per_call_ms_p50": stats_ms(samples).get("p50_ms", 0.0) / calls}
        cudart.cudaGraphExecDestroy(graph_exec)
    finally:
        plumbing.close()
    return out


# -------------------------------------------------------------------------------- 3. ORT-CUDA comparison

def section_ort(torch, budget, tmp_dir: Path) -> dict:
    """ghostrt's own export (TorchScript exporter, opset 17) of the stand-in G 2-block and ArcFace, run by
    ONNX Runtime's CUDA EP in fp32 with numpy feeds (host copies included, as OrtExecutor runs)."""
    import onnxruntime as ort

    from ghostrt.export.aei_net import SwapOnly, generator_inputs, standin_generator
    from ghostrt.export.iresnet import arcface_inputs, standin_arcface
    from ghostrt.export.onnx_io import export_module

    rows = []
    for name, build, inputs, outputs in (("arcface", standin_arcface, arcface_inputs, ["embedding"]),
                                         ("G_2block", lambda: SwapOnly(standin_generator(2)), generator_inputs,
                                          ["swapped"])):
        if budget.left() < 45:
            rows.append({"model": name, "status": "skipped: budget spent"})
            continue
        path = export_module(build(), inputs(1), outputs, tmp_dir / f"{name}.onnx")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CUDAExecutionProvider"])
        for batch, reps in ((1, 30), (VIDEO_BATCH, 10)):
            feeds = inputs(batch)
            for _ in range(3):
                session.run(None, feeds)
            samples = []
            for _ in range(reps):
                if budget.expired():
                    break
                t0 = time.perf_counter()
                session.run(None, feeds)
                samples.append((time.perf_counter() - t0) * 1e3)
            st = stats_ms(samples)
            rows.append({"model": name, "precision": "fp32", "batch": batch, "per_call": st,
                         "per_face_p50_ms": st["p50_ms"] / batch if samples else None,
                         "providers": session.get_providers()})
        del session
    return {"results": rows, "timing": "perf_counter around session.run (host feeds)"}


# ---------------------------------------------------------------------------------------------- report

def write_report(report: dict, out_dir: Path) -> None:
    from ghostrt.atomic import atomic_path

    with atomic_path(out_dir / "device_bench.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")


def scope_tag(row: dict) -> str:
    return {SCOPE_NET: "net", SCOPE_STAGE: "stage"}.get(row.get("scope"), "")


def write_chart(report: dict, out_dir: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib not importable"
    from ghostrt.atomic import atomic_path

    ref = report["sections"].get("reference", {}).get("results", [])
    bars = [(f"{r['model']} {r['precision']} b{r['batch']} {scope_tag(r)}", r["per_face_p50_ms"]) for r in ref
            if r.get("per_call", {}).get("n")]
    copies = report["sections"].get("copies", {}).get("results", [])
    bw = [(f"{c['buffer'].split('_')[0]} {k}", c[k]["GB_per_s_at_p50"]) for c in copies
          for k in ("pinned_h2d", "pageable_h2d", "pinned_d2h", "pageable_d2h") if c.get(k, {}).get("n")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, rows, title, unit in ((axes[0], bars, "reference per-face latency (p50)", "ms per face"),
                                  (axes[1], bw, "ghostrt plumbing: host<->device copies", "GB/s")):
        if rows:
            ax.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
            ax.invert_yaxis()
            if unit == "ms per face" and max(r[1] for r in rows) > 20 * min(r[1] for r in rows):
                ax.set_xscale("log")            # batch-1 and batch-40 per-face times differ by 10x or more
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel(unit)
    fig.suptitle(f"ghostrt device bench -- {report['machine'].get('gpu', 'no GPU (cpu-smoke)')}")
    fig.tight_layout()
    with atomic_path(out_dir / "device_bench.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return "written"


def summary_lines(report: dict) -> list[str]:
    lines = [f"machine: {report['machine'].get('gpu', 'no CUDA GPU')} ({report['mode']}), "
             f"elapsed {report['elapsed_s']:.0f}s of {report['budget_s']:.0f}s"]
    for name, section in report["sections"].items():
        lines.append(f"[{name}] {section.get('status')}" + (f": {section['reason']}" if section.get("reason") else ""))
        for row in section.get("results", []):
            if "per_face_p50_ms" in row and row.get("per_call", {}).get("n"):
                lines.append(f"  {row['model']:<9} {row.get('precision', ''):<5} b{row['batch']:<3} "
                             f"{scope_tag(row):<5} per face p50 {row['per_face_p50_ms']:.3f} ms  "
                             f"call p99 {row['per_call']['p99_ms']:.2f} ms")
            elif "buffer" in row:
                gbs = {k: row[k].get("GB_per_s_at_p50") for k in row if k.endswith(("h2d", "d2h"))}
                lines.append(f"  {row['buffer']}: " + ", ".join(f"{k} {v:.1f} GB/s" for k, v in gbs.items() if v))
    for key, check in report["sections"].get("reference", {}).items():
        if key.endswith("_fp16_vs_fp32"):
            lines.append(f"  {key}: rel L2 {check['rel_l2']}, finite {check['finite']}")
    for key, timing in report["sections"].get("graphs", {}).items():
        if key.endswith(("_eager", "_graph")) and timing.get("n"):
            lines.append(f"  {key}: {timing['per_call_ms_p50'] * 1e3:.1f} us per call (p50)")
    ov = report["sections"].get("overlap", {})
    if "copy_compute_overlap_percent" in ov:
        lines.append(f"  copy/compute overlap {ov['copy_compute_overlap_percent']:.0f}%, "
                     f"duplex overlap {ov['duplex_overlap_percent']:.0f}%")
    return lines


def run_section(report, name, label, fn, budget, min_left_s, out_dir, needs=None) -> None:
    """Run one section unless a precondition fails or too little budget is left; record status either way
    and rewrite the JSON so a run cut short still returns what it had."""
    section = {"label": label}
    if needs:
        section.update(status="skipped", reason=needs)
    elif budget.left() < min_left_s:
        section.update(status="skipped", reason=f"budget: {budget.left():.0f}s left, section needs {min_left_s}s")
    else:
        print(f"device_bench: [{name}] starting, {budget.left():.0f}s of budget left", flush=True)
        t0 = time.monotonic()
        try:
            section.update(fn())
            section["status"] = "partial (budget spent)" if budget.expired() else "ok"
        except Exception as err:               # one broken section must not cost the others
            section.update(status="error", reason=f"{type(err).__name__}: {err}".splitlines()[0][:300],
                           traceback=traceback.format_exc()[-2000:])
        section["seconds"] = round(time.monotonic() - t0, 2)
    report["sections"][name] = section
    report["elapsed_s"] = budget.elapsed()
    write_report(report, out_dir)
    print(f"device_bench: [{name}] {section['status']}" + (f": {section['reason']}" if "reason" in section else ""),
          flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for device_bench.json and .png")
    parser.add_argument("--budget-s", type=float, default=300.0, help="hard wall-clock budget for all sections")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes; CPU-only sections where no CUDA")
    args = parser.parse_args(argv)
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    shim = install_import_shim()
    import torch

    cuda = torch.cuda.is_available()
    smoke = args.cpu_smoke or not cuda
    report = {"schema": SCHEMA, "mode": "device" if not smoke else "cpu-smoke", "budget_s": budget.seconds,
              "elapsed_s": 0.0, "import_shim": shim, "machine": machine_info(torch), "sections": {}}
    gpu = report["machine"].get("gpu", "no GPU")
    no_cuda = None if cuda else f"no CUDA device ({report['machine']['ghostrt_probe_gpu']['how']})"
    write_report(report, args.out)

    run_section(report, "reference", (LABEL_REFERENCE.format(gpu=gpu) if cuda else LABEL_REFERENCE_CPU),
                lambda: section_reference(torch, budget, cuda, smoke), budget, 5, args.out)
    plumbing = LABEL_PLUMBING.format(gpu=gpu)
    run_section(report, "copies", plumbing, lambda: section_copies(torch, budget, smoke), budget, 10, args.out, no_cuda)
    run_section(report, "overlap", plumbing, lambda: section_overlap(torch, budget, smoke), budget, 10, args.out,
                no_cuda)
    run_section(report, "graphs", LABEL_GRAPH.format(gpu=gpu), lambda: section_graphs(torch, budget, smoke), budget,
                15, args.out, no_cuda)
    try:
        import onnxruntime
        providers = list(onnxruntime.get_available_providers())
    except Exception:                          # ImportError, or a broken provider library
        providers = None
    go, why = ort_cuda_decision(cuda, providers)
    with tempfile.TemporaryDirectory(prefix="ghostrt-ort-") as tmp:
        run_section(report, "ort_cuda", LABEL_ORT.format(gpu=gpu), lambda: section_ort(torch, budget, Path(tmp)),
                    budget, 60, args.out, None if go else why)

    report["machine"]["nvidia_smi_after"] = nvidia_smi_snapshot()
    report["loaded_from"] = {name: getattr(module, "__file__", None) for name, module in sorted(sys.modules.items())
                             if name == "ghostrt" or name.startswith("ghostrt.")}
    report["elapsed_s"] = budget.elapsed()
    try:
        report["chart"] = write_chart(report, args.out)
    except Exception as err:                   # the numbers matter more than the picture
        report["chart"] = f"error: {type(err).__name__}: {err}"
    report["summary"] = summary_lines(report)
    write_report(report, args.out)
    print("\n".join(report["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
