"""The image tab's swap goes through `Swapper.swap_image`, the call `ghostrt swap image` makes, on the uploaded
file itself: the page's result is the CLI's for the same inputs (watermark, signed C2PA manifest and label
included), and the debug sheet beside it is the CLI's --debug-sheet."""

import tempfile
from pathlib import Path

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
    from ghostrt.ui.uploads import user_message

    if not sources:
        raise GhostError("no source photo: upload at least one photo of the identity to put in")
    if mode not in MODES:
        raise GhostError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    sw = state.sw
    out_dir = Path(tempfile.mkdtemp(dir=state.work_dir))
    stem = Path(target.name).stem
    result_path, sheet_path = out_dir / f"{stem}-ghostrt.png", out_dir / f"{stem}-sheet.png"
    with state.lock:
        if mode == "choose":         # the gallery's faces name the targets (as --target-face photos would)
            pairs = parse_assign(assign, len(target.faces or []), len(sources))
            who = [state.identity(sources[s]) for _, s in pairs]
            targets, faces = [target.faces[f] for f, _ in pairs], "largest"
        else:                        # the CLI's default: all sources averaged into one identity
            who = sw.identity([s.rgb for s in sources]) if len(sources) > 1 else state.identity(sources[0])
            targets, faces = None, mode
        try:
            out = sw.swap_image(target.path, result_path, who, targets=targets, faces=faces,
                                debug_sheet=sheet_path)
        except GhostError as err:
            raise GhostError(user_message(err, target.path)) from None
    res = out.result
    return {"swapped": len(res.swapped), "faces": len(res.faces), "warnings": list(res.warnings),
            "result_path": result_path, "sheet_path": sheet_path}
