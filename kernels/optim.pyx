"""In-place optimizer updates over all parameters at once: one pass each, no temporaries.

Each rule follows the book's optimizer.py operation by operation, with the
hyper-parameters rounded to the parameter dtype as numpy would, so a
trajectory matches the book's to rounding. The arguments are lists of
C-contiguous arrays of one float dtype, matched by position (params[i],
grads[i], state[i] share a size); fastmlp/optimizers.py has checked that.
One call per step keeps Python's per-array cost out of the hot loop.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf
cimport numpy as cnp

from _omp cimport CHUNK

cnp.import_array()

# The rules, by number; the Python side passes the number.
cdef enum Rule:
    SGD = 0
    MOMENTUM = 1
    NESTEROV = 2
    ADAGRAD = 3
    RMSPROP = 4
    ADAM = 5


cdef struct Hyper:
    # hyper-parameters, already combined in double as the book's Python code does
    double lr, momentum, momentum_sq, lr_step, decay, one_minus_decay
    double one_minus_beta1, one_minus_beta2, eps


cdef inline floating _sqrt(floating v) noexcept nogil:
    """Square root in the array's own precision (correctly rounded, as numpy's)."""
    if floating is float:
        return sqrtf(v)
    return sqrt(v)


cdef inline void _update(int rule, floating *p, const floating *g, floating *s1, floating *s2,
                         Hyper *hp, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """One rule over elements [start, end) of one parameter (s1, s2: its state arrays)."""
    cdef Py_ssize_t i
    cdef floating lr = hp.lr, mom = hp.momentum, mom_sq = hp.momentum_sq
    cdef floating lr_step = hp.lr_step, decay = hp.decay, one_minus_decay = hp.one_minus_decay
    cdef floating b1 = hp.one_minus_beta1, b2 = hp.one_minus_beta2, eps = hp.eps
    if rule == SGD:                       # p -= lr * g
        for i in range(start, end):
            p[i] -= lr * g[i]
    elif rule == MOMENTUM:                # v = momentum * v - lr * g; p += v
        for i in range(start, end):
            s1[i] = mom * s1[i] - lr * g[i]
            p[i] += s1[i]
    elif rule == NESTEROV:                # the book's form
        for i in range(start, end):
            s1[i] *= mom
            s1[i] -= lr * g[i]
            p[i] += mom_sq * s1[i]
            p[i] -= lr_step * g[i]
    elif rule == ADAGRAD:                 # h += g^2; p -= lr * g / (sqrt(h) + eps)
        for i in range(start, end):
            s1[i] += g[i] * g[i]
            p[i] -= lr * g[i] / (_sqrt(s1[i]) + eps)
    elif rule == RMSPROP:                 # h = decay*h + (1-decay)*g^2; p -= lr*g/(sqrt(h)+eps)
        for i in range(start, end):
            s1[i] *= decay
            s1[i] += one_minus_decay * g[i] * g[i]
            p[i] -= lr * g[i] / (_sqrt(s1[i]) + eps)
    else:                                 # Adam with the bias-corrected rate lr (= lr_t)
        for i in range(start, end):
            s1[i] += b1 * (g[i] - s1[i])
            s2[i] += b2 * (g[i] * g[i] - s2[i])
            p[i] -= lr * s1[i] / (_sqrt(s2[i]) + eps)


cdef inline void* _data(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


cdef void _update_all(floating dummy, int rule, list params, list grads, list state1,
                      list state2, Hyper *hp, int n_threads):
    cdef Py_ssize_t k, n, c, n_chunks
    cdef floating *p
    cdef const floating *g
    cdef floating *s1
    cdef floating *s2
    for k in range(len(params)):
        p = <floating*>_data(params[k])
        g = <const floating*>_data(grads[k])
        s1 = <floating*>_data(state1[k]) if state1 is not None else NULL
        s2 = <floating*>_data(state2[k]) if state2 is not None else NULL
        n = cnp.PyArray_SIZE(<cnp.ndarray>params[k])
        n_chunks = (n + CHUNK - 1) // CHUNK
        if n_threads <= 1 or n_chunks == 1:
            with nogil:
                _update(rule, p, g, s1, s2, hp, 0, n)
        else:
            for c in prange(n_chunks, nogil=True, num_threads=n_threads, schedule="static"):
                _update(rule, p, g, s1, s2, hp, c * CHUNK, min(n, (c + 1) * CHUNK))


def update(int rule, list params, list grads, list state1, list state2, double lr,
           double momentum=0, double decay_rate=0, double beta1=0, double beta2=0,
           double eps=0, int n_threads=1):
    """Apply one rule (0 SGD, 1 Momentum, 2 Nesterov, 3 AdaGrad, 4 RMSprop, 5 Adam) in place.

    params[i] += rule(grads[i], state1[i], state2[i]); state1 is v (Momentum,
    Nesterov), h (AdaGrad, RMSprop) or m (Adam); state2 is Adam's v. For
    Adam, lr is the bias-corrected rate lr_t.
    """
    cdef Hyper hp
    hp.lr = lr
    hp.momentum = momentum
    hp.momentum_sq = momentum * momentum
    hp.lr_step = (1 + momentum) * lr
    hp.decay = decay_rate
    hp.one_minus_decay = 1 - decay_rate
    hp.one_minus_beta1 = 1 - beta1
    hp.one_minus_beta2 = 1 - beta2
    hp.eps = eps
    if not params:
        return
    if cnp.PyArray_TYPE(<cnp.ndarray>params[0]) == cnp.NPY_FLOAT32:
        _update_all[float](0, rule, params, grads, state1, state2, &hp, n_threads)
    else:
        _update_all[double](0, rule, params, grads, state1, state2, &hp, n_threads)
