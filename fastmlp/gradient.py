"""Numerical differentiation and the book's gradient check (numpy only).

``numerical_gradient`` is the central difference of "Deep Learning from
Scratch" (``common/gradient.py``) for an array of any shape;
``gradient_check`` compares a network's backprop gradient against it, as
the book's ``gradient_check.py`` does, and also reports a relative error.
"""
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastmlp._validation import check_positive_float

__all__ = ["numerical_gradient", "gradient_check", "GRADCHECK_BOUNDS", "bound_ratio"]

#: Per-element bounds of a gradient check, ``|a - n| <= atol + rtol * |n|`` with ``a`` the
#: backprop and ``n`` the numerical gradient (shared/TESTING.md), as ``(atol, rtol)``:
#: "float64", both in float64; "float32", both in float32 (a smoke test only: float32
#: central differences lose most digits); "float32 vs float64", float32 backprop against
#: the float64 central difference at the same weights (the meaningful float32 check), where
#: ``atol`` is relative to the parameter's largest ``|n|``.
GRADCHECK_BOUNDS = {"float64": (1e-8, 1e-5), "float32": (1e-3, 5e-2),
                    "float32 vs float64": (1e-5, 1e-3)}


def numerical_gradient(f: Callable[[np.ndarray], Any], x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central-difference gradient of a scalar function at ``x``.

    For every element ``x[i]``, evaluates ``f(x)`` with ``x[i]`` set to
    ``x[i] + h`` and to ``x[i] - h`` (``x`` is perturbed **in place**, which
    is how a network's loss sees its parameters change) and restores the
    original value bit for bit afterwards, even when ``f`` raises.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a real scalar. It is called with ``x`` itself.
    x : ndarray of float32 or float64, any shape, writeable
        The point; unchanged on return.
    h : float, default 1e-4
        Step. For float32 use a larger step (about 1e-2).

    Returns
    -------
    grad : ndarray, same shape and dtype as ``x``
        ``(f(x + h e_i) - f(x - h e_i)) / (x_i^+ - x_i^-)`` per element, where
        the denominator is the distance between the two perturbed values as
        actually stored (exactly ``2h`` up to the rounding of ``x``'s dtype).

    Raises
    ------
    TypeError
        If ``f`` is not callable or ``x`` is not a float32/float64 ndarray.
    ValueError
        If ``x`` is read-only or empty, ``h`` is not a positive finite number,
        or ``h`` is too small to change some ``x[i]``.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array (it is perturbed in place), got {type(x).__name__}")
    if x.dtype.kind != "f" or x.dtype.itemsize not in (4, 8):
        raise TypeError(f"x must have dtype float32 or float64, got {x.dtype}")
    if not x.flags.writeable:
        raise ValueError("x must be writeable: it is perturbed in place and restored")
    if x.size == 0:
        raise ValueError(f"x must not be empty, got shape {x.shape}")
    h = check_positive_float(h, "h")

    grad = np.zeros(x.shape, dtype=x.dtype.newbyteorder("="))
    for idx in np.ndindex(x.shape):
        original = x[idx]
        try:
            x[idx] = original + h
            x_plus = float(x[idx])
            f_plus = float(f(x))
            x[idx] = original - h
            x_minus = float(x[idx])
            f_minus = float(f(x))
        finally:
            x[idx] = original
        step = x_plus - x_minus
        if step == 0:
            raise ValueError(f"h={h} is too small to change x[{idx}] = {original} in {x.dtype}")
        grad[idx] = (f_plus - f_minus) / step
    return grad


def gradient_check(network: Any, x: np.ndarray, t: np.ndarray,
                   h: float | None = None) -> dict[str, dict[str, float]]:
    """Compare a network's backprop gradient with its numerical gradient.

    Parameters
    ----------
    network : object
        Has ``params`` (dict of arrays), ``gradient(x, t)`` and
        ``numerical_gradient(x, t)`` returning dicts with the same keys, as
        the book's ``TwoLayerNet`` and ``MultiLayerNet`` do.
    x : ndarray, shape (N, input_size)
    t : ndarray, shape (N,) or (N, output_size)
    h : float, optional
        Step passed on as ``network.numerical_gradient(x, t, h=h)``; by
        default the network's own default is used.

    Returns
    -------
    dict
        ``{name: {'mean_abs_diff': float, 'max_rel_error': float}}`` for every
        name in ``network.params``, where with ``a`` the backprop and ``n``
        the numerical gradient, ``mean_abs_diff = mean(|a - n|)`` (what the
        book prints) and ``max_rel_error = max(|a - n| / max(|a| + |n|, tiny))``.
    """
    if h is None:
        grad_numerical = network.numerical_gradient(x, t)
    else:
        grad_numerical = network.numerical_gradient(x, t, h=h)
    grad_backprop = network.gradient(x, t)

    tiny = np.finfo(np.float64).tiny
    report = {}
    for name in network.params:
        a = np.asarray(grad_backprop[name], dtype=np.float64)
        n = np.asarray(grad_numerical[name], dtype=np.float64)
        if a.shape != n.shape:
            raise ValueError(f"gradient['{name}'] has shape {a.shape} but numerical gradient has {n.shape}")
        diff = np.abs(a - n)
        rel = diff / np.maximum(np.abs(a) + np.abs(n), tiny)
        report[name] = {"mean_abs_diff": float(diff.mean()), "max_rel_error": float(rel.max())}
    return report


def bound_ratio(analytic: ArrayLike, numeric: ArrayLike, bound: str,
                where: ArrayLike | None = None) -> float:
    """The largest ``|a - n| / (atol + rtol * |n|)`` over the elements (those where ``where``
    is true, if given), for ``(atol, rtol) = GRADCHECK_BOUNDS[bound]``: at most 1 when every
    element is within the bound."""
    atol, rtol = GRADCHECK_BOUNDS[bound]
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"analytic has shape {a.shape} but numeric has {n.shape}")
    if bound == "float32 vs float64":
        atol = atol * float(np.abs(n).max(initial=0.0))
    allowed = np.maximum(atol + rtol * np.abs(n), np.finfo(np.float64).tiny)   # all-zero n
    ratio = np.abs(a - n) / allowed
    return float(np.max(ratio if where is None else ratio[where], initial=0.0))
