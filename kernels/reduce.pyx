"""The ranks' gradient buffers summed in shared memory (a data-parallel step on one node).

Each rank of a node owns one row of ``buffers`` (one MPI shared-memory window) and sums
one slice of the columns across all rows, writing the sum back into every row: after a
barrier every rank's row holds the whole reduced buffer, with one read of each input
and one write of each output, no copy into or out of MPI's own buffers.
"""
from cython cimport floating

cdef enum:
    CHUNK = 512   # elements summed in a stack buffer at a time (L1-resident)


def scaled_sum_to_all(floating[:, ::1] buffers, const double[::1] scales,
                      Py_ssize_t lo, Py_ssize_t hi):
    """For every column i in [lo, hi): s = sum over rows q, in order, of
    ``scales[q] * buffers[q, i]``; then ``buffers[q, i] = s`` for every row q.

    The sum of each column is computed once (by the rank that owns it), so every row
    ends with bitwise the same values.
    """
    cdef Py_ssize_t K = buffers.shape[0], q, j, start, n
    cdef floating acc[CHUNK]
    cdef floating s
    if scales.shape[0] != K:
        raise ValueError(f"scales has length {scales.shape[0]}, expected {K}")
    if not 0 <= lo <= hi <= buffers.shape[1]:
        raise ValueError(f"columns [{lo}, {hi}) are not within [0, {buffers.shape[1]})")
    if K == 0:
        return
    with nogil:
        start = lo
        while start < hi:
            n = min(CHUNK, hi - start)
            s = <floating>scales[0]
            for j in range(n):
                acc[j] = s * buffers[0, start + j]
            for q in range(1, K):
                s = <floating>scales[q]
                for j in range(n):
                    acc[j] = acc[j] + s * buffers[q, start + j]
            for q in range(K):
                for j in range(n):
                    buffers[q, start + j] = acc[j]
            start += n
