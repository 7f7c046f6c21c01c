"""ONNX exports of the generator and ArcFace: named I/O with a dynamic batch axis, ONNX Runtime (CPU) equal to
PyTorch at batch 1 and 3, and a batch-3 run equal to three batch-1 runs stacked."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ghostrt.errors import GhostError
from ghostrt.export.aei_net import export_generator, generator_inputs, load_generator, write_standin_generators
from ghostrt.export.iresnet import arcface_inputs, export_arcface, write_standin_arcface
from ghostrt.export.parity import RTOL, ort_session

STACK_TOL = 1e-5  # batch-N vs stacked batch-1 of the same graph: only reduction order may differ


def io_signature(onnx_path: Path):
    model = onnx.load(str(onnx_path), load_external_data=False)

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return ({v.name: dims(v) for v in model.graph.input}, {v.name: dims(v) for v in model.graph.output})


def assert_stacked_equal(onnx_path: Path, inputs: dict[str, np.ndarray]):
    """Checked here directly too, so a parity helper that skipped it would not hide a batch-mixing graph."""
    sess = ort_session(onnx_path)
    [batched] = sess.run(None, inputs)
    singles = [sess.run(None, {k: v[i:i + 1] for k, v in inputs.items()})[0] for i in range(len(batched))]
    assert np.max(np.abs(batched - np.concatenate(singles))) <= STACK_TOL


def test_arcface_export_parity(tmp_path):
    weights = write_standin_arcface(tmp_path, seed=0)
    out = tmp_path / "arcface.onnx"
    row = export_arcface(weights, out)
    assert row.ok and row.batches == (1, 3)
    assert row.max_rel <= RTOL and row.stacked_max_abs <= STACK_TOL
    assert io_signature(out) == ({"face": ["N", 3, 112, 112]}, {"embedding": ["N", 512]})
    [got] = ort_session(out).run(None, arcface_inputs(1, seed=11))
    assert 5 < float(np.linalg.norm(got)) < 60  # raw, not L2-normalised


@pytest.mark.slow
def test_generator_export_parity(tmp_path):
    [weights] = write_standin_generators(tmp_path, seed=0, blocks=(1,))
    out = tmp_path / "G_unet_1block.onnx"
    row = export_generator(weights, None, out)
    assert row.ok and row.batches == (1, 3)
    assert row.max_rel <= RTOL and row.stacked_max_abs <= STACK_TOL
    assert io_signature(out) == ({"target": ["N", 3, 256, 256], "source_embedding": ["N", 512]},
                                 {"swapped": ["N", 3, 256, 256]})
    inputs = generator_inputs(3, seed=12)
    norms = np.linalg.norm(inputs["source_embedding"], axis=1)
    assert ((norms >= 20) & (norms <= 30)).all()
    [got] = ort_session(out).run(None, inputs)
    net = load_generator(weights, 1)
    with torch.inference_mode():
        want = net(torch.from_numpy(inputs["target"]), torch.from_numpy(inputs["source_embedding"]))[0].numpy()
    assert np.max(np.abs(got - want)) <= RTOL * np.max(np.abs(want))
    assert np.abs(got).max() <= 1.0  # tanh output
    assert_stacked_equal(out, inputs)


def test_export_of_a_broken_checkpoint_names_the_file(tmp_path):
    weights = tmp_path / "backbone.pth"
    weights.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "arcface.onnx"
    with pytest.raises(GhostError, match="backbone.pth") as err:
        export_arcface(weights, out)
    assert "\n" not in str(err.value)
    assert not out.exists()  # nothing half-written
