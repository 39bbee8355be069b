"""The book's optimizers (``common/optimizer.py``) with compiled in-place updates.

``update(params, grads)`` changes every array of ``params`` in place, one
pass per parameter with no temporaries, following the book's formulas
operation by operation (same trajectories to rounding). State (velocities,
moment estimates) is created lazily, keyed like ``params``. Everything is
checked before the first array changes.

An update is all or nothing, also under Ctrl-C: the usual case (dicts of
C-contiguous arrays) is one compiled call over every parameter, and Adam's
step counter is stored right before that call with nothing between them at
which Python could run a signal handler (it runs them only on function entry,
after calls and at backward jumps). The other cases (parameters that are not
C-contiguous, other mappings) defer SIGINT while they copy the results back
(see ``fastmlp._sigint``).
"""
import math
import numbers

import numpy as np

from . import _backend
from ._sigint import deferred_sigint
from ._networks import Params
from ._validation import as_float, check_positive_float, lookup

EPS = 1e-7  # the book's constant in AdaGrad, RMSprop and Adam
_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_PLAIN_DICTS = (dict, Params)   # a network's params: a dict that also updates its layers


class Optimizer:
    """Shared checks and the update loop; subclasses name their compiled ``rule``."""

    rule = None

    #: whether the rule keeps a step counter ``iter`` (Adam's bias correction)
    counts_steps = False

    #: names of the per-parameter state arrays this rule keeps (e.g. ``("v",)``)
    state_names = ()

    #: the constructor's hyper-parameters, public attributes checked again at each update:
    #: (name, exclusive upper bound); each a finite real >= 0 (lr > 0)
    hyper_bounds = (("lr", math.inf),)

    def __init__(self, lr):
        self.lr = check_positive_float(lr, "lr")
        for name in self.state_names:
            setattr(self, name, None)

    def _check_hyper(self):
        """Check the hyper-parameters (public, replaceable attributes) as the constructor did,
        and Adam's step count; raise an error that names the attribute."""
        attributes = self.__dict__
        for name, upper in self.hyper_bounds:
            value = attributes.get(name)
            if type(value) is not float or not 0 <= value < upper or (value == 0 and name == "lr"):
                value = check_positive_float(value, name, allow_zero=name != "lr")
                if value >= upper:
                    raise ValueError(f"{name} must be < {upper}, got {value}")
        if self.counts_steps:
            step = attributes.get("iter")
            if type(step) is not int and not (isinstance(step, numbers.Integral)
                                               and not isinstance(step, (bool, np.bool_))):
                raise TypeError(f"iter must be an integer step count, got {type(step).__name__}")
            if not 0 <= step < 2**53:
                raise ValueError(f"iter must lie in [0, 2**53), got {step}")

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
            if state is not None and not (isinstance(state, dict) and all(
                    isinstance(s, np.ndarray) for s in state.values())):
                raise TypeError(f"optimizer state {name!r} must be None or a dict of arrays, "
                                f"got {type(state).__name__}")
            if state is not None and (state.keys() != params.keys() or any(
                    state[k].shape != params[k].shape or state[k].dtype != params[k].dtype
                    for k in params)):
                raise ValueError(f"params changed since the first update (state {name!r} "
                                 f"no longer matches); use a new optimizer")
        return checked

    def update(self, params, grads):
        """Update every array in ``params`` in place from ``grads`` (same keys and shapes)."""
        self._check_hyper()
        ready = None
        if type(params) in _PLAIN_DICTS and type(grads) is dict:   # the usual case, in C
            ready = _backend.optimizer_gather(params, grads,
                                              [getattr(self, name) for name in self.state_names])
        if ready is not None:
            ps, gs, state1, state2, largest = ready
            h = self._hyper()
            lr, momentum, decay_rate = h["lr"], h.get("momentum", 0.0), h.get("decay_rate", 0.0)
            beta1, beta2, eps = h.get("beta1", 0.0), h.get("beta2", 0.0), h.get("eps", 0.0)
            rule, n_threads, update = self.rule, _backend.kernel_threads(largest), _kernel_update
            if self.counts_steps:
                step = self.iter + 1
                # Atomic under Ctrl-C: a signal handler cannot run between this store and the
                # compiled call (keep them adjacent, with nothing between that calls Python).
                self.iter = step
                update(rule, ps, gs, state1, state2, lr, momentum, decay_rate, beta1, beta2,
                       eps, n_threads)
            else:
                update(rule, ps, gs, state1, state2, lr, momentum, decay_rate, beta1, beta2,
                       eps, n_threads)
            return
        grads = self._check(params, grads)
        if not params:
            return
        fresh = {name: {k: np.zeros_like(p, order="C") for k, p in params.items()}
                 for name in self.state_names if getattr(self, name) is None}
        states = {name: fresh[name] if name in fresh else getattr(self, name)
                  for name in self.state_names}
        keys = list(params)
        # The step is computed into contiguous copies of the parameters and the state, then
        # committed in one SIGINT-deferring block: all of it, or none of it.
        work = [np.array(p, order="C") for p in params.values()]
        work_states = [[states[name][k].copy() for k in keys] for name in self.state_names]
        hyper = self._hyper()
        _backend.optimizer_update(self.rule, work, [grads[k] for k in keys],
                                  *(work_states + [None, None])[:2], **hyper)
        with deferred_sigint() as critical, critical:
            for key, w in zip(keys, work):
                params[key][...] = w
            for name, new in zip(self.state_names, work_states):
                for k, a in zip(keys, new):
                    np.copyto(states[name][k], a)
                setattr(self, name, states[name])
            if self.counts_steps:
                self.iter += 1

    def _hyper(self):
        """Keyword arguments of the compiled rule for the next step: lr and this rule's
        constants. No side effects (Adam's ``iter`` moves with the update itself)."""
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
    hyper_bounds = (("lr", math.inf), ("momentum", math.inf))

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

    hyper_bounds = (("lr", math.inf), ("decay_rate", 1.0))

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
    counts_steps = True
    hyper_bounds = (("lr", math.inf), ("beta1", 1.0), ("beta2", 1.0))

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        super().__init__(lr)
        self.beta1 = check_positive_float(beta1, "beta1", allow_zero=True)
        self.beta2 = check_positive_float(beta2, "beta2", allow_zero=True)
        for name, beta in (("beta1", self.beta1), ("beta2", self.beta2)):
            if beta >= 1:
                raise ValueError(f"{name} must be < 1, got {beta}")
        self.iter = 0

    def _hyper(self):
        t = self.iter + 1   # the step about to be applied (``update`` counts it)
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        return {"lr": lr_t, "beta1": self.beta1, "beta2": self.beta2, "eps": EPS}


_kernel_update = _backend.optim.update   # the compiled rule itself (see Optimizer.update)

OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam}


def get_optimizer(name, **params):
    """An optimizer by its (case-insensitive) name, as the Trainer and CLI name them."""
    return lookup(OPTIMIZERS, name, "optimizer")(**params)


__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "get_optimizer"]
