"""Affine layer kernels: GEMMs on numpy's BLAS, bias add and column sums fused around them.

Inputs are C-contiguous (fastmlp/_backend.py makes them so); outputs are
preallocated by the caller. Nothing here validates: the Python side has.
"""
from cython cimport floating
from cython.parallel cimport prange

from _arrays cimport check_len
from _blas cimport gemm, fastmlp_set_blas, fastmlp_has_blas
from _omp cimport CHUNK
cimport _simd


def set_blas(size_t sgemm, size_t dgemm, size_t sgemv, size_t dgemv, bint ilp64):
    """Point this module's GEMM at the Fortran sgemm/dgemm (and gemv, or 0) at these addresses."""
    fastmlp_set_blas(sgemm, dgemm, sgemv, dgemv, ilp64)


def has_blas():
    return bool(fastmlp_has_blas())


def matmul(const floating[:, ::1] a,   # IN  (m, k), or (k, m) when trans_a
           const floating[:, ::1] b,   # IN  (k, n), or (n, k) when trans_b
           floating[:, ::1] out,       # OUT (m, n)
           bint trans_a=False, bint trans_b=False):
    """out = op(a) @ op(b) through the BLAS GEMM (the route the layers use)."""
    cdef Py_ssize_t m = out.shape[0], n = out.shape[1]
    cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
    check_len(a.shape[1] if trans_a else a.shape[0], m, "op(a)'s rows")
    check_len(b.shape[1] if trans_b else b.shape[0], k, "op(b)'s rows")
    check_len(b.shape[0] if trans_b else b.shape[1], n, "op(b)'s columns")
    with nogil:
        gemm(trans_a, trans_b, m, n, k, 1, &a[0, 0], a.shape[1], &b[0, 0], b.shape[1],
             0, &out[0, 0], n)


def bias_add(floating[:, ::1] out,      # IN/OUT (N, M)
             const floating[::1] b):    # IN (M,)
    """out += b, row by row (the fallback route after np.matmul)."""
    check_len(b.shape[0], out.shape[1], "b")
    with nogil:
        _simd.bias(&out[0, 0], &b[0], out.shape[0], out.shape[1])


def affine_forward(const floating[:, ::1] x,   # IN  (N, K)
                   const floating[:, ::1] W,   # IN  (K, M)
                   const floating[::1] b,      # IN  (M,)
                   floating[:, ::1] out):      # OUT (N, M)
    """out = x @ W + b: one GEMM, then the bias added in one pass."""
    cdef Py_ssize_t n = x.shape[0], k = x.shape[1], m = W.shape[1]
    check_len(W.shape[0], k, "W")
    check_len(b.shape[0], m, "b")
    check_len(out.shape[0], n, "out")
    check_len(out.shape[1], m, "out's rows")
    with nogil:
        gemm(False, False, n, m, k, 1, &x[0, 0], k, &W[0, 0], m, 0, &out[0, 0], m)
        _simd.bias(&out[0, 0], &b[0], n, m)


def column_sums(const floating[:, ::1] a,   # IN  (N, M)
                floating[::1] sums,         # OUT (M,)
                int n_threads=1):
    """sums = a.sum(axis=0), same bits for any thread count (split by columns)."""
    cdef Py_ssize_t m = a.shape[1], block = max(16, CHUNK // max(1, a.shape[0]))
    cdef Py_ssize_t n_blocks = (m + block - 1) // block, blk
    check_len(sums.shape[0], m, "sums")
    if n_threads <= 1 or n_blocks == 1:
        with nogil:
            _simd.column_sums(&a[0, 0], m, &sums[0], a.shape[0], m)
        return
    for blk in prange(n_blocks, nogil=True, num_threads=n_threads, schedule="static"):
        _simd.column_sums(&a[0, 0] + blk * block, m, &sums[0] + blk * block, a.shape[0],
                          min(m, (blk + 1) * block) - blk * block)


def affine_backward(const floating[:, ::1] dout,   # IN  (N, M)
                    const floating[:, ::1] x,      # IN  (N, K)
                    const floating[:, ::1] W,      # IN  (K, M)
                    floating[:, ::1] dx,           # OUT (N, K), or None to skip it
                    floating[:, ::1] dW,           # OUT (K, M)
                    floating[::1] db,              # OUT (M,)
                    int n_threads=1):
    """dx = dout @ W.T, dW = x.T @ dout (GEMMs), db = dout.sum(0) (deterministic)."""
    cdef Py_ssize_t n = dout.shape[0], m = dout.shape[1], k = x.shape[1]
    check_len(x.shape[0], n, "x")
    check_len(W.shape[0], k, "W")
    check_len(W.shape[1], m, "W's rows")
    check_len(dW.shape[0], k, "dW")
    check_len(dW.shape[1], m, "dW's rows")
    check_len(db.shape[0], m, "db")
    if dx is not None:
        check_len(dx.shape[0], n, "dx")
        check_len(dx.shape[1], k, "dx's rows")
    with nogil:
        if dx is not None:
            gemm(False, True, n, k, m, 1, &dout[0, 0], m, &W[0, 0], m, 0, &dx[0, 0], k)
        gemm(True, False, k, m, n, 1, &x[0, 0], k, &dout[0, 0], m, 0, &dW[0, 0], m)
    column_sums(dout, db, n_threads)
