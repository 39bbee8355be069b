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
