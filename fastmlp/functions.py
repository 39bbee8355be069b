"""The book's functions (``common/functions.py``) on compiled kernels.

float32 input stays float32; other real input is computed in float64.
No function modifies its arguments. ``fastmlp.reference.functions`` holds
the numpy twins the tests compare these with.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _backend
from ._validation import as_array, as_float, check_same_shape, check_targets


def sigmoid(x: ArrayLike) -> np.ndarray:
    """1 / (1 + exp(-x)), without overflow for large ``|x|``."""
    return _backend.sigmoid_forward(as_float(x, "x"))


def tanh(x: ArrayLike) -> np.ndarray:
    """tanh(x), elementwise (a vectorised exp: no libm call per element)."""
    return _backend.tanh_forward(as_float(x, "x"))


def relu(x: ArrayLike) -> np.ndarray:
    """max(x, 0)."""
    return _backend.relu_forward(as_float(x, "x"))[0]


def softmax(x: ArrayLike) -> np.ndarray:
    """Softmax over the last axis of a 1-D or 2-D array, max-shifted (no overflow)."""
    x = as_float(x, "x")
    if x.ndim == 1:
        return _backend.softmax(x[None])[0]
    if x.ndim != 2:
        raise ValueError(f"x must be 1-D or 2-D, got shape {x.shape}")
    return _backend.softmax(x)


def cross_entropy_error(y: ArrayLike, t: ArrayLike) -> float:
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


def mean_squared_error(y: ArrayLike, t: ArrayLike) -> float:
    """The book's 0.5 * sum((y - t)^2), without division by the batch size."""
    y = as_float(y, "y")
    t = as_float(t, "t", dtype=y.dtype)
    check_same_shape(y, t, "y", "t")
    return _backend.mse_forward(y.reshape(1, -1), t.reshape(1, -1))


def identity_function(x: Any) -> Any:
    """The identity, ``x`` itself (the same object, as the book returns it)."""
    return x


def step_function(x: ArrayLike) -> np.ndarray:
    """1 where ``x > 0``, else 0, as an integer array (numpy's default int, as the book's
    ``dtype=int``); NaN gives 0. Any shape; a 0-d array for a scalar."""
    return np.array(as_float(x, "x") > 0, dtype=int)


def sigmoid_grad(x: ArrayLike) -> np.ndarray:
    """Derivative of the sigmoid at ``x``: ``(1 - sigmoid(x)) * sigmoid(x)``, elementwise.

    The sigmoid is the overflow-free one of :func:`sigmoid`, so any finite ``x`` gives a
    finite result (0 for large ``|x|``)."""
    y = sigmoid(x)
    return _backend.sigmoid_backward(np.ones_like(y), y)


def relu_grad(x: ArrayLike) -> np.ndarray:
    """Derivative of the ReLU at ``x`` as the book defines it: 1 where ``x >= 0`` (so 1 at
    0), else 0 (also for NaN); float, of ``x``'s float dtype."""
    x = as_float(x, "x")
    return (x >= 0).astype(x.dtype)


def sum_squared_error(y: ArrayLike, t: ArrayLike) -> float:
    """The book's ``0.5 * sum((y - t)**2)`` over all elements (no division by the batch
    size); the same function as :func:`mean_squared_error`, under the book's other name."""
    return mean_squared_error(y, t)


def softmax_loss(X: ArrayLike, t: ArrayLike) -> float:
    """``cross_entropy_error(softmax(X), t)``, the book's composition: the softmax of the
    scores ``X`` ((C,) or (N, C)), then the book's cross-entropy (with its ``+ 1e-7`` inside
    the log) against labels or one-hot rows ``t``, which it reads as
    :func:`cross_entropy_error` does. ``SoftmaxWithLoss`` computes the exact loss instead."""
    return cross_entropy_error(softmax(X), t)


__all__ = ["sigmoid", "tanh", "relu", "softmax", "cross_entropy_error", "mean_squared_error",
           "identity_function", "step_function", "sigmoid_grad", "relu_grad",
           "sum_squared_error", "softmax_loss"]
