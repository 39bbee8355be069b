"""The book's layers (Deep Learning from Scratch, ch. 5) on compiled kernels.

Same class names, methods and attributes as the book's ``common/layers.py``.
Differences: inputs are validated (errors name the argument, raised before
any attribute changes), float32 stays float32, and no method writes into an
array it was given (the book's ``Relu.backward`` overwrites ``dout``).

A layer caches its forward input for backward, so one instance is not
reentrant: use one instance per thread. Those cached attributes are public
(as in the book) and a caller may replace them, so ``backward`` checks them
again as it would check arguments (errors name them, e.g.
``SoftmaxWithLoss.t``) before any kernel reads them.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _backend
from ._describe import layer_repr
from ._regularization import BatchNormalization, Dropout
from ._validation import (
    as_array,
    as_float,
    check_called,
    check_same_shape,
    check_target_range,
    check_targets,
    pair_dtype,
)


def _check_dout(dout, shape, dtype) -> np.ndarray:
    dout = as_float(dout, "dout", dtype=dtype)
    if dout.shape != tuple(shape):
        raise ValueError(f"dout must have shape {tuple(shape)}, got {dout.shape}")
    return dout


def _check_scalar_dout(dout):
    if isinstance(dout, np.ndarray) and dout.ndim == 0:
        dout = dout.item()
    if isinstance(dout, (bool, np.bool_)) or not isinstance(dout, numbers.Real):
        raise TypeError(f"dout must be a real scalar for a loss layer, got {type(dout).__name__}")
    dout = float(dout)
    if not np.isfinite(dout):
        raise ValueError(f"dout must be finite, got {dout}")
    return dout


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    """x and y as arrays of one float dtype and the same shape (errors name them)."""
    x, y = as_array(x, "x"), as_array(y, "y")
    dtype = pair_dtype(x, y)
    x, y = as_float(x, "x", dtype=dtype), as_float(y, "y", dtype=dtype)
    check_same_shape(x, y, "x", "y")
    return x, y


def _cached_float(value, name, dtype=None, ndim=None):
    """A layer's cached array, checked like an argument (it is public and may have been replaced)."""
    if value is None:
        raise RuntimeError(f"{name} is None: call forward first")
    return as_float(value, name, dtype=dtype, ndim=ndim)


def _cached_dtype(dtype, name):
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} must be np.float32 or np.float64, got {dtype!r}")
    return dtype


def _cached_shape(shape, name):
    if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise ValueError(f"{name} must be a tuple of sizes, got {shape!r}")
    return shape


def _result(out):
    """A 0-d result as a numpy scalar (what ``x * y`` gives numpy scalars), else the array."""
    return out[()] if out.ndim == 0 else out


class MulLayer:
    """out = x * y for x, y of one shape (scalars too); backward gives (dout * y, dout * x)."""

    __repr__ = layer_repr

    def __init__(self) -> None:
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None

    def forward(self, x: ArrayLike, y: ArrayLike) -> Any:
        x, y = _pair(x, y)
        out = _backend.mul_forward(x, y)
        self.x, self.y = x, y
        return _result(out)

    def backward(self, dout: ArrayLike) -> Any:
        check_called(self.x, "MulLayer")
        x, y = _cached_float(self.x, "MulLayer.x"), _cached_float(self.y, "MulLayer.y")
        dtype = pair_dtype(x, y)
        x, y = as_float(x, "MulLayer.x", dtype=dtype), as_float(y, "MulLayer.y", dtype=dtype)
        check_same_shape(x, y, "MulLayer.x", "MulLayer.y")
        dout = _check_dout(dout, x.shape, dtype)
        dx, dy = _backend.mul_backward(dout, x, y)
        return _result(dx), _result(dy)


class AddLayer:
    """out = x + y for x, y of one shape; backward passes dout to both (as new arrays).

    ``shape`` and ``dtype`` record the last forward output, so backward can
    check ``dout``.
    """

    __repr__ = layer_repr

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.dtype: Any = None

    def forward(self, x: ArrayLike, y: ArrayLike) -> Any:
        x, y = _pair(x, y)
        out = _backend.add_forward(x, y)
        self.shape, self.dtype = x.shape, x.dtype.type
        return _result(out)

    def backward(self, dout: ArrayLike) -> Any:
        check_called(self.shape, "AddLayer")
        shape = _cached_shape(self.shape, "AddLayer.shape")
        dout = _check_dout(dout, shape, _cached_dtype(self.dtype, "AddLayer.dtype"))
        return _result(dout.copy()), _result(dout.copy())


class Relu:
    """max(x, 0); ``mask`` marks the entries x <= 0, as in the book."""

    __repr__ = layer_repr

    def __init__(self) -> None:
        self.mask: np.ndarray | None = None
        self._dtype: np.dtype | None = None

    def forward(self, x: ArrayLike) -> np.ndarray:
        x = as_float(x, "x")
        out, self.mask = _backend.relu_forward(x)
        self._dtype = x.dtype
        return out

    def backward(self, dout: ArrayLike) -> Any:
        check_called(self.mask, "Relu")
        mask = self.mask
        if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_):
            raise TypeError(f"Relu.mask must be a bool array, got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        dout = _check_dout(dout, mask.shape, _cached_dtype(self._dtype, "Relu dtype"))
        return _backend.relu_backward(dout, mask)


class Sigmoid:
    """1 / (1 + exp(-x)), computed without overflow; ``out`` kept for backward."""

    __repr__ = layer_repr

    def __init__(self) -> None:
        self.out: np.ndarray | None = None

    def forward(self, x: ArrayLike) -> np.ndarray:
        x = as_float(x, "x")
        self.out = out = _backend.sigmoid_forward(x)
        return out

    def backward(self, dout: ArrayLike) -> Any:
        check_called(self.out, "Sigmoid")
        out = _cached_float(self.out, "Sigmoid.out")
        dout = _check_dout(dout, out.shape, out.dtype)
        return _backend.sigmoid_backward(dout, out)


class Tanh:
    """tanh(x), elementwise; ``out`` kept for backward, which gives ``dout * (1 - out**2)``
    (computed as ``dout * ((1 - out) * (1 + out))``, exact in ``1 - out`` near saturation)."""

    __repr__ = layer_repr

    def __init__(self) -> None:
        self.out: np.ndarray | None = None

    def forward(self, x: ArrayLike) -> np.ndarray:
        x = as_float(x, "x")
        self.out = out = _backend.tanh_forward(x)
        return out

    def backward(self, dout: ArrayLike) -> Any:
        check_called(self.out, "Tanh")
        out = _cached_float(self.out, "Tanh.out")
        dout = _check_dout(dout, out.shape, out.dtype)
        return _backend.tanh_backward(dout, out)


class Identity:
    """The identity activation (scikit-learn's ``activation='identity'``): ``forward(x)``
    returns ``x`` and ``backward(dout)`` returns ``dout``, each as a new array.

    ``MultiLayerNet(activation='identity')`` puts one between its Affine layers, so its
    ``layers`` keep the book's Affine, activation, Affine, ... order. ``shape`` and ``dtype``
    record the last forward output, so backward can check ``dout``.
    """

    __repr__ = layer_repr

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.dtype: Any = None

    def forward(self, x: ArrayLike) -> np.ndarray:
        x = as_float(x, "x")
        self.shape, self.dtype = x.shape, x.dtype.type
        return x.copy()

    def backward(self, dout: ArrayLike) -> Any:
        check_called(self.shape, "Identity")
        shape = _cached_shape(self.shape, "Identity.shape")
        return _check_dout(dout, shape, _cached_dtype(self.dtype, "Identity.dtype")).copy()


class Affine:
    """x @ W + b for x of shape (N, ...), flattened to (N, -1).

    ``W`` and ``b`` are held by reference: an optimizer that updates the
    network's parameter arrays in place is seen here. Their dtype decides
    the dtype of the computation.
    """

    __repr__ = layer_repr

    def __init__(self, W: ArrayLike, b: ArrayLike) -> None:
        self.W, self.b = self._checked_params(W, b)
        self.x: np.ndarray | None = None
        self.original_x_shape: tuple[int, ...] | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    @staticmethod
    def _checked_params(W, b):
        """W (K, M) and b (M,) of one float dtype; checked at every call, since
        both are public attributes that a caller may replace."""
        W = as_float(W, "W", ndim=2)
        b = as_float(b, "b", dtype=W.dtype, ndim=1)
        if b.shape[0] != W.shape[1]:
            raise ValueError(f"b must have length {W.shape[1]} (W's columns), got {b.shape[0]}")
        return W, b

    def _check_x(self, x) -> tuple[np.ndarray, np.ndarray]:
        x = as_float(x, "x", dtype=self.W.dtype, min_ndim=2)
        x2 = x.reshape(x.shape[0], -1)
        if x2.shape[1] != self.W.shape[0]:
            raise ValueError(f"x has {x2.shape[1]} features per sample but W expects "
                             f"{self.W.shape[0]}")
        return x, x2

    def forward(self, x: ArrayLike) -> np.ndarray:
        W, b = self._checked_params(self.W, self.b)
        x, x2 = self._check_x(x)
        out = _backend.affine_forward(x2, W, b)
        self.original_x_shape, self.x = x.shape, x2
        return out

    def backward(self, dout: ArrayLike) -> Any:
        check_called(self.x, "Affine")
        W, _ = self._checked_params(self.W, self.b)
        x = _cached_float(self.x, "Affine.x", ndim=2)
        if W.shape[0] != x.shape[1] or W.dtype != x.dtype:
            raise ValueError(f"W changed since forward: it is {W.shape} {W.dtype}, forward's x "
                             f"was {x.shape} {x.dtype}")
        shape = _cached_shape(self.original_x_shape, "Affine.original_x_shape")
        if len(shape) < 2 or shape[0] != x.shape[0] or math.prod(shape) != x.size:
            raise ValueError(f"Affine.original_x_shape {shape} does not match Affine.x {x.shape}")
        dout = _check_dout(dout, (x.shape[0], W.shape[1]), W.dtype)
        dx, dW, db = _backend.affine_backward(dout, x, W)
        self.dW, self.db = dW, db
        return dx.reshape(shape)


class SoftmaxWithLoss:
    """Softmax then the book's cross-entropy; backward gives (y - t) * dout / N.

    ``t`` is integer labels (N,) or one-hot rows (N, C). Stable for logits
    of any size: no overflow and no log(0).
    """

    __repr__ = layer_repr

    def __init__(self) -> None:
        self.loss: float | None = None
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None

    def forward(self, x: ArrayLike, t: ArrayLike) -> float:
        x = as_float(x, "x", ndim=2)
        labels, onehot = check_targets(t, x.shape[0], x.shape[1], x.dtype, "t")
        self.y, loss = _backend.softmax_ce_forward(x, labels, onehot)
        self.t = labels if labels is not None else onehot
        self.loss = loss
        return loss

    def backward(self, dout: float = 1) -> np.ndarray:
        check_called(self.y, "SoftmaxWithLoss")
        y = _backend.contiguous(_cached_float(self.y, "SoftmaxWithLoss.y", ndim=2), None)
        labels, onehot = check_targets(self.t, y.shape[0], y.shape[1], y.dtype,
                                       "SoftmaxWithLoss.t", copy=False)
        dout = _check_scalar_dout(dout)
        return _backend.softmax_ce_backward(y, labels, onehot, dout)


class MSELoss:
    """Identity output with mean squared error: 0.5 * sum((y - t)^2) / N."""

    __repr__ = layer_repr

    def __init__(self) -> None:
        self.loss: float | None = None
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None

    def forward(self, y: ArrayLike, t: ArrayLike) -> float:
        y = as_float(y, "y", ndim=2)
        t = as_float(t, "t", dtype=y.dtype)
        check_same_shape(y, t, "y", "t")
        self.loss = loss = _backend.mse_forward(y, t)
        self.y, self.t = y, t
        return loss

    def backward(self, dout: float = 1) -> np.ndarray:
        check_called(self.y, "MSELoss")
        y = _cached_float(self.y, "MSELoss.y", ndim=2)
        t = _cached_float(self.t, "MSELoss.t", dtype=y.dtype)
        check_same_shape(y, t, "MSELoss.y", "MSELoss.t")
        return _backend.mse_backward(y, t, _check_scalar_dout(dout))


IdentityWithLoss = MSELoss


class _LinkLoss:
    """An output with its canonical loss on float targets t (N, K) of the logits' shape:
    forward(x, t) gives the mean over rows of the loss summed over units, computed from
    the logits x by the fused kernels' code; backward gives (y - t) * dout / N."""

    _loss_name: str | None = None   # the subclass's output code name

    def __init__(self) -> None:
        self.loss: float | None = None
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None

    def forward(self, x: ArrayLike, t: ArrayLike) -> float:
        x = as_float(x, "x", ndim=2)
        t = check_target_range(as_float(t, "t", dtype=x.dtype, finite=True), self._loss_name)
        check_same_shape(x, t, "x", "t")
        self.y, _, loss = _backend.output_forward_backward(self._loss_name, x, None, t)
        self.t, self.loss = t, loss / x.shape[0]
        return self.loss

    def backward(self, dout: float = 1) -> np.ndarray:
        name = type(self).__name__
        check_called(self.y, name)
        y = _cached_float(self.y, f"{name}.y", ndim=2)
        t = _cached_float(self.t, f"{name}.t", dtype=y.dtype)
        check_same_shape(y, t, f"{name}.y", f"{name}.t")
        return _backend.mse_backward(y, t, _check_scalar_dout(dout))


class SigmoidWithLoss(_LinkLoss):
    """Sigmoid outputs with binary cross-entropy per unit (binary and multilabel
    classification): loss ``sum(max(x, 0) - t * x + log1p(exp(-|x|))) / N``, exact and
    finite for logits of any size; ``t`` in [0, 1]."""

    _loss_name = "logistic"


class PoissonLoss(_LinkLoss):
    """Exp outputs (log link) with half the Poisson deviance, scikit-learn's
    ``MLPRegressor(loss='poisson')``: ``sum(t * log(t) - t * x - t + exp(x)) / N``
    (``t * log(t)`` is 0 at ``t = 0``); ``t >= 0``."""

    _loss_name = "poisson"

__all__ = ["MulLayer", "AddLayer", "Relu", "Sigmoid", "Tanh", "Identity", "Affine",
           "SoftmaxWithLoss", "MSELoss", "IdentityWithLoss", "SigmoidWithLoss", "PoissonLoss",
           "Dropout", "BatchNormalization"]
