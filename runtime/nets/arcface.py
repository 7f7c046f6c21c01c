"""ArcFace iresnet100: 224 aligned crops in, raw 512-d identity embeddings out (tensor names live here only)."""

import numpy as np

from ghostrt.runtime.backends.batching import max_batch, run_chunked
from ghostrt.runtime.stages import align

INPUT, OUTPUT = "face", "embedding"
EMBEDDING_SIZE = 512


class ArcFace:
    """One executor, any batch: split into chunks the engine accepts."""

    def __init__(self, executor):
        self.executor = executor
        self.max_batch = max_batch(executor)

    def embed(self, crops224: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 crops -> (N, 512) float32 raw (un-normalised) embeddings."""
        if len(crops224) == 0:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        out = run_chunked(self.executor, {INPUT: align.crops_to_arcface(crops224)}, self.max_batch)
        return np.asarray(out[OUTPUT], np.float32)
