"""MXNet .params reader/writer: real InsightFace files (v2 and legacy layouts), hand-built layouts, bad files."""

import struct
from pathlib import Path

import numpy as np
import pytest

from ghostrt.errors import GhostError
from ghostrt.export.mxnet_params import encode_params, read_params, write_params
from ghostrt.export.mxnet_symbol import infer_shapes, read_symbol

REPO = Path(__file__).resolve().parents[2]
MXNET = REPO.parent / "shared" / "mxnet"
needs_shared = pytest.mark.skipif(not MXNET.is_dir(), reason=f"{MXNET} absent: the real MXNet files live there")

GENDERAGE = (MXNET / "genderage-symbol.json", MXNET / "genderage-0000.params", (1, 3, 112, 112))
MTCNN = (MXNET / "mtcnn-det1-symbol.json", MXNET / "mtcnn-det1-0001.params", (1, 3, 12, 12))


@needs_shared
@pytest.mark.parametrize("symbol,params,data_shape", [GENDERAGE, MTCNN], ids=["genderage-v2", "mtcnn-legacy"])
def test_real_file_names_and_shapes_equal_what_the_symbol_infers(symbol, params, data_shape):
    arrays = read_params(params)
    inferred = infer_shapes(read_symbol(symbol), {"data": data_shape}).params
    assert {name: a.shape for name, a in arrays.items()} == inferred
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in arrays.values())


@needs_shared
def test_real_file_layouts_are_the_ones_the_reader_claims():
    # Independent of the reader: the raw words after the 24-byte list header are the first array's magic.
    v2_word = struct.unpack_from("<I", GENDERAGE[1].read_bytes(), 24)[0]
    legacy_word = struct.unpack_from("<I", MTCNN[1].read_bytes(), 24)[0]
    assert v2_word == 0xF993FAC9
    assert legacy_word not in (0xF993FAC8, 0xF993FAC9) and legacy_word <= 8  # an ndim, not a magic


@needs_shared
def test_writer_reproduces_a_file_mxnet_wrote_byte_for_byte():
    original = GENDERAGE[1].read_bytes()
    assert encode_params(read_params(GENDERAGE[1])) == original


def test_round_trip_keeps_names_order_dtypes_and_values(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "arg:conv_weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "arg:fc_bias": rng.normal(size=(7,)).astype(np.float64),
        "aux:bn_moving_var": rng.normal(size=(5,)).astype(np.float16),
        "arg:idx": np.arange(6, dtype=np.int32).reshape(2, 3),
        "arg:big": np.array([2**40, -3], dtype=np.int64),
        "arg:bytes": np.array([0, 255], dtype=np.uint8),
    }
    path = write_params(tmp_path / "x.params", arrays)
    back = read_params(path)
    assert list(back) == list(arrays)
    for name, value in arrays.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        np.testing.assert_array_equal(back[name], value)
    assert [p.name for p in tmp_path.iterdir()] == ["x.params"]  # no temporary left behind


def _list(arrays_bytes: list[bytes], names: list[str]) -> bytes:
    """An NDArray list from its documented layout: magic 0x112, reserved, count, arrays, count, names."""
    out = struct.pack("<QQQ", 0x112, 0, len(arrays_bytes)) + b"".join(arrays_bytes)
    out += struct.pack("<Q", len(names))
    for name in names:
        out += struct.pack("<Q", len(name)) + name.encode()
    return out


def _legacy_array(a: np.ndarray) -> bytes:  # no magic: uint32 ndim, uint32 dims, ctx, type flag, data
    return struct.pack(f"<I{a.ndim}I", a.ndim, *a.shape) + struct.pack("<iii", 1, 0, 0) + a.tobytes()


def _v1_array(a: np.ndarray) -> bytes:  # magic, uint32 ndim, int64 dims, ctx, type flag, data
    return struct.pack(f"<II{a.ndim}q", 0xF993FAC8, a.ndim, *a.shape) + struct.pack("<iii", 2, 1, 0) + a.tobytes()


def _v3_array(a: np.ndarray) -> bytes:  # v2 layout under MXNet 2's magic
    return (struct.pack(f"<Iii{a.ndim}q", 0xF993FACA, 0, a.ndim, *a.shape) + struct.pack("<iii", 1, 0, 0)
            + a.tobytes())


@pytest.mark.parametrize("encode", [_legacy_array, _v1_array, _v3_array], ids=["legacy", "v1", "v3"])
def test_hand_built_older_layouts_read(tmp_path, encode):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.array([1.5, -2.5], dtype=np.float32)
    path = tmp_path / "old.params"
    path.write_bytes(_list([encode(a), encode(b)], ["arg:a", "aux:b"]))
    back = read_params(path)
    assert list(back) == ["arg:a", "aux:b"]
    np.testing.assert_array_equal(back["arg:a"], a)
    np.testing.assert_array_equal(back["aux:b"], b)


def _expect_error(path, *fragments):
    with pytest.raises(GhostError) as info:
        read_params(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_truncated_files_name_the_file_and_the_array(tmp_path):
    arrays = {f"arg:w{i}": np.full((3, 4), i, np.float32) for i in range(3)}
    full = encode_params(arrays)
    path = tmp_path / "cut.params"
    array_bytes = 4 + 4 + 4 + 2 * 8 + 12 + 48
    path.write_bytes(full[:24 + array_bytes + 30])  # inside array 2 of 3
    _expect_error(path, "truncated", "array 2 of 3")
    path.write_bytes(full[:-3])  # inside the names list
    _expect_error(path, "truncated", "names")
    path.write_bytes(full[:10])
    _expect_error(path, "too short")


@needs_shared
def test_truncated_real_file(tmp_path):
    path = tmp_path / "genderage-0000.params"
    path.write_bytes(GENDERAGE[1].read_bytes()[:500_000])
    _expect_error(path, "truncated", "of 146")


def test_garbage_and_wrong_magic(tmp_path):
    path = tmp_path / "garbage.params"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    _expect_error(path, "not an MXNet .params file")
    path.write_bytes(struct.pack("<QQQ", 0x113, 0, 0) + struct.pack("<Q", 0))
    _expect_error(path, "list magic 0x113")


def test_unknown_dtype_flag(tmp_path):
    bad = struct.pack("<Iii1q", 0xF993FAC9, 0, 1, 2) + struct.pack("<iii", 1, 0, 99) + bytes(8)
    path = tmp_path / "dtype.params"
    path.write_bytes(_list([bad], ["arg:x"]))
    _expect_error(path, "array 1 of 1", "dtype flag 99")


def test_sparse_storage_is_refused(tmp_path):
    sparse = struct.pack("<Iii", 0xF993FAC9, 1, 1) + bytes(64)
    path = tmp_path / "sparse.params"
    path.write_bytes(_list([sparse], ["arg:x"]))
    _expect_error(path, "storage type 1")


def test_names_count_must_match_arrays(tmp_path):
    a = np.ones(2, np.float32)
    path = tmp_path / "names.params"
    path.write_bytes(_list([_legacy_array(a), _legacy_array(a)], ["arg:only_one"]))
    _expect_error(path, "1 names for 2 arrays")


def test_missing_file_and_bad_writes(tmp_path):
    _expect_error(tmp_path / "absent.params", "cannot read")
    with pytest.raises(GhostError, match="does not exist"):
        write_params(tmp_path / "no" / "dir.params", {"arg:x": np.ones(1, np.float32)})
    with pytest.raises(GhostError, match="0-d"):
        write_params(tmp_path / "scalar.params", {"arg:x": np.float32(1.0)})
    assert not (tmp_path / "scalar.params").exists()
