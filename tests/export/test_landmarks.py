"""2d106det: the official graph's facts, the stand-in, export + parity from both weight forms, bad inputs."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ghostrt.errors import GhostError
from ghostrt.export.landmark106 import (SYMBOL_ASSET, export_landmarks, load_landmarks, sample_faces,
                                        standin_params, write_standin_landmarks)
from ghostrt.export.mxnet_params import read_params, write_params
from ghostrt.export.mxnet_net import BatchNormInference, ScalarOp
from ghostrt.export.mxnet_symbol import infer_shapes, read_symbol
from ghostrt.export.onnx_io import export_module
from ghostrt.export.parity import ort_session

REPO = Path(__file__).resolve().parents[2]
SHARED_SYMBOL = REPO.parent / "shared" / "ghost" / "2d106det-symbol.json"


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    return write_standin_landmarks(folder, seed=0)


@pytest.fixture(scope="module")
def exported(standin, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm_onnx") / "landmarks.onnx"
    return out, export_landmarks(standin[0], out)


@pytest.mark.skipif(not SHARED_SYMBOL.is_file(), reason=f"{SHARED_SYMBOL} absent: the GHOST reference data")
def test_shipped_symbol_is_the_official_one():
    assert SYMBOL_ASSET.read_bytes() == SHARED_SYMBOL.read_bytes()


def test_graph_matches_the_documented_architecture(standin):
    net = load_landmarks(standin[0]).module
    # MODELS.md: raw RGB in, the graph subtracts 127.5 and scales by 1/128; BatchNorm fix_gamma with eps 1e-3.
    scalars = [(m.op, m.scalar) for m in net.layers.values() if isinstance(m, ScalarOp)]
    assert scalars == [("_minus_scalar", 127.5), ("_mul_scalar", 1 / 128)]
    norms = [m for m in net.layers.values() if isinstance(m, BatchNormInference)]
    assert norms and all(m.eps == 1e-3 and bool((m.weight == 1).all()) for m in norms)
    shapes = infer_shapes(read_symbol(SYMBOL_ASSET), {"data": (1, 3, 192, 192)})
    assert shapes.params["arg:fc1_weight"][0] == 212 and shapes.params["arg:fc1_bias"] == (212,)


def test_standin_is_reproducible_and_has_the_official_names(standin, tmp_path):
    symbol, params = standin
    assert [p.name for p in standin] == ["2d106det-symbol.json", "2d106det-0000.params"]
    again = write_standin_landmarks(tmp_path, seed=0)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in standin]
    other = write_standin_landmarks(tmp_path, seed=1)[1].read_bytes()
    assert other != params.read_bytes() and len(other) == len(params.read_bytes())
    arrays = read_params(params)
    inferred = infer_shapes(read_symbol(symbol), {"data": (1, 3, 192, 192)}).params
    assert {name: a.shape for name, a in arrays.items()} == inferred
    assert all(a.dtype == np.float32 for a in arrays.values())
    assert all((arrays[name] > 0).all() for name in arrays if name.endswith("moving_var"))


def test_standin_outputs_are_finite_and_vary(standin):
    net = load_landmarks(standin[0]).module
    with torch.no_grad():
        out = net(torch.from_numpy(sample_faces(3)["face"])).numpy()
    assert out.shape == (3, 212) and np.isfinite(out).all()
    assert out.std(axis=1).min() > 1e-3  # points differ within a face
    assert np.abs(out[0] - out[1]).max() > 1e-4  # and faces differ from each other
    assert np.abs(out).max() < 10  # activations stayed in a sane range through 30 layers


def test_export_from_mxnet_pair_has_the_contract_and_passes_parity(exported):
    out, row = exported
    assert row.ok and row.batches == (1, 3)
    model = onnx.load(str(out))
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*model.graph.input, *model.graph.output]}
    assert dims == {"face": ["N", 3, 192, 192], "landmarks": ["N", 212]}


def test_batch_of_three_equals_three_batches_of_one(exported, standin):
    session = ort_session(exported[0])
    faces = sample_faces(3)["face"]
    batch = session.run(["landmarks"], {"face": faces})[0]
    singles = np.concatenate([session.run(["landmarks"], {"face": faces[i:i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-5)
    with torch.no_grad():
        want = load_landmarks(standin[0]).module(torch.from_numpy(faces)).numpy()
    np.testing.assert_allclose(batch, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_export_from_insightface_style_onnx(standin, tmp_path):
    # InsightFace's file: input `data`, output `fc1`, here with the batch fixed to 1 (the worst case).
    module = load_landmarks(standin[0]).module
    original = export_module(module, {"data": sample_faces(1)["face"]}, ["fc1"], tmp_path / "2d106det.onnx",
                             batch_axis=False)
    row = export_landmarks(original, tmp_path / "landmarks.onnx")
    assert row.ok and row.batches == (1, 3)
    session = ort_session(tmp_path / "landmarks.onnx")
    assert [i.name for i in session.get_inputs()] == ["face"]
    assert [o.name for o in session.get_outputs()] == ["landmarks"]
    faces = sample_faces(3)["face"]
    with torch.no_grad():
        want = module(torch.from_numpy(faces)).numpy()
    got = session.run(["landmarks"], {"face": faces})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_missing_or_mismatched_weights_are_ghost_errors(standin, tmp_path):
    symbol = tmp_path / "2d106det-symbol.json"
    symbol.write_bytes(SYMBOL_ASSET.read_bytes())
    with pytest.raises(GhostError, match="2d106det-0000.params: missing"):
        load_landmarks(symbol)
    arrays = standin_params(0)
    arrays["arg:fc1_weight"] = arrays["arg:fc1_weight"][:200]
    del arrays["arg:fc1_bias"]
    write_params(tmp_path / "2d106det-0000.params", arrays)
    with pytest.raises(GhostError, match="does not match 2d106det-symbol.json: missing 1") as info:
        load_landmarks(symbol)
    assert "wrong shape 1" in str(info.value) and "fc1_weight" in str(info.value)
    with pytest.raises(GhostError, match="not found"):
        load_landmarks(tmp_path / "absent.onnx")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(GhostError, match="must be an MXNet symbol"):
        load_landmarks(tmp_path / "weights.bin")


def test_onnx_with_the_wrong_contract_is_refused(tmp_path):
    small = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten())
    path = export_module(small, {"data": np.zeros((1, 3, 112, 112), np.float32)}, ["out"], tmp_path / "x.onnx")
    with pytest.raises(GhostError, match=r"x.onnx: input shape \['N', 3, 112, 112\]"):
        load_landmarks(path)
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model" * 10)
    with pytest.raises(GhostError, match="junk.onnx"):
        load_landmarks(tmp_path / "junk.onnx")
