"""Hyper-parameter checks and state dicts shared by the compiled optimizers and their twins.

One helper so that ``fastmlp.optimizers`` and ``fastmlp.reference.optimizers``
check, export and import an optimizer the same way; numpy only (the reference
imports it and stays free of compiled code). An optimizer class describes
itself with four class attributes:

``hyper_bounds``  ((name, exclusive upper bound), ...): finite reals >= 0,
                  ``POSITIVE`` ones > 0;
``state_names``   the per-parameter state dicts (``("v",)``, ``("m", "v")``);
``counts_steps``  whether it keeps a step count ``iter`` (Adam);
``variants``      the allowed values of a ``variant`` attribute, or ().
"""
import numbers

import numpy as np

from ._validation import check_positive_float

#: hyper-parameters that must be > 0 (the others may be 0)
POSITIVE = ("lr", "eps")

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def is_scalar(value):
    """True for a parameter given as a number rather than an array: a Python int or float,
    or a numpy integer or floating scalar (not a bool, not an ndarray). The book's
    ``params[key] -= ...`` rebinds such an entry; the optimizers do the same."""
    return (isinstance(value, (numbers.Real, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_, np.ndarray)))


def scalar_dtype(params):
    """The dtype the numbers (:func:`is_scalar`) in ``params`` are computed in: that of its
    first float32/float64 array; without one, that of its first numpy float32/float64
    scalar; else float64. So numbers beside arrays take the arrays' dtype (an optimizer
    updates one dtype), as numpy's arithmetic treats Python numbers (NEP 50)."""
    for kinds in (np.ndarray, (np.float32, np.float64)):
        for value in params.values():
            if isinstance(value, kinds) and value.dtype in _FLOATS:
                return value.dtype
    return np.dtype(np.float64)


def check_hyper(name, value, upper):
    """``value`` as a float checked like the constructors do: finite, >= 0 (> 0 for
    ``POSITIVE`` names) and < ``upper``; the error names ``name``."""
    value = check_positive_float(value, name, allow_zero=name not in POSITIVE)
    if value >= upper:
        raise ValueError(f"{name} must be < {upper}, got {value}")
    return value


def check_step(step):
    """Adam's step count: an integer (not bool) in [0, 2**53), returned as an int."""
    if type(step) is not int and not (isinstance(step, numbers.Integral)
                                       and not isinstance(step, (bool, np.bool_))):
        raise TypeError(f"iter must be an integer step count, got {type(step).__name__}")
    if not 0 <= step < 2**53:
        raise ValueError(f"iter must lie in [0, 2**53), got {step}")
    return int(step)


def state_dict(opt):
    """``{"hyper": {name: float}, "state": {slot: {param: array copy}}}`` plus ``"iter"``
    (step count) and ``"variant"`` where the class has them. ``state`` is ``{}`` before
    the first update. The arrays are copies: later updates do not change the dict."""
    hyper = {name: check_hyper(name, getattr(opt, name, None), upper)
             for name, upper in opt.hyper_bounds}
    slots = {name: getattr(opt, name, None) for name in opt.state_names}
    if all(s is None for s in slots.values()):
        state = {}
    else:
        if not all(isinstance(s, dict) for s in slots.values()):
            raise TypeError(f"optimizer state {list(slots)} must be all None or all dicts")
        state = {name: {k: np.array(a, copy=True) for k, a in s.items()}
                 for name, s in slots.items()}
    d = {"hyper": hyper, "state": state}
    if opt.counts_steps:
        d["iter"] = check_step(getattr(opt, "iter", None))
    if opt.variants:
        d["variant"] = check_variant(opt, getattr(opt, "variant", None))
    return d


def load_state_dict(opt, d):
    """Set ``opt``'s hyper-parameters, step count, variant and state from ``d`` (as
    :func:`state_dict` makes it). Everything is checked before anything is assigned;
    the arrays are copied (C-contiguous, native byte order)."""
    if not isinstance(d, dict):
        raise TypeError(f"state dict must be a dict, got {type(d).__name__}")
    keys = {"hyper", "state"} | ({"iter"} if opt.counts_steps else set()) | \
        ({"variant"} if opt.variants else set())
    if set(d) != keys:
        raise ValueError(f"state dict of {type(opt).__name__} must have exactly the keys "
                         f"{sorted(keys)}, got {sorted(map(str, d))}")
    hyper = d["hyper"]
    names = [name for name, _ in opt.hyper_bounds]
    if not isinstance(hyper, dict) or set(hyper) != set(names):
        raise ValueError(f"state dict 'hyper' must have exactly {names}, got "
                         f"{sorted(map(str, hyper)) if isinstance(hyper, dict) else hyper!r:.80}")
    hyper = {name: check_hyper(name, hyper[name], upper) for name, upper in opt.hyper_bounds}
    step = check_step(d["iter"]) if opt.counts_steps else None
    variant = check_variant(opt, d["variant"]) if opt.variants else None
    state = _checked_state(opt, d["state"])
    for name, value in hyper.items():
        setattr(opt, name, value)
    if opt.counts_steps:
        opt.iter = step
    if opt.variants:
        opt.variant = variant
    for name in opt.state_names:
        setattr(opt, name, state.get(name))


def check_variant(opt, variant):
    """``variant`` if it is one of ``opt.variants``, else a ValueError naming it."""
    if not isinstance(variant, str) or variant not in opt.variants:
        raise ValueError(f"variant must be one of {list(opt.variants)}, got {variant!r:.60}")
    return variant


def _checked_state(opt, state):
    """Copies of ``state``'s arrays after checking: {} or every slot, one set of parameter
    names, float32/float64 arrays of one dtype, one shape per parameter."""
    if not isinstance(state, dict):
        raise TypeError(f"state dict 'state' must be a dict, got {type(state).__name__}")
    if not state:
        return {}
    if set(state) != set(opt.state_names):
        raise ValueError(f"state dict 'state' must hold all of {list(opt.state_names)} or "
                         f"nothing, got {sorted(map(str, state))}")
    first = None
    dtype = None
    copies = {}
    for name in opt.state_names:
        slot = state[name]
        if not isinstance(slot, dict) or not all(isinstance(a, np.ndarray) for a in slot.values()):
            raise TypeError(f"state {name!r} must be a dict of numpy arrays")
        if first is None:
            first = slot
        elif list(slot) != list(first):
            raise ValueError(f"state {name!r} is for parameters {list(slot)!r:.200}, another "
                             f"slot for {list(first)!r:.200}")
        for k, a in slot.items():
            native = a.dtype.newbyteorder("=")
            if native not in _FLOATS:
                raise TypeError(f"state {name!r}[{k!r}] must be float32 or float64, got {a.dtype}")
            if dtype is not None and native != dtype:
                raise TypeError(f"state {name!r}[{k!r}] is {native}, other state is {dtype}")
            dtype = native
            if a.shape != first[k].shape:
                raise ValueError(f"state {name!r}[{k!r}] has shape {a.shape}, another slot "
                                 f"{first[k].shape}")
        copies[name] = {k: np.array(a, dtype=dtype, order="C", copy=True)
                        for k, a in slot.items()}
    return copies
