"""FP16 and INT8 variants of an FP32 ONNX, for strongly typed engines: the ONNX itself says each layer's precision.

FP16 is ModelOpt AutoCast with normalisation kept in FP32 (InstanceNorm variance overflows in FP16) and float32
I/O, so the runtime feeds the same arrays. INT8 is ModelOpt's explicit Q/DQ post-training quantisation
(calibrated on real face crops), with FP16 for everything not quantised. Because naive INT8 of a trained
detector loses faces, `quantize_with_fallback` ranks every quantised layer by how much damage it does alone
and keeps the worst ones out of INT8 until the fidelity gate passes, then hands back as many as it can.
The search edits Q/DQ graphs in memory (no re-calibration per try); the final file is ModelOpt's own output
with the chosen `nodes_to_exclude`, re-checked against the gate.
"""

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error

FP32_OPS = ("InstanceNormalization", "BatchNormalization", "LayerNormalization", "GroupNormalization")
LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
METHODS = ("entropy", "max")
ORDERS = ("damage", "damage per MAC")   # how kept-out candidates are ranked (see rank_nodes)
AUTOCAST_SAMPLES = 2


# ------------------------------------------------------------------------------------------------- FP16

def make_fp16_onnx(src, dst, model: str, calibration_npz=None) -> Path:
    """AutoCast FP16 ONNX at `dst`; with a calibration set, AutoCast's overflow check sees real activations."""
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise file_error(src, "FP32 ONNX does not exist")
    with tempfile.TemporaryDirectory(prefix="ghostrt-fp16-") as work:
        data = None
        if calibration_npz is not None:
            from ghostrt.calibration.build import load_calibration

            data = str(Path(work) / "autocast_inputs.npz")
            np.savez(data, **{k: v[:AUTOCAST_SAMPLES] for k, v in load_calibration(calibration_npz, model).items()})
        converted = convert_to_mixed_precision(onnx_path=str(src), low_precision_type="fp16",
                                               op_types_to_exclude=list(FP32_OPS), keep_io_types=True,
                                               calibration_data=data, providers=["cpu"])
    with atomic_path(dst) as tmp:
        onnx.save(converted, str(tmp))
    return dst


def fp32_nodes(onnx_path) -> dict[str, int]:
    """Op-type counts of the compute nodes that still produce float32 in a mixed-precision file (what AutoCast
    kept high precision; Cast nodes and shape arithmetic are left out)."""
    import onnx
    from onnx import TensorProto

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.output]}
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("Cast", "Constant", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Slice"):
            continue
        if node.output and types.get(node.output[0]) == TensorProto.FLOAT:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


# ------------------------------------------------------------------------------------------------- INT8

def make_int8_onnx(src, dst, model: str, calibration_npz, method: str = "entropy", exclude=(),
                   max_samples: int | None = None) -> tuple[Path, dict]:
    """ModelOpt INT8 Q/DQ PTQ; layers named in `exclude` stay FP16 (normalisation FP32). `max_samples` caps
    the calibration batch (ONNX Runtime's calibrator holds every sample's activations in memory)."""
    import onnx
    from modelopt.onnx.quantization import quantize

    from ghostrt.calibration.build import load_calibration

    src, dst = Path(src), Path(dst)
    if method not in METHODS:
        raise GhostError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    data = {k: v[:max_samples] for k, v in load_calibration(calibration_npz, model).items()}
    with tempfile.TemporaryDirectory(prefix="ghostrt-int8-") as work:
        # ModelOpt writes intermediate files beside its input: give it a private copy's folder.
        local = Path(work) / src.name
        local.symlink_to(src.resolve())
        with atomic_path(dst) as tmp:
            quantize(onnx_path=str(local), quantize_mode="int8", calibration_data=data, calibration_method=method,
                     calibration_eps=["cpu"], nodes_to_exclude=[f"^{re.escape(n)}$" for n in exclude] or None,
                     op_types_to_exclude_fp16=list(FP32_OPS), high_precision_dtype="fp16",
                     output_path=str(tmp), log_level="ERROR")
    quantised = int8_layers(onnx.load(str(dst)))
    macs = layer_macs(src, {k: v[:1] for k, v in data.items()})
    return dst, {"method": method, "calibration_samples": len(next(iter(data.values()))),
                 "calibration_set": str(calibration_npz), "high_precision_layers": sorted(exclude),
                 **coverage(macs, quantised)}


def int8_layers(model) -> set[str]:
    """Names of Conv/ConvTranspose/Gemm/MatMul nodes whose weight arrives through a DequantizeLinear."""
    producers = {out: node for node in model.graph.node for out in node.output}
    return {n.name for n in model.graph.node if n.op_type in LAYER_OPS and len(n.input) > 1
            and getattr(producers.get(n.input[1]), "op_type", None) == "DequantizeLinear"}


def quantized_nodes(model) -> set[str]:
    """Every node that reads an INT8 tensor: the layers, plus the Add / Resize / Concat ... nodes ModelOpt gives
    Q/DQ inputs (they are candidates for high precision too; Shape only reads metadata)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    skip = {"Shape", "QuantizeLinear", "DequantizeLinear"}
    return int8_layers(model) | {n.name for n in model.graph.node if n.op_type not in skip and any(
        getattr(producers.get(i), "op_type", None) == "DequantizeLinear" for i in n.input)}


def layer_macs(onnx_path, sample) -> dict[str, int]:
    """Multiply-accumulates per layer for one sample, from the shapes ONNX Runtime really produces."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    weights = layer_weights(model)
    layers = [n for n in model.graph.node if n.op_type in LAYER_OPS and weights.get(n.name) is not None]
    known = {o.name for o in model.graph.output}
    for node in layers:
        for name in (node.input[0], node.output[0]):
            if name not in known:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
                known.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    shapes = dict(zip(names, (v.shape for v in session.run(names, dict(sample)))))
    macs = {}
    for node in layers:
        w = weights[node.name].shape
        out, inp = shapes[node.output[0]], shapes[node.input[0]]
        if node.op_type == "Conv":
            macs[node.name] = int(np.prod(out[1:]) * np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":
            macs[node.name] = int(np.prod(inp[2:]) * np.prod(w))
        else:  # Gemm / MatMul: every output element is a K-long dot product
            k = int(np.prod(w)) // int(out[-1])
            macs[node.name] = int(np.prod(out[1:]) * k)
    return macs


def coverage(macs: dict[str, int], quantised: set[str]) -> dict:
    total = sum(macs.values())
    in_int8 = sum(v for k, v in macs.items() if k in quantised)
    return {"int8_coverage_pct": 100.0 * in_int8 / total if total else 0.0, "int8_layers": len(quantised & set(macs)),
            "layers": len(macs), "macs_total": total, "macs_int8": in_int8}


def layer_weights(model) -> dict[str, np.ndarray | None]:
    """Each layer's FP32 weight (input 1), following Identity nodes and Constant outputs."""
    from onnx import numpy_helper

    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            arrays[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    alias = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}

    def resolve(name):
        while name in alias:
            name = alias[name]
        return arrays.get(name)

    return {n.name: resolve(n.input[1]) for n in model.graph.node if n.op_type in LAYER_OPS and len(n.input) > 1}


def with_high_precision(qmodel, fp32_weights: dict, names) -> "onnx.ModelProto":
    """A copy of the Q/DQ model in which the named layers read their input before its Q/DQ pair and their
    original FP32 weights (in the dequantised dtype): the same graph ModelOpt makes for `nodes_to_exclude`,
    without calibrating again."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(qmodel)
    producers = {out: node for node in model.graph.node for out in node.output}
    dtypes = {i.name: i.data_type for i in model.graph.initializer}
    for node in model.graph.node:
        if node.name not in names:
            continue
        for index, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is not None and dq.op_type == "DequantizeLinear":
                q = producers.get(dq.input[0])
                if q is not None and q.op_type == "QuantizeLinear":
                    node.input[index] = q.input[0]
        dq = producers.get(node.input[1]) if node.op_type in LAYER_OPS else None
        if dq is not None and dq.op_type == "DequantizeLinear":
            if fp32_weights.get(node.name) is None:
                raise GhostError(f"layer {node.name}: no FP32 weight found in the source ONNX")
            dtype = helper.tensor_dtype_to_np_dtype(dtypes.get(dq.input[1], onnx.TensorProto.FLOAT))
            weight = numpy_helper.from_array(fp32_weights[node.name].astype(dtype), f"{node.name}/high_precision_w")
            model.graph.initializer.append(weight)
            node.input[1] = weight.name
    return model


# ------------------------------------------------------------------------------------------ the fallback

def _sensitivity_cache(cache_dir, src: Path, qpath: Path, subset_key: str) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256()
    for path in (src, qpath):
        digest.update(path.read_bytes())
    digest.update(subset_key.encode())
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return Path(cache_dir) / f"sensitivity-{digest.hexdigest()[:16]}.json"


def layer_sensitivity(qmodel, fp32_weights: dict, probe, cache: Path | None = None, log=print) -> dict[str, float]:
    """error_score of the model with only that one layer in INT8 (all others high precision), per layer."""
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    layers = sorted(quantized_nodes(qmodel))
    scores = {}
    for i, name in enumerate(layers):
        others = set(layers) - {name}
        edited = with_high_precision(qmodel, fp32_weights, others).SerializeToString()
        scores[name] = probe.compare(edited)["task"]["error_score"]
        log(f"  sensitivity {i + 1:>3}/{len(layers)} {scores[name]:.5f} {name}")
    if cache is not None:
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps(scores, indent=1) + "\n")
    return scores


def rank_nodes(sensitivity: dict[str, float], macs: dict[str, int], order: str) -> list[str]:
    """Candidates for high precision, first = keep out of INT8 first. "damage": the error a node causes alone;
    "damage per MAC": that error above the floor (the least damaging node's) per MAC it would take out of INT8,
    so cheap damaging nodes go before expensive ones (nodes without MACs, e.g. Add/Resize, count as 1)."""
    if order == "damage":
        return sorted(sensitivity, key=lambda n: -sensitivity[n])
    if order == "damage per MAC":
        floor = min(sensitivity.values(), default=0.0)
        return sorted(sensitivity, key=lambda n: -(sensitivity[n] - floor) / max(macs.get(n, 0), 1))
    raise GhostError(f"unknown ranking {order!r}; choose from {', '.join(ORDERS)}")


def search_exclusions(qmodel, fp32_weights, reference, ranking: list[str], failures, log=print):
    """Greedy: keep nodes out of INT8 in `ranking` order until `failures(numbers)` is empty, then give INT8
    back to each kept-out node (last-ranked first) wherever the gate still passes."""
    order = list(ranking)

    def evaluate(excluded):
        numbers = reference.compare(with_high_precision(qmodel, fp32_weights, set(excluded)).SerializeToString())
        return numbers, failures(numbers["task"])

    excluded: list[str] = []
    numbers, fails = evaluate(excluded)
    for name in order:
        if not fails:
            break
        excluded.append(name)
        numbers, fails = evaluate(excluded)
        log(f"  keep {name} high precision ({len(excluded)} kept): {'; '.join(fails) or 'gate passes'}")
    if fails:
        return excluded, numbers, fails
    for name in sorted(excluded, key=order.index, reverse=True):
        trial = [e for e in excluded if e != name]
        trial_numbers, trial_fails = evaluate(trial)
        if not trial_fails:
            excluded, numbers = trial, trial_numbers
            log(f"  back to INT8: {name}")
    return excluded, numbers, []


def quantize_with_fallback(src, dst, model: str, calibration_npz, gate, methods=METHODS, reference=None,
                           probe=None, cache_dir=None, orders=ORDERS, log=print) -> dict:
    """INT8 with the most INT8 MACs that passes `gate` on the validation inputs; every calibration method in
    `methods` × ranking in `orders` is searched and the most INT8 MACs (then the lowest error) wins.
    `reference` and `probe` (a small subset for the per-layer ranking) default to the real-photo validation set."""
    import onnx

    from ghostrt.export import fidelity

    src, dst = Path(src), Path(dst)
    reference = reference or fidelity.validation_reference(model, src)
    probe = probe or _probe_subset(model, reference)
    fp32_weights = layer_weights(onnx.load(str(src)))

    def failures(numbers):
        return fidelity.gate_failures(model, numbers, gate)

    trials = []
    with tempfile.TemporaryDirectory(prefix="ghostrt-fallback-") as work:
        for method in methods:
            qpath, report = make_int8_onnx(src, Path(work) / f"{model}.{method}.onnx", model, calibration_npz, method)
            qmodel = onnx.load(str(qpath))
            naive = reference.compare(str(qpath))
            log(f"{model} INT8 {method}: all layers INT8: {'; '.join(failures(naive['task'])) or 'gate passes'}")
            cache = _sensitivity_cache(cache_dir, src, qpath, f"{len(next(iter(probe.inputs.values())))}")
            sensitivity = layer_sensitivity(qmodel, fp32_weights, probe, cache, log)
            macs = layer_macs(src, {k: v[:1] for k, v in reference.inputs.items()})
            for order in orders:
                ranking = rank_nodes(sensitivity, macs, order)
                excluded, numbers, fails = search_exclusions(qmodel, fp32_weights, reference, ranking, failures, log)
                trials.append({"method": method, "ranking": order, "high_precision_layers": excluded,
                               "passed": not fails, "failures": fails, "all_int8": naive["task"],
                               "task": numbers["task"], **coverage(macs, int8_layers(qmodel) - set(excluded)),
                               "sensitivity_top": sorted(sensitivity.items(), key=lambda kv: -kv[1])[:10],
                               "order": ranking, "calibration_samples": report["calibration_samples"]})
                log(f"{model} INT8 {method}, ranked by {order}: {len(excluded)} nodes kept high precision, INT8 "
                    f"coverage {trials[-1]['int8_coverage_pct']:.1f} % of MACs, "
                    f"{'passes' if not fails else 'misses'} the gate")
        # The final file is ModelOpt's own (its Q/DQ placement around kept-out nodes can differ a little from
        # the in-memory edit), so every passing plan is written and measured again; the best verified one wins.
        passing = [t for t in trials if t["passed"]] or trials
        finals = [_verified_plan(src, Path(work) / f"final{i}.onnx", model, calibration_npz, trial, reference,
                                 failures, log) for i, trial in enumerate(passing)]
        best = max(finals, key=lambda f: (not f["failures"], f["report"]["int8_coverage_pct"],
                                          -f["numbers"]["task"]["error_score"]))
        with atomic_path(dst) as tmp:
            shutil.copyfile(best["path"], tmp)
    trial = best["trial"]
    return {"model": model, "onnx": str(dst), "chosen_method": trial["method"], "chosen_ranking": trial["ranking"],
            "passed": not best["failures"], "failures": best["failures"], **best["report"],
            "numbers": best["numbers"], "runner": fidelity.runner_name(),
            "validation_samples": len(next(iter(reference.inputs.values()))),
            "probe_samples": len(next(iter(probe.inputs.values()))),
            "methods": [{k: v for k, v in t.items() if k != "order"} for t in trials],
            "verified": [{"method": f["trial"]["method"], "ranking": f["trial"]["ranking"],
                          "int8_coverage_pct": f["report"]["int8_coverage_pct"], "failures": f["failures"],
                          "high_precision_layers": len(f["report"]["high_precision_layers"])} for f in finals]}


def _verified_plan(src, path: Path, model: str, calibration_npz, trial: dict, reference, failures, log) -> dict:
    """Write the plan with ModelOpt and measure it; while it misses the gate (where the edited graph passed),
    keep the next-ranked node out of INT8 too."""
    excluded = list(trial["high_precision_layers"])
    while True:
        path, report = make_int8_onnx(src, path, model, calibration_npz, trial["method"], exclude=excluded)
        numbers = reference.compare(str(path))
        fails = failures(numbers["task"])
        rest = [n for n in trial["order"] if n not in excluded]
        if not fails or not rest or not trial["passed"]:
            log(f"{model} INT8 {trial['method']}, ranked by {trial['ranking']}: ModelOpt file "
                f"{'passes' if not fails else 'misses'} the gate at {report['int8_coverage_pct']:.1f} % INT8 MACs")
            return {"path": path, "report": report, "numbers": numbers, "failures": fails, "trial": trial}
        excluded.append(rest[0])
        log(f"  ModelOpt file misses the gate ({'; '.join(fails)}); also keeping {rest[0]} high precision")


def _probe_subset(model: str, reference, count: int = 2):
    """The last `count` validation samples (for detectors: the multi-face grids) rank layer sensitivity."""
    from ghostrt.export.fidelity import Reference

    inputs = {k: v[-count:] for k, v in reference.inputs.items()}
    frames = list(reference.frames[-count:]) if reference.frames is not None else None
    return Reference(model, reference.onnx_path, inputs, frames)
