"""Pure-numpy activation and loss functions: the oracle for ``fastmlp.functions``.

Written for clarity, not speed. Semantics follow "Deep Learning from
Scratch" (``common/functions.py``) with its numerical warts removed: the
sigmoid never overflows and the softmax is shifted by the row maximum.

Dtype rule: float32 input stays float32; any other real input (integers,
bools, float16, big-endian floats, Python scalars) is computed in float64.
No function modifies its arguments.
"""
import numpy as np

from fastmlp._validation import as_array, as_float, check_same_shape, check_targets

__all__ = ["sigmoid", "tanh", "relu", "softmax", "cross_entropy_error", "mean_squared_error",
           "identity_function", "step_function", "sigmoid_grad", "relu_grad",
           "sum_squared_error", "softmax_loss"]

#: The constant the book adds inside ``log`` in ``cross_entropy_error``.
CROSS_ENTROPY_DELTA = 1e-7


def _scalar_if_0d(arr):
    """Return a 0-d result as a numpy scalar (as numpy's ufuncs do), else the array."""
    return arr[()] if arr.ndim == 0 else arr


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``, elementwise, without overflow.

    Parameters
    ----------
    x : array_like of real numbers, any shape

    Returns
    -------
    ndarray of the same shape (a numpy scalar for scalar input)

    Notes
    -----
    Only ``exp(-|x|)`` is ever evaluated, which lies in ``(0, 1]``, so large
    ``|x|`` gives exact 0 or 1 with no overflow warning.
    """
    x = as_float(x, "x")
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return _scalar_if_0d(out)


def tanh(x):
    """Hyperbolic tangent, elementwise (numpy's ``np.tanh``).

    Parameters
    ----------
    x : array_like of real numbers, any shape

    Returns
    -------
    ndarray of the same shape (a numpy scalar for scalar input)
    """
    x = as_float(x, "x")
    return _scalar_if_0d(np.tanh(x))


def relu(x):
    """Rectified linear unit ``max(0, x)``, elementwise.

    Parameters
    ----------
    x : array_like of real numbers, any shape

    Returns
    -------
    ndarray of the same shape (a numpy scalar for scalar input)
    """
    x = as_float(x, "x")
    return _scalar_if_0d(np.maximum(x, 0))


def softmax(x):
    """Softmax over the last axis: row-wise for 2-D ``(N, C)``, whole vector for 1-D ``(C,)``.

    Parameters
    ----------
    x : array_like, shape (C,) or (N, C)
        Logits.

    Returns
    -------
    ndarray, same shape as ``x``
        Non-negative, each row summing to 1.

    Notes
    -----
    The row maximum is subtracted before ``exp``, so logits of any size are
    safe (``exp`` of a non-positive number never overflows).
    """
    x = as_float(x, "x")
    if x.ndim not in (1, 2):
        raise ValueError(f"x must be 1-dimensional (C,) or 2-dimensional (N, C), got shape {x.shape}")
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy_error(y, t):
    """Mean cross-entropy of predicted probabilities, the book's formula.

    ``-sum(log(y[arange(N), labels] + 1e-7)) / N``.

    Parameters
    ----------
    y : array_like, shape (N, C) or (C,)
        Predicted probabilities (e.g. a softmax output). A 1-D ``y`` is one
        sample and is treated as shape ``(1, C)``.
    t : array_like, shape (N,) or (N, C)
        Integer class labels, or one-hot rows (the label is the row's argmax,
        as in the book). For a 1-D ``y``, ``t`` is one label or one one-hot row.

    Returns
    -------
    float
    """
    y = as_float(y, "y")
    t = as_array(t, "t")
    if y.ndim == 1:
        y = y.reshape(1, y.size)
        # As in the book: a t with as many entries as y is a one-hot row.
        t = t.reshape(1, t.size) if t.size == y.size else t.reshape(t.size)
    if y.ndim != 2:
        raise ValueError(f"y must be 1-dimensional (C,) or 2-dimensional (N, C), got shape {y.shape}")
    n_samples, n_classes = y.shape
    labels, onehot = check_targets(t, n_samples, n_classes, y.dtype)
    if labels is None:
        labels = onehot.argmax(axis=1)
    picked = y[np.arange(n_samples), labels]
    return float(-np.sum(np.log(picked + CROSS_ENTROPY_DELTA)) / n_samples)


def mean_squared_error(y, t):
    """Half the sum of squared errors, ``0.5 * sum((y - t)**2)``, as in the book.

    Note there is no division by the batch size here (``MSELoss`` divides by N).

    Parameters
    ----------
    y, t : array_like of the same shape

    Returns
    -------
    float
    """
    y_arr = as_array(y, "y")
    t_arr = as_array(t, "t")
    dtype = np.float32 if (y_arr.dtype == np.float32 and t_arr.dtype == np.float32) else np.float64
    y_arr = as_float(y_arr, "y", dtype=dtype)
    t_arr = as_float(t_arr, "t", dtype=dtype)
    check_same_shape(y_arr, t_arr, "y", "t")
    return float(0.5 * np.sum((y_arr - t_arr) ** 2))


def identity_function(x):
    """The identity: returns ``x`` itself, as the book does."""
    return x


def step_function(x):
    """``1`` where ``x > 0`` else ``0`` (NaN: 0), as numpy's default integer, any shape.

    Returns
    -------
    ndarray of int (0-d for a scalar, as the book's ``np.array(x > 0, dtype=int)``)
    """
    x = as_float(x, "x")
    out = np.zeros(x.shape, dtype=int)
    out[x > 0] = 1
    return out


def sigmoid_grad(x):
    """``(1 - sigmoid(x)) * sigmoid(x)``, elementwise, with the overflow-free sigmoid."""
    y = sigmoid(x)
    return _scalar_if_0d(np.asarray((1 - y) * y))


def relu_grad(x):
    """The book's ReLU derivative: ``1`` where ``x >= 0`` (1 at 0), else ``0``; float."""
    x = as_float(x, "x")
    grad = np.zeros_like(x)
    grad[x >= 0] = 1
    return _scalar_if_0d(grad)


def sum_squared_error(y, t):
    """The book's name for :func:`mean_squared_error`: ``0.5 * sum((y - t)**2)``."""
    return mean_squared_error(y, t)


def softmax_loss(X, t):
    """``cross_entropy_error(softmax(X), t)``: the book's softmax then its cross-entropy
    (``+ 1e-7`` inside the log); ``X`` (C,) or (N, C), ``t`` labels or one-hot rows."""
    return cross_entropy_error(softmax(X), t)
