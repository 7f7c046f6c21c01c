"""`ghostrt engines`: what is in the engine cache (TensorRT engines and OpenVINO CPU blobs), with the fields
that decide whether an engine may run here and the fidelity numbers the FP16/INT8/bf16 gate recorded.
`--check` also runs the same validation a swap runs before loading each one, and says why one may not run."""

import json
from pathlib import Path

from ghostrt.errors import GhostError
from ghostrt.runtime.backends import engine_cache
from ghostrt.runtime.backends.engine_cache import DEFAULT_ENGINES_DIR, list_manifests

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


def _batch_text(m: dict) -> str:
    """The largest batch of the engine's profiles; OpenVINO blobs keep the ONNX's dynamic batch ("any")."""
    if not m["profiles"]:
        return "any" if m["backend"] == "openvino" else "-"
    return str(max((s[2][0] for s in m["profiles"].values() if s[2]), default="-"))


def _row(m: dict) -> tuple:
    target = m["target_gpu"] if m["target_gpu"] == "any RTX" else f"{m['target_gpu']} ({m['target_cc']})"
    version = m["backend_version"].split("-")[0]     # OpenVINO's full build string is in --json
    return (m["engine_file"], m.get("model", "?"), m["precision"], f"{m['backend']} {version}", target,
            _batch_text(m), f"{m.get('engine_bytes', 0) / 1e6:.1f}", f"{m.get('build_seconds', 0):.1f}",
            m.get("created", "?")[:16], _fidelity_text(m.get("fidelity") or {}))


class _Machine:
    """This machine as each backend's validate_for_run needs it, probed once per backend, on first use."""

    def __init__(self):
        self.probed: dict[str, tuple] = {}

    def validate(self, m: dict) -> None:
        if m["backend"] == "openvino":
            from ghostrt.runtime.backends import openvino_backend as ovb

            cpu, version = self._probe("openvino", lambda: (ovb.probe_cpu(), ovb.version()))
            ovb.validate_for_run(m, cpu, version)
        else:
            from ghostrt.runtime.backends import trt_backend

            gpu, _why = self._probe("gpu", trt_backend.probe_gpu)
            backend = self._probe(m["backend"], lambda: trt_backend.load_backend(m["backend"]))
            engine_cache.validate_for_run(m, gpu, backend.version)

    def _probe(self, name: str, probe):
        if name not in self.probed:
            try:
                self.probed[name] = (probe(), None)
            except GhostError as err:
                self.probed[name] = (None, err)
        value, err = self.probed[name]
        if err is not None:
            raise err
        return value


def runs_here(m: dict, machine: _Machine) -> str:
    """'yes', or 'no: <why>' without the file name (the row names it) and without the rebuild hint."""
    try:
        machine.validate(m)
    except GhostError as err:
        why = str(err).removeprefix(f"{engine_cache.engine_file(m)}: ")
        return "no: " + why.split("; rebuild it with")[0]
    return "yes"


def table(manifests: list[dict], here: list[str] | None = None) -> str:
    columns = COLUMNS + (("runs here",) if here is not None else ())
    rows = [columns] + [_row(m) + ((here[i],) if here is not None else ()) for i, m in enumerate(manifests)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def run(args) -> int:
    engines_dir = Path(args.engines_dir)
    if not engines_dir.is_dir():
        raise GhostError(f"{engines_dir}: engines folder does not exist (build some with `ghostrt build`)")
    manifests = list_manifests(engines_dir)
    here = None
    if getattr(args, "check", False):
        machine = _Machine()
        here = [runs_here(m, machine) for m in manifests]
    if args.json:
        print(json.dumps([m | {"runs_here": h} for m, h in zip(manifests, here)] if here is not None
                         else manifests, indent=2))
    elif not manifests:
        print(f"no engines in {engines_dir} (build some with `ghostrt build --precision fp16`, or "
              "`ghostrt build --backend openvino` for this CPU)")
    else:
        print(table(manifests, here))
    return 0


def register(sub) -> None:
    p = sub.add_parser("engines", help="list built engines and OpenVINO CPU blobs with their key fields and fidelity")
    p.add_argument("--engines-dir", default=str(DEFAULT_ENGINES_DIR), help="engine cache folder (default: engines)")
    p.add_argument("--json", action="store_true", help="print one JSON array of the manifests")
    p.add_argument("--check", action="store_true",
                   help="also say whether each one may run on this machine, checked as a swap checks it before "
                        "loading (reads and hashes every file: seconds per GB)")
    p.set_defaults(func=run)
