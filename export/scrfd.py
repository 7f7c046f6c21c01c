"""SCRFD-10G-kps: a stand-in net exported the way InsightFace exported `scrfd_10g_bnkps.onnx`, and the graph
edit that gives that file a batch axis.

Why the edit: InsightFace's export (scrfd_head.py, `forward_single` under `torch.onnx.is_in_onnx_export`, before
PR #1593) flattens each head with `permute(2, 3, 0, 1).reshape(-1, C)`, so the official file has no batch axis:
9 outputs read by position (scores ×3 strides, bbox distances ×3, keypoints ×3), each (A, C) with
A = (H/s)·(W/s)·2. Merely freezing N > 1 on the input would interleave images (the batch axis sits in the
middle of that permute), so every head's Transpose becomes (0, 2, 3, 1) and its Reshape target becomes
(N, -1, C) — written as [0, -1, C], where 0 copies N — and the outputs get names.

The stand-in (no weights ship with ghostrt) keeps what the edit and the decoder rely on — input `input.1`
[1, 3, ?, ?] (the official file has dynamic H/W: InsightFace's model_zoo then needs `det_size`), opset 11,
per-stride heads on a shared tower (cls_reg_share=True, strides_share=False), a learnable Scale on the bbox
branch, 2 anchors per location, sigmoid on scores, unnamed numeric outputs in the official order — and
simplifies the rest: a 5-conv backbone instead of ResNetV1e, a small PAFPN, 2 stacked head convs instead of 3,
narrow channels. It is seeded and untrained.
"""

from pathlib import Path

import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error

STRIDES = (8, 16, 32)
ANCHORS = 2
CHANNELS = (1, 4, 10)                      # score, bbox distances, keypoints per anchor
GROUPS = ("score", "bbox", "kps")
OUTPUT_NAMES = tuple(f"{g}_{s}" for g in GROUPS for s in STRIDES)
INPUT_NAME = "input.1"
STANDIN_FILE = "scrfd_10g_bnkps.onnx"
SINGLE_IMAGE_PERM = [2, 3, 0, 1]
BATCHED_PERM = [0, 2, 3, 1]


# ----------------------------------------------------------------------------------------------- stand-in net

def _build_standin(seed: int):
    """Build the seeded stand-in; torch is imported here so the graph edit below works without it."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    def conv_bn_relu(cin, cout, stride=1):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True))

    class Scale(nn.Module):
        """mmcv's Scale: one learnable scalar on the bbox branch (scale_mode=2 in scrfd_10g_bnkps)."""

        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0))

        def forward(self, x):
            return x * self.scale

    class StrideHead(nn.Module):
        def __init__(self, cin, feat):
            super().__init__()
            self.tower = nn.Sequential(conv_bn_relu(cin, feat), conv_bn_relu(feat, feat))
            self.cls = nn.Conv2d(feat, 1 * ANCHORS, 3, padding=1)
            self.reg = nn.Conv2d(feat, 4 * ANCHORS, 3, padding=1)
            self.kps = nn.Conv2d(feat, 10 * ANCHORS, 3, padding=1)
            self.scale = Scale()

        def forward(self, x):
            f = self.tower(x)
            # The export-time flattening of the official head: no batch axis survives.
            score = self.cls(f).permute(2, 3, 0, 1).reshape(-1, 1).sigmoid()
            bbox = self.scale(self.reg(f)).permute(2, 3, 0, 1).reshape(-1, 4)
            kps = self.kps(f).permute(2, 3, 0, 1).reshape(-1, 10)
            return score, bbox, kps

    class StandinScrfd(nn.Module):
        def __init__(self, width=24):
            super().__init__()
            self.stem = nn.Sequential(conv_bn_relu(3, 16, 2), conv_bn_relu(16, 24, 2))      # stride 4
            self.c3 = conv_bn_relu(24, 32, 2)                                               # stride 8
            self.c4 = conv_bn_relu(32, 48, 2)                                               # stride 16
            self.c5 = conv_bn_relu(48, 64, 2)                                               # stride 32
            self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in (32, 48, 64))
            self.down = nn.ModuleList(conv_bn_relu(width, width, 2) for _ in range(2))
            self.heads = nn.ModuleList(StrideHead(width, 32) for _ in STRIDES)

        def forward(self, x):
            c3 = self.c3(self.stem(x))
            c4 = self.c4(c3)
            c5 = self.c5(c4)
            p5 = self.lateral[2](c5)
            p4 = self.lateral[1](c4) + F.interpolate(p5, size=c4.shape[2:], mode="nearest")
            p3 = self.lateral[0](c3) + F.interpolate(p4, size=c3.shape[2:], mode="nearest")
            n3 = p3
            n4 = p4 + self.down[0](n3)
            n5 = p5 + self.down[1](n4)
            per_stride = [head(f) for head, f in zip(self.heads, (n3, n4, n5))]
            return tuple(out[g] for g in range(3) for out in per_stride)

    torch.manual_seed(seed)
    net = StandinScrfd()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):      # non-trivial BN statistics so folding is exercised
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if isinstance(m, Scale):
                m.scale.fill_(float(0.8 + 0.4 * torch.rand(1, generator=gen)))
    return net.eval()


def write_standin_scrfd(out_dir, seed: int = 0) -> Path:
    """Write a seeded, untrained `scrfd_10g_bnkps.onnx` with the official file's I/O pattern (reproducible)."""
    import warnings

    import torch

    out = Path(out_dir) / STANDIN_FILE
    net = _build_standin(seed)
    example = torch.zeros(1, 3, 640, 640)
    with atomic_path(out) as tmp, warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(tmp), input_names=[INPUT_NAME],
                          dynamic_axes={INPUT_NAME: {2: "?", 3: "?"}}, opset_version=11,
                          dynamo=False, do_constant_folding=True, keep_initializers_as_inputs=False)
    return out


# ------------------------------------------------------------------------------------------------ batch axis

def _load_graph(src: Path):
    import onnx
    import onnx_graphsurgeon as gs

    if not src.is_file():
        raise file_error(src, "no such file")
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a file that is not ONNX
        raise file_error(src, f"not a readable ONNX file ({type(exc).__name__})") from None
    return gs.import_onnx(model)


def _head_nodes(src: Path, graph, index: int):
    """Return (transpose, reshape, last) for output `index`: the official head ends in
    Transpose(2,3,0,1) -> Reshape(-1, C) [-> Sigmoid for scores]."""
    out = graph.outputs[index]
    group = GROUPS[index // 3]
    where = f"output {index} ({out.name}, expected {group} for stride {STRIDES[index % 3]})"
    if len(out.inputs) != 1:
        raise file_error(src, f"not an SCRFD detector: {where} has no producer")
    node = out.inputs[0]
    last = node
    if group == "score":
        if node.op != "Sigmoid":
            raise file_error(src, f"not an SCRFD detector: {where} does not end in Sigmoid (got {node.op})")
        node = node.inputs[0].inputs[0] if node.inputs[0].inputs else None
    if node is None or node.op != "Reshape":
        raise file_error(src, f"not an SCRFD detector: {where} is not flattened by a Reshape")
    reshape = node
    transpose = reshape.inputs[0].inputs[0] if reshape.inputs[0].inputs else None
    if transpose is None or transpose.op != "Transpose":
        raise file_error(src, f"not an SCRFD detector: {where}: Reshape does not follow a Transpose")
    perm = list(transpose.attrs.get("perm", []))
    if perm != SINGLE_IMAGE_PERM:
        raise file_error(src, f"not a single-image SCRFD export: {where} has Transpose perm {perm}, "
                              f"expected {SINGLE_IMAGE_PERM}")
    return transpose, reshape, last


def add_batch_axis(src, dst, size: int = 640) -> Path:
    """Rewrite the official single-image SCRFD graph into one with input [N, 3, size, size] and named outputs
    [N, (size/s)²·2, C]. The 9 head tails are rewritten; whatever computed the old Reshape targets (an
    initializer, a Constant node or a Shape/Gather/Concat chain) is dropped by cleanup. Assumption: apart from
    the heads, only `sizes`-driven Resize nodes in the neck can tie the graph to N = 1 (see
    _measure_resize_scales); export_detector's batch-3-vs-stacked parity is the check that this held."""
    import onnx
    import onnx_graphsurgeon as gs
    import onnxruntime as ort

    src, dst = Path(src), Path(dst)
    if size % 32:
        raise GhostError(f"{dst}: detector input size {size} is not a multiple of 32")
    graph = _load_graph(src)
    if len(graph.inputs) != 1 or len(graph.outputs) != 9:
        raise file_error(src, f"not an SCRFD detector with keypoints: {len(graph.inputs)} inputs and "
                              f"{len(graph.outputs)} outputs (expected 1 input, 9 outputs)")
    image = graph.inputs[0]
    if image.shape is not None and len(image.shape) != 4:
        raise file_error(src, f"not an SCRFD detector: input {image.name} has rank {len(image.shape)}, expected 4")
    fixed_hw = [d for d in (image.shape or [None] * 4)[2:] if isinstance(d, int) and d > 0]
    if fixed_hw and fixed_hw != [size, size]:
        raise file_error(src, f"input {image.name} is fixed at {image.shape}; cannot re-batch it at {size}x{size}")
    heads = [_head_nodes(src, graph, i) for i in range(9)]
    resize_scales = _measure_resize_scales(src, size)

    for index, (transpose, reshape, last) in enumerate(heads):
        group, stride = GROUPS[index // 3], STRIDES[index % 3]
        channels = CHANNELS[index // 3]
        transpose.attrs["perm"] = BATCHED_PERM
        reshape.inputs[1] = gs.Constant(f"ghostrt_{group}_{stride}_shape",
                                        np.array([0, -1, channels], dtype=np.int64))
        tail = last.outputs[0]
        tail.name = OUTPUT_NAMES[index]
        tail.dtype = np.float32
        tail.shape = ["N", (size // stride) ** 2 * ANCHORS, channels]

    for node in graph.nodes:
        key = node.outputs[0].name if node.op == "Resize" else None
        if key in resize_scales:
            node.inputs = [node.inputs[0], node.inputs[1], gs.Constant(f"{key}_ghostrt_scales", resize_scales[key])]
    image.name = INPUT_NAME
    image.shape = ["N", 3, size, size]
    image.dtype = np.float32
    fixed = {id(t) for t in [*graph.inputs, *graph.outputs]}
    for tensor in graph.tensors().values():      # stale intermediate shapes from the H/W-dynamic export
        if isinstance(tensor, gs.Variable) and id(tensor) not in fixed:
            tensor.shape = None
    graph.cleanup().toposort()
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(gs.export_onnx(graph)))
    ort.set_default_logger_severity(3)          # folding runs on ONNX Runtime; its optimiser chatter is noise
    graph.fold_constants(error_ok=True).cleanup().toposort()

    model = onnx.shape_inference.infer_shapes(gs.export_onnx(graph))
    _check_output_shapes(src, model, size)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return dst


def _measure_resize_scales(src: Path, size: int) -> dict[str, np.ndarray]:
    """Scales for every Resize driven by `sizes` (keyed by its output tensor). Those sizes come from Shape chains or, after a simplifier ran
    at batch 1, from constants that bake in N = 1 (a batch of 3 would then be resampled across images).
    With H/W frozen the spatial ratios are fixed, so one batch-1 run measures them and `scales` replaces
    `sizes`, leaving N free."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(src))
    probes = {}
    for node in model.graph.node:
        if node.op_type == "Resize" and len(node.input) > 3 and node.input[3]:
            probes[node.output[0]] = (node.input[0], node.output[0])     # node names may be empty
    if not probes:
        return {}
    known = {o.name for o in model.graph.output}
    for name in sorted({t for pair in probes.values() for t in pair} - known):
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        image = sess.get_inputs()[0].name
        names = [o.name for o in sess.get_outputs()]
        values = dict(zip(names, sess.run(None, {image: np.zeros((1, 3, size, size), np.float32)})))
    except Exception as exc:
        raise file_error(src, f"cannot run it at 1x3x{size}x{size} ({type(exc).__name__})") from None
    scales = {}
    for key, (x, y) in probes.items():
        before, after = values[x].shape, values[y].shape
        if len(before) != 4 or before[:2] != after[:2]:
            raise file_error(src, f"Resize to {y} maps {before} to {after}: not the SCRFD neck")
        scales[key] = np.array([1.0, 1.0, after[2] / before[2], after[3] / before[3]], np.float32)
    return scales


def _check_output_shapes(src: Path, model, size: int) -> None:
    """Shape inference must agree with the declared shapes, else the heads were not where we assumed."""
    for index, out in enumerate(model.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in out.type.tensor_type.shape.dim]
        want = ["N", (size // STRIDES[index % 3]) ** 2 * ANCHORS, CHANNELS[index // 3]]
        if dims != want:
            raise file_error(src, f"output {out.name} would be {dims}, expected {want}: not the SCRFD pattern")


# -------------------------------------------------------------------------------------------- export + parity

def export_detector(weights, out, size: int = 640):
    """Write the batched detector and prove it: batch 1 and 3 against the original file run image by image."""
    from ghostrt.export.parity import check_parity, ort_session, seeded

    weights, out = Path(weights), Path(out)
    add_batch_axis(weights, out, size)
    try:
        original = ort_session(weights)
    except Exception as exc:
        raise file_error(weights, f"ONNX Runtime cannot load it ({type(exc).__name__})") from None
    original_input = original.get_inputs()[0].name

    def reference(inputs):
        images = inputs[INPUT_NAME]
        singles = [original.run(None, {original_input: images[i:i + 1]}) for i in range(images.shape[0])]
        return [np.stack([one[j] for one in singles], axis=0) for j in range(9)]

    def make_inputs(batch):
        low, high = -127.5 / 128.0, 127.5 / 128.0   # the range (x - 127.5) / 128 can reach for uint8 x
        return {INPUT_NAME: seeded((batch, 3, size, size), seed=batch, low=low, high=high)}

    return check_parity("scrfd", out, reference, make_inputs, batches=(1, 3))
