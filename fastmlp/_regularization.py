"""The book's ch. 6 layers on compiled kernels: ``Dropout`` and ``BatchNormalization``.

Re-exported by ``fastmlp.layers``; same names, signatures, attributes and
semantics as the book's ``common/layers.py``, with the differences of every
fastmlp layer (inputs validated before any attribute changes, float32 stays
float32, no caller's array written). The numpy twins are in
``fastmlp.reference.layers``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _backend
from ._describe import layer_repr
from ._streams import as_stream, draw_key
from ._typing import FloatArray, Seed
from ._validation import as_float, check_called

__all__ = ["Dropout", "BatchNormalization", "BN_EPS", "check_ratio", "check_momentum"]

#: The book's ``10e-7`` (that is 1e-6) added to the variance before the square root.
BN_EPS = 10e-7


def check_ratio(value: object, name: str) -> float:
    """A drop ratio: a real number in [0, 1]."""
    if type(value) is float and 0.0 <= value <= 1.0:   # the common case, checked per step
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def check_momentum(value: object, name: str) -> float:
    """A running-average momentum: a real number in [0, 1]."""
    return check_ratio(value, name)


def _check_dout(dout, shape, dtype):
    dout = as_float(dout, "dout", dtype=dtype)
    if dout.shape != tuple(shape):
        raise ValueError(f"dout must have shape {tuple(shape)}, got {dout.shape}")
    return dout


class Dropout:
    """Drops each entry with probability ``dropout_ratio`` while training (the book's layer).

    ``forward(x, train_flg=True)`` keeps an entry where a uniform draw in
    [0, 1) exceeds ``dropout_ratio`` (``mask``) and zeroes the rest; with
    ``train_flg=False`` it returns ``x * (1 - dropout_ratio)``. ``backward``
    gives ``dout * mask``.

    Parameters
    ----------
    dropout_ratio : float in [0, 1], default 0.5
    rng : None, int or numpy.random.Generator, keyword-only
        The stream the masks come from: each training forward pass draws one
        64-bit key from it, and the mask is a fixed function of the key and
        the position (``fastmlp._streams``), the same in the compiled layer
        and in ``fastmlp.reference``. None (the default) draws from numpy's
        global random state, so ``np.random.seed`` repeats a run.

    Attributes
    ----------
    mask : ndarray of bool or None
        The kept entries of the last training forward pass.
    """

    __repr__ = layer_repr

    def __init__(self, dropout_ratio: float = 0.5, *,
                 rng: Seed | np.random.SeedSequence = None) -> None:
        self.dropout_ratio = check_ratio(dropout_ratio, "dropout_ratio")
        self.rng = as_stream(rng)
        self.mask: np.ndarray | None = None
        self._dtype: Any = None

    def forward(self, x: ArrayLike, train_flg: bool = True) -> FloatArray:
        x = as_float(x, "x")
        ratio = check_ratio(self.dropout_ratio, "Dropout.dropout_ratio")
        if not train_flg:
            return _backend.scale(x, 1.0 - ratio)
        self.rng = rng = as_stream(self.rng, "Dropout.rng")   # an int: its stream, kept
        out, mask = _backend.dropout_forward(x, draw_key(rng), ratio)
        self.mask, self._dtype = mask, x.dtype.type
        return out

    def backward(self, dout: ArrayLike) -> FloatArray:
        check_called(self.mask, "Dropout")
        mask = self.mask
        if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_):
            raise TypeError(f"Dropout.mask must be a bool array, got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        dtype = self._dtype if self._dtype in (np.float32, np.float64) else np.float64
        return _backend.dropout_backward(_check_dout(dout, mask.shape, dtype), mask)


class BatchNormalization:
    """Batch normalisation (the book's layer): per feature, ``gamma * xhat + beta``.

    Training (``forward(x, train_flg=True)``) normalises with the batch's mean
    and (biased) variance, ``xhat = (x - mean) / sqrt(var + 10e-7)``, and
    moves ``running_mean``/``running_var`` towards them by
    ``running = momentum * running + (1 - momentum) * batch``; inference
    (``train_flg=False``) uses the running statistics. Input is (N, D), or
    (N, C, H, W) normalised as (N, C*H*W) and returned in its shape.

    Parameters
    ----------
    gamma, beta : ndarray, shape (D,)
        Scale and shift, held by reference (the network's ``params`` entries);
        gamma's float dtype is the layer's.
    momentum : float in [0, 1], default 0.9
    running_mean, running_var : ndarray (D,), optional
        Starting statistics (copied); zeros at the first forward pass when None.

    Attributes
    ----------
    input_shape : tuple or None
    running_mean, running_var : ndarray or None
        New arrays after every training forward pass (as the book rebinds them).
    batch_size : int or None
    xc, xn : ndarray (N, D) or None
        ``x - mean`` and the normalised input of the last training pass.
    std : ndarray (D,) or None
    dgamma, dbeta : ndarray (D,) or None
        Set by ``backward``.
    """

    __repr__ = layer_repr

    def __init__(self, gamma: ArrayLike, beta: ArrayLike, momentum: float = 0.9,
                 running_mean: ArrayLike | None = None,
                 running_var: ArrayLike | None = None) -> None:
        gamma, beta = self._checked_params(gamma, beta)
        self.gamma, self.beta = gamma, beta
        self.momentum = check_momentum(momentum, "momentum")
        self.input_shape: tuple[int, ...] | None = None
        self.running_mean = self._checked_running(running_mean, "running_mean", gamma)
        self.running_var = self._checked_running(running_var, "running_var", gamma)
        self.batch_size = None
        self.xc = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    @staticmethod
    def _checked_params(gamma, beta, prefix=""):
        gamma = as_float(gamma, prefix + "gamma", ndim=1)
        beta = as_float(beta, prefix + "beta", dtype=gamma.dtype, ndim=1)
        if beta.shape != gamma.shape:
            raise ValueError(f"{prefix}beta must have shape {gamma.shape} ({prefix}gamma's), "
                             f"got {beta.shape}")
        return gamma, beta

    @staticmethod
    def _checked_running(value, name, gamma, copy=True):
        if value is None:
            return None
        value = as_float(value, name, dtype=gamma.dtype, ndim=1)
        if value.shape != gamma.shape:
            raise ValueError(f"{name} must have shape {gamma.shape} (gamma's), got {value.shape}")
        return np.array(value, order="C", copy=copy)

    def _check_x(self, x: ArrayLike, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = as_float(x, "x", dtype=gamma.dtype)
        if x.ndim not in (2, 4):
            raise ValueError(f"x must be (N, D) or (N, C, H, W), got shape {x.shape}")
        x2 = x.reshape(x.shape[0], -1)
        if x2.shape[1] != gamma.shape[0]:
            raise ValueError(f"x has {x2.shape[1]} features per sample but gamma has "
                             f"{gamma.shape[0]}")
        return x, x2

    def forward(self, x: ArrayLike, train_flg: bool = True) -> FloatArray:
        gamma, beta = self._checked_params(self.gamma, self.beta, "BatchNormalization.")
        x, x2 = self._check_x(x, gamma)
        mean = self._checked_running(self.running_mean, "BatchNormalization.running_mean",
                                     gamma, copy=bool(train_flg))
        var = self._checked_running(self.running_var, "BatchNormalization.running_var",
                                    gamma, copy=bool(train_flg))
        if mean is None or var is None:   # the book starts both at zero
            mean = np.zeros(gamma.shape, gamma.dtype) if mean is None else mean
            var = np.zeros(gamma.shape, gamma.dtype) if var is None else var
        if not train_flg:
            out = _backend.batchnorm_infer(x2, gamma, beta, mean, var, BN_EPS)
            self.input_shape = x.shape
            if self.running_mean is None or self.running_var is None:
                self.running_mean, self.running_var = mean, var   # the book's zeros
            return out.reshape(x.shape)
        momentum = check_momentum(self.momentum, "BatchNormalization.momentum")
        out, xc, xn, std = _backend.batchnorm_train(x2, gamma, beta, BN_EPS, momentum, mean, var)
        self.input_shape, self.batch_size = x.shape, x2.shape[0]
        self.xc, self.xn, self.std = xc, xn, std
        self.running_mean, self.running_var = mean, var
        return out.reshape(x.shape)

    def backward(self, dout: ArrayLike) -> FloatArray:
        check_called(self.xn, "BatchNormalization")
        gamma, _ = self._checked_params(self.gamma, self.beta, "BatchNormalization.")
        xn = as_float(self.xn, "BatchNormalization.xn", dtype=gamma.dtype, ndim=2)
        std = as_float(self.std, "BatchNormalization.std", dtype=gamma.dtype, ndim=1)
        if xn.shape[1] != gamma.shape[0] or std.shape != gamma.shape:
            raise ValueError(f"BatchNormalization.xn {xn.shape} and .std {std.shape} do not "
                             f"match gamma {gamma.shape}")
        shape = self.input_shape
        if not (isinstance(shape, tuple) and len(shape) in (2, 4) and shape[0] == xn.shape[0]
                and math.prod(shape) == xn.size):
            raise ValueError(f"BatchNormalization.input_shape {shape!r} does not match "
                             f"BatchNormalization.xn {xn.shape}")
        dout = as_float(dout, "dout", dtype=gamma.dtype)
        if dout.shape not in (tuple(shape), xn.shape):
            raise ValueError(f"dout must have shape {tuple(shape)}, got {dout.shape}")
        dx, dgamma, dbeta = _backend.batchnorm_backward(dout.reshape(xn.shape), xn, gamma, std)
        self.dgamma, self.dbeta = dgamma, dbeta
        return dx.reshape(shape)
