"""The optimizers (the book's six, ``Adam(eps=)``, scikit-learn's Nesterov) and the
learning-rate schedules: the one home of the optimizer concept.

``update(params, grads)`` changes every array of ``params`` in place, one
pass per parameter with no temporaries, following the book's formulas
operation by operation (same trajectories to rounding). An entry that is a
number (a Python int or float, a numpy scalar: ch06's ``params['x'] = -7.0``)
is rebound to the updated value, a numpy scalar, as the book's
``params[key] -= ...`` rebinds it; numbers are computed in the dtype of the
arrays beside them (without arrays: float32 if a numpy float32 scalar comes
first, else float64), and their state entries are 0-d arrays. State (velocities,
moment estimates) is created lazily, keyed like ``params``. Everything is
checked before the first array changes.

An update is all or nothing, also under Ctrl-C: the usual case (dicts of
C-contiguous arrays) is one compiled call over every parameter, and Adam's
step counter is stored right before that call with nothing between them at
which Python could run a signal handler (it runs them only on function entry,
after calls and at backward jumps). The other cases (parameters that are not
C-contiguous, other mappings) defer SIGINT while they copy the results back
(see ``fastmlp._sigint``).

``state_dict()`` / ``load_state_dict()`` export and restore an optimizer
(hyper-parameters, step count, state arrays) for persistence. The schedules
(``ConstantLR``, ``InverseScalingLR``, ``AdaptiveLR``, ``EpochDecayLR``) set an
optimizer's ``lr`` between epochs; the training loop calls them.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, MutableMapping
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from . import _backend, _optim_state, threads
from ._describe import optimizer_repr
from ._params import Params
from ._sigint import deferred_sigint
from ._validation import as_float, check_positive_float, lookup

EPS = 1e-7  # the book's constant in AdaGrad and RMSprop, and Adam's default eps
_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_PLAIN_DICTS = (dict, Params)   # a network's params: a dict that also updates its layers
_RULES = _backend.OPTIMIZER_RULES


class Optimizer:
    """Shared checks and the update loop; subclasses name their compiled ``rule``."""

    rule: ClassVar[Any] = None

    #: whether the rule keeps a step counter ``iter`` (Adam's bias correction)
    counts_steps = False
    iter: int   # the step counter, set by the rules that count steps (Adam)

    #: names of the per-parameter state arrays this rule keeps (e.g. ``("v",)``)
    state_names: ClassVar[tuple[str, ...]] = ()

    #: the constructor's hyper-parameters, public attributes checked again at each update:
    #: (name, exclusive upper bound); each a finite real >= 0 (lr and eps > 0)
    hyper_bounds: ClassVar[tuple[tuple[str, float], ...]] = (("lr", math.inf),)

    #: the allowed values of a ``variant`` attribute (Nesterov), else ()
    variants: ClassVar[tuple[str, ...]] = ()

    __repr__ = optimizer_repr

    def __init__(self, lr: float) -> None:
        self.lr = check_positive_float(lr, "lr")
        for name in self.state_names:
            setattr(self, name, None)

    def _check_hyper(self):
        """Check the hyper-parameters (public, replaceable attributes) as the constructor did,
        and Adam's step count; raise an error that names the attribute."""
        attributes = self.__dict__
        for name, upper in self.hyper_bounds:
            value = attributes.get(name)
            if type(value) is not float or not 0 <= value < upper or (
                    value == 0 and name in _optim_state.POSITIVE):
                _optim_state.check_hyper(name, value, upper)
        if self.counts_steps:
            step = attributes.get("iter")
            if type(step) is not int or not 0 <= step < 2**53:
                _optim_state.check_step(step)

    def _check(self, params, grads):
        """``(grads, values)``: every grad as an array of the parameters' dtype, and every
        parameter as an array (a number in ``params`` as a 0-d array of that dtype, see
        ``_optim_state.scalar_dtype``; it is rebound after the update)."""
        if not hasattr(params, "keys") or not hasattr(grads, "keys"):
            raise TypeError("params and grads must be dicts of arrays")
        checked, values = {}, {}
        dtype = None
        number_dtype = _optim_state.scalar_dtype(params) if params else None
        for key, param in params.items():
            if _optim_state.is_scalar(param):
                try:
                    param = np.array(param, dtype=number_dtype)   # rebound after the update
                except OverflowError:   # a Python int beyond the float range
                    raise ValueError(f"params[{key!r}] is too large for {number_dtype}") from None
            elif not isinstance(param, np.ndarray) or param.dtype not in _NATIVE_FLOATS:
                raise TypeError(f"params[{key!r}] must be a float32 or float64 numpy array "
                                f"in native byte order, or a real number")
            elif not param.flags.writeable:
                raise ValueError(f"params[{key!r}] is read-only; update() changes it in place")
            if dtype is not None and param.dtype != dtype:
                raise TypeError(f"params[{key!r}] is {param.dtype} but other parameters are "
                                f"{dtype}: one optimizer updates parameters of one dtype")
            dtype = param.dtype
            if key not in grads:
                raise ValueError(f"grads has no entry for parameter {key!r}")
            grad = grads[key]
            if not (type(grad) is np.ndarray and grad.dtype is dtype):   # the usual case is cheap
                grad = as_float(grad, f"grads[{key!r}]", dtype=dtype)
            if grad.shape != param.shape:
                raise ValueError(f"grads[{key!r}] has shape {grad.shape}, "
                                 f"params[{key!r}] has {param.shape}")
            checked[key], values[key] = grad, param
        for name in self.state_names:
            state = getattr(self, name)
            if state is not None and not (isinstance(state, dict) and all(
                    isinstance(s, np.ndarray) for s in state.values())):
                raise TypeError(f"optimizer state {name!r} must be None or a dict of arrays, "
                                f"got {type(state).__name__}")
            if state is not None and (state.keys() != values.keys() or any(
                    state[k].shape != values[k].shape or state[k].dtype != values[k].dtype
                    for k in values)):
                raise ValueError(f"params changed since the first update (state {name!r} "
                                 f"no longer matches); use a new optimizer")
        return checked, values

    def update(self, params: MutableMapping[str, Any], grads: Mapping[str, ArrayLike]) -> None:
        """Update every array in ``params`` in place from ``grads`` (same keys and shapes)."""
        self._check_hyper()
        ready = None
        if type(params) in _PLAIN_DICTS and type(grads) is dict:   # the usual case, in C
            ready = _backend.optimizer_gather(params, grads,
                                              [getattr(self, name) for name in self.state_names])
        if ready is not None:
            ps, gs, state1, state2, largest = ready
            rule, lr, momentum, decay_rate, beta1, beta2, eps = self._rule_args()
            n_threads, update = threads.kernel_threads(largest), _kernel_update
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
        grads, values = self._check(params, grads)
        if not params:
            return
        fresh = {name: {k: np.zeros_like(p, order="C") for k, p in values.items()}
                 for name in self.state_names if getattr(self, name) is None}
        states = {name: fresh[name] if name in fresh else getattr(self, name)
                  for name in self.state_names}
        keys = list(params)
        # The step is computed into contiguous copies of the parameters and the state, then
        # committed in one SIGINT-deferring block: all of it, or none of it.
        work = [np.array(p, order="C") for p in values.values()]
        work_states = [[states[name][k].copy() for k in keys] for name in self.state_names]
        rule, lr, momentum, decay_rate, beta1, beta2, eps = self._rule_args()
        state1, state2, *_ = [*work_states, None, None]
        _backend.optimizer_update(rule, work, [grads[k] for k in keys], state1, state2, lr=lr,
                                  momentum=momentum, decay_rate=decay_rate, beta1=beta1,
                                  beta2=beta2, eps=eps)
        with deferred_sigint() as critical, critical:
            for key, w in zip(keys, work):
                if values[key] is params[key]:
                    params[key][...] = w
                else:   # a number: rebind the entry, as the book's ``params[key] -= ...``
                    params[key] = w[()]
            for name, new in zip(self.state_names, work_states):
                for k, a in zip(keys, new):
                    np.copyto(states[name][k], a)
                setattr(self, name, states[name])
            if self.counts_steps:
                self.iter += 1

    def _rule_args(self):
        """``(rule, lr, momentum, decay_rate, beta1, beta2, eps)`` for the compiled rule's
        next step; pure (Adam's ``iter`` is advanced by ``update``, next to the kernel call)."""
        return self.rule, self.lr, 0.0, 0.0, 0.0, 0.0, 0.0

    def fused_lr(self) -> float | None:
        """The float lr when this update is exactly ``p -= lr * g`` (fastmlp's plain SGD with
        a finite lr > 0), so a network may fuse it into its backward pass; else None."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """``{"hyper": {name: float}, "state": {slot: {param: array}}}``, plus ``"iter"``
        (Adam) and ``"variant"`` (Nesterov): everything needed to resume. Arrays are copies;
        ``state`` is ``{}`` before the first update."""
        return _optim_state.state_dict(self)

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Take hyper-parameters, step count and state from ``d`` (as :meth:`state_dict`
        gives it); everything is checked before anything changes, arrays are copied."""
        _optim_state.load_state_dict(self, d)


class SGD(Optimizer):
    """param -= lr * grad."""
    rule = _RULES["sgd"]

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)

    def fused_lr(self) -> float | None:
        # only this exact class: a subclass may change what update() does
        lr = self.lr
        return lr if type(self) is SGD and type(lr) is float and 0 < lr < math.inf else None


class Momentum(Optimizer):
    """v = momentum * v - lr * grad; param += v."""
    rule = _RULES["momentum"]
    state_names = ("v",)
    hyper_bounds = (("lr", math.inf), ("momentum", math.inf))

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = check_positive_float(momentum, "momentum", allow_zero=True)

    def _rule_args(self):
        return self.rule, self.lr, self.momentum, 0.0, 0.0, 0.0, 0.0


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, one compiled pass per parameter.

    ``variant='book'`` (the book's ``common/optimizer.py`` as corrected on 2021-01-18,
    "Fix Nesterov update function"): p += m*m*v - (1+m)*lr*g with the velocity of the
    previous step, *then* v = m*v - lr*g. (The first printing updated v first and so
    stepped with the new velocity: from w = 1 on f = w**2/2 with lr = 0.1, m = 0.9 one
    step gives 0.81 now, 0.729 then.) fastmlp before issue 13 ran that old order.
    ``variant='sklearn'`` (scikit-learn's, Bengio et al.'s): v = m*v - lr*g;
    p += m*v - lr*g, what ``MLPClassifier(solver='sgd', nesterovs_momentum=True)``
    does. ``variant`` is a public attribute, checked at each update like lr.

    The state ``v`` means the same under both book orders (the velocity after the steps
    taken), so a saved ``v`` (format 1, written by the old order) loads unchanged and
    training continues with the corrected rule from that velocity.
    """
    variants = ("book", "sklearn")
    _VARIANT_RULES = {"book": _RULES["nesterov"], "sklearn": _RULES["nesterov_sklearn"]}

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, *, variant: str = "book") -> None:
        super().__init__(lr, momentum)
        self.variant = _optim_state.check_variant(self, variant)

    @property
    def rule(self):
        """The compiled rule of ``variant`` (checked: a bad value raises a ValueError)."""
        rule = self._VARIANT_RULES.get(self.__dict__.get("variant"))
        if rule is None:
            _optim_state.check_variant(self, self.__dict__.get("variant"))
        return rule


class AdaGrad(Optimizer):
    """h += grad^2; param -= lr * grad / (sqrt(h) + 1e-7)."""
    rule = _RULES["adagrad"]
    state_names = ("h",)

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__(lr)

    def _rule_args(self):
        return self.rule, self.lr, 0.0, 0.0, 0.0, 0.0, EPS


class RMSprop(Optimizer):
    """h = decay * h + (1 - decay) * grad^2; param -= lr * grad / (sqrt(h) + 1e-7)."""
    rule = _RULES["rmsprop"]
    state_names = ("h",)

    hyper_bounds = (("lr", math.inf), ("decay_rate", 1.0))

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99) -> None:
        super().__init__(lr)
        self.decay_rate = check_positive_float(decay_rate, "decay_rate", allow_zero=True)
        if self.decay_rate >= 1:
            raise ValueError(f"decay_rate must be < 1, got {decay_rate}")

    def _rule_args(self):
        return self.rule, self.lr, 0.0, self.decay_rate, 0.0, 0.0, EPS


class Adam(Optimizer):
    """Adam with the bias correction folded into the step size.

    lr_t = lr*sqrt(1-beta2^t)/(1-beta1^t); m += (1-beta1)(g-m); v += (1-beta2)(g^2-v);
    p -= lr_t*m/(sqrt(v)+eps). ``eps=1e-7`` is the book's; scikit-learn's MLP uses
    ``eps=1e-8`` (its ``epsilon``).
    """
    rule = _RULES["adam"]
    state_names = ("m", "v")
    counts_steps = True
    hyper_bounds = (("lr", math.inf), ("beta1", 1.0), ("beta2", 1.0), ("eps", math.inf))

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, *,
                 eps: float = EPS) -> None:
        super().__init__(lr)
        self.beta1 = check_positive_float(beta1, "beta1", allow_zero=True)
        self.beta2 = check_positive_float(beta2, "beta2", allow_zero=True)
        for name, beta in (("beta1", self.beta1), ("beta2", self.beta2)):
            if beta >= 1:
                raise ValueError(f"{name} must be < 1, got {beta}")
        self.eps = check_positive_float(eps, "eps")
        self.iter = 0

    def _rule_args(self):
        t = self.iter + 1   # the step about to be applied (``update`` counts it)
        lr_t = self.lr * math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        return self.rule, lr_t, 0.0, 0.0, self.beta1, self.beta2, self.eps


_kernel_update = _backend.optim.update   # the compiled rule itself (see Optimizer.update)

OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam}


def get_optimizer(name: str, **params: Any) -> Optimizer:
    """An optimizer by its (case-insensitive) name, as the Trainer and CLI name them."""
    return lookup(OPTIMIZERS, name, "optimizer")(**params)


# ----------------------------------------------------------------------------- schedules

class ConstantLR:
    """lr stays at the value a fit starts with (sklearn's learning_rate='constant', and
    its Adam whatever learning_rate says)."""

    def start_lr(self, lr0: float, samples_seen: int, incremental: bool) -> float | None:
        """The lr at the start of a fit call: ``lr0``."""
        return lr0

    def epoch_end(self, optimizer: Optimizer, samples_seen: int) -> None:
        """Nothing changes after an epoch."""

    def plateau(self, optimizer: Optimizer) -> bool:
        """No improvement for too long: stop (False)."""
        return False


class InverseScalingLR(ConstantLR):
    """sklearn's learning_rate='invscaling': lr = lr0 / (samples_seen + 1) ** power_t, set
    at the start of each fit call and after each epoch (``samples_seen``: the estimator's
    ``t_``)."""

    def __init__(self, lr0: float, power_t: float) -> None:
        self.lr0 = check_positive_float(lr0, "lr0")
        if isinstance(power_t, (bool, np.bool_)) or not isinstance(power_t, numbers.Real) \
                or not float(power_t) >= 0:   # +inf allowed, as the estimator allows it
            raise ValueError(f"power_t must be a real number >= 0, got {power_t!r:.60}")
        self.power_t: float = float(power_t)

    def start_lr(self, lr0: float, samples_seen: int, incremental: bool) -> float | None:
        """``lr0 / (samples_seen + 1) ** power_t`` (the given lr0: this fit's)."""
        return lr0 / (samples_seen + 1) ** self.power_t

    def epoch_end(self, optimizer: Optimizer, samples_seen: int) -> None:
        """Set ``optimizer.lr = lr0 / (samples_seen + 1) ** power_t``."""
        optimizer.lr = self.lr0 / (samples_seen + 1) ** self.power_t


class AdaptiveLR(ConstantLR):
    """sklearn's learning_rate='adaptive': on a plateau divide lr by ``divisor`` while it is
    above ``min_lr``, else stop. A fit restarts from lr0; ``partial_fit`` keeps the lr."""

    def __init__(self, divisor: float = 5.0, min_lr: float = 1e-6) -> None:
        self.divisor = check_positive_float(divisor, "divisor")
        self.min_lr = check_positive_float(min_lr, "min_lr", allow_zero=True)

    def start_lr(self, lr0: float, samples_seen: int, incremental: bool) -> float | None:
        """``lr0`` for a fit, None (keep the optimizer's current lr) for an incremental call."""
        return None if incremental else lr0

    def plateau(self, optimizer: Optimizer) -> bool:
        """If ``optimizer.lr > min_lr``: ``lr /= divisor`` and True (keep training); else False."""
        if optimizer.lr > self.min_lr:
            optimizer.lr /= self.divisor
            return True
        return False


class EpochDecayLR(ConstantLR):
    """The Trainer's ``lr_decay``: ``lr *= factor`` after every epoch, factor in (0, 1]."""

    def __init__(self, factor: float) -> None:
        self.factor = check_positive_float(factor, "factor")
        if self.factor > 1:
            raise ValueError(f"factor must be in (0, 1], got {factor}")

    def epoch_end(self, optimizer: Optimizer, samples_seen: int) -> None:
        """``optimizer.lr *= factor``."""
        optimizer.lr *= self.factor


# The schedules are public (fastmlp.optimizers.AdaptiveLR ...) but kept out of __all__, which
# names exactly what the numpy twin (fastmlp.reference.optimizers) also has.
__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "get_optimizer"]
