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
cimport numpy as cnp

from _arrays cimport ready, same_shape
from _omp cimport CHUNK

cnp.import_array()

# The rules, numbered once by the header's enum, and their loops (fastmlp_optim.h, compiled
# for the widest vectors the CPU has); the struct of combined hyper-parameters is the header's.
cdef extern from "fastmlp_optim.h" nogil:
    cdef enum fastmlp_rule:
        FASTMLP_SGD
        FASTMLP_MOMENTUM
        FASTMLP_NESTEROV
        FASTMLP_ADAGRAD
        FASTMLP_RMSPROP
        FASTMLP_ADAM
        FASTMLP_NESTEROV_SKLEARN
        FASTMLP_N_RULES
    int fastmlp_rule_slots(int rule)
    ctypedef struct Hyper "fastmlp_hyper":
        double lr, momentum, momentum_sq, lr_step, decay, one_minus_decay
        double one_minus_beta1, one_minus_beta2, eps
    void fastmlp_update_f(int rule, float *p, const float *g, float *s1, float *s2,
                          const Hyper *hp, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_update_d(int rule, double *p, const double *g, double *s1, double *s2,
                          const Hyper *hp, Py_ssize_t start, Py_ssize_t end)

#: The rule numbers by name, read from the header's enum (fastmlp/_backend.py reads them here).
RULES = {"sgd": FASTMLP_SGD, "momentum": FASTMLP_MOMENTUM, "nesterov": FASTMLP_NESTEROV,
         "adagrad": FASTMLP_ADAGRAD, "rmsprop": FASTMLP_RMSPROP, "adam": FASTMLP_ADAM,
         "nesterov_sklearn": FASTMLP_NESTEROV_SKLEARN}
assert len(RULES) == FASTMLP_N_RULES, "every rule of fastmlp_optim.h has a name here"


cdef inline void _update(int rule, floating *p, const floating *g, floating *s1, floating *s2,
                         Hyper *hp, Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """One rule over elements [start, end) of one parameter (s1, s2: its state arrays)."""
    if floating is float:
        fastmlp_update_f(rule, p, g, s1, s2, hp, start, end)
    else:
        fastmlp_update_d(rule, p, g, s1, s2, hp, start, end)


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


cdef int _check_lists(list params, list grads, list state1, list state2) except -1:
    """Raise ValueError unless the arrays can be handed to the rule's loop as they are:
    params writeable, aligned, native, C-contiguous float32/float64 of one dtype; each
    grad and state entry the same dtype and size (ready(), as gather() checks)."""
    cdef Py_ssize_t k, n = len(params)
    cdef int typenum = -1
    if isinstance(params[0], cnp.ndarray):
        typenum = cnp.PyArray_TYPE(<cnp.ndarray>params[0])
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise ValueError("params must be float32 or float64 arrays")
    for lst, name in ((grads, "grads"), (state1, "state1"), (state2, "state2")):
        if lst is not None and len(lst) != n:
            raise ValueError(f"{name} has {len(lst)} arrays for {n} params")
    for k in range(n):
        p = params[k]
        if not ready(p, typenum, True):
            raise ValueError(f"params[{k}] is not a writeable, aligned, C-contiguous array "
                             f"of params[0]'s dtype")
        for lst, name in ((grads, "grads"), (state1, "state1"), (state2, "state2")):
            if lst is None:
                continue
            a = (<list>lst)[k]
            if not ready(a, typenum, name != "grads") or \
                    cnp.PyArray_SIZE(<cnp.ndarray>a) != cnp.PyArray_SIZE(<cnp.ndarray>p):
                raise ValueError(f"{name}[{k}] is not an aligned, C-contiguous array of "
                                 f"params[{k}]'s dtype and size")
    return 0


def update(int rule, list params, list grads, list state1, list state2, double lr,
           double momentum=0, double decay_rate=0, double beta1=0, double beta2=0,
           double eps=0, int n_threads=1):
    """Apply one rule (a number of RULES) in place.

    params[i] += rule(grads[i], state1[i], state2[i]); state1 is v (Momentum,
    both Nesterovs), h (AdaGrad, RMSprop) or m (Adam); state2 is Adam's v. For
    Adam, lr is the bias-corrected rate lr_t.
    """
    cdef Hyper hp
    cdef int slots
    hp.lr = lr
    hp.momentum = momentum
    hp.momentum_sq = momentum * momentum
    hp.lr_step = (1 + momentum) * lr
    hp.decay = decay_rate
    hp.one_minus_decay = 1 - decay_rate
    hp.one_minus_beta1 = 1 - beta1
    hp.one_minus_beta2 = 1 - beta2
    hp.eps = eps
    if not 0 <= rule < FASTMLP_N_RULES:
        raise ValueError(f"rule must be 0..{FASTMLP_N_RULES - 1}, got {rule}")
    slots = fastmlp_rule_slots(rule)
    if (slots >= 1 and state1 is None) or (slots == 2 and state2 is None):
        raise ValueError(f"rule {rule} needs its state lists")
    if not params:
        return
    _check_lists(params, grads, state1, state2)
    if cnp.PyArray_TYPE(<cnp.ndarray>params[0]) == cnp.NPY_FLOAT32:
        _update_all[float](0, rule, params, grads, state1, state2, &hp, n_threads)
    else:
        _update_all[double](0, rule, params, grads, state1, state2, &hp, n_threads)


cdef inline bint _like(object a, cnp.ndarray p, int typenum, bint writeable):
    return ready(a, typenum, writeable) and same_shape(<cnp.ndarray>a, p)


def gather(object params, dict grads, list states):
    """Lists (params, grads, state1, state2, largest size) in params' order for update(),
    when every array can be used as it is: params writeable, aligned, native-order,
    C-contiguous float32/float64 of one dtype; each grad and each entry of the state
    dicts (0-2 of them; a state list comes back None when absent) the same dtype,
    layout and shape. None otherwise (nothing is changed): the caller then takes its
    checked path, which creates state, converts or explains."""
    cdef list ps = [], gs = [], lists = [[] for _ in states]
    cdef Py_ssize_t i, largest = 0
    cdef int typenum = -1
    if not isinstance(params, dict):   # a dict or a network's Params (a dict subclass)
        return None
    for state in states:
        if not isinstance(state, dict) or len(<dict>state) != len(<dict>params):
            return None
    for key, p in (<dict>params).items():
        if typenum == -1 and isinstance(p, cnp.ndarray):
            typenum = cnp.PyArray_TYPE(<cnp.ndarray>p)
            if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
                return None
        if not ready(p, typenum, True):
            return None
        g = grads.get(key)
        if not _like(g, <cnp.ndarray>p, typenum, False):
            return None
        for i in range(len(states)):
            s = (<dict>states[i]).get(key)
            if not _like(s, <cnp.ndarray>p, typenum, True):
                return None
            (<list>lists[i]).append(s)
        ps.append(p)
        gs.append(g)
        largest = max(largest, cnp.PyArray_SIZE(<cnp.ndarray>p))
    state1, state2 = (lists + [None, None])[:2]
    return ps, gs, state1, state2, largest
