"""runtime.cpu_floor: MACs counted from ONNX graphs (hand-computed small graphs, and the GHOST nets' structure
against MODELS.md's figures), the floor arithmetic, bf16 reported as unsupported where the CPU lacks it, and one
real OpenVINO throughput measurement. Speed itself is never asserted."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ghostrt.errors import GhostError
from ghostrt.bench import cpu_floor


class GraphBuilder:
    """A tiny ONNX graph writer; weights are shape-only graph inputs, which is all MAC counting needs (the
    GHOST nets' structure costs no memory this way)."""

    def __init__(self):
        self.nodes, self.inputs, self.initializers, self.count = [], [], [], 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def input(self, shape, prefix="w"):
        name = self.name(prefix)
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return name

    def const(self, array):
        name = self.name("c")
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def conv(self, x, cin, cout, k, stride=1, pad=0, group=1):
        w = self.input([cout, cin // group, k, k])
        return self.op("Conv", [x, w], kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4, group=group)

    def conv_transpose(self, x, cin, cout, k, stride, pad):
        w = self.input([cin, cout, k, k])
        return self.op("ConvTranspose", [x, w], kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4)

    def linear(self, x, cin, cout):
        return self.op("Gemm", [x, self.input([cout, cin])], transB=1)

    def up2(self, x):
        return self.op("Resize", [x, "", self.const(np.array([1, 1, 2, 2], np.float32))], mode="linear")

    def model(self, outputs, opset=13):
        graph = helper.make_graph(self.nodes, "g", self.inputs,
                                  [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                                  self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def count(builder_or_model, outputs=(), batch=1):
    model = builder_or_model if isinstance(builder_or_model, onnx.ModelProto) else builder_or_model.model(outputs)
    return cpu_floor.count_macs(model, batch)


def saved(tmp_path, model, name="net"):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------------------- hand-computed MACs

def test_conv_macs_are_outputs_times_kernel_volume_and_scale_with_batch():
    g = GraphBuilder()
    x = g.input(["N", 3, 8, 8], "x")
    same = g.conv(x, 3, 4, 3, stride=1, pad=1)     # 4·8·8 outputs × 3·3·3 = 6912
    g.conv(x, 3, 4, 3, stride=2, pad=1)            # 4·4·4 outputs × 27 = 1728
    g.op("Relu", [same])
    c = count(g, [same])
    assert c.total == 6912 + 1728
    assert c.nodes == {"Conv": 2} and c.ignored == {"Relu": 1} and not c.unresolved
    g2 = GraphBuilder()
    x = g2.input(["N", 3, 8, 8], "x")
    assert count(g2, [g2.conv(x, 3, 4, 3, 1, 1)], batch=3).total == 3 * 6912


def test_grouped_and_depthwise_conv_count_only_their_group_inputs():
    g = GraphBuilder()
    x = g.input([1, 8, 6, 6], "x")
    grouped = g.conv(x, 8, 8, 3, pad=0, group=4)   # 8·4·4 outputs × (8/4)·9 = 2304
    depthwise = g.conv(x, 8, 8, 3, pad=1, group=8)  # 8·6·6 outputs × 1·9 = 2592
    assert count(g, [grouped, depthwise]).by_op == {"Conv": 2304 + 2592}


def test_conv_transpose_counts_input_elements_times_scattered_outputs():
    g = GraphBuilder()
    x = g.input([1, 4, 5, 5], "x")
    y = g.conv_transpose(x, 4, 2, 4, stride=2, pad=1)  # 4·5·5 inputs × 2·4·4 = 3200 (output 2×10×10)
    assert count(g, [y]).by_op == {"ConvTranspose": 3200}


def test_gemm_with_transposes_and_batched_broadcast_matmul():
    g = GraphBuilder()
    a = g.input([3, 16], "a")
    plain = g.op("Gemm", [a, g.input([10, 16])], transB=1)           # 3×16 · 16×10: 480
    at = g.input([16, 3], "at")
    trans_a = g.op("Gemm", [at, g.input([16, 10])], transA=1)         # same product, A stored transposed: 480
    m = g.input(["N", 5, 7, 3], "m")
    batched = g.op("MatMul", [m, g.input([3, 4])])                    # N·5·7·4 outputs × K=3
    c = count(g, [plain, trans_a, batched], batch=2)
    assert c.by_op == {"Gemm": 960, "MatMul": 2 * 5 * 7 * 4 * 3}


def test_resize_sizes_computed_from_shape_are_folded_so_the_next_conv_is_counted():
    """RetinaFace's FPN: Resize `sizes` = Shape(x)[0:2] ++ [16, 16]; ONNX shape inference alone leaves the
    conv after it without a shape."""
    g = GraphBuilder()
    x = g.input(["N", 4, 8, 8], "x")
    shape = g.op("Shape", [x])
    head = g.op("Slice", [shape, g.const(np.array([0], np.int64)), g.const(np.array([2], np.int64))])
    sizes = g.op("Concat", [head, g.const(np.array([16, 16], np.int64))], axis=0)
    up = g.op("Resize", [x, "", "", sizes], mode="nearest")
    y = g.conv(up, 4, 2, 3, pad=1)  # 2·16·16 outputs × 4·9 = 18432
    c = count(g, [y], batch=2)
    assert c.total == 2 * 18432 and not c.unresolved
    assert c.ignored == {"Shape": 1, "Slice": 1, "Concat": 1, "Resize": 1}  # the original graph's ops


def test_net_macs_reads_a_file_and_refuses_dynamic_spatial_dims(tmp_path):
    g = GraphBuilder()
    x = g.input(["N", 3, 8, 8], "x")
    assert cpu_floor.net_macs(saved(tmp_path, g.model([g.conv(x, 3, 4, 3, 1, 1)])), batch=2) == 2 * 6912
    g = GraphBuilder()
    x = g.input(["N", 3, "H", 8], "x")
    with pytest.raises(GhostError, match="dynamic dim 2"):
        cpu_floor.net_macs(saved(tmp_path, g.model([g.conv(x, 3, 4, 3, 1, 1)]), "dyn"))
    with pytest.raises(GhostError, match="does not exist"):
        cpu_floor.net_macs(tmp_path / "missing.onnx")


# ------------------------------------------------------------------ the GHOST nets' structure vs MODELS.md

AAD_BLOCKS = ((1024, 1024, 1024), (1024, 1024, 2048), (1024, 1024, 1024), (1024, 512, 512), (512, 256, 256),
              (256, 128, 128), (128, 64, 64), (64, 3, 64))


def aei_net(num_blocks: int) -> onnx.ModelProto:
    """AEI-Net as MODELS.md describes it (counted ops only need the right shapes; BN/activations left out)."""
    g = GraphBuilder()
    target, z = g.input(["N", 3, 256, 256], "target"), g.input(["N", 512], "z")
    feats, h, widths = [], target, (3, 32, 64, 128, 256, 512, 1024, 1024)
    for cin, cout in zip(widths, widths[1:]):
        h = g.conv(h, cin, cout, 4, stride=2, pad=1)
        feats.append(h)
    attrs, a = [feats[-1]], feats[-1]
    for (cin, cout), skip in zip(((1024, 1024), (2048, 512), (1024, 256), (512, 128), (256, 64), (128, 32)),
                                 reversed(feats[:-1])):
        a = g.op("Concat", [g.conv_transpose(a, cin, cout, 4, 2, 1), skip], axis=1)
        attrs.append(a)
    attrs.append(g.up2(a))

    def aad(x, attr, c_x, c_attr):
        h = g.op("InstanceNormalization", [x, g.input([c_x]), g.input([c_x])])
        g.conv(h, c_x, 1, 1)                                   # conv_h
        g.linear(z, 512, c_x), g.linear(z, 512, c_x)             # fc1, fc2
        return g.op("Add", [h, g.op("Add", [g.conv(attr, c_attr, c_x, 1), g.conv(attr, c_attr, c_x, 1)])])

    def res_block(x, attr, cin, cout, c_attr):
        y = x
        for i in range(num_blocks):
            y = g.conv(g.op("Relu", [aad(y, attr, cin, c_attr)]), cin, cout if i == num_blocks - 1 else cin, 3, 1, 1)
        shortcut = x if cin == cout else g.conv(g.op("Relu", [aad(x, attr, cin, c_attr)]), cin, cout, 3, 1, 1)
        return g.op("Add", [y, shortcut])

    m = g.conv_transpose(g.input(["N", 512, 1, 1], "z_map"), 512, 1024, 2, 1, 0)  # up1
    for i, ((cin, cout, c_attr), attr) in enumerate(zip(AAD_BLOCKS, attrs)):
        m = res_block(m, attr, cin, cout, c_attr)
        m = g.up2(m) if i < 7 else g.op("Tanh", [m])
    return g.model([m])


def iresnet100() -> onnx.ModelProto:
    g = GraphBuilder()
    h, inplanes = g.conv(g.input(["N", 3, 112, 112], "face"), 3, 64, 3, 1, 1), 64
    for blocks, planes in zip((3, 13, 30, 3), (64, 128, 256, 512)):
        for i in range(blocks):
            stride = 2 if i == 0 else 1
            y = g.conv(g.conv(h, inplanes, planes, 3, 1, 1), planes, planes, 3, stride, 1)
            shortcut = g.conv(h, inplanes, planes, 1, stride, 0) if (stride, inplanes) != (1, planes) else h
            h, inplanes = g.op("Add", [y, shortcut]), planes
    return g.model([g.linear(g.op("Flatten", [h]), 512 * 7 * 7, 512)])


@pytest.mark.parametrize("num_blocks, models_md_gmac", [(1, 16.3), (2, 31.0), (3, 45.7)])
def test_aei_net_structure_matches_the_models_md_mac_figures(num_blocks, models_md_gmac):
    c = count(aei_net(num_blocks))
    assert not c.unresolved
    assert round(c.total / 1e9, 1) == models_md_gmac


def test_iresnet100_structure_matches_the_models_md_mac_figure():
    c = count(iresnet100())
    assert round(c.total / 1e9, 1) == 12.1
    assert c.nodes == {"Conv": 1 + 2 * 49 + 4, "Gemm": 1}


# ------------------------------------------------------------------------------------------- the floor

def test_per_face_floor_is_macs_over_throughput_with_the_detector_shared_by_a_frames_faces():
    macs = {"detector": 4_000_000_000, "arcface": 1_000_000_000, "generator": 3_000_000_000, "landmarks": 500_000_000}
    floor = cpu_floor.per_face_floor(macs, gmacs=10.0, faces_per_frame=2)
    assert floor["per_net"]["detector"]["ms"] == pytest.approx(200.0)   # 4 GMAC / 2 faces / 10 GMAC/s
    assert floor["per_net"]["generator"]["ms"] == pytest.approx(300.0)
    assert floor["ms_per_face"] == pytest.approx(200 + 100 + 300 + 50)
    with pytest.raises(GhostError, match="throughput"):
        cpu_floor.per_face_floor(macs, gmacs=0.0)


def test_floor_report_counts_each_net_and_runs_landmarks_twice_per_face(tmp_path, monkeypatch):
    for name, cout in (("detector", 4), ("arcface", 8), ("generator", 16), ("landmarks", 2)):
        g = GraphBuilder()
        x = g.input(["N", 3, 8, 8], "x")
        saved(tmp_path, g.model([g.conv(x, 3, cout, 3, 1, 1)]), name)  # cout · 64 · 27 MACs
    (tmp_path / "generator.fp16.onnx").write_bytes(b"not read: only fp32 nets are counted")
    monkeypatch.setattr(cpu_floor, "measure_matmul_gflops",
                        lambda precision, **_: {"precision": precision, "supported": True, "gmacs": 1e-3,
                                                "runtime_precision": "f32", "ran_as_asked": True,
                                                "engine": "fake", "kind": "conv", "threads": 1})
    report = cpu_floor.floor_report(tmp_path, precisions=("fp32",))
    assert {n: v["macs"] for n, v in report["nets"].items()} == {
        "arcface": 8 * 1728, "detector": 4 * 1728, "generator": 16 * 1728, "landmarks": 2 * 1728}
    floor = report["floor"]["fp32"]
    assert floor["per_net"]["landmarks"]["macs"] == 2 * 2 * 1728
    assert floor["ms_per_face"] == pytest.approx((4 + 8 + 16 + 4) * 1728 / 1e6 * 1e3)
    text = cpu_floor.format_floor(report)
    assert "generator" in text and "ms/face" in text


def test_bf16_is_reported_unsupported_when_the_cpu_lacks_it(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_floor, "cpu_capabilities", lambda: ["FP32", "INT8", "BIN"])
    result = cpu_floor.measure_matmul_gflops("bf16", seconds=0.1)
    assert result["supported"] is False and result["gmacs"] is None
    assert "unsupported on this CPU" in result["reason"]
    for name in ("detector", "arcface", "generator", "landmarks"):
        g = GraphBuilder()
        saved(tmp_path, g.model([g.conv(g.input([1, 3, 8, 8], "x"), 3, 4, 3, 1, 1)]), name)
    report = cpu_floor.floor_report(tmp_path, precisions=("bf16",), seconds=0.1)
    assert report["floor"] == {} and "unsupported on this CPU" in cpu_floor.format_floor(report)


# ------------------------------------------------------------------------------------- real measurement

def test_fp32_and_int8_throughput_are_measured_through_openvino_at_the_precision_asked():
    fp32 = cpu_floor.measure_matmul_gflops("fp32", seconds=0.3, size=128)
    assert fp32["supported"] and fp32["gmacs"] > 0 and fp32["iterations"] >= 5  # at least one per window
    assert fp32["gmacs_worst"] <= fp32["gmacs"] <= fp32["gmacs_best"]
    assert fp32["runtime_precision"] == "f32" and fp32["ran_as_asked"] and fp32["engine"].startswith("OpenVINO")
    if "INT8" in cpu_floor.cpu_capabilities():
        int8 = cpu_floor.measure_matmul_gflops("int8", seconds=0.3, kind="matmul", size=128)
        assert int8["gmacs"] > 0 and int8["runtime_precision"] in ("u8", "i8") and int8["ran_as_asked"]


def test_without_openvino_fp32_falls_back_to_numpy_and_says_so(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    result = cpu_floor.measure_matmul_gflops("fp32", seconds=0.05)
    assert result["gmacs"] > 0 and "numpy" in result["engine"] and "not installed" in result["engine"]
    assert cpu_floor.measure_matmul_gflops("int8", seconds=0.05)["supported"] is False


def test_a_bf16_hint_silently_run_as_f32_is_caught_from_the_compiled_model(monkeypatch):
    """Claim BF16 to get past the capability check: on a CPU without it OpenVINO compiles the bf16 hint as f32
    without complaint, and only the runtime model's precision tells."""
    really_has_bf16 = "BF16" in cpu_floor.cpu_capabilities()
    monkeypatch.setattr(cpu_floor, "cpu_capabilities", lambda: ["FP32", "INT8", "BF16"])
    result = cpu_floor.measure_matmul_gflops("bf16", seconds=0.2, size=64)
    assert result["ran_as_asked"] is really_has_bf16
    assert result["runtime_precision"] == ("bf16" if really_has_bf16 else "f32")
    if not really_has_bf16:
        report = {"nets": {}, "throughput": {"bf16": result}, "swap_runs": {}, "detector": "detector", "floor": {}}
        assert "OpenVINO ran it as f32" in cpu_floor.format_floor(report)


def test_the_floor_uses_the_fastest_probe_shape(monkeypatch):
    """A floor must not be beaten: of the conv probes, the one with the best window counts."""
    rates = {(256, 32): 48.0, (512, 16): 70.0, (128, 64): 64.0}

    def fake(precision, threads=None, seconds=1.0, kind="conv", size=256, spatial=32):
        rate = rates[(size, spatial)]
        return {"precision": precision, "supported": True, "gmacs": rate - 1, "gmacs_best": rate, "size": size,
                "spatial": spatial}
    monkeypatch.setattr(cpu_floor, "measure_matmul_gflops", fake)
    best = cpu_floor.fastest_probe("fp32", None, 0.3)
    assert best["gmacs_best"] == 70.0 and best["probe"] == [512, 16]
    assert [p["gmacs_best"] for p in best["probes"]] == [48.0, 70.0, 64.0]
