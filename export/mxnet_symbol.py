"""Run an MXNet symbol graph (`*-symbol.json` + `.params`) as a torch module, without MXNet.

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
import torch
import torch.nn.functional as F
from torch import nn

from ghostrt.errors import GhostError, file_error

# MXNet Activation act_type → the same function in torch.
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softrelu": nn.Softplus,
               "softsign": nn.Softsign}
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


# ---------------------------------------------------------------- torch layers with MXNet's semantics

class ScalarOp(nn.Module):
    def __init__(self, op: str, scalar: float):
        super().__init__()
        self.op, self.scalar = op, scalar

    def forward(self, x):
        return x - self.scalar if self.op == "_minus_scalar" else x * self.scalar


class BatchNormInference(nn.Module):
    """MXNet BatchNorm at inference: moving statistics; with fix_gamma the stored gamma is ignored (taken as 1)."""

    def __init__(self, gamma, beta, mean, var, eps: float, fix_gamma: bool):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(len(gamma)) if fix_gamma else torch.from_numpy(gamma.copy()))
        self.register_buffer("bias", torch.from_numpy(beta.copy()))
        self.register_buffer("running_mean", torch.from_numpy(mean.copy()))
        self.register_buffer("running_var", torch.from_numpy(var.copy()))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class Softmax(nn.Module):
    """SoftmaxActivation: `channel` mode over axis 1 per position, `instance` mode over all non-batch axes."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        if self.mode == "channel":
            return torch.softmax(x, dim=1)
        return torch.softmax(torch.flatten(x, 1), dim=1).reshape(x.shape)


class FullyConnected(nn.Module):
    def __init__(self, weight, bias, flatten: bool):
        super().__init__()
        self.flatten = flatten
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        _assign(self.linear, weight, bias)

    def forward(self, x):
        return self.linear(torch.flatten(x, 1) if self.flatten else x)


class Pool2d(nn.Module):
    """MXNet Pooling for a fixed input size.

    MXNet's `full` convention rounds the output size up without torch's rule that the last window must start
    inside the input, and its max pooling never sees padding; both are reproduced by padding explicitly
    (−inf for max) and pooling the padded map without implicit padding. Average divisors follow MXNet: the
    window clipped to the padded extent (count_include_pad, the default) or to the real input.
    """

    def __init__(self, node: Node, in_shape: tuple[int, ...]):
        super().__init__()
        self.pool_type = attr_str(node, "pool_type", "max")
        if self.pool_type not in ("max", "avg", "sum"):
            raise GhostError(f"node {node.name}: pool_type {self.pool_type} is not supported")
        self.global_pool = attr_bool(node, "global_pool", False)
        self.kernel, self.padding = attr_tuple(node, "kernel"), (0, 0, 0, 0)
        self.stride, pad = spatial(node, "stride", 1, 2), spatial(node, "pad", 0, 2)
        self.register_buffer("counts", torch.ones(()))
        if self.global_pool:
            return
        convention = attr_str(node, "pooling_convention", "valid")
        if convention not in ("valid", "full"):
            raise GhostError(f"node {node.name}: pooling_convention {convention} is not supported")
        size = in_shape[2:]
        out = [pool_output_size(size[i], self.kernel[i], self.stride[i], pad[i], convention) for i in range(2)]
        extra = [max(0, (out[i] - 1) * self.stride[i] + self.kernel[i] - (size[i] + 2 * pad[i])) for i in range(2)]
        self.padding = (pad[1], pad[1] + extra[1], pad[0], pad[0] + extra[0])  # F.pad order: W then H
        if self.pool_type == "avg":
            include_pad = attr_bool(node, "count_include_pad", True)
            self.counts = torch.from_numpy(self._window_counts(size, pad, out, include_pad))

    def _window_counts(self, size, pad, out, include_pad: bool) -> np.ndarray:
        counts = np.zeros((1, 1, *out), np.float32)
        limits = [(0, size[i] + 2 * pad[i]) if include_pad else (pad[i], size[i] + pad[i]) for i in range(2)]
        for oy in range(out[0]):
            for ox in range(out[1]):
                spans = []
                for i, o in enumerate((oy, ox)):
                    start = o * self.stride[i]
                    spans.append(max(0, min(start + self.kernel[i], limits[i][1]) - max(start, limits[i][0])))
                counts[0, 0, oy, ox] = max(1, spans[0] * spans[1])
        return counts

    def forward(self, x):
        if self.global_pool:
            if self.pool_type == "max":
                return F.adaptive_max_pool2d(x, 1)
            mean = F.adaptive_avg_pool2d(x, 1)
            return mean if self.pool_type == "avg" else mean * (x.shape[2] * x.shape[3])
        if any(self.padding):
            x = F.pad(x, self.padding, value=float("-inf") if self.pool_type == "max" else 0.0)
        if self.pool_type == "max":
            return F.max_pool2d(x, self.kernel, self.stride)
        window_sum = F.avg_pool2d(x, self.kernel, self.stride) * float(self.kernel[0] * self.kernel[1])
        return window_sum if self.pool_type == "sum" else window_sum / self.counts


def _assign(module: nn.Module, weight: np.ndarray, bias: np.ndarray | None) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight))
        if bias is not None:
            module.bias.copy_(torch.from_numpy(bias))


def build_layer(node: Node, weights: list[np.ndarray], in_shape: tuple[int, ...]) -> nn.Module:
    op = node.op
    if op == "Convolution":
        weight = weights[0]
        conv = nn.Conv2d(in_shape[1], weight.shape[0], tuple(weight.shape[2:]), spatial(node, "stride", 1, 2),
                         spatial(node, "pad", 0, 2), spatial(node, "dilate", 1, 2), attr_int(node, "num_group", 1),
                         bias=len(weights) > 1)
        _assign(conv, weight, weights[1] if len(weights) > 1 else None)
        return conv
    if op == "BatchNorm":
        if attr_int(node, "axis", 1) != 1:
            raise GhostError(f"node {node.name}: BatchNorm over axis {node.attrs['axis']} is not supported")
        return BatchNormInference(*weights, attr_float(node, "eps", 1e-3), attr_bool(node, "fix_gamma", True))
    if op == "LeakyReLU":
        act = attr_str(node, "act_type", "leaky")
        if act == "prelu":
            prelu = nn.PReLU(len(weights[0]))
            _assign(prelu, weights[0], None)
            return prelu
        if act == "leaky":
            return nn.LeakyReLU(attr_float(node, "slope", 0.25))
        raise GhostError(f"node {node.name}: LeakyReLU act_type {act} is not supported")
    if op == "Activation":
        act = attr_str(node, "act_type", "")
        if act not in ACTIVATIONS:
            raise GhostError(f"node {node.name}: Activation act_type {act} is not supported")
        return ACTIVATIONS[act]()
    if op == "FullyConnected":
        return FullyConnected(weights[0], weights[1] if len(weights) > 1 else None, attr_bool(node, "flatten", True))
    if op == "Pooling":
        return Pool2d(node, in_shape)
    if op == "SoftmaxActivation":
        return Softmax(attr_str(node, "mode", "instance"))
    if op == "Flatten":
        return nn.Flatten()
    if op in ("_minus_scalar", "_mul_scalar"):
        return ScalarOp(op, attr_float(node, "scalar", 0.0))
    raise GhostError(f"node {node.name}: MXNet op {op} is not supported")


class SymbolNet(nn.Module):
    """Executes the graph node by node; built for the input shapes given (batch size stays free)."""

    def __init__(self, graph: SymbolGraph, params: Mapping[str, np.ndarray],
                 input_shapes: Mapping[str, Sequence[int]]):
        super().__init__()
        shapes = infer_shapes(graph, input_shapes)
        prefix = param_prefix(graph)
        by_name = {node.name: node.index for node in graph.nodes if node.op == "null"}
        self.input_nodes = [by_name[name] for name in input_shapes]
        self.layers = nn.ModuleDict()
        self.steps: list[tuple[int, str, int]] = []
        for node in graph.nodes:
            if node.op == "null":
                continue
            if any(slot != 0 for _, slot in node.inputs):
                raise file_error(graph.path, f"node {node.name} reads a secondary output; not supported")
            src = node.inputs[0][0]
            weights = [np.asarray(params[prefix[i] + graph.nodes[i].name], np.float32) for i, _ in node.inputs[1:]]
            key = node.name.replace(".", "_")
            if key in self.layers:
                raise file_error(graph.path, f"two nodes are named {node.name}")
            try:
                self.layers[key] = build_layer(node, weights, shapes.outputs[src])
            except GhostError as err:
                raise file_error(graph.path, str(err)) from None
            self.steps.append((node.index, key, src))
        if any(slot != 0 for _, slot in graph.heads):
            raise file_error(graph.path, "a head reads a secondary output; not supported")
        self.heads = [index for index, _ in graph.heads]

    def forward(self, *inputs):
        values = dict(zip(self.input_nodes, inputs))
        for index, key, src in self.steps:
            values[index] = self.layers[key](values[src])
        outputs = [values[index] for index in self.heads]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def load_symbol_module(symbol_path, params_path, input_shapes: Mapping[str, Sequence[int]]):
    """Read both files, check them against each other, and return the runnable torch module."""
    from ghostrt.export.mxnet_params import read_params

    graph = read_symbol(symbol_path)
    shapes = infer_shapes(graph, input_shapes)
    params = read_params(params_path)
    check_params(graph, shapes, params, params_path)
    return SymbolNet(graph, params, input_shapes)
