"""ghostrt: a TensorRT-compiled, real-time face-swap engine for the GHOST model set.

    import ghostrt
    with ghostrt.Swapper.load() as sw:
        result = sw.swap(frame, sw.identity(["me.jpg"]))

The namespace maps the repository's top-level folders: ghostrt.export (export/, may import torch),
ghostrt.runtime (runtime/, never imports torch), ghostrt.weights (weights/), ghostrt.calibration
(calibration/), ghostrt.bench (bench/). The API itself is ghostrt.api, loaded on first use so that
`import ghostrt` stays cheap.
"""

from typing import TYPE_CHECKING

from ghostrt.errors import GhostError

from ghostrt.version import __version__
__all__ = ["GhostError", "Identity", "Swapper", "SwapResult", "verify", "__version__"]

if TYPE_CHECKING:
    from ghostrt.api import Identity, Swapper, SwapResult


def __getattr__(name: str):
    if name in ("Swapper", "Identity", "SwapResult", "SwappedFace", "Face"):
        from ghostrt import api

        return getattr(api, name)
    raise AttributeError(f"module 'ghostrt' has no attribute {name!r}")


def verify(path):
    """ghostrt's provenance report for one image or video file (runtime.io.verify.VerifyReport: .intact,
    .found, .c2pa, .label, .watermark, .lines()); a GhostError when it is no readable image or video."""
    from ghostrt.runtime.io.verify import verify as _verify

    return _verify(path)
