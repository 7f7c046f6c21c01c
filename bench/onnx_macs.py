"""Multiply-accumulates of an ONNX graph, counted per Conv/ConvTranspose/Gemm/MatMul after shape inference at
a fixed batch: the arithmetic half of the CPU floor (bench/cpu_floor.py)."""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ghostrt.errors import GhostError, file_error

# Ops whose MACs are counted, with the input index of their weight (B for the MatMul family).
COUNTED_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1,
               "ConvInteger": 1, "QLinearConv": 3, "MatMulInteger": 1, "QLinearMatMul": 3}
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
