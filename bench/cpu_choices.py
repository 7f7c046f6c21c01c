"""Measured CPU choices for OpenVINO: which compile config and batch give the fewest ms per face.

On a small shared CPU the answer is not obvious: a LATENCY compile spreads one request over every thread, a
THROUGHPUT compile with two streams runs two requests side by side (one thread each), and one thread leaves a
core for the rest of the pipeline. The numbers move with whatever else runs on the machine, so the configs are
timed interleaved (every round visits every (batch, config) pair in a fresh random order) and reported as
medians with their spread; a choice is only called better when its median beats the other's by more than the
spread. `measure_choices` returns that record and `write_choices` writes it to bench/cpu-choices-<date>.json.
Torch-free: bench and the runtime may both call it.
"""

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import GhostError, file_error


@dataclass(frozen=True)
class CpuConfig:
    """One way to compile and drive a model: OpenVINO properties, and how many requests share one batch."""

    name: str
    properties: dict
    requests: int = 1

    def describe(self) -> str:
        return f"{self.name}: {self.properties}, {self.requests} request(s) per batch"


def default_configs(cores: int = 2) -> list[CpuConfig]:
    """The three candidates of issue 6 for a machine with `cores` cores."""
    return [
        CpuConfig(f"latency-{cores}t", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": cores}),
        CpuConfig(f"throughput-{cores}s", {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": cores,
                                           "INFERENCE_NUM_THREADS": cores}, requests=cores),
        CpuConfig("threads-1", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1}),
    ]


def split_batch(batch: int, parts: int) -> list[int]:
    """Chunk sizes for `parts` parallel requests: as even as possible, no empty chunk (batch 1 → [1])."""
    parts = max(1, min(parts, batch))
    return [batch // parts + (1 if k < batch % parts else 0) for k in range(parts)]


def random_inputs(model, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the model's shapes (axis 0 = batch) in [-1, 1]; the nets' speed does not depend on values."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for port in model.inputs:
        dims = list(port.get_partial_shape())
        shape = [batch] + [d.get_length() for d in dims[1:]]
        feeds[port.get_any_name()] = rng.uniform(-1, 1, shape).astype(np.float32)
    return feeds


class TimedModel:
    """A model compiled with one CpuConfig, its requests, and a timer for one batch spread over them."""

    def __init__(self, core, model, config: CpuConfig):
        self.config = config
        self.compiled = core.compile_model(model, "CPU", dict(config.properties))
        self.requests = [self.compiled.create_infer_request() for _ in range(config.requests)]
        self.model = model

    def time_batch(self, batch: int, seed: int = 0) -> float:
        """Seconds for `batch` faces: the chunks start together on their own requests, the time ends with the last."""
        chunks = [random_inputs(self.model, size, seed) for size in split_batch(batch, len(self.requests))]
        started = time.perf_counter()
        for request, feeds in zip(self.requests, chunks):
            request.start_async(feeds)
        for request in self.requests[:len(chunks)]:
            request.wait()
        return time.perf_counter() - started


def summarize(per_face_ms: Sequence[float]) -> dict:
    values = np.asarray(per_face_ms, np.float64)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median_ms": round(float(median), 2), "min": round(float(values.min()), 2),
            "max": round(float(values.max()), 2), "iqr": round(float(q3 - q1), 2),
            "spread_pct": round(100.0 * float(values.max() - values.min()) / float(median), 1), "n": len(values)}


def pick_best(results: Mapping[str, Mapping[str, dict]]) -> dict:
    """For each batch: the config with the lowest median, and whether it clearly beats the runner-up (its
    median below the runner-up's minimum) or is within the noise."""
    best = {}
    for batch, by_config in results.items():
        ranked = sorted(by_config.items(), key=lambda item: item[1]["median_ms"])
        (name, first), runner = ranked[0], ranked[1] if len(ranked) > 1 else None
        clear = runner is None or first["max"] < runner[1]["median_ms"]
        best[batch] = {"config": name, "median_ms": first["median_ms"],
                       "runner_up": runner[0] if runner else None, "clear": bool(clear)}
    overall = min(((b, v) for b, v in best.items()), key=lambda item: item[1]["median_ms"])
    return {"per_batch": best, "fastest": {"batch": int(overall[0]), **overall[1]}}


def measure_model(core, onnx_path, batches: Sequence[int], configs: Sequence[CpuConfig], rounds: int,
                  warmup: int = 1, seed: int = 0, log: Callable = print) -> dict:
    """Per-face ms of every (batch, config) pair, rounds interleaved in a random order each round."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise file_error(onnx_path, "ONNX file does not exist (run `ghostrt export`)")
    model = core.read_model(str(onnx_path))
    timed = {c.name: TimedModel(core, model, c) for c in configs}
    pairs = [(b, name) for b in batches for name in timed]
    for b, name in pairs:
        for _ in range(warmup):
            timed[name].time_batch(b, seed)
    samples: dict[tuple[int, str], list[float]] = {pair: [] for pair in pairs}
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        for k in rng.permutation(len(pairs)):
            b, name = pairs[k]
            samples[(b, name)].append(1000.0 * timed[name].time_batch(b, seed) / b)
        log(f"{onnx_path.stem}: round {r + 1}/{rounds} done")
    results = {str(b): {name: summarize(samples[(b, name)]) for name in timed} for b in batches}
    return {"onnx": str(onnx_path), "results": results, "best": pick_best(results),
            "raw_ms_per_face": {f"{b}/{name}": [round(v, 2) for v in s] for (b, name), s in samples.items()}}


def measure_choices(onnx_paths: Mapping[str, str | Path], batches: Sequence[int] = (1, 2, 4, 8),
                    configs: Sequence[CpuConfig] | None = None, rounds: int = 5, warmup: int = 1,
                    seed: int = 0, log: Callable = print) -> dict:
    """The record for bench/cpu-choices-<date>.json: per model, per batch, per config, ms per face.

    Compiles FP32 from the ONNX in memory (nothing is written to engines/)."""
    from ghostrt.runtime.backends import openvino_backend as ovb

    ov = ovb.load_openvino()
    core = ov.Core()
    cpu = ovb.probe_cpu(core)
    configs = list(configs) if configs is not None else default_configs()
    if not batches or min(batches) < 1:
        raise GhostError(f"batches {list(batches)}: need at least one batch of 1 or more")
    models = {name: measure_model(core, path, batches, configs, rounds, warmup, seed, log)
              for name, path in onnx_paths.items()}
    return {"schema": 1, "tool": "ghostrt.bench.cpu_choices",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu.name, "isa": list(cpu.isa), "openvino": ov.get_version()},
            "method": f"{rounds} interleaved rounds (random order per round) after {warmup} warm-up call(s); "
                      "median ms per face with min/max/IQR; 'clear' = best max < runner-up median",
            "configs": {c.name: {"properties": c.properties, "requests": c.requests} for c in configs},
            "unit": "ms per face (per-request chunks of one batch run together)",
            "batches": [int(b) for b in batches], "models": models}


def time_stream(swapper, frames: Sequence[np.ndarray], batch: int) -> float:
    """Seconds for the loop's calling pattern (batches in order, then flush) over `frames`; checks the count."""
    started = time.perf_counter()
    out = []
    for start in range(0, len(frames), batch):
        out += swapper.process_batch(list(frames[start:start + batch]))
    out += swapper.flush()
    seconds = time.perf_counter() - started
    if len(out) != len(frames):
        raise GhostError(f"the swapper returned {len(out)} frames for {len(frames)}")
    return seconds


def measure_overlap(make_swapper: Callable[[bool], object], frames: Sequence[np.ndarray], batch: int,
                    rounds: int = 3, warmup: int = 1, log: Callable = print) -> dict:
    """VideoSwapper with overlap off vs on (A/B, alternating which goes first each round): ms per frame.

    make_swapper(overlap) builds a fresh swapper on the same nets (fresh tracker, so every run does the same
    work)."""
    samples: dict[str, list[float]] = {"serial": [], "overlap": []}
    order = [("serial", False), ("overlap", True)]
    for r in range(warmup + rounds):
        for name, overlap in (order if r % 2 == 0 else order[::-1]):
            swapper = make_swapper(overlap)
            seconds = time_stream(swapper, frames, batch)
            getattr(swapper, "close", lambda: None)()
            if r >= warmup:
                samples[name].append(1000.0 * seconds / len(frames))
        if r >= warmup:
            log(f"overlap A/B batch {batch}: round {r + 1 - warmup}/{rounds} done")
    serial, overlapped = summarize(samples["serial"]), summarize(samples["overlap"])
    pairs = [s / o for s, o in zip(samples["serial"], samples["overlap"])]
    return {"batch": int(batch), "frames": len(frames), "serial": serial, "overlap": overlapped,
            "speedup_median": round(float(np.median(pairs)), 3),
            "speedup_per_round": [round(float(x), 3) for x in pairs],
            "overlap_not_slower": bool(overlapped["median_ms"] <= serial["median_ms"]),
            "raw_ms_per_frame": {k: [round(v, 2) for v in vs] for k, vs in samples.items()}}


def write_choices(record: dict, bench_dir="bench") -> Path:
    """bench/cpu-choices-<date>.json (atomically)."""
    path = Path(bench_dir) / f"cpu-choices-{record['date'][:10]}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return path
