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

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ghostrt.errors import GhostError, file_error
# The executor's own names for the precisions, their compile hints (int8 comes from FakeQuantize, not from the
# hint) and the CPU capability each needs: the probe compiles exactly as a blob is compiled.
from ghostrt.runtime.backends.openvino_backend import CAPABILITY, HINTS, PRECISIONS, probe_cpu

# Ops whose MACs are counted, with the input index of their weight (B for the MatMul family).
COUNTED_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1,
               "ConvInteger": 1, "QLinearConv": 3, "MatMulInteger": 1, "QLinearMatMul": 3}
RAN_AS = {"fp32": ("f32",), "bf16": ("bf16",), "int8": ("u8", "i8")}  # runtimePrecision that honours the ask
# Runs of each net for one swapped face; the detector runs once per frame, not per face.
SWAP_RUNS = {"detector": 1, "arcface": 1, "generator": 1, "landmarks": 2}
PER_FRAME_NETS = ("detector",)
# Initializers above this many elements become shape-only graph inputs before shape inference: shape
# inference needs their dims, never their values (small ones may be Reshape targets and are kept).
_KEEP_INITIALIZER_ELEMENTS = 64
_FOLDABLE_OPS = ("Shape", "Constant", "Gather", "Slice", "Concat", "Cast", "Unsqueeze", "Squeeze", "Identity")


# ----------------------------------------------------------------------------------------------- MAC counting

@dataclass
class MacCount:
    """MACs of one forward pass, split by op type; `ignored` counts nodes of other op types."""
    total: int = 0
    by_op: dict = field(default_factory=dict)
    nodes: dict = field(default_factory=dict)
    ignored: dict = field(default_factory=dict)
    unresolved: list = field(default_factory=list)


def _prod(values: Iterable[int]) -> int:
    return int(math.prod(int(v) for v in values))


def _fix_input_dims(model, batch: int) -> None:
    """Set the dynamic batch (first) dim of every real graph input to `batch`; any other dynamic dim is an
    error, because a MAC count at an unknown spatial size would be a guess. Static dims are kept (a fixed
    batch-1 export stays batch 1)."""
    initializers = {t.name for t in model.graph.initializer}
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            if axis == 0:
                dim.Clear()
                dim.dim_value = batch
                continue
            raise GhostError(f"input {graph_input.name!r} has dynamic dim {axis} ({dim.dim_param or '?'}): "
                             "MACs need a fixed input size")
    # Stale intermediate / output shapes may say 'N'; shape inference recomputes them from the fixed inputs.
    del model.graph.value_info[:]
    for graph_output in model.graph.output:
        graph_output.type.tensor_type.ClearField("shape")


def _weights_as_shape_only_inputs(model) -> None:
    """Move large initializers to shape-only graph inputs: shape inference then copies kilobytes, not the
    generator's 0.7 GB of weights."""
    from onnx import helper

    kept = []
    for tensor in model.graph.initializer:
        if _prod(tensor.dims) <= _KEEP_INITIALIZER_ELEMENTS:
            kept.append(tensor)
            continue
        model.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _known_shape(shapes: Mapping[str, list], name: str):
    shape = shapes.get(name)
    if shape is None or any(d is None for d in shape):
        return None
    return shape


def node_macs(node, shapes: Mapping[str, list]) -> int | None:
    """MACs of one counted node from its tensor shapes; None when a shape it needs is unknown.

    Conv: every output element costs (Cin/group)·k MACs = prod(W.shape[1:]).
    ConvTranspose: every input element is scattered into (Cout/group)·k outputs = prod(W.shape[1:]).
    Gemm / MatMul: every output element costs K MACs (K = the reduced dim of A, after transA).
    """
    weight = node.input[COUNTED_OPS[node.op_type]]
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        w, y = _known_shape(shapes, weight), _known_shape(shapes, node.output[0])
        return None if w is None or y is None else _prod(y) * _prod(w[1:])
    if node.op_type == "ConvTranspose":
        w, x = _known_shape(shapes, weight), _known_shape(shapes, node.input[0])
        return None if w is None or x is None else _prod(x) * _prod(w[1:])
    a, y = _known_shape(shapes, node.input[0]), _known_shape(shapes, node.output[0])
    if a is None or y is None:
        return None
    if node.op_type == "Gemm":
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return _prod(y) * int(a[0] if trans_a else a[1])
    return _prod(y) * int(a[-1])  # MatMul family: batched, broadcast; a 1-D A is its own K


def _shape_table(model) -> dict[str, list]:
    graph = model.graph
    table = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            table[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    for tensor in graph.initializer:
        table[tensor.name] = list(tensor.dims)
    return table


def _single_node_model(node, model):
    """One node as a model of the parent's opset, so the reference evaluator runs the op version the graph
    was written for (Unsqueeze axes: attribute before opset 13, input after)."""
    from onnx import helper

    graph = helper.make_graph([node], "fold", [helper.make_empty_tensor_value_info(n) for n in node.input if n],
                              [helper.make_empty_tensor_value_info(n) for n in node.output])
    single = helper.make_model(graph, opset_imports=list(model.opset_import))
    single.ir_version = model.ir_version
    return single


def _fold_shape_subgraphs(model, shapes: Mapping[str, list]) -> bool:
    """Replace Shape-derived index arithmetic (Shape → Gather/Slice/Concat/Cast → Resize sizes, Reshape
    targets) by initializers, where ONNX shape inference does not carry the values itself (Resize `sizes`
    made from Shape). Only small tensors are evaluated; returns whether anything was folded."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    folded_nodes = []
    for node in model.graph.node:
        if node.op_type not in _FOLDABLE_OPS:
            continue
        if node.op_type == "Shape":
            shape = _known_shape(shapes, node.input[0])
            if shape is None:
                continue
            attrs = {a.name: a.i for a in node.attribute}
            outputs = [np.array(shape[attrs.get("start", 0):attrs.get("end", len(shape))], np.int64)]
        elif all(name in values for name in node.input if name):
            feeds = {name: values[name] for name in node.input if name}
            outputs = ReferenceEvaluator(_single_node_model(node, model)).run(None, feeds)
        else:
            continue
        if any(np.asarray(out).size > _KEEP_INITIALIZER_ELEMENTS for out in outputs):
            continue
        values.update({name: np.asarray(out) for name, out in zip(node.output, outputs)})
        folded_nodes.append(node)
    if not folded_nodes:
        return False
    folded_outputs = {name for node in folded_nodes for name in node.output}
    folded_ids = {id(node) for node in folded_nodes}
    remaining = [node for node in model.graph.node if id(node) not in folded_ids]
    needed = {name for node in remaining for name in node.input} | {o.name for o in model.graph.output}
    for name in sorted(folded_outputs & needed):
        model.graph.initializer.append(numpy_helper.from_array(values[name], name))
    del model.graph.node[:]
    model.graph.node.extend(remaining)
    return True


def _infer_shapes(model):
    """onnx shape inference, re-run after folding Shape subgraphs until no more fold (a few rounds at most)."""
    import onnx

    for _ in range(8):
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        shapes = _shape_table(inferred)
        if not _fold_shape_subgraphs(model, shapes):
            return inferred, shapes
        del model.graph.value_info[:]
    return inferred, shapes


def count_macs(model, batch: int = 1) -> MacCount:
    """MACs of one forward pass of an in-memory ONNX ModelProto (modified in place) at `batch`."""
    if batch < 1:
        raise GhostError(f"batch must be >= 1, got {batch}")
    original_ops = [node.op_type for node in model.graph.node]  # before folding removes Shape arithmetic
    _fix_input_dims(model, batch)
    _weights_as_shape_only_inputs(model)
    inferred, shapes = _infer_shapes(model)
    count = MacCount()
    for node in inferred.graph.node:
        if node.op_type not in COUNTED_OPS:
            continue
        macs = node_macs(node, shapes)
        if macs is None:
            count.unresolved.append(node.name or f"{node.op_type}:{node.output[0]}")
            continue
        count.total += macs
        count.by_op[node.op_type] = count.by_op.get(node.op_type, 0) + macs
        count.nodes[node.op_type] = count.nodes.get(node.op_type, 0) + 1
    for op_type in original_ops:
        if op_type not in COUNTED_OPS:
            count.ignored[op_type] = count.ignored.get(op_type, 0) + 1
    return count


def net_mac_count(onnx_path, batch: int = 1) -> MacCount:
    """The full MacCount of an ONNX file; a counted op whose shapes stay unknown is an error (the total would
    silently be too low)."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise file_error(path, "ONNX file does not exist (run `ghostrt export`)")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf raises its own DecodeError types
        raise file_error(path, f"not a readable ONNX file ({type(err).__name__})") from err
    count = count_macs(model, batch)
    if count.unresolved:
        raise file_error(path, f"shape inference left {len(count.unresolved)} counted op(s) without shapes "
                               f"(first: {count.unresolved[0]}); cannot count MACs")
    return count


def net_macs(onnx_path, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass of an ONNX graph at `batch`."""
    return net_mac_count(onnx_path, batch).total


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
