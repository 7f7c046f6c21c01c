"""FP16 / INT8 ONNX variants of small constructed nets, and the accuracy-gated INT8 fallback."""

from pathlib import Path

import numpy as np
import pytest

from ghostrt.export import fidelity, precision



def _model(nodes, inputs, outputs, weights):
    import onnx
    from onnx import helper, numpy_helper

    graph = helper.make_graph(nodes, "toy", inputs, outputs,
                              [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _norm_net(path: Path) -> Path:
    """Conv → InstanceNorm → Relu → Conv on N×3×16×16 (float32 I/O); 16 channels, since ModelOpt leaves
    convs with fewer than 16 (and not a multiple of 8) in high precision."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("InstanceNormalization", ["c1", "s", "b"], ["n1"], name="norm", epsilon=1e-5),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 16, 16])],
                   {"w1": rng.normal(0, 0.3, (16, 3, 3, 3)), "s": np.ones(16), "b": np.zeros(16),
                    "w2": rng.normal(0, 0.1, (16, 16, 3, 3))})
    onnx.save(model, str(path))
    return path


def _outlier_net(path: Path) -> Path:
    """conv1 (1×1) copies 16 channels and multiplies channel 0 by 1000; conv2 (1×1) reads only channels 1–15.
    With max calibration conv2's per-tensor input scale is set by the ×1000 channel, so channels 1–15 round to
    ~0 in INT8: conv2 is the sensitive layer, conv1 (weights per-channel, input ~N(0, 1)) is not."""
    import onnx
    from onnx import TensorProto, helper

    w1 = np.eye(16).reshape(16, 16, 1, 1)
    w1[0] *= 1000.0
    w2 = np.zeros((16, 16, 1, 1))
    w2[:, 1:, 0, 0] = np.random.default_rng(1).normal(0, 1, (16, 15))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["t"], name="conv1"),
             helper.make_node("Conv", ["t", "w2"], ["y"], name="conv2")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 8, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 8, 8])], {"w1": w1, "w2": w2})
    onnx.save(model, str(path))
    return path


def _elem_types(model):
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    return types


def test_fp16_keeps_instance_norm_fp32_and_matches_fp32(tmp_path):
    import onnx
    from onnx import TensorProto

    src = _norm_net(tmp_path / "toy.onnx")
    dst = precision.make_fp16_onnx(src, tmp_path / "toy.fp16.onnx", "toy")
    model = onnx.load(str(dst))
    types = _elem_types(model)
    norm = next(n for n in model.graph.node if n.op_type == "InstanceNormalization")
    assert all(types[name] == TensorProto.FLOAT for name in [*norm.input, *norm.output])
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.input[1]] == TensorProto.FLOAT16 for n in convs)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT]
    # Inputs of ±300: x² reaches 9e4, past float16's 65504, so an FP16 InstanceNorm would overflow.
    x = np.random.default_rng(3).uniform(-300, 300, (2, 3, 16, 16)).astype(np.float32)
    ref = fidelity.run_onnx(src, {"x": x})["y"]
    got = fidelity.run_onnx(dst, {"x": x})["y"]
    assert np.isfinite(got).all()
    scale = float(np.abs(ref).max())
    assert fidelity.psnr_db(ref / scale, got / scale) >= fidelity.GATES["fp16"].generator_psnr_db
    assert fidelity.cosine(ref, got) >= 0.999


def test_int8_has_qdq_nodes_and_reports_full_coverage(tmp_path):
    import onnx

    src = _norm_net(tmp_path / "toy.onnx")
    npz = tmp_path / "cal.npz"
    np.savez(npz, **{"toy/x": np.random.default_rng(4).normal(size=(8, 3, 16, 16)).astype(np.float32)})
    dst, report = precision.make_int8_onnx(src, tmp_path / "toy.int8.onnx", "toy", npz, method="max")
    model = onnx.load(str(dst))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 4
    assert precision.int8_layers(model) == {"conv1", "conv2"}
    assert report["int8_coverage_pct"] == pytest.approx(100.0) and report["calibration_samples"] == 8
    x = np.random.default_rng(5).normal(size=(2, 3, 16, 16)).astype(np.float32)
    assert fidelity.cosine(fidelity.run_onnx(src, {"x": x})["y"], fidelity.run_onnx(dst, {"x": x})["y"]) > 0.95


def test_layer_macs_count_conv_multiply_accumulates(tmp_path):
    src = _norm_net(tmp_path / "toy.onnx")
    macs = precision.layer_macs(src, {"x": np.zeros((1, 3, 16, 16), np.float32)})
    assert macs == {"conv1": 16 * 16 * 16 * 3 * 3 * 3, "conv2": 16 * 16 * 16 * 16 * 3 * 3}


def test_fallback_keeps_the_sensitive_layer_out_of_int8(tmp_path):
    src = _outlier_net(tmp_path / "outlier.onnx")
    rng = np.random.default_rng(6)
    npz = tmp_path / "cal.npz"
    np.savez(npz, **{"outlier/x": rng.normal(size=(8, 16, 8, 8)).astype(np.float32)})
    x = rng.normal(size=(4, 16, 8, 8)).astype(np.float32)
    reference = fidelity.Reference("outlier", src, {"x": x})
    gate = fidelity.Gate(generator_psnr_db=0, arcface_cosine=0, raw_cosine=0.999)
    report = precision.quantize_with_fallback(src, tmp_path / "outlier.int8.onnx", "outlier", npz, gate,
                                              methods=("max",), orders=("damage",), reference=reference,
                                              probe=reference,
                                              log=lambda line: None)
    trial, = report["methods"]
    assert trial["all_int8"]["raw_min_cosine"] < 0.999          # naive INT8 really misses the gate
    assert report["passed"] and report["high_precision_layers"] == ["conv2"]
    assert dict(trial["sensitivity_top"])["conv2"] > dict(trial["sensitivity_top"])["conv1"]
    assert report["int8_coverage_pct"] == pytest.approx(50.0)      # both convs: 16×16 MACs per pixel
    assert report["numbers"]["raw"]["min_cosine"] >= 0.999


def test_high_precision_edit_restores_fp32_weights(tmp_path):
    import onnx

    src = _norm_net(tmp_path / "toy.onnx")
    npz = tmp_path / "cal.npz"
    np.savez(npz, **{"toy/x": np.random.default_rng(7).normal(size=(4, 3, 16, 16)).astype(np.float32)})
    dst, _ = precision.make_int8_onnx(src, tmp_path / "toy.int8.onnx", "toy", npz)
    qmodel = onnx.load(str(dst))
    weights = precision.layer_weights(onnx.load(str(src)))
    edited = precision.with_high_precision(qmodel, weights, precision.quantized_nodes(qmodel))
    x = np.random.default_rng(8).normal(size=(2, 3, 16, 16)).astype(np.float32)
    ref = fidelity.run_onnx(src, {"x": x})["y"]
    int8 = fidelity.run_onnx(dst, {"x": x})["y"]
    high = fidelity.run_onnx(edited.SerializeToString(), {"x": x})["y"]
    assert fidelity.relative_error(ref, high) < 1e-2 < fidelity.relative_error(ref, int8)


@pytest.mark.slow
def test_retinaface_int8_passes_the_gate_with_fallback(tmp_path):
    """The proof on a real trained net: RetinaFace INT8 keeps every FP32 face on real photos and face grids."""
    from ghostrt.calibration.build import build_calibration_set
    from ghostrt.runtime.nets.retinaface_model import write_retinaface_onnx

    src = write_retinaface_onnx(tmp_path / "retinaface.onnx")
    npz = tmp_path / "cal.npz"
    build_calibration_set(npz)
    report = precision.quantize_with_fallback(src, tmp_path / "retinaface.int8.onnx", "retinaface", npz,
                                              fidelity.GATES["int8"], methods=("entropy",), log=lambda line: None)
    task = report["numbers"]["task"]
    assert report["passed"], report["failures"]
    assert task["faces_found"] == task["faces_fp32"] >= 25
    assert task["box_iou_min"] >= 0.85 and task["kps_iod_max"] <= 0.05
    assert report["int8_coverage_pct"] > 50.0
