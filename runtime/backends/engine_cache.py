"""The engine cache: engines/<name>.<key>.engine beside engines/<name>.<key>.json (its manifest).

An engine is only valid for the exact ONNX, TensorRT version, target GPU, precision recipe and input
profiles it was built from, and loading a foreign one either fails deep inside TensorRT or, worse, runs.
So every one of those fields goes into the key (a changed field means a different file, built anew) and
into the manifest, and `validate_for_run` checks them against this machine before an engine is loaded.
The manifest is written after the engine, so a manifest on disk means its engine was written completely.
"""

import datetime
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ghostrt.version import __version__
from ghostrt.atomic import atomic_path
from ghostrt.checksum import sha256_file
from ghostrt.errors import GhostError, file_error

DEFAULT_ENGINES_DIR = Path("engines")
KEY_FIELDS = ("onnx_sha256", "backend", "backend_version", "target_gpu", "target_cc", "precision",
              "quant_recipe", "profiles")


@dataclass(frozen=True)
class EngineKey:
    model: str
    onnx_sha256: str
    backend: str                   # "trt" | "trt-rtx"
    backend_version: str
    target_gpu: str                # a GPU name; TensorRT-RTX (ahead of time): "any RTX" or "RTX Turing"
    target_cc: str                 # "8.9"; TensorRT-RTX: the list it was built for, "8.6,8.9,12.0,12.1"
    precision: str                 # fp32 | fp16 | int8
    quant_recipe: dict | None = field(default=None, hash=False)
    profiles: dict = field(default_factory=dict, hash=False)   # input → [[min], [opt], [max]]

    def fields(self) -> dict:
        return {name: _plain(getattr(self, name)) for name in KEY_FIELDS}

    def digest(self) -> str:
        canonical = json.dumps(self.fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def stem(self) -> str:
        return f"{self.model}-{self.precision}-{self.backend}.{self.digest()}"


def _plain(value):
    """Tuples → lists, recursively, so a key read back from JSON compares equal to the one computed."""
    return json.loads(json.dumps(value))


def engine_paths(engines_dir, key: EngineKey) -> tuple[Path, Path]:
    engines_dir = Path(engines_dir)
    return engines_dir / f"{key.stem}.engine", engines_dir / f"{key.stem}.json"


def write_engine(engines_dir, key: EngineKey, engine: bytes, build_seconds: float, extra: dict | None = None) -> Path:
    """Write engine, then manifest, each atomically. Returns the manifest path."""
    engine_path, manifest_path = engine_paths(engines_dir, key)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(engine)
    manifest = {"model": key.model, "key": key.digest(), **key.fields(),
                "engine_file": engine_path.name, "engine_bytes": len(engine),
                "engine_sha256": hashlib.sha256(engine).hexdigest(), "build_seconds": round(build_seconds, 3),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "ghostrt_version": __version__, **(extra or {}), "fidelity": {}}
    write_manifest(manifest_path, manifest)
    return manifest_path


def write_manifest(manifest_path, manifest: dict) -> None:
    with atomic_path(Path(manifest_path)) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def read_manifest(manifest_path) -> dict:
    manifest_path = Path(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise file_error(manifest_path, "engine manifest not found") from None
    except json.JSONDecodeError as err:
        raise file_error(manifest_path, f"engine manifest is not valid JSON ({err.msg}, line {err.lineno})") from None
    missing = [name for name in ("engine_file", "engine_sha256", *KEY_FIELDS) if name not in manifest]
    if missing:
        raise file_error(manifest_path, f"engine manifest lacks {', '.join(missing)}")
    manifest["manifest_path"] = str(manifest_path)
    return manifest


def engine_file(manifest: dict) -> Path:
    return Path(manifest["manifest_path"]).with_name(manifest["engine_file"])


def find_engine(engines_dir, key: EngineKey, log=None) -> tuple[Path, dict] | None:
    """The cached engine for exactly this key, verified against its manifest (size and sha256), else None.
    An engine of this key whose bytes no longer match its manifest is said in one line to `log` (the caller
    rebuilds it), so a tampered cache never goes unnoticed."""
    engine_path, manifest_path = engine_paths(engines_dir, key)
    if not manifest_path.exists() or not engine_path.exists():
        return None
    try:
        manifest = read_manifest(manifest_path)
    except GhostError:
        return None
    if any(manifest.get(name) != value for name, value in key.fields().items()):
        return None
    if (engine_path.stat().st_size != manifest.get("engine_bytes")
            or sha256_file(engine_path) != manifest["engine_sha256"]):
        if log is not None:
            log(f"{engine_path}: cached engine's sha256 does not match its manifest (corrupt or replaced); "
                "rebuilding it")
        return None
    return engine_path, manifest


def list_manifests(engines_dir) -> list[dict]:
    """Every readable manifest under engines_dir, sorted by file name; unreadable ones are skipped."""
    found = []
    for path in sorted(Path(engines_dir).glob("*.json")):
        try:
            found.append(read_manifest(path))
        except GhostError:
            continue
    return found


def check_for_run(manifest: dict, this_version: str, check_target, onnx_sha256: str | None = None, *,
                  runtime: str, noun: str = "engine file", verb: str = "built", check_sha: bool = True,
                  require_fidelity: bool = False, gate_missed=file_error) -> Path:
    """The checks every cached engine or OpenVINO blob passes before it is loaded, in one place so the backends
    refuse alike: present, same backend version, made for this target (`check_target(path, rebuild)` raises),
    not refused by the fidelity gate, made from this ONNX, intact. Returns its path."""
    path = engine_file(manifest)
    command = f"ghostrt build --backend {manifest['backend']} --precision {manifest['precision']}"
    rebuild = f"; rebuild it with `{command}`"
    if not path.exists():
        raise file_error(path, f"{noun} listed in its manifest is missing" + rebuild)
    if manifest["backend_version"] != this_version:
        raise file_error(path, f"{verb} with {runtime} {manifest['backend_version']}, this machine has "
                               f"{this_version}" + rebuild)
    check_target(path, rebuild)
    fidelity = manifest.get("fidelity") or {}
    if fidelity.get("accepted") is False:
        raise gate_missed(path, f"missed the fidelity gate ({fidelity.get('summary', 'see its manifest')}) and was "
                                f"not accepted; rebuild it with `{command} --accept-fidelity` to run it anyway")
    if require_fidelity and manifest["precision"] != "fp32" and not fidelity:
        raise file_error(path, "its fidelity against FP32 was never measured" + rebuild)
    if onnx_sha256 is not None and onnx_sha256 != manifest["onnx_sha256"]:
        raise file_error(path, f"{verb} from a different ONNX (its sha256 changed since)" + rebuild)
    if check_sha and sha256_file(path) != manifest["engine_sha256"]:
        raise file_error(path, f"{noun} sha256 does not match its manifest (corrupt or replaced)" + rebuild)
    return path


def validate_for_run(manifest: dict, this_gpu, this_backend_version: str, onnx_sha256: str | None = None,
                     check_sha: bool = True) -> Path:
    """Refuse, in one line naming the engine file, an engine that was not built for this machine; return its path.

    this_gpu: runtime.trt_backend.GpuInfo of the GPU that would run it (None: no GPU visible)."""

    def check_gpu(path, rebuild):
        if this_gpu is None:
            raise file_error(path, "no CUDA GPU is visible to run this engine")
        this_cc = this_gpu.compute_capability
        if manifest["backend"] == "trt-rtx":         # ahead of time: a list of compute capabilities
            if this_cc not in manifest["target_cc"].split(","):
                raise file_error(path, f"built for {manifest['target_gpu']} (CC {manifest['target_cc']}), this GPU "
                                       f"is {this_gpu.name} (CC {this_cc})" + rebuild)
        elif (manifest["target_gpu"], manifest["target_cc"]) != (this_gpu.name, this_cc):
            raise file_error(path, f"built for another GPU ({manifest['target_gpu']}, CC {manifest['target_cc']}), "
                                   f"this GPU is {this_gpu.name} (CC {this_cc})" + rebuild)

    return check_for_run(manifest, this_backend_version, check_gpu, onnx_sha256, runtime=manifest["backend"],
                         check_sha=check_sha)


def engine_for_run(engines_dir, model: str, precision: str, backend: str, this_gpu, this_backend_version: str,
                   onnx_sha256: str | None = None) -> tuple[Path, dict]:
    """The newest engine for (model, precision, backend) that passes validate_for_run on this machine."""
    return newest_valid(engines_dir, model, precision, backend, f"{backend} engine",
                        f"ghostrt build --precision {precision} --backend {backend} --models {model}",
                        lambda manifest: validate_for_run(manifest, this_gpu, this_backend_version, onnx_sha256))


def newest_valid(engines_dir, model: str, precision: str, backend: str, what: str, build_command: str,
                 validate) -> tuple[Path, dict]:
    """The newest manifest for (model, precision, backend) that `validate(manifest) -> path` accepts. With none
    built: a GhostError saying what to build; with only foreign/stale ones: the newest one's mismatch."""
    candidates = [m for m in list_manifests(engines_dir)
                  if (m.get("model"), m["precision"], m["backend"]) == (model, precision, backend)]
    if not candidates:
        raise GhostError(f"{engines_dir}: no {model} {precision} {what}; build it with `{build_command}`")
    candidates.sort(key=lambda m: m.get("created", ""), reverse=True)
    first_error = None
    for manifest in candidates:
        try:
            return validate(manifest), manifest
        except GhostError as err:
            first_error = first_error or err
    raise first_error


def record_fidelity(manifest_path, numbers: dict) -> dict:
    """Merge fidelity numbers (measured by the gate against FP32) into a manifest; returns the manifest."""
    manifest = read_manifest(manifest_path)
    manifest.pop("manifest_path")
    manifest["fidelity"] = {**manifest.get("fidelity", {}), **_plain(numbers)}
    write_manifest(manifest_path, manifest)
    return manifest


def key_from_manifest(manifest: dict) -> EngineKey:
    return EngineKey(model=manifest["model"], **{name: manifest[name] for name in KEY_FIELDS})

