# Per-element functions shared by the kernels (inline: no call across modules).
from cython cimport floating
from libc.math cimport exp, expf


cdef inline floating exp_(floating v) noexcept nogil:
    """exp in the array's own precision (libm's expf is ~2x faster than exp)."""
    if floating is float:
        return expf(v)
    return exp(v)


cdef inline floating sigmoid(floating v) noexcept nogil:
    """1 / (1 + exp(-v)) without overflow: exp only ever sees -|v|."""
    cdef floating e = exp_(-v if v >= 0 else v)
    return 1 / (1 + e) if v >= 0 else e / (1 + e)
