"""The values that flow between stages. Frames are RGB uint8 H×W×3 numpy arrays everywhere in the runtime;
conversion to and from files (alpha, 16-bit, grayscale, CMYK) happens only at the I/O boundary."""

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import numpy as np


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the frame it was found in."""

    box: np.ndarray                 # (4,) float32: x1, y1, x2, y2
    score: float
    kps: np.ndarray                 # (5, 2) float32: left eye, right eye, nose, left mouth, right mouth
    extra: dict = field(default_factory=dict)

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


class Executor(Protocol):
    """Runs one network (an ONNX file or an engine); knows tensors by name and nothing about faces."""

    input_names: Sequence[str]
    output_names: Sequence[str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ...
