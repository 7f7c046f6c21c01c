"""Read an MXNet symbol graph (`*-symbol.json`) and infer its parameter shapes, without MXNet (or torch:
mxnet_net turns the graph into a torch module).

The JSON lists nodes in topological order; `null` nodes are inputs or parameters. Parameter shapes are not
stored in the graph, so they are inferred from the data shape the way MXNet's shape inference does, and
checked against the `.params` file name by name (`arg:` for learned weights, `aux:` for BatchNorm's moving
statistics). Semantics follow MXNet's operator definitions, including its defaults (BatchNorm: eps 1e-3,
fix_gamma true; Pooling: valid convention, pads counted in averages).

Attributes live under `attrs` (MXNet ≥ 1.0), `attr` (0.9) or `param` (older) depending on the writer.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ghostrt.errors import GhostError, file_error

# BatchNorm inputs 3 and 4 (moving mean, moving var) are MXNet "auxiliary states", saved with `aux:`.
BATCHNORM_AUX_INPUTS = (3, 4)


@dataclass
class Node:
    index: int
    op: str
    name: str
    attrs: dict[str, str]
    inputs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class SymbolGraph:
    path: Path
    nodes: list[Node]
    heads: list[tuple[int, int]]


@dataclass
class Shapes:
    """What shape inference found: every parameter by its `.params` name, every op node's output shape."""

    params: dict[str, tuple[int, ...]]
    outputs: dict[int, tuple[int, ...]]


def read_symbol(path) -> SymbolGraph:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        raw_nodes = doc["nodes"]
        heads = [(int(h[0]), int(h[1])) for h in doc["heads"]]
        nodes = []
        for index, raw in enumerate(raw_nodes):
            attrs = raw.get("attrs") or raw.get("attr") or raw.get("param") or {}
            inputs = [(int(ref[0]), int(ref[1])) for ref in raw.get("inputs", [])]
            nodes.append(Node(index, raw["op"], raw["name"], {k: str(v) for k, v in attrs.items()}, inputs))
    except OSError as err:
        raise file_error(path, f"cannot read MXNet symbol ({err.strerror or err})") from None
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise file_error(path, f"not an MXNet symbol JSON ({type(err).__name__}: {err})") from None
    for node in nodes:
        if any(src >= node.index for src, _ in node.inputs):
            raise file_error(path, f"node {node.name} reads a later node; the graph is not topologically sorted")
    return SymbolGraph(path, nodes, heads)


# ---------------------------------------------------------------- attribute parsing (MXNet's string forms)

def _attr(node: Node, key: str, default, parse):
    text = node.attrs.get(key)
    if text is None:
        if default is None:
            raise GhostError(f"node {node.name} ({node.op}): attribute {key} is missing")
        return default
    try:
        return parse(text.strip())
    except ValueError:
        raise GhostError(f"node {node.name} ({node.op}): attribute {key}={text!r} is malformed") from None


def _parse_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(item) for item in text.strip("()[] ").split(",") if item.strip() not in ("", "None"))


def _parse_bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
    return text.lower() in ("true", "1")


def attr_tuple(node: Node, key: str, default: tuple[int, ...] = ()) -> tuple[int, ...]:
    return _attr(node, key, default, _parse_tuple)


def attr_bool(node: Node, key: str, default: bool) -> bool:
    return _attr(node, key, default, _parse_bool)


def attr_float(node: Node, key: str, default: float) -> float:
    return _attr(node, key, default, float)


def attr_int(node: Node, key: str, default: int | None = None) -> int:
    return _attr(node, key, default, int)


def attr_str(node: Node, key: str, default: str) -> str:
    return _attr(node, key, default, str)


def spatial(node: Node, key: str, fill: int, rank: int) -> tuple[int, ...]:
    values = attr_tuple(node, key)
    return values if values else (fill,) * rank


# ---------------------------------------------------------------- shape inference

def param_prefix(graph: SymbolGraph) -> dict[int, str]:
    """Map each parameter node to `arg:` or `aux:` by how its consumers use it."""
    prefix = {}
    for node in graph.nodes:
        for slot, (src, _) in enumerate(node.inputs):
            if graph.nodes[src].op == "null":
                aux = node.op == "BatchNorm" and slot in BATCHNORM_AUX_INPUTS
                prefix[src] = "aux:" if aux else "arg:"
    return prefix


def pool_output_size(size: int, kernel: int, stride: int, pad: int, convention: str) -> int:
    if convention == "full":
        return 1 + math.ceil((size + 2 * pad - kernel) / stride)
    return 1 + (size + 2 * pad - kernel) // stride


def _infer_node(node: Node, shape: tuple[int, ...]) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """Return (shapes of the node's inputs 1.., output shape) for an op whose data input has `shape`."""
    op = node.op
    if op == "Convolution":
        rank = len(shape) - 2
        kernel = attr_tuple(node, "kernel")
        stride, pad, dilate = (spatial(node, "stride", 1, rank), spatial(node, "pad", 0, rank),
                               spatial(node, "dilate", 1, rank))
        filters, groups = attr_int(node, "num_filter"), attr_int(node, "num_group", 1)
        if rank != 2 or len(kernel) != 2 or attr_str(node, "layout", "NCHW") not in ("NCHW", "None"):
            raise GhostError(f"node {node.name}: only 2-D NCHW Convolution is supported")
        if shape[1] % groups:
            raise GhostError(f"node {node.name}: {shape[1]} channels do not split into {groups} groups")
        out = tuple((shape[2 + i] + 2 * pad[i] - dilate[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2))
        params = [(filters, shape[1] // groups, *kernel)]
        if not attr_bool(node, "no_bias", False):
            params.append((filters,))
        return params, (shape[0], filters, *out)
    if op == "BatchNorm":
        channels = shape[attr_int(node, "axis", 1)]
        return [(channels,)] * 4, shape
    if op == "LeakyReLU":
        act = attr_str(node, "act_type", "leaky")
        return ([(shape[1],)] if act == "prelu" else []), shape
    if op == "FullyConnected":
        hidden = attr_int(node, "num_hidden")
        flatten = attr_bool(node, "flatten", True)
        fan_in = int(np.prod(shape[1:])) if flatten else shape[-1]
        params = [(hidden, fan_in)]
        if not attr_bool(node, "no_bias", False):
            params.append((hidden,))
        return params, ((shape[0], hidden) if flatten else (*shape[:-1], hidden))
    if op == "Pooling":
        if len(shape) != 4:
            raise GhostError(f"node {node.name}: only 2-D Pooling is supported")
        if attr_bool(node, "global_pool", False):
            return [], (shape[0], shape[1], 1, 1)
        kernel, stride, pad = attr_tuple(node, "kernel"), spatial(node, "stride", 1, 2), spatial(node, "pad", 0, 2)
        convention = attr_str(node, "pooling_convention", "valid")
        out = tuple(pool_output_size(shape[2 + i], kernel[i], stride[i], pad[i], convention) for i in range(2))
        return [], (shape[0], shape[1], *out)
    if op == "Flatten":
        return [], (shape[0], int(np.prod(shape[1:])))
    if op in ("Activation", "SoftmaxActivation", "_minus_scalar", "_mul_scalar"):
        return [], shape
    raise GhostError(f"node {node.name}: MXNet op {op} is not supported")


def infer_shapes(graph: SymbolGraph, input_shapes: Mapping[str, Sequence[int]]) -> Shapes:
    """Propagate the input shapes through the graph, naming each parameter as MXNet's checkpoint does."""
    prefix = param_prefix(graph)
    outputs: dict[int, tuple[int, ...]] = {}
    params: dict[str, tuple[int, ...]] = {}
    for node in graph.nodes:
        if node.op == "null":
            if node.name in input_shapes:
                outputs[node.index] = tuple(int(d) for d in input_shapes[node.name])
            continue
        if not node.inputs:
            raise file_error(graph.path, f"node {node.name}: MXNet op {node.op} without inputs is not supported")
        data = node.inputs[0][0]
        if data not in outputs:
            raise file_error(graph.path, f"node {node.name}: shape of input {graph.nodes[data].name} is unknown")
        try:
            param_shapes, outputs[node.index] = _infer_node(node, outputs[data])
        except GhostError as err:
            raise file_error(graph.path, str(err)) from None
        extra = node.inputs[1:]
        if len(extra) != len(param_shapes):
            raise file_error(graph.path, f"node {node.name} ({node.op}) has {len(extra)} parameter inputs, "
                                         f"expected {len(param_shapes)}")
        for (src, _), shape in zip(extra, param_shapes):
            name = prefix[src] + graph.nodes[src].name
            if params.setdefault(name, shape) != shape:
                raise file_error(graph.path, f"parameter {name} is used with shapes {params[name]} and {shape}")
            outputs[src] = shape
    return Shapes(params, outputs)


def check_params(graph: SymbolGraph, shapes: Shapes, params: Mapping[str, np.ndarray], params_path) -> None:
    """Strict match: the same names and shapes as the graph needs, or a GhostError naming the params file."""
    missing = [name for name in shapes.params if name not in params]
    extra = [name for name in params if name not in shapes.params]
    wrong = [f"{name} {tuple(params[name].shape)} != {shape}" for name, shape in shapes.params.items()
             if name in params and tuple(params[name].shape) != shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    if extra:
        problems.append(f"unexpected {len(extra)} ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})")
    if wrong:
        problems.append(f"wrong shape {len(wrong)} ({'; '.join(wrong[:3])}{'; ...' if len(wrong) > 3 else ''})")
    if problems:
        raise file_error(params_path, f"does not match {Path(graph.path).name}: " + ", ".join(problems))
