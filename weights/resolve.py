"""Which weight file each net uses: official files in the weights folder when present, else stand-ins.

The choice is per net and always visible (WeightSet.standin_models), because a swap made with stand-in
weights must never pass for a real one.
"""

from dataclasses import dataclass, field
from pathlib import Path

from ghostrt.errors import GhostError

DEFAULT_DIR = Path("weights")
STANDIN_SUBDIR = "stand-in"
GENERATOR_NAMES = {1: "G_unet_1block.pth", 2: "G_unet_2blocks.pth", 3: "G_unet_3blocks.pth"}


def official_candidates(model: str, num_blocks: int = 2) -> list[str]:
    """File names that count as the official weights of `model`, in order of preference."""
    return {
        "generator": [GENERATOR_NAMES[num_blocks]],
        "arcface": ["backbone.pth"],
        "detector": ["scrfd_10g_bnkps.onnx"],
        "landmarks": ["2d106det-symbol.json", "2d106det.onnx"],
    }[model]


def _present(folder: Path, name: str) -> bool:
    path = folder / name
    if not path.is_file():
        return False
    if name.endswith("-symbol.json"):  # an MXNet pair needs both halves
        return (folder / name.replace("-symbol.json", "-0000.params")).is_file()
    return True


@dataclass
class WeightSet:
    folder: Path
    num_blocks: int
    paths: dict[str, Path] = field(default_factory=dict)
    standin_models: list[str] = field(default_factory=list)

    @property
    def standin(self) -> bool:
        return bool(self.standin_models)

    def path(self, model: str) -> Path:
        return self.paths[model]

    def banner(self) -> str:
        if not self.standin:
            return f"weights: official GHOST files from {self.folder}/"
        return ("!! STAND-IN (untrained) weights for " + ", ".join(self.standin_models) +
                ": not a real face swap. Put the official files in " + f"{self.folder}/ (see `ghostrt weights fetch`).")


def resolve_weights(weights_dir=None, num_blocks: int = 2, create_standins: bool = True, log=print) -> WeightSet:
    """Official files where present; stand-ins (written on first use under <dir>/stand-in/) elsewhere."""
    if num_blocks not in GENERATOR_NAMES:
        raise GhostError(f"--num-blocks {num_blocks}: the generator has 1, 2 or 3 blocks")
    folder = Path(weights_dir) if weights_dir is not None else DEFAULT_DIR
    if weights_dir is not None and not folder.is_dir():
        raise GhostError(f"{folder}: weights folder does not exist")
    standin_dir = folder / STANDIN_SUBDIR
    ws = WeightSet(folder=folder, num_blocks=num_blocks)
    from ghostrt.weights.standin import is_standin_file

    missing, disguised = [], []
    for model in ("generator", "arcface", "detector", "landmarks"):
        names = official_candidates(model, num_blocks)
        found = next((folder / n for n in names if _present(folder, n)), None)
        if found is None:
            missing.append(model)
            found = standin_dir / names[0]
        else:
            halves = [found] + ([found.with_name(found.name.replace("-symbol.json", "-0000.params"))]
                                if found.name.endswith("-symbol.json") else [])
            # a stand-in under an official name: known by its folder's marker or by its content
            why = next((w for w in map(is_standin_file, halves) if w is not None), None)
            if why is not None:
                disguised.append(model)
                log(f"{found}: a STAND-IN (untrained) file, not the official {model} weights ({why})")
        ws.paths[model] = found
    ws.standin_models = [m for m in ("generator", "arcface", "detector", "landmarks") if m in missing + disguised]
    if missing and create_standins:
        absent = [m for m in missing if not _present(standin_dir, official_candidates(m, num_blocks)[0])]
        if absent:
            from ghostrt.weights.standin import write_standins

            log(f"writing stand-in (untrained) weights for {', '.join(absent)} under {standin_dir}/")
            standin_dir.mkdir(parents=True, exist_ok=True)
            write_standins(standin_dir, blocks=(num_blocks,), parts=tuple(absent), log=log)
    return ws
