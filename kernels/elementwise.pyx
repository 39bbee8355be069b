"""The book's Mul and Add layers on flat, same-shape C-contiguous arrays."""
from cython cimport floating


def mul_forward(const floating[::1] x, const floating[::1] y,   # IN
                floating[::1] out):                              # OUT x * y
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = x[i] * y[i]


def mul_backward(const floating[::1] dout, const floating[::1] x, const floating[::1] y,  # IN
                 floating[::1] dx, floating[::1] dy):    # OUT dout * y, dout * x
    cdef Py_ssize_t i
    with nogil:
        for i in range(dout.shape[0]):
            dx[i] = dout[i] * y[i]
            dy[i] = dout[i] * x[i]


def add_forward(const floating[::1] x, const floating[::1] y,   # IN
                floating[::1] out):                              # OUT x + y
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            out[i] = x[i] + y[i]
