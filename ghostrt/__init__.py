"""ghostrt: a TensorRT-compiled, real-time face-swap engine for the GHOST model set.

The namespace maps the repository's top-level folders: ghostrt.export (export/, may import torch),
ghostrt.runtime (runtime/, never imports torch), ghostrt.weights (weights/), ghostrt.calibration
(calibration/).
"""

__version__ = "0.1.0"


def verify(path):
    """ghostrt's provenance report for one image or video file (runtime.io.verify.VerifyReport: .intact,
    .found, .c2pa, .label, .watermark, .lines()); a GhostError when it is no readable image or video."""
    from ghostrt.runtime.io.verify import verify as _verify

    return _verify(path)
