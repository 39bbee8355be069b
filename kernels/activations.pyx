"""ReLU, sigmoid and tanh kernels over flat C-contiguous arrays (any shape, raveled by the caller).

Each kernel is one pass. They run serially unless n_threads > 1, then in
fixed chunks across an OpenMP team (elementwise, so the bits never change).
"""
from cython cimport floating
from cython.parallel cimport prange

from _arrays cimport check_len
from _omp cimport CHUNK
cimport _simd


def relu_forward(const floating[::1] x,        # IN
                 floating[::1] out,            # OUT max(x, 0)
                 unsigned char[::1] mask,      # OUT x <= 0 (the book's mask)
                 int n_threads=1):
    cdef Py_ssize_t n = x.shape[0], c, n_chunks = (n + CHUNK - 1) // CHUNK
    check_len(out.shape[0], n, "out")
    check_len(mask.shape[0], n, "mask")
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            _simd.relu(&x[0], &out[0], &mask[0], 0, n)
        return
    for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
        _simd.relu(&x[0], &out[0], &mask[0], c * CHUNK, min(n, (c + 1) * CHUNK))


def relu_backward(const floating[::1] dout,          # IN
                  const unsigned char[::1] mask,     # IN from relu_forward
                  floating[::1] dx,                  # OUT
                  int n_threads=1):
    cdef Py_ssize_t n = dout.shape[0], c, n_chunks = (n + CHUNK - 1) // CHUNK
    check_len(mask.shape[0], n, "mask")
    check_len(dx.shape[0], n, "dx")
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            _simd.relu_backward(&dout[0], &mask[0], &dx[0], 0, n)
        return
    for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
        _simd.relu_backward(&dout[0], &mask[0], &dx[0], c * CHUNK, min(n, (c + 1) * CHUNK))


def sigmoid_forward(const floating[::1] x,    # IN
                    floating[::1] out,        # OUT
                    int n_threads=1):
    cdef Py_ssize_t n = x.shape[0], c, n_chunks = (n + CHUNK - 1) // CHUNK
    check_len(out.shape[0], n, "out")
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            _simd.sigmoid(&x[0], &out[0], 0, n)
        return
    for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
        _simd.sigmoid(&x[0], &out[0], c * CHUNK, min(n, (c + 1) * CHUNK))


def sigmoid_backward(const floating[::1] dout,   # IN
                     const floating[::1] out,    # IN from sigmoid_forward
                     floating[::1] dx,           # OUT dout * (1 - out) * out
                     int n_threads=1):
    cdef Py_ssize_t n = dout.shape[0], c, n_chunks = (n + CHUNK - 1) // CHUNK
    check_len(out.shape[0], n, "out")
    check_len(dx.shape[0], n, "dx")
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            _simd.sigmoid_backward(&dout[0], &out[0], &dx[0], 0, n)
        return
    for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
        _simd.sigmoid_backward(&dout[0], &out[0], &dx[0], c * CHUNK, min(n, (c + 1) * CHUNK))


def tanh_forward(const floating[::1] x,    # IN
                 floating[::1] out,        # OUT tanh(x)
                 int n_threads=1):
    cdef Py_ssize_t n = x.shape[0], c, n_chunks = (n + CHUNK - 1) // CHUNK
    check_len(out.shape[0], n, "out")
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            _simd.tanh(&x[0], &out[0], 0, n)
        return
    for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
        _simd.tanh(&x[0], &out[0], c * CHUNK, min(n, (c + 1) * CHUNK))


def tanh_backward(const floating[::1] dout,   # IN
                  const floating[::1] out,    # IN from tanh_forward
                  floating[::1] dx,           # OUT dout * ((1 - out) * (1 + out))
                  int n_threads=1):
    cdef Py_ssize_t n = dout.shape[0], c, n_chunks = (n + CHUNK - 1) // CHUNK
    check_len(out.shape[0], n, "out")
    check_len(dx.shape[0], n, "dx")
    if n_threads <= 1 or n_chunks == 1:
        with nogil:
            _simd.tanh_backward(&dout[0], &out[0], &dx[0], 0, n)
        return
    for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
        _simd.tanh_backward(&dout[0], &out[0], &dx[0], c * CHUNK, min(n, (c + 1) * CHUNK))


def exp_forward(const floating[::1] x,    # IN
                floating[::1] out):       # OUT exp(x)
    """The vectorised exp of fastmlp_exp.h over a flat array (serial; for tests and softmax)."""
    cdef Py_ssize_t n = x.shape[0]
    check_len(out.shape[0], n, "out")
    if n == 0:
        return
    with nogil:
        _simd.exp_shifted(&x[0], 0, &out[0], n)
