"""Section 2 of device_bench: ghostrt's own device plumbing, measured with cuda-python (cuda.bindings.runtime)
through runtime/trt_backend.py's helpers: pinned vs pageable copies, copy/compute overlap across streams, and what
CUDA-graph replay saves over eager launches.

Imported as a sibling of device_bench.py (the script's folder is on sys.path); torch arrives as an argument and
ghostrt through device_bench's import shim, so the top level needs only the stdlib and numpy.
"""

import ctypes
import time

import numpy as np
from timing import VIDEO_BATCH, Budget, stats_ms, time_calls

FRAME_1080P = (1080, 1920, 3)         # RGB uint8, the runtime's frame layout


def overlap_percent(alone_a: float, alone_b: float, together: float) -> float:
    """Share of the shorter job hidden under the longer one: 100 = fully concurrent, 0 = serialised."""
    shorter = min(alone_a, alone_b)
    if shorter <= 0:
        return 0.0
    return float(np.clip(100.0 * (alone_a + alone_b - together) / shorter, 0.0, 100.0))


def pinned_array(cudart, check, nbytes: int, dtype=np.uint8):
    """Page-locked host memory as a numpy view, the way TrtExecutor allocates its host buffers."""
    pointer = check(cudart, cudart.cudaHostAlloc(nbytes, cudart.cudaHostAllocDefault), "cudaHostAlloc")
    raw = (ctypes.c_byte * nbytes).from_address(int(pointer))
    return pointer, np.frombuffer(raw, dtype=dtype)


class Plumbing:
    """The cudart handles one section needs, created and released the way runtime/trt_backend.py does."""

    def __init__(self, cudart=None):
        from ghostrt.runtime.backends.trt_backend import _check, _cudart

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
