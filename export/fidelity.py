"""How far an FP16 or INT8 ONNX strays from its FP32 original, measured in what each net is for, on real photos.

Every net gets raw-output numbers (relative error against the output's scale, cosine); then the task numbers:
generator PSNR (dB, images in [-1, 1], peak-to-peak 2), ArcFace embedding cosine, detector faces (every FP32
face found, box IoU, keypoint error in px and as a share of the inter-ocular distance) and landmark point error
(share of inter-ocular distance). Detector box and keypoint errors are read at the anchor that produced each
FP32 face (see anchor_aligned_rows); the after-NMS numbers are recorded too. Both files run on ONNX Runtime's
CPU provider through Polygraphy's OnnxrtRunner with graph optimisations off, so Q/DQ pairs execute as written:
simulated quantisation, i.e. the arithmetic a TensorRT INT8 kernel implements, not ONNX Runtime's own fused
int8 kernels.
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ghostrt.errors import GhostError, file_error

DETECTORS = {"detector": "scrfd", "retinaface": "retinaface"}
PAIR_IOU = 0.5                  # an FP32 face counts as found when a variant face overlaps it this much
LANDMARK_IOD_192 = 65.08 * 0.5714286   # frontal-template inter-ocular distance (224 crop) in the 192 input
MISSED_FACE_SCORE = 2.0
# Keypoint errors are divided by the inter-ocular distance, floored at this share of the box width: a frontal
# face's IOD is ≈ 0.47 of its box width, a profile face's eyes nearly overlap and would divide by ~0.
IOD_FLOOR_BOX_WIDTH = 0.4


@dataclass(frozen=True)
class Gate:
    generator_psnr_db: float
    arcface_cosine: float
    detector_iou: float = 0.85
    detector_kps_iod: float = 0.05
    landmarks_iod: float = 0.02
    raw_cosine: float | None = None     # optional, any net: worst output cosine


GATES = {"fp16": Gate(generator_psnr_db=40.0, arcface_cosine=0.999),
         "bf16": Gate(generator_psnr_db=40.0, arcface_cosine=0.999),    # OpenVINO on the CPU: FP16's bar
         "int8": Gate(generator_psnr_db=30.0, arcface_cosine=0.99)}


# ------------------------------------------------------------------------------------------------- runner

def runner_name() -> str:
    import onnxruntime
    import polygraphy

    return (f"polygraphy {polygraphy.__version__} OnnxrtRunner / onnxruntime {onnxruntime.__version__} "
            f"CPUExecutionProvider, graph optimisations off")


def _session(onnx_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    model = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
        raise file_error(_label(onnx_path), f"ONNX Runtime cannot load it: {str(err).splitlines()[0][:200]}") from err


def _label(onnx_path) -> str:
    return "(in-memory ONNX)" if isinstance(onnx_path, bytes) else str(onnx_path)


def run_onnx(onnx_path, inputs: Mapping[str, np.ndarray], chunk: int = 4) -> dict[str, np.ndarray]:
    """All outputs of `onnx_path` (a path, or serialized bytes) for batch-first `inputs`, `chunk` at a time."""
    from polygraphy.backend.onnxrt import OnnxrtRunner

    count = len(next(iter(inputs.values())))
    parts: dict[str, list[np.ndarray]] = {}
    with OnnxrtRunner(_session(onnx_path), name=Path(_label(onnx_path)).name) as runner:
        names = list(runner.get_input_metadata(use_numpy_dtypes=False).keys())
        missing = [n for n in names if n not in inputs]
        if missing:
            raise file_error(_label(onnx_path), f"inputs {missing} not in the sample set (has {sorted(inputs)})")
        for start in range(0, count, chunk):
            feed = {n: np.ascontiguousarray(inputs[n][start:start + chunk], np.float32) for n in names}
            for name, value in runner.infer(feed).items():
                parts.setdefault(name, []).append(np.asarray(value, np.float32))
    return {name: np.concatenate(values) for name, values in parts.items()}


# ------------------------------------------------------------------------------------------------ metrics

def psnr_db(reference: np.ndarray, test: np.ndarray, peak_to_peak: float = 2.0) -> float:
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak_to_peak ** 2 / mse)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return 1.0 if denom == 0 and not a.any() and not b.any() else float(a @ b / max(denom, 1e-300))


def relative_error(reference: np.ndarray, test: np.ndarray) -> float:
    """max |test − ref| / max |ref| (scale-relative: element-wise ratios blow up where outputs cross zero)."""
    err = float(np.max(np.abs(test.astype(np.float64) - reference)))
    return 0.0 if err == 0 else err / max(float(np.max(np.abs(reference))), 1e-12)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def match_faces(reference: Sequence, test: Sequence) -> list[dict]:
    """For each FP32 face: the best-overlapping variant face after NMS, its IoU and keypoint errors."""
    rows = []
    for ref in reference:
        ious = [box_iou(ref.box, t.box) for t in test]
        best = int(np.argmax(ious)) if ious else -1
        iod = inter_ocular(ref.box, ref.kps)
        if best < 0 or ious[best] < PAIR_IOU:
            rows.append({"found": False, "iou": 0.0, "kps_px": None, "kps_iod": None, "iod_px": iod})
            continue
        kps_px = float(np.max(np.linalg.norm(test[best].kps - ref.kps, axis=1)))
        rows.append({"found": True, "iou": ious[best], "kps_px": kps_px, "kps_iod": kps_px / iod, "iod_px": iod})
    return rows


def inter_ocular(box: np.ndarray, kps: np.ndarray) -> float:
    return max(float(np.linalg.norm(kps[1] - kps[0])), IOD_FLOOR_BOX_WIDTH * float(box[2] - box[0]), 1e-6)


def anchor_predictions(model: str, outputs: Mapping[str, np.ndarray], b: int, size: int):
    """Every anchor's decoded box (A, 4), keypoints (A, 5, 2) in canvas pixels and face score (A,), image `b`."""
    from ghostrt.runtime.nets import detect, retinaface_model

    if model == "retinaface":
        boxes, kps = retinaface_model.decode(outputs["loc"][b], outputs["landmarks"][b], size)
        return boxes, kps, outputs["conf"][b][:, 1]
    arrays = [outputs[n] for n in detect.SCRFD_OUTPUTS] if all(n in outputs for n in detect.SCRFD_OUTPUTS) \
        else list(outputs.values())
    arrays = [a[None] if a.ndim == 2 else a for a in arrays]
    boxes, kps, scores = [], [], []
    for level, stride in enumerate(detect.STRIDES):
        centres = detect.anchor_centres(size, stride)
        dist = arrays[3 + level][b].reshape(-1, 4) * stride
        boxes.append(np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], axis=1))
        kps.append(centres[:, None, :] + arrays[6 + level][b].reshape(-1, 5, 2) * stride)
        scores.append(arrays[level][b].reshape(-1))
    return np.concatenate(boxes), np.concatenate(kps), np.concatenate(scores)


def anchor_aligned_rows(model: str, frames, reference, test, reference_faces, test_faces, size: int) -> list[dict]:
    """For each FP32 face: found after NMS in the variant (IoU ≥ PAIR_IOU), and the variant's box and keypoints
    at the very anchor that produced the FP32 face. Comparing the same anchor measures the precision change
    itself; after NMS, near-tied neighbouring anchors swap places even between two FP32-equivalent graphs,
    which moves a small face's box by a few pixels without any layer being quantised (the NMS-level numbers
    are reported beside these)."""
    rows = []
    for b, frame in enumerate(frames):
        scale = size / max(frame.shape[:2])
        ref_boxes, ref_kps, ref_scores = anchor_predictions(model, reference, b, size)
        test_boxes, test_kps, test_scores = anchor_predictions(model, test, b, size)
        for face in reference_faces[b]:
            anchor = int(np.argmin(np.abs(ref_boxes - face.box * scale).sum(axis=1)))
            found = any(box_iou(face.box, t.box) >= PAIR_IOU for t in test_faces[b])
            kps_px = float(np.max(np.linalg.norm(test_kps[anchor] - ref_kps[anchor], axis=1))) / scale
            rows.append({"found": found, "iou": box_iou(ref_boxes[anchor], test_boxes[anchor]), "kps_px": kps_px,
                         "kps_iod": kps_px / inter_ocular(face.box, face.kps),
                         "score_change": float(abs(test_scores[anchor] - ref_scores[anchor]))})
    return rows


def landmark_points(output: np.ndarray) -> np.ndarray:
    """2d106det output (N, 212) → (N, 106, 2) points in the 192-px input."""
    return (output.reshape(len(output), 106, 2) + 1.0) * 96.0


# ------------------------------------------------------------------------------------------ task numbers

def decode_faces(model: str, frames: Sequence[np.ndarray], outputs: Mapping[str, np.ndarray]) -> list[list]:
    """Faces per frame from recorded raw outputs, through the runtime's own detect stage."""
    from ghostrt.runtime.nets.detect import make_detector

    class Replay:  # an Executor that hands back outputs already computed
        input_names = ["input"]
        output_names = list(outputs)

        def run(self, feeds):
            return dict(outputs)

    return make_detector(DETECTORS[model], Replay()).detect(list(frames))


def raw_numbers(reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray]) -> dict:
    rel = {n: relative_error(reference[n], test[n]) for n in reference}
    cos = {n: cosine(reference[n], test[n]) for n in reference}
    return {"max_rel_error": max(rel.values()), "min_cosine": min(cos.values()),
            "per_output": {n: {"rel_error": rel[n], "cosine": cos[n]} for n in reference}}


def task_numbers(model: str, reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray],
                 frames=None, reference_faces=None) -> dict:
    """The numbers the gate reads, plus `error_score` (lower is better) used to rank layer sensitivity."""
    if model == "generator":
        (ref,), (out,) = reference.values(), test.values()
        psnr = [psnr_db(r, t) for r, t in zip(ref, out)]
        mse = float(np.mean((ref.astype(np.float64) - out) ** 2))
        return {"psnr_db_min": min(psnr), "psnr_db_mean": float(np.mean(psnr)),
                "error_score": mse / max(float(np.var(ref)), 1e-12)}
    if model == "arcface":
        (ref,), (out,) = reference.values(), test.values()
        cos = [cosine(r, t) for r, t in zip(ref, out)]
        return {"embedding_cosine_min": min(cos), "embedding_cosine_mean": float(np.mean(cos)),
                "error_score": 1.0 - float(np.mean(cos))}
    if model == "landmarks":
        (ref,), (out,) = reference.values(), test.values()
        err = np.linalg.norm(landmark_points(ref) - landmark_points(out), axis=2).mean(axis=1) / LANDMARK_IOD_192
        return {"point_error_iod_max": float(err.max()), "point_error_iod_mean": float(err.mean()),
                "inter_ocular_px": LANDMARK_IOD_192, "error_score": float(err.mean())}
    if model in DETECTORS:
        from ghostrt.runtime.nets.detect import SIZE

        if reference_faces is None:
            reference_faces = decode_faces(model, frames, reference)
        test_faces = decode_faces(model, frames, test)
        rows = anchor_aligned_rows(model, frames, reference, test, reference_faces, test_faces, SIZE)
        nms_rows = [row for ref, got in zip(reference_faces, test_faces) for row in match_faces(ref, got)]
        nms_found = [r for r in nms_rows if r["found"]]
        extra = sum(len(t) for t in test_faces) - sum(len(r) for r in reference_faces)
        score = [MISSED_FACE_SCORE if not r["found"] else (1 - r["iou"]) + r["kps_iod"] + r["score_change"]
                 for r in rows]
        return {"faces_fp32": len(rows), "faces_found": sum(r["found"] for r in rows), "faces_extra": max(extra, 0),
                "box_iou_min": min((r["iou"] for r in rows), default=1.0),
                "box_iou_mean": float(np.mean([r["iou"] for r in rows])) if rows else None,
                "kps_px_max": max((r["kps_px"] for r in rows), default=0.0),
                "kps_iod_max": max((r["kps_iod"] for r in rows), default=0.0),
                "kps_iod_mean": float(np.mean([r["kps_iod"] for r in rows])) if rows else None,
                "score_change_max": max((r["score_change"] for r in rows), default=0.0),
                "nms_box_iou_min": min((r["iou"] for r in nms_rows), default=1.0),
                "nms_kps_px_max": max((r["kps_px"] for r in nms_found), default=0.0),
                "nms_kps_iod_max": max((r["kps_iod"] for r in nms_found), default=0.0),
                "error_score": float(np.mean(score)) if score else 0.0}
    worst = min(cosine(reference[n], test[n]) for n in reference)
    return {"error_score": 1.0 - worst}     # any other net: raw outputs only


def gate_failures(model: str, numbers: Mapping, gate: Gate) -> list[str]:
    """Human-readable reasons the numbers miss the gate (empty list: passed)."""
    fails = []
    raw_cos = numbers.get("raw_min_cosine")
    if gate.raw_cosine is not None and raw_cos is not None and raw_cos < gate.raw_cosine:
        fails.append(f"output cosine {raw_cos:.5f} < {gate.raw_cosine}")
    if model == "generator" and numbers["psnr_db_min"] < gate.generator_psnr_db:
        fails.append(f"PSNR {numbers['psnr_db_min']:.2f} dB < {gate.generator_psnr_db} dB")
    if model == "arcface" and numbers["embedding_cosine_min"] < gate.arcface_cosine:
        fails.append(f"embedding cosine {numbers['embedding_cosine_min']:.5f} < {gate.arcface_cosine}")
    if model == "landmarks" and numbers["point_error_iod_max"] > gate.landmarks_iod:
        fails.append(f"landmark error {100 * numbers['point_error_iod_max']:.2f} % IOD > "
                     f"{100 * gate.landmarks_iod:.0f} %")
    if model in DETECTORS:
        if numbers["faces_found"] < numbers["faces_fp32"]:
            fails.append(f"found {numbers['faces_found']} of {numbers['faces_fp32']} FP32 faces")
        if numbers["faces_found"] and numbers["box_iou_min"] < gate.detector_iou:
            fails.append(f"box IoU {numbers['box_iou_min']:.3f} < {gate.detector_iou}")
        if numbers["kps_iod_max"] > gate.detector_kps_iod:
            fails.append(f"keypoint error {100 * numbers['kps_iod_max']:.2f} % IOD > "
                         f"{100 * gate.detector_kps_iod:.0f} %")
    return fails


# -------------------------------------------------------------------------------------- one comparison

class Reference:
    """The FP32 file's outputs (and faces) on the sample inputs, computed once and compared many times."""

    def __init__(self, model: str, onnx_path, inputs: Mapping[str, np.ndarray], frames=None):
        if model in DETECTORS and frames is None:
            raise GhostError(f"{model}: detector fidelity needs the frames behind the canvases")
        self.model, self.onnx_path, self.inputs, self.frames = model, Path(onnx_path), dict(inputs), frames
        self.outputs = run_onnx(onnx_path, inputs)
        self.faces = decode_faces(model, frames, self.outputs) if model in DETECTORS else None

    def compare(self, test_onnx, test_outputs=None) -> dict:
        test = run_onnx(test_onnx, self.inputs) if test_outputs is None else test_outputs
        raw = raw_numbers(self.outputs, test)
        task = task_numbers(self.model, self.outputs, test, self.frames, self.faces)
        return {"raw": raw, "task": {**task, "raw_min_cosine": raw["min_cosine"]}}


def reference_for(model: str, fp32: Path, weights_dir=None, onnx_dir=None) -> Reference:
    """The FP32 reference on the validation set, with the generator's source identities from the FP32 ArcFace:
    the one every variant, engine and blob of a net is gated against."""
    embed = None
    if model == "generator":
        from ghostrt.calibration.build import arcface_embedder

        embed = arcface_embedder(weights_dir, onnx_dir or Path(fp32).parent)
    return validation_reference(model, fp32, embed)


def validation_reference(model: str, fp32_onnx, embed=None) -> Reference:
    """Reference on the fixed real-photo validation set (packaged photos + multi-face grids). For the generator,
    `embed(faces112) -> N×512` (the FP32 ArcFace) gives each target another validation face's identity;
    without it the source embeddings are random vectors of raw-embedding norm."""
    from ghostrt.calibration.build import validation_inputs, validation_photos

    frames = [image for _, image in validation_photos()] if model in DETECTORS else None
    inputs = dict(validation_inputs(model))
    if embed is not None and "source_embedding" in inputs:
        faces = validation_inputs("arcface")["face"]
        inputs["source_embedding"] = np.roll(np.asarray(embed(faces), np.float32), 1, axis=0)
    return Reference(model, fp32_onnx, inputs, frames)


def fidelity_row(model: str, precision: str, reference: Reference, test_onnx, untrained: bool,
                 gate: Gate | None = None) -> dict:
    """One JSON-ready row: numbers, which runner made them, and the verdict (gate skipped for untrained INT8)."""
    gate = gate or GATES[precision]
    numbers = reference.compare(test_onnx)
    applied = not (untrained and precision == "int8")
    fails = gate_failures(model, numbers["task"], gate) if applied else []
    return {"model": model, "precision": precision, "onnx": str(test_onnx), "fp32_onnx": str(reference.onnx_path),
            "runner": runner_name(), "samples": len(next(iter(reference.inputs.values()))),
            "weights": "untrained: numbers only" if untrained and not applied else
                       ("untrained stand-in" if untrained else "trained"),
            "gate": asdict(gate), "gate_applied": applied, "passed": (not fails) if applied else None,
            "failures": fails, **numbers}
