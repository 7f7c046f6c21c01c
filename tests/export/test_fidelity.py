"""Fidelity metrics on constructed cases, the gate, and `ghostrt check` failing with exit 2."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ghostrt.export import fidelity
from ghostrt.runtime.types import Face



def test_identical_arrays_are_perfect():
    a = np.random.default_rng(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    assert fidelity.psnr_db(a, a.copy()) == math.inf
    assert fidelity.cosine(a, a.copy()) == pytest.approx(1.0, abs=1e-12)
    assert fidelity.relative_error(a, a.copy()) == 0.0


def test_psnr_of_a_known_perturbation_matches_skimage():
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(1)
    ref = rng.uniform(-0.9, 0.9, (3, 16, 16)).astype(np.float32)
    test = ref + rng.normal(0, 0.01, ref.shape).astype(np.float32)
    want = peak_signal_noise_ratio(ref.astype(np.float64), test.astype(np.float64), data_range=2.0)
    assert fidelity.psnr_db(ref, test) == pytest.approx(want, rel=1e-9)
    # A constant offset d over a range of 2: PSNR = 10·log10(4 / d²) exactly.
    assert fidelity.psnr_db(ref, ref + 0.02) == pytest.approx(10 * math.log10(4 / 0.02 ** 2), abs=1e-3)


def test_cosine_and_relative_error_on_known_vectors():
    a = np.array([1.0, 0.0, 0.0])
    assert fidelity.cosine(a, np.array([0.0, 3.0, 0.0])) == pytest.approx(0.0)
    assert fidelity.cosine(a, 2 * a) == pytest.approx(1.0)
    assert fidelity.relative_error(np.array([2.0, -4.0]), np.array([2.5, -4.0])) == pytest.approx(0.5 / 4.0)


def test_box_iou_and_face_matching():
    assert fidelity.box_iou(np.array([0, 0, 2, 2.0]), np.array([1, 1, 3, 3.0])) == pytest.approx(1 / 7)
    kps = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)
    ref = Face(np.array([0, 0, 100, 120], np.float32), 0.99, kps)
    moved = Face(np.array([0, 0, 100, 120], np.float32), 0.98, kps + np.array([3.0, 4.0], np.float32))
    far = Face(np.array([300, 300, 400, 420], np.float32), 0.99, kps + 300)
    row, = fidelity.match_faces([ref], [far, moved])
    assert row["found"] and row["iou"] == pytest.approx(1.0)
    assert row["kps_px"] == pytest.approx(5.0)
    assert row["kps_iod"] == pytest.approx(5.0 / 40.0)        # eyes 40 px apart, more than 0.4 × box width
    missed, = fidelity.match_faces([ref], [far])
    assert not missed["found"]


def test_landmark_points_map_the_output_range_onto_192_pixels():
    pts = fidelity.landmark_points(np.stack([np.zeros(212), -np.ones(212)]).astype(np.float32))
    assert pts.shape == (2, 106, 2)
    assert np.allclose(pts[0], 96.0) and np.allclose(pts[1], 0.0)


def test_gates_differ_by_precision():
    numbers = {"psnr_db_min": 35.0}
    assert fidelity.gate_failures("generator", numbers, fidelity.GATES["fp16"])
    assert not fidelity.gate_failures("generator", numbers, fidelity.GATES["int8"])
    cos = {"embedding_cosine_min": 0.995}
    assert fidelity.gate_failures("arcface", cos, fidelity.GATES["fp16"])
    assert not fidelity.gate_failures("arcface", cos, fidelity.GATES["int8"])
    det = {"faces_fp32": 5, "faces_found": 4, "box_iou_min": 0.9, "kps_iod_max": 0.01}
    assert any("found 4 of 5" in f for f in fidelity.gate_failures("retinaface", det, fidelity.GATES["int8"]))
    lm = {"point_error_iod_max": 0.03}
    assert fidelity.gate_failures("landmarks", lm, fidelity.GATES["fp16"])


def _scale_net(path: Path, factor: float) -> Path:
    """y = factor · x as an ONNX file (a 'variant' whose error is known exactly)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"], name="scale")], "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.array(factor, np.float32), "k")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_untrained_int8_rows_are_numbers_only_and_fp16_rows_are_gated(tmp_path):
    ref_onnx = _scale_net(tmp_path / "ref.onnx", 1.0)
    off_onnx = _scale_net(tmp_path / "off.onnx", -1.0)          # embedding pointing the other way: cosine −1
    x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    reference = fidelity.Reference("arcface", ref_onnx, {"x": x})
    int8 = fidelity.fidelity_row("arcface", "int8", reference, off_onnx, untrained=True)
    assert int8["weights"] == "untrained: numbers only" and not int8["gate_applied"] and not int8["failures"]
    assert int8["passed"] is None
    assert int8["task"]["embedding_cosine_min"] == pytest.approx(-1.0)
    fp16 = fidelity.fidelity_row("arcface", "fp16", reference, off_onnx, untrained=True)
    assert fp16["gate_applied"] and not fp16["passed"] and fp16["failures"]
    assert "OnnxrtRunner" in fp16["runner"]


def test_check_exits_2_with_the_numbers_when_the_gate_is_missed(tmp_path, capsys):
    from ghostrt.cli import main

    out = tmp_path / "fidelity.json"
    code = main(["check", "--precision", "fp16", "--models", "retinaface", "--onnx-dir", str(tmp_path / "onnx"),
                 "--calibration", str(tmp_path / "none.npz"), "--out", str(out), "--gate", "detector_iou=0.99999"])
    captured = capsys.readouterr()
    assert code == 2
    assert "box IoU" in captured.err and "< 0.99999" in captured.err
    data = json.loads(out.read_text())
    row = data["results"]["retinaface"]["fp16"]
    assert row["gate_applied"] and not row["passed"]
    assert row["task"]["faces_fp32"] >= 25          # 3 photos + a 3×3 and a 4×4 face grid
    assert row["task"]["faces_found"] == row["task"]["faces_fp32"]
    assert row["gate"]["detector_iou"] == 0.99999 and "retinaface" in captured.out
    assert data["machine"]["cores"] >= 1 and data["machine"]["onnxruntime"]
    # The same numbers at the default gate pass: FP16 RetinaFace keeps every face within 0.85 IoU / 5 % IOD.
    assert row["task"]["box_iou_min"] >= 0.85 and row["task"]["kps_iod_max"] <= 0.05


def test_fidelity_json_merges_per_model_and_precision(tmp_path):
    from ghostrt.export.fidelity_check import merge_results

    out = tmp_path / "bench" / "fidelity.json"
    machine = {"cpu": "test", "cores": 1}
    merge_results(out, [{"model": "arcface", "precision": "fp16", "n": 1}], machine)
    merge_results(out, [{"model": "arcface", "precision": "int8", "n": 2},
                        {"model": "generator", "precision": "fp16", "n": 3}], machine)
    merge_results(out, [{"model": "arcface", "precision": "fp16", "n": 4}], machine)
    results = json.loads(out.read_text())["results"]
    assert {m: {p: r["n"] for p, r in v.items()} for m, v in results.items()} == \
        {"arcface": {"fp16": 4, "int8": 2}, "generator": {"fp16": 3}}


def test_gate_overrides_are_checked():
    from ghostrt.errors import GhostError
    from ghostrt.export.fidelity_check import parse_gate, parse_models

    assert parse_gate("int8", ["detector_iou=0.9"]).detector_iou == 0.9
    with pytest.raises(GhostError, match="unknown threshold"):
        parse_gate("fp16", ["psnr=40"])
    with pytest.raises(GhostError, match="unknown"):
        parse_models("arcface,scrfd")


def test_check_compares_engines_only_where_a_gpu_is_visible(tmp_path, monkeypatch):
    """On a GPU machine `ghostrt check` also runs the built engine against FP32; with none it must not try."""
    import argparse

    from ghostrt.export.fidelity_check import engine_numbers
    from ghostrt.runtime.backends import trt_backend

    monkeypatch.setattr(trt_backend, "probe_gpu", lambda: (None, "no GPU (test)"))
    args = argparse.Namespace(onnx_dir=tmp_path / "onnx")
    assert engine_numbers("arcface", "fp16", tmp_path / "onnx" / "arcface.onnx", args) is None
