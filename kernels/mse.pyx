"""Mean squared error, 0.5 * sum((y - t)^2) / N, and its gradient (y - t) * dout / N.

Flat C-contiguous arrays; the sum runs serially in a fixed order (deterministic).
"""
from cython cimport floating

from _arrays cimport check_len


def mse_forward(const floating[::1] y,   # IN  predictions, raveled
                const floating[::1] t,   # IN  targets, raveled
                Py_ssize_t n_rows):      # IN  N, the batch size
    """Return 0.5 * sum((y - t)^2) / n_rows, accumulated in double."""
    cdef Py_ssize_t i
    cdef double s = 0, d
    check_len(t.shape[0], y.shape[0], "t")
    with nogil:
        for i in range(y.shape[0]):
            d = y[i] - t[i]
            s += d * d
    return 0.5 * s / n_rows


def mse_backward(const floating[::1] y,   # IN
                 const floating[::1] t,   # IN
                 double dout,             # IN  upstream gradient (scalar)
                 Py_ssize_t n_rows,       # IN  N
                 floating[::1] dx):       # OUT (y - t) * dout / N
    cdef Py_ssize_t i
    cdef floating scale = dout / n_rows
    check_len(t.shape[0], y.shape[0], "t")
    check_len(dx.shape[0], y.shape[0], "dx")
    with nogil:
        for i in range(y.shape[0]):
            dx[i] = (y[i] - t[i]) * scale
