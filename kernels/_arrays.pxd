# Array checks for the compiled fast paths (the Python side keeps the error messages).
cimport numpy as cnp


cdef inline bint ready(object a, int typenum, bint writeable):
    """a is an aligned, native-order, C-contiguous ndarray of typenum (writeable when asked)."""
    if not isinstance(a, cnp.ndarray):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    return (cnp.PyArray_TYPE(arr) == typenum and cnp.PyArray_ISNOTSWAPPED(arr)
            and cnp.PyArray_IS_C_CONTIGUOUS(arr) and cnp.PyArray_ISALIGNED(arr)
            and (not writeable or cnp.PyArray_ISWRITEABLE(arr)))


cdef inline bint same_shape(cnp.ndarray a, cnp.ndarray b):
    cdef int k
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    for k in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIMS(a)[k] != cnp.PyArray_DIMS(b)[k]:
            return False
    return True


cdef inline int check_len(Py_ssize_t got, Py_ssize_t want, str name) except -1:
    """Raise ValueError unless got == want: the kernels index one array by another's
    length, so a mismatch that got past the Python side must stop here, not overrun."""
    if got != want:
        raise ValueError(f"{name} has length {got}, expected {want}")
    return 0


cdef inline int check_labels(const Py_ssize_t[::1] t, Py_ssize_t n, Py_ssize_t c) except -1:
    """Raise ValueError unless t holds n labels, each in [0, c) (they index rows of c)."""
    cdef Py_ssize_t i, bad = -1
    check_len(t.shape[0], n, "t")
    with nogil:
        for i in range(n):
            if t[i] < 0 or t[i] >= c:
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"t[{bad}] = {t[bad]} is not a class index in [0, {c})")
    return 0
