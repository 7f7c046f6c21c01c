"""`ghostrt engines`: what is in the engine cache, with the fields that decide whether an engine may run here
and the fidelity numbers the FP16/INT8 gate recorded."""

import json
from pathlib import Path

from ghostrt.errors import GhostError
from ghostrt.runtime.engine_cache import DEFAULT_ENGINES_DIR, list_manifests

COLUMNS = ("engine", "model", "prec", "backend", "target", "batch", "MB", "build s", "created", "fidelity")


def _fidelity_text(fidelity: dict) -> str:
    if not fidelity:
        return "-"
    if "summary" in fidelity:          # written by `ghostrt build` from the gate's row
        return fidelity["summary"] + ("" if fidelity.get("accepted", True) else "  NOT ACCEPTED")
    parts = []
    for name, value in fidelity.items():
        if isinstance(value, float):
            parts.append(f"{name}={value:.4g}")
        elif isinstance(value, (int, str, bool)):
            parts.append(f"{name}={value}")
    return " ".join(parts) or "(nested; see --json)"


def _row(m: dict) -> tuple:
    batch = m["profiles"] and max(s[2][0] for s in m["profiles"].values() if s[2])
    target = m["target_gpu"] if m["target_gpu"] == "any RTX" else f"{m['target_gpu']} ({m['target_cc']})"
    return (m["engine_file"], m.get("model", "?"), m["precision"], f"{m['backend']} {m['backend_version']}", target,
            str(batch), f"{m.get('engine_bytes', 0) / 1e6:.1f}", f"{m.get('build_seconds', 0):.1f}",
            m.get("created", "?")[:16], _fidelity_text(m.get("fidelity") or {}))


def table(manifests: list[dict]) -> str:
    rows = [COLUMNS] + [_row(m) for m in manifests]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def run(args) -> int:
    engines_dir = Path(args.engines_dir)
    if not engines_dir.is_dir():
        raise GhostError(f"{engines_dir}: engines folder does not exist (build some with `ghostrt build`)")
    manifests = list_manifests(engines_dir)
    if args.json:
        print(json.dumps(manifests, indent=2))
    elif not manifests:
        print(f"no engines in {engines_dir} (build some with `ghostrt build --precision fp16`)")
    else:
        print(table(manifests))
    return 0


def register(sub) -> None:
    p = sub.add_parser("engines", help="list built engines with their key fields and fidelity")
    p.add_argument("--engines-dir", default=str(DEFAULT_ENGINES_DIR), help="engine cache folder (default: engines)")
    p.add_argument("--json", action="store_true", help="print one JSON array of the manifests")
    p.set_defaults(func=run)
