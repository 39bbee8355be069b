"""The book's optimizers (``common/optimizer.py``) with compiled in-place updates.

``update(params, grads)`` changes every array of ``params`` in place, one
pass per parameter with no temporaries, following the book's formulas
operation by operation (same trajectories to rounding). State (velocities,
moment estimates) is created lazily, keyed like ``params``. Everything is
checked before the first array changes.
"""
import numpy as np

from . import _backend
from ._validation import as_float, check_positive_float, lookup

EPS = 1e-7  # the book's constant in AdaGrad, RMSprop and Adam
_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Optimizer:
    """Shared checks and the update loop; subclasses name their compiled ``rule``."""

    rule = None

    #: names of the per-parameter state arrays this rule keeps (e.g. ``("v",)``)
    state_names = ()

    def __init__(self, lr):
        self.lr = check_positive_float(lr, "lr")
        for name in self.state_names:
            setattr(self, name, None)

    def _check(self, params, grads):
        if not hasattr(params, "keys") or not hasattr(grads, "keys"):
            raise TypeError("params and grads must be dicts of arrays")
        checked = {}
        dtype = None
        for key, param in params.items():
            if not isinstance(param, np.ndarray) or param.dtype not in _NATIVE_FLOATS:
                raise TypeError(f"params[{key!r}] must be a float32 or float64 numpy array "
                                f"in native byte order")
            if dtype is not None and param.dtype != dtype:
                raise TypeError(f"params[{key!r}] is {param.dtype} but other parameters are "
                                f"{dtype}: one optimizer updates parameters of one dtype")
            dtype = param.dtype
            if not param.flags.writeable:
                raise ValueError(f"params[{key!r}] is read-only; update() changes it in place")
            if key not in grads:
                raise ValueError(f"grads has no entry for parameter {key!r}")
            grad = grads[key]
            if not (type(grad) is np.ndarray and grad.dtype is dtype):   # the usual case is cheap
                grad = as_float(grad, f"grads[{key!r}]", dtype=dtype)
            if grad.shape != param.shape:
                raise ValueError(f"grads[{key!r}] has shape {grad.shape}, "
                                 f"params[{key!r}] has {param.shape}")
            checked[key] = grad
        for name in self.state_names:
            state = getattr(self, name)
            if state is not None and (state.keys() != params.keys() or any(
                    state[k].shape != params[k].shape or state[k].dtype != params[k].dtype
                    for k in params)):
                raise ValueError(f"params changed since the first update (state {name!r} "
                                 f"no longer matches); use a new optimizer")
        return checked

    def update(self, params, grads):
        """Update every array in ``params`` in place from ``grads`` (same keys and shapes)."""
        ready = None
        if type(params) is dict and type(grads) is dict:   # the usual case, checked in C
            ready = _backend.optimizer_gather(params, grads,
                                              [getattr(self, name) for name in self.state_names])
        if ready is not None:
            ps, gs, state1, state2, largest = ready
            _backend.optimizer_update(self.rule, ps, gs, state1, state2, largest=largest,
                                      **self._hyper())
            return
        grads = self._check(params, grads)
        if not params:
            return
        for name in self.state_names:
            if getattr(self, name) is None:
                setattr(self, name, {k: np.zeros_like(p, order="C") for k, p in params.items()})
        keys = list(params)
        # Parameters that are not C-contiguous are updated through a contiguous copy.
        work = [p if p.flags.c_contiguous else np.ascontiguousarray(p) for p in params.values()]
        states = [[getattr(self, name)[k] for k in keys] for name in self.state_names]
        _backend.optimizer_update(self.rule, work, [grads[k] for k in keys],
                                  *(states + [None, None])[:2], **self._hyper())
        for key, w in zip(keys, work):
            if w is not params[key]:
                params[key][...] = w

    def _hyper(self):
        """Keyword arguments of the compiled rule: lr and this rule's constants."""
        return {"lr": self.lr}


class SGD(Optimizer):
    """param -= lr * grad."""
    rule = _backend.OPTIMIZER_RULES["sgd"]

    def __init__(self, lr=0.01):
        super().__init__(lr)


class Momentum(Optimizer):
    """v = momentum * v - lr * grad; param += v."""
    rule = _backend.OPTIMIZER_RULES["momentum"]
    state_names = ("v",)

    def __init__(self, lr=0.01, momentum=0.9):
        super().__init__(lr)
        self.momentum = check_positive_float(momentum, "momentum", allow_zero=True)

    def _hyper(self):
        return {"lr": self.lr, "momentum": self.momentum}


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the book's form."""
    rule = _backend.OPTIMIZER_RULES["nesterov"]


class AdaGrad(Optimizer):
    """h += grad^2; param -= lr * grad / (sqrt(h) + 1e-7)."""
    rule = _backend.OPTIMIZER_RULES["adagrad"]
    state_names = ("h",)

    def __init__(self, lr=0.01):
        super().__init__(lr)

    def _hyper(self):
        return {"lr": self.lr, "eps": EPS}


class RMSprop(Optimizer):
    """h = decay * h + (1 - decay) * grad^2; param -= lr * grad / (sqrt(h) + 1e-7)."""
    rule = _backend.OPTIMIZER_RULES["rmsprop"]
    state_names = ("h",)

    def __init__(self, lr=0.01, decay_rate=0.99):
        super().__init__(lr)
        self.decay_rate = check_positive_float(decay_rate, "decay_rate", allow_zero=True)
        if self.decay_rate >= 1:
            raise ValueError(f"decay_rate must be < 1, got {decay_rate}")

    def _hyper(self):
        return {"lr": self.lr, "decay_rate": self.decay_rate, "eps": EPS}


class Adam(Optimizer):
    """Adam in the book's form, with the bias correction folded into the step size."""
    rule = _backend.OPTIMIZER_RULES["adam"]
    state_names = ("m", "v")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__(lr)
        self.beta1 = check_positive_float(beta1, "beta1", allow_zero=True)
        self.beta2 = check_positive_float(beta2, "beta2", allow_zero=True)
        for name, beta in (("beta1", self.beta1), ("beta2", self.beta2)):
            if beta >= 1:
                raise ValueError(f"{name} must be < 1, got {beta}")
        self.iter = 0

    def _hyper(self):
        self.iter += 1   # called once per update, after every check has passed
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        return {"lr": lr_t, "beta1": self.beta1, "beta2": self.beta2, "eps": EPS}


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam}


def get_optimizer(name, **params):
    """An optimizer by its (case-insensitive) name, as the Trainer and CLI name them."""
    return lookup(OPTIMIZERS, name, "optimizer")(**params)


__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "get_optimizer"]
