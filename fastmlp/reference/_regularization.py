"""Pure-numpy ``Dropout`` and ``BatchNormalization``: the oracle for the compiled ch. 6 layers.

Written from the book's formulas (``common/layers.py``), step by step: the
batch-norm backward goes through ``std``, ``var`` and ``mean`` as the book's
does, so comparing it with the compiled kernel (which collects those terms)
checks the algebra too. Re-exported by ``fastmlp.reference.layers``.

Dropout's mask: each training forward pass draws one key from the layer's stream
(``fastmlp._streams.draw_key``); entry ``i`` (flat, C order, modulo 2**32) is kept when
``u_i > dropout_ratio`` with ``u_i = h_i * 2**-32``, ``h_i = mix32(mix32(i ^ key_lo) ^
key_hi)``, mix32 the integer hash of ``kernels/fastmlp_norm.h`` and key_lo/key_hi the low
and high 32 bits of the key, computed here in numpy's uint32 arithmetic.
"""
import numbers

import numpy as np

from fastmlp._describe import layer_repr
from fastmlp._streams import as_stream, draw_key
from fastmlp._validation import as_float, check_called

__all__ = ["Dropout", "BatchNormalization", "dropout_mask"]

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_EPS = 10e-7   # the book's constant (1e-6)


def _mix32(x):
    x = x ^ (x >> np.uint32(16))
    x = x * _M1
    x = x ^ (x >> np.uint32(15))
    x = x * _M2
    return x ^ (x >> np.uint32(16))


def dropout_mask(key, shape, ratio):
    """The kept entries (bool, ``shape``) for mask key ``key`` and drop ratio ``ratio``."""
    n = int(np.prod(shape, dtype=np.int64))
    lo, hi = np.uint32(key & 0xFFFFFFFF), np.uint32((key >> 32) & 0xFFFFFFFF)
    index = (np.arange(n, dtype=np.uint64) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    with np.errstate(over="ignore"):
        h = _mix32(_mix32(index ^ lo) ^ hi)
    u = h.astype(np.float64) * 2.0 ** -32
    return (u > ratio).reshape(shape)


def _ratio(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


class Dropout:
    """Dropout (the book's): ``x * mask`` in training, ``x * (1 - dropout_ratio)`` otherwise.

    Parameters
    ----------
    dropout_ratio : float in [0, 1], default 0.5
    rng : None, int or numpy.random.Generator, keyword-only
        The stream mask keys are drawn from (None: numpy's global random state).

    Attributes
    ----------
    mask : ndarray of bool or None
    """

    __repr__ = layer_repr

    def __init__(self, dropout_ratio=0.5, *, rng=None):
        self.dropout_ratio = _ratio(dropout_ratio, "dropout_ratio")
        self.rng = as_stream(rng)
        self.mask = None
        self._dtype = None

    def forward(self, x, train_flg=True):
        x = as_float(x, "x")
        ratio = _ratio(self.dropout_ratio, "Dropout.dropout_ratio")
        if not train_flg:
            return x * (1.0 - ratio)
        self.rng = as_stream(self.rng, "Dropout.rng")   # an int: its stream, kept
        self.mask = dropout_mask(draw_key(self.rng), x.shape, ratio)
        self._dtype = x.dtype
        return x * self.mask

    def backward(self, dout):
        check_called(self.mask, "Dropout")
        dout = as_float(dout, "dout", dtype=self._dtype)
        if dout.shape != self.mask.shape:
            raise ValueError(f"dout must have shape {self.mask.shape}, got {dout.shape}")
        return dout * self.mask


class BatchNormalization:
    """Batch normalisation (the book's), on (N, D) or (N, C, H, W) input.

    Parameters
    ----------
    gamma, beta : ndarray (D,), held by reference
    momentum : float in [0, 1], default 0.9
    running_mean, running_var : ndarray (D,), optional (copied; zeros when None)

    Attributes
    ----------
    input_shape, running_mean, running_var, batch_size, xc, xn, std, dgamma, dbeta
        As the book's layer.
    """

    __repr__ = layer_repr

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma = as_float(gamma, "gamma", ndim=1)
        self.beta = as_float(beta, "beta", dtype=self.gamma.dtype, ndim=1)
        if self.beta.shape != self.gamma.shape:
            raise ValueError(f"beta must have shape {self.gamma.shape} (gamma's), "
                             f"got {self.beta.shape}")
        self.momentum = _ratio(momentum, "momentum")
        self.input_shape = None
        self.running_mean = self._running(running_mean, "running_mean")
        self.running_var = self._running(running_var, "running_var")
        self.batch_size = None
        self.xc = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def _running(self, value, name):
        if value is None:
            return None
        value = as_float(value, name, dtype=self.gamma.dtype, ndim=1)
        if value.shape != self.gamma.shape:
            raise ValueError(f"{name} must have shape {self.gamma.shape}, got {value.shape}")
        return value.copy()

    def forward(self, x, train_flg=True):
        x = as_float(x, "x", dtype=self.gamma.dtype)
        if x.ndim not in (2, 4):
            raise ValueError(f"x must be (N, D) or (N, C, H, W), got shape {x.shape}")
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.gamma.shape[0]:
            raise ValueError(f"x has {flat.shape[1]} features per sample but gamma has "
                             f"{self.gamma.shape[0]}")
        momentum = _ratio(self.momentum, "BatchNormalization.momentum")
        self.input_shape = x.shape
        if self.running_mean is None or self.running_var is None:
            zeros = np.zeros(self.gamma.shape, self.gamma.dtype)
            self.running_mean = zeros if self.running_mean is None else self.running_mean
            self.running_var = zeros.copy() if self.running_var is None else self.running_var
        if train_flg:
            mean = flat.mean(axis=0)
            centred = flat - mean
            var = np.mean(centred ** 2, axis=0)
            std = np.sqrt(var + _EPS)
            normed = centred / std
            self.batch_size = flat.shape[0]
            self.xc, self.xn, self.std = centred, normed, std
            self.running_mean = momentum * self.running_mean + (1 - momentum) * mean
            self.running_var = momentum * self.running_var + (1 - momentum) * var
        else:
            normed = (flat - self.running_mean) / np.sqrt(self.running_var + _EPS)
        return (self.gamma * normed + self.beta).reshape(x.shape)

    def backward(self, dout):
        check_called(self.xn, "BatchNormalization")
        dout = as_float(dout, "dout", dtype=self.gamma.dtype)
        if dout.shape not in (tuple(self.input_shape), self.xn.shape):
            raise ValueError(f"dout must have shape {tuple(self.input_shape)}, got {dout.shape}")
        dout = dout.reshape(self.xn.shape)
        n = self.batch_size
        self.dbeta = dout.sum(axis=0)
        self.dgamma = np.sum(self.xn * dout, axis=0)
        d_normed = self.gamma * dout
        d_centred = d_normed / self.std
        d_std = -np.sum(d_normed * self.xc / (self.std * self.std), axis=0)
        d_var = 0.5 * d_std / self.std
        d_centred = d_centred + (2.0 / n) * self.xc * d_var
        d_mean = np.sum(d_centred, axis=0)
        return (d_centred - d_mean / n).reshape(self.input_shape)
