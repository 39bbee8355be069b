"""Pure-numpy layers with the book's interface: the oracle for ``fastmlp.layers``.

Each layer has ``forward`` and ``backward`` and keeps the attributes of
"Deep Learning from Scratch" ``common/layers.py`` (``mask``, ``out``, ``x``,
``dW``, ``db``, ``y``, ``t``, ``loss``), all set to ``None`` until the first
``forward``. Differences from the book:

- no layer writes into an array it was given (the book's ``Relu.backward``
  overwrites ``dout``);
- float32 input stays float32, other real input is computed in float64 (for
  ``Affine``, the dtype of ``W`` decides); ``dout`` is converted to the dtype
  of the forward pass;
- arguments are validated before any state changes, with errors that name
  the argument; ``backward`` before ``forward`` is a ``RuntimeError``;
- ``SoftmaxWithLoss`` computes the loss from log-softmax, so it is exact and
  finite for logits of any size, and its ``backward`` honours ``dout``.

A layer caches its inputs for ``backward``, so one instance must not be used
from two threads at once.
"""
import numpy as np

from fastmlp._describe import layer_repr
from fastmlp._validation import (
    as_array,
    as_float,
    check_called,
    check_same_shape,
    check_targets,
    check_x,
)
from fastmlp.reference._regularization import BatchNormalization, Dropout
from fastmlp.reference.activation_layers import Identity, Tanh
from fastmlp.reference.functions import sigmoid
from fastmlp.reference.output_layers import PoissonLoss, SigmoidWithLoss

__all__ = [
    "MulLayer",
    "AddLayer",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Identity",
    "Affine",
    "SoftmaxWithLoss",
    "MSELoss",
    "IdentityWithLoss",
    "SigmoidWithLoss",
    "PoissonLoss",
    "Dropout",
    "BatchNormalization",
]


def _pair_dtype(x, y):
    """float32 when both operands are float32, float64 otherwise."""
    return np.float32 if (x.dtype == np.float32 and y.dtype == np.float32) else np.float64


def _check_dout(dout, shape, dtype):
    """``dout`` as an array of ``dtype`` with exactly ``shape`` (the forward output's)."""
    dout = as_float(dout, "dout", dtype=dtype)
    if dout.shape != shape:
        raise ValueError(f"dout must have the shape of the forward output {shape}, got {dout.shape}")
    return dout


def _check_scalar_dout(dout, dtype):
    """The upstream gradient of a scalar loss: a real number."""
    dout = as_float(dout, "dout", dtype=dtype)
    if dout.ndim != 0:
        raise ValueError(f"dout must be a scalar for a loss layer, got shape {dout.shape}")
    return dout


class MulLayer:
    """Multiplication node: ``forward(x, y) = x * y``.

    ``x`` and ``y`` must have the same shape (Python scalars included).

    Attributes
    ----------
    x, y : ndarray or None
        The inputs of the last ``forward``, as converted.
    """

    __repr__ = layer_repr

    def __init__(self):
        self.x = None
        self.y = None

    def forward(self, x, y):
        """Return ``x * y``.

        Parameters
        ----------
        x, y : array_like of the same shape

        Returns
        -------
        ndarray (numpy scalar for scalar inputs)
        """
        x = as_array(x, "x")
        y = as_array(y, "y")
        dtype = _pair_dtype(x, y)
        x = as_float(x, "x", dtype=dtype)
        y = as_float(y, "y", dtype=dtype)
        check_same_shape(x, y, "x", "y")
        self.x = x
        self.y = y
        return x * y

    def backward(self, dout):
        """Return ``(dout * y, dout * x)``.

        Parameters
        ----------
        dout : array_like, same shape as the forward output

        Returns
        -------
        dx, dy : ndarray
        """
        check_called(self.x, "MulLayer")
        dout = _check_dout(dout, self.x.shape, self.x.dtype)
        return dout * self.y, dout * self.x


class AddLayer:
    """Addition node: ``forward(x, y) = x + y``.

    ``x`` and ``y`` must have the same shape (Python scalars included).

    Attributes
    ----------
    shape : tuple or None
        Shape of the last forward output.
    dtype : numpy dtype type or None
        Dtype of the last forward output.
    """

    __repr__ = layer_repr

    def __init__(self):
        self.shape = None
        self.dtype = None

    def forward(self, x, y):
        """Return ``x + y``.

        Parameters
        ----------
        x, y : array_like of the same shape

        Returns
        -------
        ndarray (numpy scalar for scalar inputs)
        """
        x = as_array(x, "x")
        y = as_array(y, "y")
        dtype = _pair_dtype(x, y)
        x = as_float(x, "x", dtype=dtype)
        y = as_float(y, "y", dtype=dtype)
        check_same_shape(x, y, "x", "y")
        self.shape = x.shape
        self.dtype = dtype
        return x + y

    def backward(self, dout):
        """Return ``(dout, dout)`` as two new arrays.

        Parameters
        ----------
        dout : array_like, same shape as the forward output

        Returns
        -------
        dx, dy : ndarray
        """
        check_called(self.shape, "AddLayer")
        dout = _check_dout(dout, self.shape, self.dtype)
        return dout * 1, dout * 1


class Relu:
    """Rectified linear unit, elementwise on an array of any shape.

    Attributes
    ----------
    mask : ndarray of bool or None
        ``x <= 0`` for the last ``forward`` input (the book's mask).
    """

    __repr__ = layer_repr

    def __init__(self):
        self.mask = None
        self._dtype = None

    def forward(self, x):
        """Return ``x`` with entries ``<= 0`` set to 0 (a new array).

        Parameters
        ----------
        x : array_like, any shape

        Returns
        -------
        ndarray, same shape as ``x``
        """
        x = as_float(x, "x")
        self.mask = x <= 0
        self._dtype = x.dtype
        return np.where(self.mask, x.dtype.type(0), x)

    def backward(self, dout):
        """Return ``dout`` with the masked entries set to 0 (a new array; ``dout`` is untouched).

        Parameters
        ----------
        dout : array_like, same shape as the forward input

        Returns
        -------
        dx : ndarray
        """
        check_called(self.mask, "Relu")
        dout = _check_dout(dout, self.mask.shape, self._dtype)
        return np.where(self.mask, self._dtype.type(0), dout)


class Sigmoid:
    """Logistic sigmoid, elementwise on an array of any shape.

    Attributes
    ----------
    out : ndarray or None
        The last forward output; ``backward`` uses ``out * (1 - out)``.
    """

    __repr__ = layer_repr

    def __init__(self):
        self.out = None

    def forward(self, x):
        """Return ``sigmoid(x)`` (stable: no overflow for any ``x``).

        Parameters
        ----------
        x : array_like, any shape

        Returns
        -------
        ndarray, same shape as ``x``
        """
        x = as_float(x, "x")
        self.out = np.asarray(sigmoid(x))
        return self.out

    def backward(self, dout):
        """Return ``dout * (1 - out) * out``.

        Parameters
        ----------
        dout : array_like, same shape as the forward output

        Returns
        -------
        dx : ndarray
        """
        check_called(self.out, "Sigmoid")
        dout = _check_dout(dout, self.out.shape, self.out.dtype)
        return dout * (1 - self.out) * self.out


class Affine:
    """Fully connected layer ``x @ W + b``.

    Parameters
    ----------
    W : ndarray, shape (n_in, n_out)
        Weights; float32 or float64 decides the dtype of the layer. Held by
        reference, so in-place updates of the network's ``params`` are seen
        here (other dtypes are converted to float64, which makes a copy).
    b : ndarray, shape (n_out,)
        Bias; held by reference when it already has ``W``'s dtype.

    Attributes
    ----------
    W, b : ndarray
    x : ndarray or None
        Last forward input flattened to ``(N, n_in)``.
    original_x_shape : tuple or None
        Shape of the last forward input, ``(N, ...)``.
    dW, db : ndarray or None
        Gradients set by ``backward``.
    """

    __repr__ = layer_repr

    def __init__(self, W, b):
        W = as_float(W, "W", ndim=2)
        b = as_float(b, "b", dtype=W.dtype, ndim=1)
        if b.shape[0] != W.shape[1]:
            raise ValueError(f"b must have W.shape[1] = {W.shape[1]} entries, got {b.shape[0]}")
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        """Return ``x.reshape(N, -1) @ W + b``.

        Parameters
        ----------
        x : array_like, shape (N, ...) with ``prod(...) == n_in``

        Returns
        -------
        ndarray, shape (N, n_out)
        """
        x = as_float(x, "x", dtype=self.W.dtype, min_ndim=2)
        n_in = self.W.shape[0]
        if x[0].size != n_in:
            raise ValueError(
                f"x has {x[0].size} features per sample (shape {x.shape}) but W expects {n_in}")
        self.original_x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return self.x @ self.W + self.b

    def backward(self, dout):
        """Set ``dW = x.T @ dout`` and ``db = dout.sum(0)``; return ``dx = dout @ W.T``.

        Parameters
        ----------
        dout : array_like, shape (N, n_out)

        Returns
        -------
        dx : ndarray, shape of the forward input
        """
        check_called(self.x, "Affine")
        dout = _check_dout(dout, (self.x.shape[0], self.W.shape[1]), self.W.dtype)
        dx = dout @ self.W.T
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dx.reshape(self.original_x_shape)


class SoftmaxWithLoss:
    """Softmax followed by the mean cross-entropy loss.

    Attributes
    ----------
    y : ndarray or None
        Softmax of the last logits, shape (N, C).
    t : ndarray or None
        The last targets as validated: intp labels ``(N,)`` or one-hot ``(N, C)``.
    loss : float or None
        The last loss.

    Notes
    -----
    The loss is ``-sum(t * log_softmax(x)) / N`` with ``log_softmax``
    computed as ``x - max - log(sum(exp(x - max)))``: exact, and finite for
    logits of any size. The book's ``cross_entropy_error(softmax(x), t)``
    adds 1e-7 inside the log; the two agree to about ``1e-7 / y_true``.
    """

    __repr__ = layer_repr

    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        """Return the mean cross-entropy loss of ``softmax(x)`` against ``t``.

        Parameters
        ----------
        x : array_like, shape (N, C)
            Logits.
        t : array_like, shape (N,) or (N, C)
            Integer labels in ``[0, C)`` or one-hot rows.

        Returns
        -------
        float
        """
        x = check_x(x)
        n_samples, n_classes = x.shape
        labels, onehot = check_targets(t, n_samples, n_classes, x.dtype)
        shifted = x - x.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        row_sum = e.sum(axis=1, keepdims=True)
        log_y = shifted - np.log(row_sum)
        if labels is not None:
            loss = -np.sum(log_y[np.arange(n_samples), labels]) / n_samples
        else:
            loss = -np.sum(onehot * log_y) / n_samples
        self.y = e / row_sum
        self.t = labels if labels is not None else onehot
        self.loss = float(loss)
        return self.loss

    def backward(self, dout=1):
        """Return ``dout * (y - t) / N``.

        Parameters
        ----------
        dout : float, default 1

        Returns
        -------
        dx : ndarray, shape (N, C)
        """
        check_called(self.y, "SoftmaxWithLoss")
        dout = _check_scalar_dout(dout, self.y.dtype)
        n_samples = self.y.shape[0]
        if self.t.ndim == 1:
            diff = self.y.copy()
            diff[np.arange(n_samples), self.t] -= 1
        else:
            diff = self.y - self.t
        return diff * (dout / n_samples)


class MSELoss:
    """Identity output with the mean squared error loss ``0.5 * sum((y - t)**2) / N``.

    Attributes
    ----------
    y, t : ndarray or None
        The last predictions and targets, shape (N, K).
    loss : float or None
        The last loss.
    """

    __repr__ = layer_repr

    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, y, t):
        """Return ``0.5 * sum((y - t)**2) / N``.

        Parameters
        ----------
        y : array_like, shape (N, K)
            Predictions.
        t : array_like, shape (N, K)
            Targets.

        Returns
        -------
        float
        """
        y = check_x(y, name="y")
        t = as_float(t, "t", dtype=y.dtype)
        check_same_shape(y, t, "y", "t")
        self.loss = float(0.5 * np.sum((y - t) ** 2) / y.shape[0])
        self.y = y
        self.t = t
        return self.loss

    def backward(self, dout=1):
        """Return ``dout * (y - t) / N``.

        Parameters
        ----------
        dout : float, default 1

        Returns
        -------
        dy : ndarray, shape (N, K)
        """
        check_called(self.y, "MSELoss")
        dout = _check_scalar_dout(dout, self.y.dtype)
        return (self.y - self.t) * (dout / self.y.shape[0])


IdentityWithLoss = MSELoss
