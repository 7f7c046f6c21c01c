"""Seconds spent per stage, summed over calls: what the summary, the debug sheet, the bench and
`SwapResult.timings` report."""

import time
from contextlib import contextmanager


class StageTimer:
    """Seconds per stage in pipeline order (the order stages first ran)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def add(self, other: "StageTimer") -> None:
        for name, seconds in other.seconds.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def milliseconds(self) -> dict[str, float]:
        return {name: sec * 1000.0 for name, sec in self.seconds.items()}

    def lines(self) -> list[str]:
        total = sum(self.seconds.values())
        rows = [f"{name:<10} {sec * 1000:9.1f} ms" for name, sec in self.seconds.items()]
        return rows + [f"{'total':<10} {total * 1000:9.1f} ms"]
