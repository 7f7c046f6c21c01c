"""MXNet symbol → torch: semantics against numpy written from MXNet's operator definitions, real nets run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ghostrt.errors import GhostError
from ghostrt.export.mxnet_params import read_params, write_params
from ghostrt.export.mxnet_net import load_symbol_module
from ghostrt.export.mxnet_symbol import infer_shapes, read_symbol

REPO = Path(__file__).resolve().parents[2]
MXNET = REPO.parent / "shared" / "mxnet"
needs_shared = pytest.mark.skipif(not MXNET.is_dir(), reason=f"{MXNET} absent: the real MXNet files live there")


# ---------------------------------------------------------------- tiny hand-written graphs

def write_graph(folder: Path, ops: list[tuple[str, str, dict, list[str]]], data_shape, attr_key="attrs", seed=0):
    """ops: (op, name, attrs, parameter suffixes) chained on `data`. Returns (symbol, params, arrays)."""
    nodes = [{"op": "null", "name": "data", "inputs": []}]
    previous = 0
    for op, name, attrs, suffixes in ops:
        inputs = [[previous, 0, 0]]
        for suffix in suffixes:
            nodes.append({"op": "null", "name": f"{name}_{suffix}", "inputs": []})
            inputs.append([len(nodes) - 1, 0, 0])
        nodes.append({"op": op, "name": name, attr_key: attrs, "inputs": inputs})
        previous = len(nodes) - 1
    doc = {"nodes": nodes, "arg_nodes": [i for i, n in enumerate(nodes) if n["op"] == "null"],
           "heads": [[previous, 0, 0]]}
    symbol = folder / "tiny-symbol.json"
    symbol.write_text(json.dumps(doc))
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in infer_shapes(read_symbol(symbol), {"data": data_shape}).params.items():
        low = 0.5 if name.endswith("moving_var") else -1.0
        arrays[name] = rng.uniform(low, 1.0, shape).astype(np.float32)
    params = write_params(folder / "tiny-0000.params", arrays)
    return symbol, params, arrays


def run(symbol, params, x):
    net = load_symbol_module(symbol, params, {"data": (1, *x.shape[1:])})
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def np_conv(x, w, b, stride, pad, dilate, groups):
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - dilate * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pad - dilate * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, f, oh, ow), np.float64)
    per_group = f // groups
    for o in range(f):
        g = o // per_group
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + dilate * kh:dilate,
                           j * stride:j * stride + dilate * kw:dilate]
                out[:, o, i, j] = (patch * w[o]).sum(axis=(1, 2, 3))
    return out + (0 if b is None else b[None, :, None, None])


def np_batchnorm(x, gamma, beta, mean, var, eps, fix_gamma):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    gamma = np.ones_like(gamma) if fix_gamma else gamma
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


def np_pool(x, kernel, stride, pad, pool_type, convention, include_pad=True):
    """MXNet's pool loops: window clipped to the padded extent for the divisor, to the input for the values."""
    n, c, h, w = x.shape
    size = [h, w]
    rounding = np.ceil if convention == "full" else np.floor
    out = [1 + int(rounding((size[i] + 2 * pad - kernel) / stride)) for i in range(2)]
    result = np.zeros((n, c, *out))
    for i in range(out[0]):
        for j in range(out[1]):
            hs, ws = i * stride - pad, j * stride - pad
            he, we = min(hs + kernel, h + pad), min(ws + kernel, w + pad)
            pool_size = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[:, :, hs:he, ws:we]
            if pool_type == "max":
                result[:, :, i, j] = window.max(axis=(2, 3))
            else:
                pool_size = pool_size if include_pad else (he - hs) * (we - ws)
                result[:, :, i, j] = window.sum(axis=(2, 3)) / pool_size
    return result


@pytest.mark.parametrize("attr_key", ["attrs", "attr", "param"])
def test_conv_bn_prelu_fc_match_numpy(tmp_path, attr_key):
    ops = [
        ("_minus_scalar", "sub", {"scalar": "0.5"}, []),
        ("_mul_scalar", "mul", {"scalar": "2.0"}, []),
        ("Convolution", "conv", {"kernel": "(3, 3)", "stride": "(2, 2)", "pad": "(1, 1)", "num_filter": "6",
                                 "num_group": "2"}, ["weight", "bias"]),
        ("BatchNorm", "bn_free", {"fix_gamma": "False", "eps": "0.01"}, ["gamma", "beta", "moving_mean",
                                                                         "moving_var"]),
        ("LeakyReLU", "prelu", {"act_type": "prelu"}, ["gamma"]),
        ("Convolution", "dil", {"kernel": "(3,3)", "dilate": "(2,2)", "num_filter": "4", "no_bias": "True"},
         ["weight"]),
        ("BatchNorm", "bn_default", {}, ["gamma", "beta", "moving_mean", "moving_var"]),  # fix_gamma, eps 1e-3
        ("Activation", "relu", {"act_type": "relu"}, []),
        ("FullyConnected", "fc", {"num_hidden": "5"}, ["weight", "bias"]),
    ]
    x = np.random.default_rng(1).uniform(0, 1, (2, 4, 11, 11)).astype(np.float32)
    symbol, params, p = write_graph(tmp_path, ops, (1, 4, 11, 11), attr_key)
    got = run(symbol, params, x)

    def bn(y, name, eps, fix):
        return np_batchnorm(y, p[f"arg:{name}_gamma"], p[f"arg:{name}_beta"], p[f"aux:{name}_moving_mean"],
                            p[f"aux:{name}_moving_var"], eps, fix)

    y = (x.astype(np.float64) - 0.5) * 2.0
    y = np_conv(y, p["arg:conv_weight"], p["arg:conv_bias"], 2, 1, 1, 2)
    y = bn(y, "bn_free", 0.01, False)
    slope = p["arg:prelu_gamma"][None, :, None, None]
    y = np.where(y > 0, y, y * slope)
    y = np_conv(y, p["arg:dil_weight"], None, 1, 0, 2, 1)
    y = np.maximum(bn(y, "bn_default", 1e-3, True), 0)
    want = y.reshape(2, -1) @ p["arg:fc_weight"].T.astype(np.float64) + p["arg:fc_bias"]
    assert got.shape == (2, 5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool", [
    dict(kernel=3, stride=2, pad=1, pool_type="max", convention="full"),
    dict(kernel=2, stride=2, pad=0, pool_type="max", convention="full"),
    dict(kernel=3, stride=2, pad=1, pool_type="avg", convention="full"),
    dict(kernel=3, stride=2, pad=1, pool_type="avg", convention="valid"),
    dict(kernel=3, stride=2, pad=1, pool_type="avg", convention="full", include_pad=False),
])
def test_pooling_matches_mxnet_loops(tmp_path, pool):
    attrs = {"kernel": f"({pool['kernel']}, {pool['kernel']})", "stride": f"({pool['stride']}, {pool['stride']})",
             "pad": f"({pool['pad']}, {pool['pad']})", "pool_type": pool["pool_type"],
             "pooling_convention": pool["convention"]}
    if "include_pad" in pool:
        attrs["count_include_pad"] = str(pool["include_pad"])
    symbol, params, _ = write_graph(tmp_path, [("Pooling", "pool", attrs, [])], (1, 2, 6, 7))
    x = np.random.default_rng(2).normal(size=(2, 2, 6, 7)).astype(np.float32)
    np.testing.assert_allclose(run(symbol, params, x), np_pool(x, **pool), rtol=1e-5, atol=1e-6)


def test_graph_problems_are_ghost_errors_naming_the_file(tmp_path):
    symbol, params, arrays = write_graph(tmp_path, [("Convolution", "conv", {"kernel": "(3,3)", "num_filter": "2"},
                                                     ["weight", "bias"])], (1, 3, 8, 8))
    wrong = dict(arrays, **{"arg:conv_weight": np.zeros((2, 3, 5, 5), np.float32)})
    write_params(params, wrong)
    with pytest.raises(GhostError, match="wrong shape 1") as info:
        load_symbol_module(symbol, params, {"data": (1, 3, 8, 8)})
    assert str(params) in str(info.value)
    write_params(params, {"arg:conv_weight": arrays["arg:conv_weight"]})
    with pytest.raises(GhostError, match="missing 1 .arg:conv_bias"):
        load_symbol_module(symbol, params, {"data": (1, 3, 8, 8)})
    doc = json.loads(symbol.read_text())
    doc["nodes"][-1]["op"] = "Deconvolution"
    symbol.write_text(json.dumps(doc))
    with pytest.raises(GhostError, match="Deconvolution is not supported") as info:
        infer_shapes(read_symbol(symbol), {"data": (1, 3, 8, 8)})
    assert str(symbol) in str(info.value)
    symbol.write_text("{not json")
    with pytest.raises(GhostError, match="not an MXNet symbol"):
        read_symbol(symbol)


# ---------------------------------------------------------------- the real InsightFace nets

@needs_shared
def test_genderage_runs_and_its_last_batchnorm_follows_mxnet_semantics():
    symbol, params = MXNET / "genderage-symbol.json", MXNET / "genderage-0000.params"
    net = load_symbol_module(symbol, params, {"data": (1, 3, 112, 112)})
    x = np.random.default_rng(3).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    captured = {}

    def keep_pre_fc1(module, inputs, output):
        captured["pre_fc1"] = output.numpy().copy()

    net.layers["pre_fc1"].register_forward_hook(keep_pre_fc1)
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    assert out.shape == (3, 202) and np.isfinite(out).all()

    # fc1 is BatchNorm(eps 2e-05, fix_gamma True) over pre_fc1; the file's gamma is not 1, so ignoring it matters.
    p = read_params(params)
    assert not np.allclose(p["arg:fc1_gamma"], 1.0)
    want = np_batchnorm(captured["pre_fc1"].astype(np.float64), p["arg:fc1_gamma"], p["arg:fc1_beta"],
                        p["aux:fc1_moving_mean"], p["aux:fc1_moving_var"], 2e-05, True)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)

    # InsightFace's age head is 100 ordinal "older than k" classifiers: a trained net run correctly answers
    # yes for a prefix of k and no after it, one step at most per face.
    decisions = out[:, 2:].reshape(3, 100, 2).argmax(axis=2)
    steps = np.abs(np.diff(decisions, axis=1)).sum(axis=1)
    assert (steps <= 1).all() and (decisions[:, 0] == 1).all()


@needs_shared
def test_mtcnn_pnet_outputs_and_full_pooling_convention():
    symbol, params = MXNET / "mtcnn-det1-symbol.json", MXNET / "mtcnn-det1-0001.params"
    x = np.random.default_rng(4).uniform(-1, 1, (2, 3, 12, 12)).astype(np.float32)
    net = load_symbol_module(symbol, params, {"data": (1, 3, 12, 12)})
    with torch.no_grad():
        bbox, prob = (t.numpy() for t in net(torch.from_numpy(x)))
    # PNet maps a 12×12 window to one cell: 4 box offsets, 2 face/non-face probabilities (channel softmax).
    assert bbox.shape == (2, 4, 1, 1) and prob.shape == (2, 2, 1, 1)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-6)
    # 13×13: conv 11, 2×2/2 "full" pooling 1 + ceil(9 / 2) = 6 (valid would give 5), conv 4, conv 2.
    net13 = load_symbol_module(symbol, params, {"data": (1, 3, 13, 13)})
    with torch.no_grad():
        _, prob13 = net13(torch.zeros(1, 3, 13, 13))
    assert prob13.shape == (1, 2, 2, 2)
