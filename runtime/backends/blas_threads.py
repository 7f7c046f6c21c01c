"""numpy's BLAS on one thread while the nets run: the executors own the cores.

OpenBLAS's worker threads keep spinning for a while after each threaded call. The pipeline's own numpy work is
small (the ArcFace input is two small matmuls), but on a 2-core machine those spinning threads sat on the cores
that the executor's pool is pinned to: measured here (AMD EPYC, 2 cores, OpenVINO INT8, 2026-11-29) the ArcFace
call right after the matmuls took 124 ms instead of 70 ms. With BLAS on one thread it takes 71-77 ms.

Only BLAS libraries loaded as shared objects are touched (numpy's, OpenCV's, SciPy's OpenBLAS); PyTorch's MKL is
linked statically and its OpenMP pool is left alone, so the eager reference in `ghostrt bench` keeps its threads.
"""

from threadpoolctl import threadpool_info, threadpool_limits

_limits = None


def keep_blas_single_threaded() -> None:
    """Process-wide and idempotent; calling it again also covers a BLAS library loaded since."""
    global _limits
    _limits = threadpool_limits(limits=1, user_api="blas")


def blas_threads() -> dict[str, int]:
    """{library file: threads} of every BLAS library loaded now (recorded in each bench JSON)."""
    return {info["filepath"].rsplit("/", 1)[-1]: info["num_threads"] for info in threadpool_info()
            if info["user_api"] == "blas"}
