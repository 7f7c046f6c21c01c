"""The clock every device_bench section measures with: one hard wall-clock budget for the whole lent-GPU call
(sections and timing loops ask it before each step), per-call timing that synchronises like GHOST does, and the
p50/p99 summary the JSON reports. Shared by the reference, plumbing and ORT sections, so it lives apart from each.

Imported as a sibling of device_bench.py (the script's folder is on sys.path); stdlib and numpy only.
"""

import time

import numpy as np

VIDEO_BATCH = 40                      # GHOST's default --batch_size for G in video mode


class Budget:
    """A hard wall-clock budget for the whole run; sections ask before starting and loops before each rep."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def expired(self) -> bool:
        return self.left() <= 0


def stats_ms(samples: list[float]) -> dict:
    """p50/p99 of per-call milliseconds; with few samples p99 is close to the max, so n is reported too."""
    if not samples:
        return {"n": 0}
    a = np.asarray(samples, np.float64)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "min_ms": float(a.min())}


def time_calls(torch, fn, warmup: int, reps: int, budget: Budget, cuda: bool) -> tuple[list[float], bool]:
    """Per-call ms; each call is synchronised, as GHOST reads every result back. (samples, stopped early)."""
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    samples = []
    for _ in range(reps):
        if budget.expired():
            return samples, True
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return samples, False
