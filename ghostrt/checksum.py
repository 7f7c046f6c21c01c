"""Files are identified by content (sha256) wherever trust or cache validity depends on it: fetched weights,
exported ONNX, engines and calibration sets."""

import hashlib

CHUNK = 1 << 20


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
