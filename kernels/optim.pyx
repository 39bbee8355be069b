"""In-place optimizer updates over flat parameter arrays: one pass, no temporaries.

Each rule follows the book's optimizer.py operation by operation, with the
hyper-parameters rounded to the parameter dtype as numpy would, so a
trajectory matches the book's to rounding. Hyper-parameter arithmetic that
the book does in Python floats (e.g. (1 + momentum) * lr) is done by the
caller in double and passed in.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from _omp cimport CHUNK


cdef inline void _sgd(floating *p, const floating *g, floating lr,
                      Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, end):
        p[i] -= lr * g[i]


cdef inline void _momentum(floating *p, const floating *g, floating *v, floating lr,
                           floating momentum, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, end):
        v[i] = momentum * v[i] - lr * g[i]
        p[i] += v[i]


cdef inline void _nesterov(floating *p, const floating *g, floating *v, floating lr,
                           floating momentum, floating momentum_sq, floating lr_step,
                           Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, end):
        v[i] *= momentum
        v[i] -= lr * g[i]
        p[i] += momentum_sq * v[i]
        p[i] -= lr_step * g[i]


cdef inline void _adagrad(floating *p, const floating *g, floating *h, floating lr,
                          floating eps, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, end):
        h[i] += g[i] * g[i]
        p[i] -= lr * g[i] / (<floating>sqrt(h[i]) + eps)


cdef inline void _rmsprop(floating *p, const floating *g, floating *h, floating lr,
                          floating decay, floating one_minus_decay, floating eps,
                          Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, end):
        h[i] *= decay
        h[i] += one_minus_decay * g[i] * g[i]
        p[i] -= lr * g[i] / (<floating>sqrt(h[i]) + eps)


cdef inline void _adam(floating *p, const floating *g, floating *m, floating *v, floating lr_t,
                       floating one_minus_beta1, floating one_minus_beta2, floating eps,
                       Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, end):
        m[i] += one_minus_beta1 * (g[i] - m[i])
        v[i] += one_minus_beta2 * (g[i] * g[i] - v[i])
        p[i] -= lr_t * m[i] / (<floating>sqrt(v[i]) + eps)


cdef inline Py_ssize_t _n_chunks(Py_ssize_t n) noexcept nogil:
    return (n + CHUNK - 1) // CHUNK


def sgd_update(floating[::1] param, const floating[::1] grad, double lr, int n_threads=1):
    """param -= lr * grad."""
    cdef Py_ssize_t n = param.shape[0], c
    if n_threads <= 1 or _n_chunks(n) == 1:
        with nogil:
            _sgd(&param[0], &grad[0], <floating>lr, 0, n)
        return
    for c in prange(_n_chunks(n), nogil=True, num_threads=n_threads, schedule="static"):
        _sgd(&param[0], &grad[0], <floating>lr, c * CHUNK, min(n, (c + 1) * CHUNK))


def momentum_update(floating[::1] param, const floating[::1] grad, floating[::1] v,
                    double lr, double momentum, int n_threads=1):
    """v = momentum * v - lr * grad; param += v."""
    cdef Py_ssize_t n = param.shape[0], c
    if n_threads <= 1 or _n_chunks(n) == 1:
        with nogil:
            _momentum(&param[0], &grad[0], &v[0], <floating>lr, <floating>momentum, 0, n)
        return
    for c in prange(_n_chunks(n), nogil=True, num_threads=n_threads, schedule="static"):
        _momentum(&param[0], &grad[0], &v[0], <floating>lr, <floating>momentum,
                  c * CHUNK, min(n, (c + 1) * CHUNK))


def nesterov_update(floating[::1] param, const floating[::1] grad, floating[::1] v,
                    double lr, double momentum, int n_threads=1):
    """The book's Nesterov: v = momentum*v - lr*g; p += momentum^2*v - (1+momentum)*lr*g."""
    cdef Py_ssize_t n = param.shape[0], c
    cdef floating mom = momentum, mom_sq = momentum * momentum, lr_step = (1 + momentum) * lr
    if n_threads <= 1 or _n_chunks(n) == 1:
        with nogil:
            _nesterov(&param[0], &grad[0], &v[0], <floating>lr, mom, mom_sq, lr_step, 0, n)
        return
    for c in prange(_n_chunks(n), nogil=True, num_threads=n_threads, schedule="static"):
        _nesterov(&param[0], &grad[0], &v[0], <floating>lr, mom, mom_sq, lr_step,
                  c * CHUNK, min(n, (c + 1) * CHUNK))


def adagrad_update(floating[::1] param, const floating[::1] grad, floating[::1] h,
                   double lr, double eps, int n_threads=1):
    """h += g*g; param -= lr * g / (sqrt(h) + eps)."""
    cdef Py_ssize_t n = param.shape[0], c
    if n_threads <= 1 or _n_chunks(n) == 1:
        with nogil:
            _adagrad(&param[0], &grad[0], &h[0], <floating>lr, <floating>eps, 0, n)
        return
    for c in prange(_n_chunks(n), nogil=True, num_threads=n_threads, schedule="static"):
        _adagrad(&param[0], &grad[0], &h[0], <floating>lr, <floating>eps,
                 c * CHUNK, min(n, (c + 1) * CHUNK))


def rmsprop_update(floating[::1] param, const floating[::1] grad, floating[::1] h,
                   double lr, double decay_rate, double eps, int n_threads=1):
    """h = decay*h + (1-decay)*g*g; param -= lr * g / (sqrt(h) + eps)."""
    cdef Py_ssize_t n = param.shape[0], c
    cdef floating decay = decay_rate, one_minus = 1 - decay_rate
    if n_threads <= 1 or _n_chunks(n) == 1:
        with nogil:
            _rmsprop(&param[0], &grad[0], &h[0], <floating>lr, decay, one_minus, <floating>eps, 0, n)
        return
    for c in prange(_n_chunks(n), nogil=True, num_threads=n_threads, schedule="static"):
        _rmsprop(&param[0], &grad[0], &h[0], <floating>lr, decay, one_minus, <floating>eps,
                 c * CHUNK, min(n, (c + 1) * CHUNK))


def adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] v,
                double lr_t, double beta1, double beta2, double eps, int n_threads=1):
    """The book's Adam step with the bias-corrected rate lr_t computed by the caller."""
    cdef Py_ssize_t n = param.shape[0], c
    cdef floating b1 = 1 - beta1, b2 = 1 - beta2
    if n_threads <= 1 or _n_chunks(n) == 1:
        with nogil:
            _adam(&param[0], &grad[0], &m[0], &v[0], <floating>lr_t, b1, b2, <floating>eps, 0, n)
        return
    for c in prange(_n_chunks(n), nogil=True, num_threads=n_threads, schedule="static"):
        _adam(&param[0], &grad[0], &m[0], &v[0], <floating>lr_t, b1, b2, <floating>eps,
              c * CHUNK, min(n, (c + 1) * CHUNK))
