"""numpy's own BLAS: found once at import, and the compiled GEMM kernels pointed at it.

fastmlp multiplies matrices with the BLAS numpy itself is linked against, so
that fastmlp and the user's own ``@`` share one thread pool (a second BLAS or
pool alternating with it collapsed a training step 2-60x: see
``shared/bench/THREADS.md``). This module finds that library through
threadpoolctl, looks up its Fortran GEMM/GEMV symbols, hands their
addresses to the kernels that call them and checks them on small products.
When that fails (no symbols, another BLAS vendor), :data:`USE_BLAS` is False
and ``_backend`` multiplies with ``np.matmul(out=)``, which uses the same
BLAS and pool.

Also the probe the thread policy (``fastmlp.threads``) needs: the BLAS's
threading layer. Nothing here decides thread counts.
"""
import ctypes
import logging
import os

import numpy as np
from threadpoolctl import threadpool_info

from ._kernels import affine, mlp

# Fortran symbol prefixes and suffixes of numpy's BLAS builds, in the order they are
# tried (numpy's wheels: ILP64 with the scipy_ prefix), with whether ints are 64-bit.
_SYMBOL_STYLES = [("scipy_", "_64_", True), ("", "_64_", True), ("scipy_", "_", False),
                  ("", "_", False)]

_log = logging.getLogger(__name__)
_GEMM_MODULES = (affine, mlp)  # compiled modules that keep their own GEMM pointers


def _find_numpy_blas():
    """(library path, {routine: address}, ilp64) of numpy's BLAS; no addresses if not found.
    The routines: sgemm, dgemm, sgemv, dgemv, and where they apply the row-block ones
    (:func:`_row_block_addresses`)."""
    if os.environ.get("FASTMLP_BLAS") == "numpy":
        return None, {}, False
    numpy_dir = os.path.dirname(np.__file__)
    libs = [info for info in threadpool_info() if info["user_api"] == "blas"]
    # Prefer the copy that ships inside numpy (numpy.libs, numpy/.dylibs):
    # scipy may have loaded a second, separate BLAS with its own pool.
    libs.sort(key=lambda info: not info["filepath"].startswith(numpy_dir))
    for info in libs:
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        for prefix, suffix, ilp64 in _SYMBOL_STYLES:
            addresses = {}
            for routine in ("sgemm", "dgemm", "sgemv", "dgemv"):
                fn = getattr(lib, prefix + routine + suffix, None)
                addresses[routine] = ctypes.cast(fn, ctypes.c_void_p).value if fn else 0
            if addresses["sgemm"] and addresses["dgemm"]:
                if ilp64:
                    addresses.update(_row_block_addresses(lib, info, prefix, suffix))
                return info["filepath"], addresses, ilp64
    return (libs[0]["filepath"] if libs else None), {}, False


# OpenBLAS versions whose cblas_?gemm_batch has been checked for the row-block products of
# inference (kernels/fastmlp_blas.h: it crashes on small products, which the kernel never
# hands it); on any other BLAS or version inference runs one GEMM per layer.
_ROW_BLOCK_VERSIONS = ("0.3.31",)


def _row_block_addresses(lib, info, prefix, suffix):
    """{"sgemm_batch", "dgemm_batch", "threads": address} of the OpenBLAS ``lib`` (ILP64
    symbols named with ``prefix``, ``suffix``, as threadpoolctl's ``info`` describes it) when
    its version is one of _ROW_BLOCK_VERSIONS and FASTMLP_ROW_BLOCKS is not "0"; else {}."""
    version = info.get("version") or ""
    if (os.environ.get("FASTMLP_ROW_BLOCKS") == "0" or info.get("internal_api") != "openblas"
            or not any(version == v or version.startswith(v + ".")
                       for v in _ROW_BLOCK_VERSIONS)):
        return {}
    cblas_suffix = suffix.lstrip("_")   # scipy_sgemm_64_ beside scipy_cblas_sgemm_batch64_
    found = {key: getattr(lib, prefix + name + cblas_suffix, None)
             for key, name in (("sgemm_batch", "cblas_sgemm_batch"),
                               ("dgemm_batch", "cblas_dgemm_batch"),
                               ("threads", "openblas_get_num_threads"))}
    if not all(found.values()):
        return {}
    return {key: ctypes.cast(fn, ctypes.c_void_p).value for key, fn in found.items()}


def _set_blas(addresses, ilp64):
    for module in _GEMM_MODULES:
        module.set_blas(addresses.get("sgemm", 0), addresses.get("dgemm", 0),
                        addresses.get("sgemv", 0), addresses.get("dgemv", 0), ilp64)
    mlp.set_blas_rows(addresses.get("sgemm_batch", 0), addresses.get("dgemm_batch", 0),
                      addresses.get("threads", 0))


def _connect_blas():
    """Point the GEMM kernels at numpy's BLAS and check them on small products.

    Returns (library path or None, True when the kernels call it directly)."""
    path, addresses, ilp64 = _find_numpy_blas()
    if not addresses:
        _log.info("no GEMM symbols found in numpy's BLAS (%s): matrix products use "
                  "np.matmul(out=), the same BLAS and thread pool", path)
        return path, False
    _set_blas(addresses, ilp64)
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for m in (3, 1):   # a GEMM and a one-row product (gemv)
            a, b = rng.random((m, 5)).astype(dtype), rng.random((5, 4)).astype(dtype)
            out = np.empty((m, 4), dtype)
            affine.matmul(a, b, out)
            if not np.allclose(out, a @ b, rtol=1e-5):
                _set_blas({}, False)
                _log.warning("numpy's BLAS (%s) called through its GEMM symbols gave a wrong "
                             "product: matrix products use np.matmul(out=) instead", path)
                return path, False
    return path, True


#: True when the compiled GEMM kernels call numpy's BLAS through function pointers;
#: False when ``_backend`` falls back to ``np.matmul(out=)`` (same BLAS, same pool).
_BLAS_PATH, USE_BLAS = _connect_blas()


def numpy_blas_path():
    """File of the BLAS library numpy uses (where fastmlp's GEMMs run), or None."""
    return _BLAS_PATH


def threading_layer():
    """numpy's BLAS threading layer as threadpoolctl reports it ('openmp', 'pthreads', ...)."""
    for info in threadpool_info():
        if info["filepath"] == _BLAS_PATH:
            return info.get("threading_layer", "unknown")
    return "unknown"
