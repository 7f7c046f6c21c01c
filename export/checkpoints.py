"""Reading and writing plain PyTorch state_dict files the way GHOST ships them, with errors a user can act on.

Only `torch.load(weights_only=True)` is used: a checkpoint is data, and must never run code when opened.
Every problem becomes one GhostError line naming the file, so the CLI can print it and exit 2.
"""

import ast
import pickle
import zipfile
import zlib
from pathlib import Path

import torch

from ghostrt.atomic import atomic_path
from ghostrt.errors import file_error

MAX_LISTED = 4  # how many missing / unexpected / mismatched keys an error message names


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """Load a state_dict onto the CPU; a missing, empty, truncated or foreign file is a GhostError."""
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "checkpoint file not found")
    if path.stat().st_size == 0:
        raise file_error(path, "checkpoint file is empty")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, KeyError,
            OSError) as err:
        raise file_error(path, f"not a readable PyTorch checkpoint, truncated or corrupt? ({first_line(err)})") \
            from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise file_error(path, f"checkpoint holds {type(state).__name__}, not a state_dict of tensors")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise file_error(path, f"checkpoint is not a state_dict of tensors (entry {bad[0]!r})")
    return state


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path) -> torch.nn.Module:
    """Strict load; on any difference name the file and the first few keys that differ, in one line."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch (file vs model)",
                                                                          mismatched)):
        if keys:
            more = f" (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
            problems.append(f"{len(keys)} {label}: {', '.join(keys[:MAX_LISTED])}{more}")
    if problems:
        raise file_error(path, f"does not match {type(module).__name__}: " + "; ".join(problems))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise file_error(path, f"cannot load into {type(module).__name__} ({first_line(err)})") from None
    return module


def read_keys_manifest(tsv) -> list[tuple[str, tuple[int, ...], str]]:
    """Rows `key<TAB>(d0, d1, ...)<TAB>dtype` as written in ../shared/ghost/*.keys.tsv."""
    rows = []
    for n, line in enumerate(Path(tsv).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise file_error(tsv, f"line {n}: expected 3 tab-separated fields, got {len(parts)}")
        key, shape, dtype = parts
        try:
            dims = ast.literal_eval(shape)
        except (ValueError, SyntaxError):
            raise file_error(tsv, f"line {n}: shape {shape!r} is not a tuple") from None
        if not isinstance(dims, tuple) or not all(isinstance(d, int) for d in dims):
            raise file_error(tsv, f"line {n}: shape {shape!r} is not a tuple of ints")
        rows.append((key, dims, dtype))
    return rows


def state_dict_rows(module_or_state) -> list[tuple[str, tuple[int, ...], str]]:
    """The same (key, shape, dtype) rows for a module or state_dict, to compare with a manifest."""
    state = module_or_state.state_dict() if isinstance(module_or_state, torch.nn.Module) else module_or_state
    return [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]


def save_state_dict(state: dict[str, torch.Tensor], out) -> Path:
    """Plain torch.save of a state_dict, atomically. Saved through a file object so the archive's inner
    folder name does not depend on the temporary file name: same tensors, same bytes."""
    out = Path(out)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
    return out


def standin_rng(seed: int, model: str):
    """One PCG64 stream per (seed, model): numpy's generator gives the same numbers on every machine."""
    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(model.encode())])


def fill_normal_(tensor: torch.Tensor, rng, std: float) -> None:
    """Overwrite `tensor` in place with N(0, std²) float32 draws from `rng`."""
    values = rng.standard_normal(tuple(tensor.shape), dtype="float32")
    values *= std
    with torch.no_grad():
        tensor.copy_(torch.from_numpy(values))


def empty_module(build):
    """Build a module without PyTorch's default init (stand-ins overwrite every tensor anyway), zeroed."""
    with torch.device("meta"):
        module = build()
    module = module.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in module.state_dict().values():
            tensor.zero_()
    return module
