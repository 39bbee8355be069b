"""Softmax with cross-entropy: stable forward and the fused gradient (y - t) * dout / N.

The loss is the exact cross-entropy -sum(t * log_softmax(x)) / N, computed as
t * (log(sum(exp(x - max))) - (x - max)): finite for any logits, and its
gradient is exactly (y - t) / N. It equals the book's cross_entropy_error
(which adds 1e-7 inside the log) to within 1e-7 / y_t.
Rows are independent; the loss is summed over rows in a fixed order, so the
result does not depend on the thread count.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport exp, log
from libc.stdlib cimport malloc, free

from _arrays cimport check_labels, check_len
from _simd cimport exp_shifted

cdef double LOG_EPS = 1e-7   # the book's delta inside the log


cdef inline floating _row_max(const floating *x, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating m = x[0]
    for j in range(1, c):
        if x[j] > m:
            m = x[j]
    return m


cdef inline void _softmax_row(const floating *x, floating *y, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating m = _row_max(x, c)
    cdef double s = 0
    exp_shifted(x, m, y, c)   # vectorised exp (fastmlp_exp.h)
    for j in range(c):
        s += y[j]
    for j in range(c):
        y[j] = y[j] / s


cdef inline double _logsumexp(const floating *x, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t j
    cdef floating m = _row_max(x, c)
    cdef double s = 0
    for j in range(c):
        s += exp(x[j] - m)
    return log(s) + m


cdef void _softmax_rows(const floating[:, ::1] x, floating[:, ::1] y, int n_threads) noexcept nogil:
    cdef Py_ssize_t i, n = x.shape[0], c = x.shape[1]
    if n_threads <= 1:
        for i in range(n):
            _softmax_row(&x[i, 0], &y[i, 0], c)
    else:
        for i in prange(n, num_threads=n_threads, schedule="static"):
            _softmax_row(&x[i, 0], &y[i, 0], c)


def softmax_forward(const floating[:, ::1] x,   # IN  (N, C) logits
                    floating[:, ::1] y,         # OUT (N, C) row-wise softmax
                    int n_threads=1):
    check_len(y.shape[0], x.shape[0], "y")
    check_len(y.shape[1], x.shape[1], "y's rows")
    with nogil:
        _softmax_rows(x, y, n_threads)


def softmax_ce_forward_labels(const floating[:, ::1] x,   # IN  (N, C) logits
                              const Py_ssize_t[::1] t,    # IN  (N,) labels in [0, C)
                              floating[:, ::1] y,         # OUT (N, C) softmax
                              int n_threads=1):
    """Return the mean loss sum(logsumexp(x[i]) - x[i, t[i]]) / N."""
    cdef Py_ssize_t i, n = x.shape[0], c = x.shape[1]
    cdef double loss = 0
    check_labels(t, n, c)
    check_len(y.shape[0], n, "y")
    check_len(y.shape[1], c, "y's rows")
    with nogil:
        _softmax_rows(x, y, n_threads)
        for i in range(n):   # serial, fixed order; the row's logsumexp is recomputed cheaply
            loss += _logsumexp(&x[i, 0], c) - x[i, t[i]]
    return loss / n


def softmax_ce_forward_onehot(const floating[:, ::1] x,   # IN  (N, C) logits
                              const floating[:, ::1] t,   # IN  (N, C) targets
                              floating[:, ::1] y,         # OUT (N, C) softmax
                              int n_threads=1):
    """Return the mean loss sum(t * (logsumexp(x) - x)) / N."""
    cdef Py_ssize_t i, j, n = x.shape[0], c = x.shape[1]
    cdef double loss = 0, lse
    check_len(t.shape[0], n, "t")
    check_len(t.shape[1], c, "t's rows")
    check_len(y.shape[0], n, "y")
    check_len(y.shape[1], c, "y's rows")
    with nogil:
        _softmax_rows(x, y, n_threads)
        for i in range(n):
            lse = _logsumexp(&x[i, 0], c)
            for j in range(c):
                if t[i, j] != 0:
                    loss += t[i, j] * (lse - x[i, j])
    return loss / n


def softmax_ce_backward_labels(const floating[:, ::1] y,   # IN  (N, C) softmax
                               const Py_ssize_t[::1] t,    # IN  (N,) labels
                               double dout,                # IN  upstream gradient (scalar)
                               floating[:, ::1] dx):       # OUT (N, C) (y - onehot(t)) * dout / N
    cdef Py_ssize_t i, j, n = y.shape[0], c = y.shape[1]
    cdef floating scale = dout / n
    check_labels(t, n, c)
    check_len(dx.shape[0], n, "dx")
    check_len(dx.shape[1], c, "dx's rows")
    with nogil:
        for i in range(n):
            for j in range(c):
                dx[i, j] = y[i, j] * scale
            dx[i, t[i]] = (y[i, t[i]] - 1) * scale


def softmax_ce_backward_onehot(const floating[:, ::1] y,   # IN  (N, C) softmax
                               const floating[:, ::1] t,   # IN  (N, C) targets
                               double dout,                # IN  upstream gradient (scalar)
                               floating[:, ::1] dx):       # OUT (N, C) (y - t) * dout / N
    cdef Py_ssize_t i, j, n = y.shape[0], c = y.shape[1]
    cdef floating scale = dout / n
    check_len(t.shape[0], n, "t")
    check_len(t.shape[1], c, "t's rows")
    check_len(dx.shape[0], n, "dx")
    check_len(dx.shape[1], c, "dx's rows")
    with nogil:
        for i in range(n):
            for j in range(c):
                dx[i, j] = (y[i, j] - t[i, j]) * scale


def cross_entropy_labels(const floating[:, ::1] y,   # IN  (N, C) probabilities
                         const Py_ssize_t[::1] t):   # IN  (N,) labels in [0, C)
    """The book's cross_entropy_error: -sum(log(y[i, t[i]] + 1e-7)) / N."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef double loss = 0
    check_labels(t, n, y.shape[1])
    with nogil:
        for i in range(n):
            loss -= log(y[i, t[i]] + LOG_EPS)
    return loss / n
