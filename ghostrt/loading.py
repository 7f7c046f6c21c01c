"""The one place the nets are built: weights resolved (official files, else labelled stand-ins), FP32 ONNX
exported where missing or stale, an executor chosen per net (with the reason), the detector and the crop/paste
stages. The API, every CLI command and the bench call this, so they run exactly the same nets."""

from dataclasses import dataclass, field
from pathlib import Path

from ghostrt.errors import GhostError, at_least_one
from ghostrt.runtime.backends.executors import BACKENDS, PRECISIONS, Choice, make_executor
from ghostrt.runtime.nets.detect import make_detector
from ghostrt.runtime.stages.graph_stages import make_stages
from ghostrt.runtime.swap.core import Nets

DETECTORS = ("scrfd", "retinaface")
USED_MODELS = ("generator", "arcface", "landmarks")
NET_NAMES = ("detector", "arcface", "generator", "landmarks")


@dataclass
class LoadedNets:
    nets: Nets
    choices: dict[str, Choice]          # net -> the executor picked and why
    detector_kind: str                  # "scrfd" or "retinaface"
    standin_models: list[str]           # used nets whose weights are untrained stand-ins
    weights: object                     # ghostrt.weights.resolve.WeightSet
    onnx: dict[str, Path] = field(default_factory=dict)


def check_options(backend: str, precision: str, detector: str | None, num_blocks: int, threads: int | None) -> None:
    if backend not in BACKENDS:
        raise GhostError(f"--backend {backend}: choose from {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise GhostError(f"--precision {precision}: choose from {', '.join(PRECISIONS)}")
    if detector is not None and detector not in DETECTORS:
        raise GhostError(f"--detector {detector}: choose from {', '.join(DETECTORS)}")
    if num_blocks not in (1, 2, 3):
        raise GhostError(f"--num-blocks {num_blocks}: the generator has 1, 2 or 3 blocks")
    at_least_one("--threads", threads)


def check_engines_dir(engines_dir: Path) -> None:
    """FP32 ONNX files live under <engines-dir>/onnx; a path through a regular file can never hold them."""
    existing = Path(engines_dir)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise GhostError(f"{engines_dir}: --engines-dir is not a folder ({existing} is a file)")


def resolve_onnx(weights_dir, engines_dir: Path, detector: str | None, num_blocks: int, log=print):
    """FP32 ONNX per net (exported now if missing or stale), the detector kind, the stand-in nets, the weights."""
    from ghostrt.export.models import ensure_onnx      # torch only when an export is really needed
    from ghostrt.weights.resolve import resolve_weights

    weights = resolve_weights(weights_dir, num_blocks=num_blocks, log=log)
    kind = detector or ("retinaface" if "detector" in weights.standin_models else "scrfd")
    onnx_dir = Path(engines_dir) / "onnx"
    try:
        onnx = {m: ensure_onnx(m, weights_dir, onnx_dir, num_blocks=num_blocks, log=log) for m in USED_MODELS}
        onnx["detector"] = ensure_onnx("detector" if kind == "scrfd" else "retinaface", weights_dir, onnx_dir,
                                       num_blocks=num_blocks, log=log)
    except OSError as err:        # e.g. a read-only --engines-dir or --weights-dir that needs writing
        raise GhostError(f"{err.filename or engines_dir}: {err.strerror or err}") from err
    used = USED_MODELS + (("detector",) if kind == "scrfd" else ())
    standin = [m for m in used if m in weights.standin_models]
    return onnx, kind, standin, weights


def build_nets(onnx: dict, kind: str, backend: str = "auto", precision: str = "fp16", engines_dir=Path("engines"),
               threads: int | None = None, graph_stages: bool = False) -> tuple[Nets, dict[str, Choice]]:
    engines_dir = Path(engines_dir)
    choices = {m: make_executor(onnx[m], backend, precision, engines_dir, threads) for m in NET_NAMES}
    stages = make_stages(choices["generator"].backend, engines_dir, threads, graph_stages)
    nets = Nets(detector=make_detector(kind, choices["detector"].executor), arcface=choices["arcface"].executor,
                generator=choices["generator"].executor, landmarks=choices["landmarks"].executor, stages=stages)
    return nets, choices


def load_nets(backend: str = "auto", precision: str = "fp16", weights=None, engines="engines",
              detector: str | None = None, num_blocks: int = 2, threads: int | None = None,
              graph_stages: bool = False, log=print) -> LoadedNets:
    check_options(backend, precision, detector, num_blocks, threads)
    engines_dir = Path(engines)
    check_engines_dir(engines_dir)
    onnx, kind, standin, resolved = resolve_onnx(weights, engines_dir, detector, num_blocks, log)
    nets, choices = build_nets(onnx, kind, backend, precision, engines_dir, threads, graph_stages)
    return LoadedNets(nets, choices, kind, standin, resolved, onnx)
