"""SCRFD export side: the stand-in carries the official file's I/O pattern, and the batch-axis edit keeps every
image's numbers while handling the ways the Reshape targets / Resize sizes can be encoded."""

from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from ghostrt.errors import GhostError
from ghostrt.export.parity import ort_session, seeded
from ghostrt.export.scrfd import OUTPUT_NAMES, add_batch_axis, export_detector, write_standin_scrfd

REPO = Path(__file__).resolve().parents[2]
ANCHORS_640 = {8: 12800, 16: 3200, 32: 800}


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    return write_standin_scrfd(tmp_path_factory.mktemp("scrfd"), seed=0)


def dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def images(batch: int, seed: int) -> np.ndarray:
    return seeded((batch, 3, 640, 640), seed, -127.5 / 128, 127.5 / 128)


def test_standin_has_official_io_pattern(standin):
    model = onnx.load(str(standin))
    assert [i.name for i in model.graph.input] == ["input.1"]
    shape = dims(model.graph.input[0])
    assert shape[:2] == [1, 3] and all(isinstance(d, str) for d in shape[2:])   # batch 1, dynamic H/W
    assert len(model.graph.output) == 9

    producers = {o: n for n in model.graph.node for o in n.output}
    perms = []
    for index, out in enumerate(model.graph.output):
        node = producers[out.name]
        if index < 3:
            assert node.op_type == "Sigmoid"
            node = producers[node.input[0]]
        assert node.op_type == "Reshape"
        transpose = producers[node.input[0]]
        assert transpose.op_type == "Transpose"
        perms.append(list(onnx.helper.get_attribute_value(transpose.attribute[0])))
    assert perms == [[2, 3, 0, 1]] * 9

    sess = ort_session(standin)
    for side in (640, 320):   # dynamic H/W: anchor counts follow the canvas
        outs = sess.run(None, {"input.1": seeded((1, 3, side, side), 1)})
        want = [((side // s) ** 2 * 2, c) for c in (1, 4, 10) for s in (8, 16, 32)]
        assert [o.shape for o in outs] == want
        assert all(0.0 <= o.min() and o.max() <= 1.0 for o in outs[:3])


def test_standin_is_byte_reproducible(standin, tmp_path):
    (tmp_path / "again").mkdir()
    again = write_standin_scrfd(tmp_path / "again", seed=0)
    other = write_standin_scrfd(tmp_path, seed=1)
    assert again.read_bytes() == standin.read_bytes()
    assert other.read_bytes() != standin.read_bytes()


def check_batched_against_single(original: Path, batched: Path):
    """Each image of a batch of 3 must equal the original file run on that image alone."""
    model = onnx.load(str(batched))
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    want_shapes = [["N", ANCHORS_640[int(n.split("_")[1])], {"score": 1, "bbox": 4, "kps": 10}[n.split("_")[0]]]
                   for n in OUTPUT_NAMES]
    assert [dims(o) for o in model.graph.output] == want_shapes
    assert dims(model.graph.input[0]) == ["N", 3, 640, 640]

    x = images(3, seed=7)
    got = ort_session(batched).run(None, {"input.1": x})
    ref = ort_session(original)
    for i in range(3):
        single = ref.run(None, {ref.get_inputs()[0].name: x[i:i + 1]})
        for g, s in zip(got, single):
            np.testing.assert_allclose(g[i], s, rtol=0, atol=1e-5)


def test_add_batch_axis_keeps_each_image(standin, tmp_path):
    out = add_batch_axis(standin, tmp_path / "scrfd_batched.onnx")
    check_batched_against_single(standin, out)


def _variant(standin: Path, kind: str, out: Path) -> Path:
    """Re-encode the stand-in's Reshape targets the other ways an exporter/simplifier may leave them."""
    if kind == "slimmed":   # what a simplifier run at batch 1 leaves (InsightFace ran onnxsim)
        import onnxslim
        onnx.save(onnxslim.slim(str(standin)), str(out))
        return out
    graph = gs.import_onnx(onnx.load(str(standin)))
    for k, node in enumerate([n for n in graph.nodes if n.op == "Reshape"]):
        transposed = node.inputs[0]
        channels = int(np.asarray(node.inputs[1].inputs[0].attrs["value"].values)[-1])
        if kind == "initializer":
            node.inputs[1] = gs.Constant(f"shape_init_{k}", np.array([-1, channels], np.int64))
        else:   # Shape -> Gather -> Div -> Unsqueeze -> Concat, computed from the transposed tensor
            shape = graph.layer(op="Shape", inputs=[transposed], outputs=[f"chain_shape_{k}"])[0]
            last = graph.layer(op="Gather", inputs=[shape, gs.Constant(f"chain_i_{k}", np.array(3, np.int64))],
                               outputs=[f"chain_gather_{k}"], attrs={"axis": 0})[0]
            half = graph.layer(op="Div", inputs=[last, gs.Constant(f"chain_two_{k}", np.array(2, np.int64))],
                               outputs=[f"chain_div_{k}"])[0]
            vec = graph.layer(op="Unsqueeze", inputs=[half], outputs=[f"chain_vec_{k}"], attrs={"axes": [0]})[0]
            node.inputs[1] = graph.layer(op="Concat", inputs=[gs.Constant(f"chain_m1_{k}", np.array([-1], np.int64)),
                                                              vec], outputs=[f"chain_{k}"], attrs={"axis": 0})[0]
    graph.cleanup().toposort()
    onnx.save(gs.export_onnx(graph), str(out))
    return out


@pytest.mark.parametrize("kind", ["initializer", "shape_chain", "slimmed"])
def test_add_batch_axis_handles_other_encodings(standin, tmp_path, kind):
    source = _variant(standin, kind, tmp_path / f"{kind}.onnx")
    out = add_batch_axis(source, tmp_path / f"{kind}_batched.onnx")
    check_batched_against_single(source, out)


def test_export_detector_reports_parity(standin, tmp_path):
    row = export_detector(standin, tmp_path / "det.onnx")
    assert row.ok and row.batches == (1, 3)
    assert row.max_rel <= 1e-4 and row.stacked_max_abs <= 1e-5


def test_not_an_scrfd_file_names_the_file(standin, tmp_path):
    from ghostrt.runtime.nets.retinaface_model import write_retinaface_onnx

    retina = write_retinaface_onnx(tmp_path / "retinaface.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf" * 10)
    batched = add_batch_axis(standin, tmp_path / "already.onnx")
    fixed = onnx.load(str(standin))
    for dim, value in zip(fixed.graph.input[0].type.tensor_type.shape.dim[2:], (320, 320)):
        dim.dim_value = value
    onnx.save(fixed, str(tmp_path / "fixed320.onnx"))
    for bad in (retina, junk, tmp_path / "missing.onnx", batched, tmp_path / "fixed320.onnx"):
        with pytest.raises(GhostError, match=str(bad.name)):
            add_batch_axis(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
