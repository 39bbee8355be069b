"""The book's optimizers in plain numpy: the oracle for ``fastmlp.optimizers``.

Each class follows "Deep Learning from Scratch" (``common/optimizer.py``)
operation by operation, in the same order, so that the compiled optimizers
can be held to it to rounding. ``update(params, grads)`` changes the arrays
of ``params`` in place (any layout, views included) and never writes to
``grads``. State arrays (``v``, ``h``, ``m``) are created on the first
update, keyed like ``params``, with each parameter's shape and dtype.

One deliberate difference: Adam's bias-corrected step ``lr_t`` is a Python
float. The book computes it with ``np.sqrt`` and so gets a ``np.float64``
scalar, which silently promotes a float32 update to float64; here the
parameter dtype decides the dtype of the computation, as everywhere in
fastmlp.

Each class also describes itself as the compiled one does (``hyper_bounds``,
``state_names``, ``counts_steps``, ``variants``), so ``state_dict()`` and
``load_state_dict()`` behave the same on both (``fastmlp._optim_state``).

Imports only numpy, ``fastmlp._validation`` and ``fastmlp._optim_state``.
"""
import math
from typing import ClassVar

import numpy as np

from fastmlp import _optim_state
from fastmlp._describe import optimizer_repr
from fastmlp._validation import check_positive_float, lookup

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "get_optimizer"]

EPS = 1e-7  # the book's constant in AdaGrad and RMSprop, and Adam's default eps


def _zeros_like_params(params):
    return {key: np.zeros_like(val) for key, val in params.items()}


def _as_arrays(params):
    """``params`` with every number (``_optim_state.is_scalar``) as a 0-d array of
    ``_optim_state.scalar_dtype(params)``; arrays are the caller's own objects."""
    dtype = _optim_state.scalar_dtype(params) if params else None
    return {key: np.array(val, dtype=dtype) if _optim_state.is_scalar(val) else val
            for key, val in params.items()}


class _Base:
    """What every twin shares: its self-description, state dicts, no fused SGD."""

    hyper_bounds: ClassVar[tuple[tuple[str, float], ...]] = (("lr", math.inf),)
    state_names: ClassVar[tuple[str, ...]] = ()
    counts_steps = False
    variants: ClassVar[tuple[str, ...]] = ()
    __repr__ = optimizer_repr

    def fused_lr(self):
        """None: the oracle always runs its own numpy update."""
        return None

    def update(self, params, grads):
        """Update each array of ``params`` in place from ``grads`` (same keys and shapes);
        an entry that is a number is rebound to its updated value (a numpy scalar), as
        the book's ``params[key] -= ...`` rebinds it."""
        work = _as_arrays(params)
        self._step(work, grads)
        for key, val in work.items():
            if val is not params[key]:
                params[key] = val[()]

    def state_dict(self):
        """As ``fastmlp.optimizers.Optimizer.state_dict``."""
        return _optim_state.state_dict(self)

    def load_state_dict(self, d):
        """As ``fastmlp.optimizers.Optimizer.load_state_dict``."""
        _optim_state.load_state_dict(self, d)


class SGD(_Base):
    """Stochastic gradient descent: ``param -= lr * grad``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate, finite and > 0.
    """

    def __init__(self, lr=0.01):
        self.lr = check_positive_float(lr, "lr")

    def _step(self, params, grads):
        """One step on ``params``, a dict of arrays (updated in place)."""
        for key in params.keys():
            params[key] -= self.lr * grads[key]


class Momentum(_Base):
    """Momentum SGD: ``v = momentum * v - lr * grad; param += v``.

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float, default 0.9
    """

    hyper_bounds = (("lr", math.inf), ("momentum", math.inf))
    state_names = ("v",)

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = check_positive_float(lr, "lr")
        self.momentum = check_positive_float(momentum, "momentum", allow_zero=True)
        self.v = None

    def _step(self, params, grads):
        """One step on ``params``, a dict of arrays (updated in place)."""
        if self.v is None:
            self.v = _zeros_like_params(params)
        for key in params.keys():
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class Nesterov(_Base):
    """Nesterov's accelerated gradient.

    ``variant='book'`` (the book's form, arXiv:1212.0901, as its repository corrected it on
    2021-01-18): ``param += momentum**2 * v - (1 + momentum) * lr * grad`` with the
    previous velocity, then ``v = momentum * v - lr * grad``. (The first printing updated
    ``v`` first: from w = 1, grad = w, lr = 0.1, momentum = 0.9 one step gave 0.729; the
    corrected rule gives 0.81.)
    ``variant='sklearn'`` (scikit-learn's ``_SGDOptimizer(nesterov=True)``, Bengio et
    al.'s form): ``v = momentum * v - lr * grad``, then ``param += momentum * v - lr * grad``.

    Parameters
    ----------
    lr : float, default 0.01
    momentum : float, default 0.9
    variant : {'book', 'sklearn'}, default 'book'
    """

    hyper_bounds = (("lr", math.inf), ("momentum", math.inf))
    state_names = ("v",)
    variants = ("book", "sklearn")

    def __init__(self, lr=0.01, momentum=0.9, *, variant="book"):
        self.lr = check_positive_float(lr, "lr")
        self.momentum = check_positive_float(momentum, "momentum", allow_zero=True)
        self.variant = _optim_state.check_variant(self, variant)
        self.v = None

    def _step(self, params, grads):
        """One step on ``params``, a dict of arrays (updated in place)."""
        sklearn = _optim_state.check_variant(self, self.variant) == "sklearn"
        if self.v is None:
            self.v = _zeros_like_params(params)
        for key in params.keys():
            if sklearn:
                self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
                params[key] += self.momentum * self.v[key] - self.lr * grads[key]
                continue
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]


class AdaGrad(_Base):
    """AdaGrad: ``h += grad**2; param -= lr * grad / (sqrt(h) + 1e-7)``.

    Parameters
    ----------
    lr : float, default 0.01
    """

    state_names = ("h",)

    def __init__(self, lr=0.01):
        self.lr = check_positive_float(lr, "lr")
        self.h = None

    def _step(self, params, grads):
        """One step on ``params``, a dict of arrays (updated in place)."""
        if self.h is None:
            self.h = _zeros_like_params(params)
        for key in params.keys():
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + EPS)


class RMSprop(_Base):
    """RMSprop: ``h = decay * h + (1 - decay) * grad**2; param -= lr * grad / (sqrt(h) + 1e-7)``.

    Parameters
    ----------
    lr : float, default 0.01
    decay_rate : float, default 0.99
        In ``[0, 1)``.
    """

    hyper_bounds = (("lr", math.inf), ("decay_rate", 1.0))
    state_names = ("h",)

    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr = check_positive_float(lr, "lr")
        self.decay_rate = check_positive_float(decay_rate, "decay_rate", allow_zero=True)
        if self.decay_rate >= 1:
            raise ValueError(f"decay_rate must be < 1, got {decay_rate}")
        self.h = None

    def _step(self, params, grads):
        """One step on ``params``, a dict of arrays (updated in place)."""
        if self.h is None:
            self.h = _zeros_like_params(params)
        for key in params.keys():
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + EPS)


class Adam(_Base):
    """Adam in the book's form (arXiv:1412.6980v8).

    With ``iter`` counting updates from 1::

        lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter)
        m += (1 - beta1) * (grad - m)
        v += (1 - beta2) * (grad**2 - v)
        param -= lr_t * m / (sqrt(v) + eps)

    Parameters
    ----------
    lr : float, default 0.001
    beta1 : float, default 0.9
        In ``[0, 1)``.
    beta2 : float, default 0.999
        In ``[0, 1)``.
    eps : float, default 1e-7
        The book's 1e-7; scikit-learn's MLP uses 1e-8 (its ``epsilon``).
    """

    hyper_bounds = (("lr", math.inf), ("beta1", 1.0), ("beta2", 1.0), ("eps", math.inf))
    state_names = ("m", "v")
    counts_steps = True

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, *, eps=EPS):
        self.lr = check_positive_float(lr, "lr")
        self.beta1 = check_positive_float(beta1, "beta1", allow_zero=True)
        self.beta2 = check_positive_float(beta2, "beta2", allow_zero=True)
        for name, beta in (("beta1", self.beta1), ("beta2", self.beta2)):
            if beta >= 1:
                raise ValueError(f"{name} must be < 1, got {beta}")
        self.eps = check_positive_float(eps, "eps")
        self.iter = 0
        self.m = None
        self.v = None

    def _step(self, params, grads):
        """One step on ``params``, a dict of arrays (updated in place)."""
        if self.m is None:
            self.m = _zeros_like_params(params)
            self.v = _zeros_like_params(params)
        self.iter += 1
        # A Python float (the book's np.sqrt gives np.float64, which would
        # promote a float32 update to float64).
        lr_t = self.lr * math.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for key in params.keys():
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + self.eps)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam}


def get_optimizer(name, **params):
    """An optimizer by its (case-insensitive) name, as the book's Trainer names them."""
    return lookup(OPTIMIZERS, name, "optimizer")(**params)
