"""Outputs appear complete or not at all: write to a temporary name beside the target, then rename."""

import contextlib
import os
import tempfile
from pathlib import Path

from ghostrt.errors import GhostError


@contextlib.contextmanager
def atomic_path(target, suffix: str | None = None):
    """Yield a temporary path in the target's folder; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise GhostError(f"{target}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise GhostError(f"{target}: output folder {folder} is not writable")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix or ".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs should get the usual permissions
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
