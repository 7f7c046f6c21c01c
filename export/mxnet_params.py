"""Read and write MXNet `.params` files (the NDArray-list binary layout) without MXNet.

The layout follows MXNet's own save/load code (src/ndarray/ndarray.cc, `NDArray::Save`/`Load`/`LegacyLoad`,
and the list save that wraps them), all little-endian:

    list:   uint64 magic 0x112, uint64 reserved, uint64 count, count × array, uint64 count, count × name
    name:   uint64 length, UTF-8 bytes
    array, by its leading uint32:
      0xF993FAC9 (v2):  int32 storage type, [storage shape if sparse], shape, [context, type flag, data]
      0xF993FACA (v3):  as v2 (written by MXNet 2 numpy mode; a shape of ndim -1 is "none", ndim 0 a scalar)
      0xF993FAC8 (v1):  shape, [context, type flag, data]
      anything else:    legacy: that word is ndim, then ndim × uint32 dims, [context, type flag, data]
    shape (v1/v2/v3):   int32 ndim, ndim × int64 dims; an ndim of 0 (v1/v2) marks a "none" array, nothing follows
    context:            int32 dev_type (1 cpu, 2 gpu, 3 cpu pinned, 5 cpu shared), int32 dev_id
    type flag:          int32 mshadow dtype code; data = product(dims) × itemsize raw bytes, C order

Only dense storage (type 0) is read: parameter files never hold sparse arrays.
"""

import struct
from pathlib import Path
from typing import Mapping

import numpy as np

from ghostrt.atomic import atomic_path
from ghostrt.errors import file_error

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
DENSE_STORAGE = 0
CPU_DEVICE = 1
DEVICE_TYPES = {1, 2, 3, 5}

# mshadow type flags (mshadow/base.h TypeFlag); bfloat16 (12) has no numpy dtype and is refused.
DTYPE_BY_FLAG = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"), 4: np.dtype("<i4"),
    5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"), 8: np.dtype("<i2"), 9: np.dtype("<u2"),
    10: np.dtype("<u4"), 11: np.dtype("<u8"),
}
FLAG_BY_DTYPE = {dtype: flag for flag, dtype in DTYPE_BY_FLAG.items()}


class _Truncated(Exception):
    """The file ended inside a field; the caller turns it into a GhostError naming where."""


class _Cursor:
    """Sequential little-endian reads over the file's bytes; running past the end raises _Truncated."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, size: int) -> bytes:
        if size < 0 or size > self.remaining():
            raise _Truncated()
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def u32(self) -> int:
        return self.unpack("I")[0]

    def i32(self) -> int:
        return self.unpack("i")[0]

    def u64(self) -> int:
        return self.unpack("Q")[0]


class _BadArray(Exception):
    """A field holds a value MXNet would reject; the message says which."""


def _read_shape(cur: _Cursor, magic: int) -> tuple[int, ...] | None:
    """Return the dims, or None for MXNet's "none" array (unknown shape, no data follows)."""
    if magic in (V1_MAGIC, V2_MAGIC, V3_MAGIC):
        ndim = cur.i32()
        if ndim == -1 and magic == V3_MAGIC:
            return None
        if ndim < 0:
            raise _BadArray(f"negative ndim {ndim}")
        dims = cur.unpack(f"{ndim}q") if ndim else ()
        if any(d < 0 for d in dims):
            raise _BadArray(f"unknown dimension in shape {dims}")
    else:
        ndim = magic  # legacy: the word read as "magic" is ndim, dims are uint32
        if ndim * 4 > cur.remaining():
            raise _Truncated()
        dims = cur.unpack(f"{ndim}I") if ndim else ()
    if ndim == 0 and magic != V3_MAGIC:
        return None
    return tuple(int(d) for d in dims)


def _read_array(cur: _Cursor) -> np.ndarray:
    magic = cur.u32()
    if magic in (V2_MAGIC, V3_MAGIC):
        stype = cur.i32()
        if stype != DENSE_STORAGE:
            raise _BadArray(f"storage type {stype} is sparse or unknown; only dense arrays are supported")
    shape = _read_shape(cur, magic)
    if shape is None:
        raise _BadArray("array has no shape (an MXNet 'none' array)")
    dev_type, _dev_id = cur.unpack("ii")
    if dev_type not in DEVICE_TYPES:
        raise _BadArray(f"unknown device type {dev_type}")
    flag = cur.i32()
    if flag not in DTYPE_BY_FLAG:
        raise _BadArray(f"unknown dtype flag {flag}")
    dtype = DTYPE_BY_FLAG[flag]
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    raw = cur.take(count * dtype.itemsize)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def read_params(path) -> dict[str, np.ndarray]:
    """Load every array of an MXNet NDArray-list file by name (names keep their `arg:`/`aux:` prefixes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise file_error(path, f"cannot read MXNet params ({err.strerror or err})") from None
    cur = _Cursor(data)
    try:
        magic, _reserved = cur.unpack("QQ")
    except _Truncated:
        raise file_error(path, f"not an MXNet .params file ({len(data)} bytes, too short for the header)") from None
    if magic != LIST_MAGIC:
        raise file_error(path, f"not an MXNet .params file (list magic {magic:#x}, expected {LIST_MAGIC:#x})")
    try:
        count = cur.u64()
    except _Truncated:
        raise file_error(path, "truncated MXNet .params file: ends before the array count") from None
    arrays = []
    for k in range(count):
        try:
            arrays.append(_read_array(cur))
        except _Truncated:
            raise file_error(path, f"truncated MXNet .params file: ends inside array {k + 1} of {count}") from None
        except _BadArray as err:
            raise file_error(path, f"array {k + 1} of {count}: {err}") from None
    names = _read_names(cur, path)
    if len(names) != len(arrays):
        raise file_error(path, f"{len(names)} names for {len(arrays)} arrays in MXNet .params file")
    if len(set(names)) != len(names):
        raise file_error(path, "duplicate array names in MXNet .params file")
    if cur.remaining():
        raise file_error(path, f"{cur.remaining()} unexpected bytes after the names list")
    return dict(zip(names, arrays))


def _read_names(cur: _Cursor, path: Path) -> list[str]:
    names = []
    try:
        count = cur.u64()
        for _ in range(count):
            size = cur.u64()
            names.append(cur.take(size).decode("utf-8"))
    except _Truncated:
        raise file_error(path, f"truncated MXNet .params file: ends inside the names list "
                               f"(after {len(names)} names)") from None
    except UnicodeDecodeError:
        raise file_error(path, f"name {len(names) + 1} in MXNet .params file is not UTF-8") from None
    return names


def encode_params(arrays: Mapping[str, np.ndarray], path="<params>") -> bytes:
    """The v2 byte layout MXNet itself writes today: dense storage, int64 dims, CPU context."""
    chunks = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.ndim == 0:
            raise file_error(path, f"{name}: a 0-d array reads back as MXNet's 'none'; give it shape (1,)")
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype not in FLAG_BY_DTYPE:
            raise file_error(path, f"{name}: dtype {array.dtype} has no MXNet type flag")
        chunks.append(struct.pack("<Iii", V2_MAGIC, DENSE_STORAGE, array.ndim))
        chunks.append(struct.pack(f"<{array.ndim}q", *array.shape))
        chunks.append(struct.pack("<iii", CPU_DEVICE, 0, FLAG_BY_DTYPE[dtype]))
        chunks.append(np.ascontiguousarray(array, dtype=dtype).tobytes())
    chunks.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        encoded = name.encode("utf-8")
        chunks.append(struct.pack("<Q", len(encoded)) + encoded)
    return b"".join(chunks)


def write_params(path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write `arrays` (in their order) as an MXNet v2 NDArray-list file, atomically."""
    path = Path(path)
    payload = encode_params(arrays, path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path
