"""The book's functions (``common/functions.py``) on compiled kernels.

float32 input stays float32; other real input is computed in float64.
No function modifies its arguments.
"""

from . import _backend
from ._validation import as_array, as_float, check_same_shape, check_targets


def sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for large |x|."""
    return _backend.sigmoid_forward(as_float(x, "x"))


def tanh(x):
    """tanh(x), elementwise (a vectorised exp: no libm call per element)."""
    return _backend.tanh_forward(as_float(x, "x"))


def relu(x):
    """max(x, 0)."""
    return _backend.relu_forward(as_float(x, "x"))[0]


def softmax(x):
    """Softmax over the last axis of a 1-D or 2-D array, max-shifted (no overflow)."""
    x = as_float(x, "x")
    if x.ndim == 1:
        return _backend.softmax(x[None])[0]
    if x.ndim != 2:
        raise ValueError(f"x must be 1-D or 2-D, got shape {x.shape}")
    return _backend.softmax(x)


def cross_entropy_error(y, t):
    """The book's mean cross-entropy, -sum(log(y[i, t_i] + 1e-7)) / N.

    ``y`` holds probabilities (N, C) or (C,); ``t`` labels (N,) or one-hot
    rows, which are turned into labels by argmax as the book does.
    """
    y = as_float(y, "y")
    if y.ndim == 1:
        y = y.reshape(1, -1)
        t = as_array(t, "t")
        if t.size not in (1, y.size):
            raise ValueError(f"t must be one label or one one-hot row of width {y.size} for a "
                             f"1-D y, got shape {t.shape}")
        t = t.reshape(1, -1) if t.size == y.size else t.reshape(1)
    if y.ndim != 2:
        raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
    labels, onehot = check_targets(t, y.shape[0], y.shape[1], y.dtype, "t")
    if onehot is not None:
        labels = onehot.argmax(axis=1)
    return _backend.cross_entropy(y, labels)


def mean_squared_error(y, t):
    """The book's 0.5 * sum((y - t)^2), without division by the batch size."""
    y = as_float(y, "y")
    t = as_float(t, "t", dtype=y.dtype)
    check_same_shape(y, t, "y", "t")
    return _backend.mse_forward(y.reshape(1, -1), t.reshape(1, -1))


__all__ = ["sigmoid", "tanh", "relu", "softmax", "cross_entropy_error", "mean_squared_error"]
