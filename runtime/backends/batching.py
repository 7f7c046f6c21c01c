"""How large a batch each executor accepts, and running any batch in chunks of that size.

A TensorRT engine's optimisation profile caps the batch (4 unless built with another --max-batch); ONNX
Runtime and OpenVINO take any batch. The net wrappers split every call by this, so no caller ever sees the cap."""

import numpy as np


def max_batch(executor) -> int | None:
    """Largest batch `executor` accepts: its own `max_batch` attribute when it states one (a fake or a future
    executor), else a TensorRT engine's profile maximum over its inputs, else None (no limit)."""
    stated = getattr(executor, "max_batch", None)
    if stated is not None:
        return int(stated)
    engine = getattr(executor, "engine", None)
    if engine is None or not hasattr(engine, "get_tensor_profile_shape"):
        return None
    return min(int(engine.get_tensor_profile_shape(name, 0)[2][0]) for name in executor.input_names)


def run_chunked(executor, feeds: dict[str, np.ndarray], limit: int | None) -> dict[str, np.ndarray]:
    """executor.run over axis 0 in chunks of at most `limit` (one call when it fits), outputs concatenated."""
    total = len(next(iter(feeds.values())))
    if limit is None or total <= limit:
        return executor.run(feeds)
    parts = [executor.run({k: v[start:start + limit] for k, v in feeds.items()}) for start in range(0, total, limit)]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class BatchedNet:
    """Base of the net wrappers (runtime/nets): one executor, any batch, run in chunks it accepts."""

    def __init__(self, executor):
        self.executor = executor
        self.max_batch = max_batch(executor)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_chunked(self.executor, feeds, self.max_batch)
