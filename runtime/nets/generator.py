"""AEI-Net: 224 aligned target crops and identity embeddings in, swapped 224 crops out (names live here only)."""

import numpy as np

from ghostrt.runtime.nets.arcface import EMBEDDING_SIZE
from ghostrt.runtime.backends.batching import BatchedNet
from ghostrt.runtime.stages import align

TARGET, IDENTITY, OUTPUT = "target", "source_embedding", "swapped"


class Generator(BatchedNet):
    """One executor, any batch: split into chunks the engine accepts."""

    def swap(self, crops224: np.ndarray, identities: np.ndarray) -> np.ndarray:
        """(N, 224, 224, 3) uint8 target crops, (N, 512) identities -> (N, 224, 224, 3) uint8 swapped crops."""
        if len(crops224) == 0:
            return np.zeros((0, align.CROP_SIZE, align.CROP_SIZE, 3), np.uint8)
        ids = np.asarray(identities, np.float32).reshape(-1, EMBEDDING_SIZE)
        out = self.run({TARGET: align.crops_to_generator(crops224), IDENTITY: ids})
        return align.generator_to_crops(out[OUTPUT])
