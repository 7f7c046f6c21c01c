"""`ghostrt weights fetch`: download the official set, check sizes, pin sha256 on first fetch.

GHOST publishes no checksums, so trust is established on first use: the size the server announces must match
what arrived, and the sha256 recorded then (weights/fetched.json) must match on every later fetch or verify.
"""

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ghostrt.atomic import atomic_path
from ghostrt.checksum import sha256_file
from ghostrt.errors import GhostError

MANIFEST = Path(__file__).with_name("manifest.json")
RECORD_NAME = "fetched.json"
CHUNK = 1 << 20


@dataclass
class OfficialFile:
    name: str
    model: str
    url: str
    num_blocks: int | None = None


def official_files(manifest=MANIFEST) -> list[OfficialFile]:
    data = json.loads(Path(manifest).read_text())
    return [OfficialFile(f["name"], f["model"], f["url"], f.get("num_blocks")) for f in data["files"]]


def _load_record(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise GhostError(f"{path}: not valid JSON ({err.msg}); delete it to re-pin the checksums") from None


def _download(url: str, dest: Path, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
            announced = resp.headers.get("Content-Length")
            got = 0
            with open(tmp, "wb") as out:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    out.write(block)
                    got += len(block)
            if announced is not None and int(announced) != got:
                raise GhostError(f"{dest}: download incomplete ({got} of {announced} bytes from {url})")
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        if isinstance(err, GhostError):
            raise
        reason = getattr(err, "reason", err)
        raise GhostError(f"{url}: cannot download ({reason}); offline? download the files listed in "
                         f"{MANIFEST} by hand and put them in {dest.parent}/") from None
    return got


def fetch(weights_dir, files: list[OfficialFile] | None = None, timeout: float = 30.0, log=print) -> dict:
    """Download what is missing, verify what is there against the pinned record; return the record."""
    weights_dir = Path(weights_dir)
    if not weights_dir.is_dir():
        raise GhostError(f"{weights_dir}: weights folder does not exist")
    record_path = weights_dir / RECORD_NAME
    record = _load_record(record_path)
    for item in files if files is not None else official_files():
        dest = weights_dir / item.name
        if not dest.exists():
            log(f"fetch  {item.name:<22} {item.url}")
            _download(item.url, dest, timeout)
        size, sha = dest.stat().st_size, sha256_file(dest)
        pinned = record.get(item.name)
        if pinned and (pinned["sha256"] != sha or pinned["size"] != size):
            raise GhostError(f"{dest}: sha256 {sha[:12]}… / {size} bytes differs from the pinned "
                             f"{pinned['sha256'][:12]}… / {pinned['size']} bytes in {record_path}")
        status = "verified" if pinned else "pinned"
        record[item.name] = {"sha256": sha, "size": size, "url": item.url}
        log(f"{status:<6} {item.name:<22} {size} bytes sha256 {sha[:16]}…")
    with atomic_path(record_path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
