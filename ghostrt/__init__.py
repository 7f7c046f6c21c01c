"""ghostrt: a TensorRT-compiled, real-time face-swap engine for the GHOST model set.

The namespace maps the repository's top-level folders: ghostrt.export (export/, may import torch),
ghostrt.runtime (runtime/, never imports torch), ghostrt.weights (weights/), ghostrt.calibration
(calibration/).
"""

__version__ = "0.1.0"
