"""The book's Mul and Add layers on flat, same-shape C-contiguous arrays."""
from cython cimport floating

from _arrays cimport check_len


def mul_forward(const floating[::1] x, const floating[::1] y,   # IN
                floating[::1] out):                              # OUT x * y
    cdef Py_ssize_t i
    check_len(y.shape[0], x.shape[0], "y")
    check_len(out.shape[0], x.shape[0], "out")
    with nogil:
        for i in range(x.shape[0]):
            out[i] = x[i] * y[i]


def mul_backward(const floating[::1] dout, const floating[::1] x, const floating[::1] y,  # IN
                 floating[::1] dx, floating[::1] dy):    # OUT dout * y, dout * x
    cdef Py_ssize_t i
    check_len(x.shape[0], dout.shape[0], "x")
    check_len(y.shape[0], dout.shape[0], "y")
    check_len(dx.shape[0], dout.shape[0], "dx")
    check_len(dy.shape[0], dout.shape[0], "dy")
    with nogil:
        for i in range(dout.shape[0]):
            dx[i] = dout[i] * y[i]
            dy[i] = dout[i] * x[i]


def add_forward(const floating[::1] x, const floating[::1] y,   # IN
                floating[::1] out):                              # OUT x + y
    cdef Py_ssize_t i
    check_len(y.shape[0], x.shape[0], "y")
    check_len(out.shape[0], x.shape[0], "out")
    with nogil:
        for i in range(x.shape[0]):
            out[i] = x[i] + y[i]
