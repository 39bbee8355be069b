"""Argument checks with named errors, raised before any state changes.

Every public entry point (layers, networks, optimizers, trainer, estimators)
validates here first; the compiled kernels then run without bounds checks.
numpy-only, so both the compiled path and the reference can use it.
"""
import math
import numbers
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype: Any, name: str = "dtype") -> type[np.floating[Any]]:
    """Return ``dtype`` as np.float32 or np.float64, else raise ValueError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {dt}")
    return dt.type


def result_dtype(arr):
    """The float dtype a computation on ``arr`` runs in: float32 (either byte order) stays,
    all else float64."""
    return np.float32 if (arr.dtype.kind == "f" and arr.dtype.itemsize == 4) else np.float64


def pair_dtype(x, y):
    """float32 when both operands are float32, float64 otherwise."""
    return np.float32 if result_dtype(x) == result_dtype(y) == np.float32 else np.float64


def as_array(x: object, name: str) -> np.ndarray:
    """``x`` as an ndarray of a real numeric dtype (no copy if already one).

    Accepts anything ``np.asarray`` takes: ndarrays, Python scalars, nested
    lists, a pandas DataFrame or Series, ...; rejects strings, ragged lists
    and complex, object, string and other non-numeric data with an error
    naming ``name``.
    """
    if isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}")
    else:
        try:
            arr = np.asarray(x)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        source = "" if arr is x else f" (from {type(x).__name__})"
        raise TypeError(f"{name} must have a real numeric dtype, got {arr.dtype}{source}")
    return arr


def as_float(x: object, name: str, dtype=None, ndim=None, min_ndim=None, finite=False) -> np.ndarray:
    """``x`` as a float array of ``dtype`` (default: float32 stays, else float64).

    Checks ``ndim`` (exact) or ``min_ndim``, non-emptiness and optionally
    finiteness; the caller's array is never modified (a copy is made only
    when the dtype or byte order must change).
    """
    arr = as_array(x, name)
    if ndim is not None and arr.ndim != ndim:
        hint = f"; pass {name}[None] for a single sample" if (ndim == 2 and arr.ndim == 1) else ""
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}{hint}")
    if min_ndim is not None and arr.ndim < min_ndim:
        hint = f"; pass {name}[None] for a single sample" if (min_ndim == 2 and arr.ndim == 1) else ""
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {arr.shape}{hint}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    target = np.dtype(dtype) if dtype is not None else np.dtype(result_dtype(arr))
    if arr.dtype != target:  # also normalises big-endian to native
        arr = arr.astype(target)
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def check_x(x, dtype=None, name="x", finite=False):
    """A batch of samples: 2-D ``(N, features)``, non-empty, float."""
    return as_float(x, name, dtype=dtype, ndim=2, finite=finite)


def check_targets(t, n_samples, n_classes, dtype, name="t", copy=True):
    """Class targets for ``n_samples`` rows: integer labels ``(N,)`` or one-hot ``(N, C)``.

    Returns ``(labels, onehot)``: exactly one is not None. Labels come back as
    intp in ``[0, n_classes)``, a copy unless ``copy=False`` (then the caller
    must not keep them: compiled code indexes with them unchecked); one-hot
    rows as a float array of ``dtype``.
    """
    arr = as_array(t, name)
    if arr.ndim == 1:
        if arr.shape[0] != n_samples:
            raise ValueError(f"{name} has {arr.shape[0]} labels but x has {n_samples} rows")
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or np.any(arr != np.round(arr)):
                raise ValueError(f"{name} labels must be whole numbers")
        elif arr.dtype.kind == "b":
            raise TypeError(f"{name} labels must be integers, got bool")
        if n_samples and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(
                f"{name} labels must lie in [0, {n_classes}), got range "
                f"[{arr.min()}, {arr.max()}]")
        return arr.astype(np.intp, copy=copy), None
    if arr.ndim == 2:
        if arr.shape[0] != n_samples:
            raise ValueError(f"{name} has {arr.shape[0]} rows but x has {n_samples} rows")
        if arr.shape[1] != n_classes:
            raise ValueError(
                f"{name} one-hot rows must have width {n_classes}, got {arr.shape[1]}")
        onehot = arr.astype(dtype, copy=False)
        if not np.isfinite(onehot).all():
            raise ValueError(f"{name} contains NaN or infinity")
        return None, onehot
    raise ValueError(f"{name} must be labels (N,) or one-hot (N, C), got shape {arr.shape}")


def check_target_range(t: np.ndarray, loss: str | None, name: str = "t") -> np.ndarray:
    """Raise ValueError unless the float targets ``t`` suit ``loss``: in [0, 1] for
    'logistic' (sigmoid + binary cross-entropy), >= 0 for 'poisson' (exp + Poisson
    deviance); any value for the others."""
    if loss == "logistic" and ((t < 0) | (t > 1)).any():
        raise ValueError(f"{name} must lie in [0, 1] for the logistic output, got range "
                         f"[{t.min()}, {t.max()}]")
    if loss == "poisson" and (t < 0).any():
        raise ValueError(f"{name} must be >= 0 for the Poisson output (a count or rate), "
                         f"got minimum {t.min()}")
    return t


def check_same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")


def check_called(value, layer, method="forward"):
    """Raise RuntimeError when backward is called before forward."""
    if value is None:
        raise RuntimeError(f"{layer}.backward called before {layer}.{method}")


def lookup(table, key, name):
    """``table[key.lower()]``, or a ValueError naming ``name`` and the choices."""
    try:
        return table[str(key).lower()]
    except KeyError:
        raise ValueError(f"{name} must be one of {sorted(table)} (case-insensitive), "
                         f"got {key!r}") from None


def check_positive_int(value, name, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive_float(value, name, allow_zero=False):
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``), else an error naming it."""
    if type(value) is float and (0.0 < value < math.inf or (allow_zero and value == 0.0)):
        return value   # the common case, checked per training step: no conversion
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value
