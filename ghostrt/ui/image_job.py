"""The image tab's swap: the same Swapper calls and the same writers as `ghostrt swap image`, so the page's
result equals the CLI's for the same inputs (labelled PNG, debug sheet beside it)."""

import tempfile
from pathlib import Path
from types import SimpleNamespace

from ghostrt.errors import GhostError

MODES = ("largest", "all", "choose")


def parse_assign(text: str, faces: int, sources: int) -> list[tuple[int, int]]:
    """'face:source,face:source' (0-based) -> pairs; every index checked against what was uploaded."""
    pairs = []
    for part in (p for p in text.split(",") if p.strip()):
        try:
            face, source = (int(v) for v in part.split(":"))
        except ValueError:
            raise GhostError(f"face choice {part!r}: expected face:source") from None
        if not 0 <= face < faces or not 0 <= source < sources:
            raise GhostError(f"face choice {part!r}: the target has {faces} face(s) and {sources} source(s)")
        pairs.append((face, source))
    if not pairs:
        raise GhostError("no face chosen: pick a source for at least one face in the gallery")
    return pairs


def run(state, target, sources: list, mode: str, assign: str) -> dict:
    from ghostrt.runtime.io import image_io
    from ghostrt.runtime.io.debug_sheet import write_debug_sheet

    if not sources:
        raise GhostError("no source photo: upload at least one photo of the identity to put in")
    if mode not in MODES:
        raise GhostError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    sw = state.sw
    with state.lock:
        if mode == "choose":
            pairs = parse_assign(assign, len(target.faces or []), len(sources))
            who = [state.identity(sources[s]) for _, s in pairs]
            res = sw.swap(target.rgb, who, targets=[target.faces[f] for f, _ in pairs])
        else:                        # the CLI's default: all sources averaged into one identity
            who = sw.identity([s.rgb for s in sources]) if len(sources) > 1 else state.identity(sources[0])
            res = sw.swap(target.rgb, who, faces=mode)
    label = sw.label(len(res.swapped), operation="image face swap")
    out_dir = Path(tempfile.mkdtemp(dir=state.work_dir))
    stem = Path(target.name).stem
    result_path, sheet_path = out_dir / f"{stem}-ghostrt.png", out_dir / f"{stem}-sheet.png"
    image_io.write_image(result_path, res.image, target.alpha, label, target.info.icc_profile)
    shim = SimpleNamespace(frame=res.image, faces=res.faces, swapped=res.swapped, warnings=res.warnings)
    write_debug_sheet(sheet_path, target.rgb, shim, dict(getattr(res, "timings", {}) or {}),
                      standin_models=list(sw.standin_models or []), title=f"{target.name} (ghostrt ui)", label=label)
    return {"swapped": len(res.swapped), "faces": len(res.faces), "warnings": list(res.warnings),
            "result_path": result_path, "sheet_path": sheet_path}
