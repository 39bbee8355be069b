"""Sparse X (``scipy.sparse`` CSR or CSC) in fastmlp's estimators: its rows are made dense one
block at a time (a mini-batch, or a block of a full-batch pass), so no fit or prediction ever
holds more than one block of X dense. The network itself only ever sees dense rows, which
are bit for bit the rows of ``X.toarray()``: a fit on sparse X is the fit on its dense twin.
"""
import numpy as np

#: bytes one block of a full-batch pass may take: its dense rows of X plus the network's
#: per-row buffers (two per layer); decides the rows per block from the sizes alone
BLOCK_BYTES = 16 << 20


def is_sparse(X):
    """True for a scipy.sparse matrix or array (scipy is imported only for a non-ndarray)."""
    if isinstance(X, np.ndarray):
        return False
    try:
        from scipy.sparse import issparse
    except ImportError:   # pragma: no cover - scikit-learn needs scipy
        return False
    return issparse(X)


def as_row_sparse(X):
    """Validated sparse X in CSR form: rows are what every step takes (CSC is converted once,
    a sparse copy; duplicate entries add up when densified, as in ``X.toarray()``)."""
    return X.tocsr()


def dense_rows(X, rows, out):
    """Rows ``rows`` (a slice or an index array) of X as a dense C-contiguous array: for dense
    X the rows themselves (a view for a slice); for sparse X densified into ``out[:m]``."""
    if not is_sparse(X):
        return X[rows]
    block = X[rows]
    dense = out[:block.shape[0]]
    block.toarray(out=dense)
    return dense


def block_rows(sizes, itemsize, budget=None):
    """Rows per block of a full-batch pass over a network of widths ``sizes`` (at least 64):
    a dense input row and two buffers per layer fit ``budget`` bytes (:data:`BLOCK_BYTES`)."""
    budget = BLOCK_BYTES if budget is None else budget
    per_row = itemsize * (sizes[0] + 2 * sum(sizes[1:]))
    return max(64, budget // per_row)


def row_blocks(n, rows):
    """``(lo, hi)`` of consecutive blocks of ``rows`` rows covering ``range(n)``."""
    return [(lo, min(lo + rows, n)) for lo in range(0, n, rows)]


def predict_rows(net, X):
    """``net.predict(X)``; sparse X a block of rows at a time (bounded dense memory)."""
    if not is_sparse(X):
        return net.predict(X)
    sizes = [net.input_size, *net.hidden_size_list, net.output_size]
    dtype = np.dtype(X.dtype)
    rows = block_rows(sizes, dtype.itemsize)
    buffer = np.empty((min(rows, X.shape[0]), X.shape[1]), dtype)
    out = None
    for lo, hi in row_blocks(X.shape[0], rows):
        scores = net.predict(dense_rows(X, slice(lo, hi), buffer))
        if out is None:
            out = np.empty((X.shape[0], scores.shape[1]), scores.dtype)
        out[lo:hi] = scores
    if out is None:
        out = net.predict(np.empty((0, X.shape[1]), dtype))
    return out
