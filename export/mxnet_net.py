"""An MXNet symbol graph as a torch module, with MXNet's operator semantics (the graph and its shapes come from
mxnet_symbol; the weights from mxnet_params)."""

from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ghostrt.errors import GhostError, file_error
from ghostrt.export.mxnet_symbol import (Node, SymbolGraph, attr_bool, attr_float, attr_int,
                                         attr_str, attr_tuple, check_params, infer_shapes, param_prefix,
                                         pool_output_size, read_symbol, spatial)

# MXNet Activation act_type → the same function in torch.
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "softrelu": nn.Softplus,
               "softsign": nn.Softsign}

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
