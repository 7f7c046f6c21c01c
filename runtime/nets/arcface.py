"""ArcFace iresnet100: 224 aligned crops in, raw 512-d identity embeddings out (tensor names live here only)."""

import numpy as np

from ghostrt.runtime.backends.batching import BatchedNet
from ghostrt.runtime.stages import align

INPUT, OUTPUT = "face", "embedding"
EMBEDDING_SIZE = 512


class ArcFace(BatchedNet):
    """One executor, any batch: split into chunks the engine accepts."""

    def embed(self, crops224: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 crops -> (N, 512) float32 raw (un-normalised) embeddings."""
        if len(crops224) == 0:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        out = self.run({INPUT: align.crops_to_arcface(crops224)})
        return np.asarray(out[OUTPUT], np.float32)
