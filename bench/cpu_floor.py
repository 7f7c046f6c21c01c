"""The per-face compute floor of a swap on this CPU: the nets' multiply-accumulates over the CPU's measured
multiply-add throughput.

`ghostrt bench --backend openvino` prints this beside the measured times so a reader can see how far a backend
is from what the arithmetic alone costs. Both halves are measured, not looked up: MACs are counted from the ONNX
graphs ghostrt runs (after shape inference at a fixed batch), and throughput is timed through OpenVINO itself on
a 3×3 convolution (or a MatMul) shaped like the nets' layers, at the precision OpenVINO really ran, which is read
back from the compiled model rather than assumed from the hint.

The floor ignores memory traffic and every op that is not a Conv/ConvTranspose/Gemm/MatMul (their count is
reported so the omission is visible); it is a lower bound, not a prediction.
"""

import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

# MAC counting has its own module; its names stay reachable here for the floor's callers
from ghostrt.bench.onnx_macs import (COUNTED_OPS, MacCount, count_macs, net_mac_count,  # noqa: F401
                                     net_macs, node_macs)
from ghostrt.errors import GhostError, file_error
# The executor's own names for the precisions, their compile hints (int8 comes from FakeQuantize, not from the
# hint) and the CPU capability each needs: the probe compiles exactly as a blob is compiled.
from ghostrt.runtime.backends.openvino_backend import CAPABILITY, HINTS, PRECISIONS, probe_cpu

RAN_AS = {"fp32": ("f32",), "bf16": ("bf16",), "int8": ("u8", "i8")}  # runtimePrecision that honours the ask
# Runs of each net for one swapped face; the detector runs once per frame, not per face.
SWAP_RUNS = {"detector": 1, "arcface": 1, "generator": 1, "landmarks": 2}
PER_FRAME_NETS = ("detector",)
# Initializers above this many elements become shape-only graph inputs before shape inference: shape
# inference needs their dims, never their values (small ones may be Reshape targets and are kept).


# ------------------------------------------------------------------------------------------ CPU throughput

def cpu_capabilities() -> list[str]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of the CPU plugin (e.g. FP32, INT8, BF16)."""
    return list(probe_cpu().capabilities)


def _probe_model(kind: str, precision: str, size: int, spatial: int = 32):
    """A tiny OpenVINO model shaped like the nets' work: a 3×3 conv (size channels, 32×32, pad 1) or a
    size×size×size MatMul; int8 puts FakeQuantize on both operands (u8 data, symmetric 255-level weights) so
    the CPU plugin runs a u8/i8 kernel. Returns (model, MACs per inference, the op's friendly name, input shape)."""
    import openvino as ov
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    if kind == "conv":
        x_shape, w_shape = [1, size, spatial, spatial], [size, size, 3, 3]
        macs = size * spatial * spatial * size * 9
    elif kind == "matmul":
        x_shape, w_shape = [size, size], [size, size]
        macs = size ** 3
    else:
        raise GhostError(f"probe kind must be conv or matmul, got {kind!r}")
    x = ops.parameter(x_shape, ov.Type.f32, name="x")
    w = ops.constant(rng.standard_normal(w_shape).astype(np.float32) * 0.05)
    a, b = x, w
    if precision == "int8":
        def fake_quantize(node, low, high, levels):
            lo, hi = ops.constant(np.float32(low)), ops.constant(np.float32(high))
            return ops.fake_quantize(node, lo, hi, lo, hi, levels)
        a, b = fake_quantize(x, 0.0, 4.0, 256), fake_quantize(w, -0.2, 0.2, 255)  # u8 data, symmetric i8 weights
    if kind == "conv":
        op = ops.convolution(a, b, [1, 1], [1, 1], [1, 1], [1, 1])
    else:
        op = ops.matmul(a, b, False, False)
    op.set_friendly_name("probe")
    return ov.Model([op], [x], "ghostrt_floor_probe"), macs, "probe", x_shape


def _runtime_precision(compiled, friendly_name: str) -> tuple[str, str]:
    """(runtimePrecision, primitiveType) OpenVINO really executed the probe op with, read from the compiled
    model's rt_info (the plugin may rename the op, e.g. 'probe_original', but keeps it in originalLayersNames)."""
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "originalLayersNames" not in info or "runtimePrecision" not in info:
            continue
        if info["layerType"].astype(str) not in ("Convolution", "FullyConnected", "MatMul"):
            continue
        if friendly_name in info["originalLayersNames"].astype(str).split(","):
            kernel = info["primitiveType"].astype(str) if "primitiveType" in info else "unknown"
            return info["runtimePrecision"].astype(str), kernel
    return "unknown", "unknown"


def _time_infer(run, macs: int, seconds: float, windows: int = 5) -> dict:
    """GMAC/s of `run` over `seconds`, split into windows: the median window is the sustained figure (a
    neighbour stealing a core for a moment moves it little); the best window and the spread are kept so a
    noisy, shared CPU shows in the report."""
    for _ in range(3):  # warm-up: first calls allocate and pick kernels
        run()
    rates, iterations, total = [], 0, 0.0
    for _ in range(windows):
        count, start = 0, time.perf_counter()
        while True:
            run()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / windows:
                break
        rates.append(macs * count / elapsed / 1e9)
        iterations, total = iterations + count, total + elapsed
    return {"gmacs": float(np.median(rates)), "gmacs_best": max(rates), "gmacs_worst": min(rates),
            "iterations": iterations, "seconds": total}


def _numpy_gflops(seconds: float, size: int) -> dict:
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    timing = _time_infer(lambda: a @ a, size ** 3, seconds)
    return {"precision": "fp32", "supported": True, **timing, "runtime_precision": "f32", "kernel": "numpy",
            "ran_as_asked": True,
            "engine": f"numpy {np.__version__} float32 matmul (OpenVINO is not installed)", "kind": "matmul",
            "threads": None}


def _unsupported(precision: str, reason: str, **extra) -> dict:
    return {"precision": precision, "supported": False, "gmacs": None, "reason": reason, **extra}


def measure_matmul_gflops(precision: str = "fp32", threads: int | None = None, seconds: float = 2.0,
                          kind: str = "conv", size: int = 256, spatial: int = 32) -> dict:
    """Sustained multiply-add throughput (GMAC/s) of this CPU through OpenVINO at `precision`.

    The result says what really ran: `runtime_precision` is read from the compiled model, and a precision
    the CPU lacks (bf16 without AVX-512-BF16/AMX) is reported as unsupported instead of timing a silent f32
    fallback under a bf16 label. Without OpenVINO the fp32 figure comes from a numpy matmul, and says so.
    """
    if precision not in PRECISIONS:
        raise GhostError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        import openvino as ov
    except ImportError:
        if precision != "fp32":
            return _unsupported(precision, "OpenVINO is not installed: only the numpy fp32 fallback is measured")
        return _numpy_gflops(seconds, 1024)
    capabilities = cpu_capabilities()
    if CAPABILITY[precision] not in capabilities:
        return _unsupported(precision, f"unsupported on this CPU (OpenVINO CPU capabilities: "
                                       f"{', '.join(capabilities)})", capabilities=capabilities)
    model, macs, name, x_shape = _probe_model(kind, precision, size, spatial)
    config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    core = ov.Core()
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    feed = {0: np.abs(np.random.default_rng(1).standard_normal(x_shape)).astype(np.float32)}
    timing = _time_infer(lambda: request.infer(feed), macs, seconds)
    runtime_precision, kernel = _runtime_precision(compiled, name)
    return {"precision": precision, "supported": True, **timing, "runtime_precision": runtime_precision,
            "ran_as_asked": runtime_precision in RAN_AS[precision],
            "kernel": kernel, "engine": f"OpenVINO {ov.__version__.split('-')[0]} CPU", "kind": kind,
            "size": size, "spatial": spatial,
            "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")), "capabilities": capabilities}


# ----------------------------------------------------------------------------------------------- the floor

def per_face_floor(mac_per_face: Mapping[str, int], gmacs: float, faces_per_frame: float = 1.0) -> dict:
    """Floor in ms per swapped face = MACs / throughput, per net and in total. `mac_per_face` holds each net's
    MACs for the runs one face needs (SWAP_RUNS); nets in PER_FRAME_NETS run once per frame and are shared by
    `faces_per_frame` faces."""
    if not gmacs or gmacs <= 0:
        raise GhostError(f"throughput must be > 0 GMAC/s, got {gmacs}")
    if faces_per_frame <= 0:
        raise GhostError(f"faces_per_frame must be > 0, got {faces_per_frame}")
    per_net = {}
    for net, macs in mac_per_face.items():
        share = macs / faces_per_frame if net in PER_FRAME_NETS else macs
        per_net[net] = {"macs": int(macs), "ms": share / (gmacs * 1e9) * 1e3}
    return {"gmacs": gmacs, "faces_per_frame": faces_per_frame, "per_net": per_net,
            "ms_per_face": sum(entry["ms"] for entry in per_net.values())}


# 3×3 convs shaped like the nets' heavy layers (channels, spatial). Kernels differ by shape by up to 1.6×
# here (measured: 256×32² 48, 512×16² 70 GMAC/s fp32), and a floor must not be beaten: the fastest one counts.
CONV_PROBES = ((256, 32), (512, 16), (128, 64))


def fastest_probe(precision: str, threads: int | None, seconds: float, kind: str = "conv") -> dict:
    """measure_matmul_gflops over CONV_PROBES (one shape for matmul); the result with the best window, with
    every probe's figures kept under "probes"."""
    shapes = CONV_PROBES if kind == "conv" else ((256, 32),)
    results = [measure_matmul_gflops(precision, threads=threads, seconds=seconds / len(shapes), kind=kind,
                                     size=size, spatial=spatial) for size, spatial in shapes]
    supported = [r for r in results if r["supported"]]
    if not supported:
        return results[0]
    best = max(supported, key=lambda r: r.get("gmacs_best", r["gmacs"]))
    return {**best, "probe": [best.get("size"), best.get("spatial")],
            "probes": [{"shape": list(shape), "gmacs": r.get("gmacs"), "gmacs_best": r.get("gmacs_best")}
                       for shape, r in zip(shapes, results)]}


def floor_report(onnx_dir, precisions: Iterable[str] = ("fp32", "bf16", "int8"), detector: str = "detector",
                 seconds: float = 2.0, threads: int | None = None, kind: str = "conv") -> dict:
    """What bench prints beside its timings: MACs of every fp32 net in `onnx_dir` (batch 1), this CPU's
    throughput per precision, and the per-face floor of a swap (`detector` is the ONNX stem that detects:
    'detector' for SCRFD, 'retinaface' for the fallback)."""
    onnx_dir = Path(onnx_dir)
    names = sorted(p.name[:-len(".onnx")] for p in onnx_dir.glob("*.onnx") if p.name.count(".") == 1)
    nets = {name: net_mac_count(onnx_dir / f"{name}.onnx") for name in names}
    roles = {"detector": detector, "arcface": "arcface", "generator": "generator", "landmarks": "landmarks"}
    missing = [stem for stem in roles.values() if stem not in nets]
    if missing:
        raise file_error(onnx_dir, f"missing {', '.join(f'{m}.onnx' for m in missing)} (run `ghostrt export`)")
    swap_macs = {role: nets[stem].total * SWAP_RUNS[role] for role, stem in roles.items()}
    throughput, floors = {}, {}
    for precision in precisions:
        throughput[precision] = fastest_probe(precision, threads, seconds, kind)
        if throughput[precision]["supported"] and throughput[precision]["ran_as_asked"]:
            # A floor is what the hardware could do at its best: the best window, not the median.
            best = throughput[precision].get("gmacs_best", throughput[precision]["gmacs"])
            floors[precision] = per_face_floor(swap_macs, best)
    return {"onnx_dir": str(onnx_dir), "detector": detector, "swap_runs": dict(SWAP_RUNS),
            "nets": {name: {"macs": c.total, "by_op": c.by_op, "ignored_ops": c.ignored} for name, c in nets.items()},
            "throughput": throughput, "floor": floors}


def format_floor(report: Mapping) -> str:
    """The floor report as the lines bench prints."""
    lines = ["MACs per forward pass (batch 1):"]
    for name, net in report["nets"].items():
        ignored = sum(net["ignored_ops"].values())
        lines.append(f"  {name:<12} {net['macs'] / 1e9:8.3f} GMAC   ({ignored} other ops not counted)")
    lines.append("CPU multiply-add throughput:")
    for precision, result in report["throughput"].items():
        if result["supported"]:
            spread = (f" (windows {result['gmacs_worst']:.1f}-{result['gmacs_best']:.1f})"
                      if "gmacs_best" in result else "")
            lines.append(f"  {precision:<5} {result['gmacs']:8.1f} GMAC/s{spread}  ran as "
                         f"{result['runtime_precision']} ({result.get('kernel', '?')}), {result['engine']}, "
                         f"{result['kind']}, {result['threads']} threads")
            if not result["ran_as_asked"]:
                lines.append(f"        not a {precision} figure: OpenVINO ran it as {result['runtime_precision']}")
        else:
            lines.append(f"  {precision:<5} {result['reason']}")
    runs = ", ".join(f"{role} ×{n}" + (" per frame" if role in PER_FRAME_NETS else "")
                     for role, n in report["swap_runs"].items())
    lines.append(f"Per-face floor (1 face per frame; {runs}; detector = {report['detector']}):")
    for precision, floor in report["floor"].items():
        parts = ", ".join(f"{net} {entry['ms']:.1f}" for net, entry in floor["per_net"].items())
        lines.append(f"  {precision:<5} {floor['ms_per_face']:8.1f} ms/face  ({parts})")
    return "\n".join(lines)
