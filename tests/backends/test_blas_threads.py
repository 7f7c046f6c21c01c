"""numpy's BLAS is held to one thread once the nets exist (its spinning workers slowed the next net ~1.7×)."""

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from ghostrt.runtime.backends.blas_threads import blas_threads
from ghostrt.runtime.swap.core import Nets


def _numpy_blas_threads() -> int:
    np.ones((4, 4)) @ np.ones((4, 4))        # numpy's BLAS is loaded
    infos = [i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
    assert infos, "numpy's BLAS library is not visible to threadpoolctl"
    return infos[0]["num_threads"]


def test_making_the_nets_holds_blas_to_one_thread():
    with threadpool_limits(limits=2, user_api="blas"):       # restored on exit, whatever the test did
        assert _numpy_blas_threads() == 2
        Nets(detector=None, arcface=None, generator=None, landmarks=None)
        assert _numpy_blas_threads() == 1
        assert blas_threads() and set(blas_threads().values()) == {1}
