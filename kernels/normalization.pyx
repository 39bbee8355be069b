"""Dropout and batch normalisation kernels (the book's ch. 6 layers), over C-contiguous arrays.

Dropout works on flat arrays (any shape, raveled by the caller); its mask is a
pure function of a 64-bit key and the flat index (fastmlp_norm.h), so the
chunks of a parallel run draw exactly the serial mask. Batch normalisation
works on (N, D) blocks with column statistics summed row by row (serial: the
bits never depend on the thread count).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint32_t, uint64_t

from _arrays cimport check_len
from _omp cimport CHUNK
cimport _norm


cpdef uint32_t dropout_threshold(double ratio) except? 0:
    """The integer form of ``u > ratio`` for u = h * 2**-32: keep when h > threshold."""
    if not (ratio >= 0 and ratio <= 1):
        raise ValueError(f"dropout ratio must lie in [0, 1], got {ratio}")
    return _norm.dropout_threshold(ratio)


def dropout_forward(const floating[::1] x,      # IN
                    floating[::1] out,          # OUT x * mask
                    unsigned char[::1] mask,    # OUT the kept entries (the book's mask)
                    uint64_t key, double ratio, int n_threads=1):
    cdef Py_ssize_t n = x.shape[0], c, n_chunks = (n + CHUNK - 1) // CHUNK
    cdef uint32_t threshold = dropout_threshold(ratio)
    check_len(out.shape[0], n, "out")
    check_len(mask.shape[0], n, "mask")
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            _norm.dropout_forward(&x[0], &out[0], &mask[0], key, threshold, 0, n)
        return
    for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
        _norm.dropout_forward(&x[0], &out[0], &mask[0], key, threshold, c * CHUNK,
                              min(n, (c + 1) * CHUNK))


def dropout_backward(const floating[::1] dout,          # IN
                     const unsigned char[::1] mask,     # IN from dropout_forward
                     floating[::1] dx):                 # OUT dout * mask
    cdef Py_ssize_t n = dout.shape[0]
    check_len(mask.shape[0], n, "mask")
    check_len(dx.shape[0], n, "dx")
    with nogil:
        _norm.dropout_backward(&dout[0], &mask[0], &dx[0], 0, n)


def scale(const floating[::1] x,     # IN
          floating[::1] out,         # OUT x * s
          double s):
    cdef Py_ssize_t n = x.shape[0]
    check_len(out.shape[0], n, "out")
    with nogil:
        _norm.scale(&x[0], &out[0], <floating>s, 0, n)


def batchnorm_train(const floating[:, ::1] x,        # IN (N, D)
                    const floating[::1] gamma,       # IN (D,)
                    const floating[::1] beta,        # IN (D,)
                    double eps, double momentum,
                    floating[:, ::1] out,            # OUT gamma * xn + beta (may be x)
                    floating[:, ::1] xc,             # OUT x - mean
                    floating[:, ::1] xn,             # OUT xc / std
                    floating[::1] std,               # OUT sqrt(var + eps)
                    floating[::1] mean,              # OUT the batch mean
                    floating[::1] running_mean,      # IN/OUT
                    floating[::1] running_var):      # IN/OUT
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1]
    for arr, name in ((out, "out"), (xc, "xc"), (xn, "xn")):
        check_len(arr.shape[0], n, name)
        check_len(arr.shape[1], m, name)
    for vec, name in ((gamma, "gamma"), (beta, "beta"), (std, "std"), (mean, "mean"),
                      (running_mean, "running_mean"), (running_var, "running_var")):
        check_len(vec.shape[0], m, name)
    if n == 0 or m == 0:
        return
    with nogil:
        _norm.bn_train(&x[0, 0], &gamma[0], &beta[0], eps, momentum, n, m, &out[0, 0],
                       &xc[0, 0], &xn[0, 0], &std[0], &mean[0], &running_mean[0],
                       &running_var[0])


def batchnorm_infer(const floating[:, ::1] x,            # IN (N, D)
                    const floating[::1] gamma,           # IN (D,)
                    const floating[::1] beta,            # IN (D,)
                    const floating[::1] running_mean,    # IN (D,)
                    const floating[::1] running_var,     # IN (D,)
                    double eps,
                    floating[:, ::1] out,                # OUT (may be x)
                    floating[::1] scratch):              # (D,)
    cdef Py_ssize_t n = x.shape[0], m = x.shape[1]
    check_len(out.shape[0], n, "out")
    check_len(out.shape[1], m, "out")
    for vec, name in ((gamma, "gamma"), (beta, "beta"), (running_mean, "running_mean"),
                      (running_var, "running_var"), (scratch, "scratch")):
        check_len(vec.shape[0], m, name)
    if n == 0 or m == 0:
        return
    with nogil:
        _norm.bn_infer(&x[0, 0], &gamma[0], &beta[0], &running_mean[0], &running_var[0], eps,
                       n, m, &out[0, 0], &scratch[0])


def batchnorm_backward(const floating[:, ::1] dout,   # IN (N, D)
                       const floating[:, ::1] xn,     # IN from batchnorm_train
                       const floating[::1] gamma,     # IN (D,)
                       const floating[::1] std,       # IN from batchnorm_train
                       floating[:, ::1] dx,           # OUT (may be dout)
                       floating[::1] dgamma,          # OUT
                       floating[::1] dbeta,           # OUT
                       floating[::1] work):           # (3D,) scratch
    cdef Py_ssize_t n = dout.shape[0], m = dout.shape[1]
    for arr, name in ((xn, "xn"), (dx, "dx")):
        check_len(arr.shape[0], n, name)
        check_len(arr.shape[1], m, name)
    for vec, name in ((gamma, "gamma"), (std, "std"), (dgamma, "dgamma"), (dbeta, "dbeta")):
        check_len(vec.shape[0], m, name)
    check_len(work.shape[0], 3 * m, "work")
    if n == 0 or m == 0:
        return
    with nogil:
        _norm.bn_backward(&dout[0, 0], &xn[0, 0], &gamma[0], &std[0], n, m, &dx[0, 0],
                          &dgamma[0], &dbeta[0], &work[0])
