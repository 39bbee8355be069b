"""Type aliases for the public signatures, written once (``numpy.typing`` underneath).

Inputs that accept anything ``np.asarray`` takes are ``numpy.typing.ArrayLike``;
these name what fastmlp returns or holds, and the ``seed`` convention of
:mod:`fastmlp._random`.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["EpochCallback", "FloatArray", "IntArray", "MatrixLike", "ParamDict", "PathLike", "Seed",
           "Split", "SupportsUpdate"]

FloatArray: TypeAlias = npt.NDArray[np.floating[Any]]
"""A float32 or float64 array (fastmlp computes in one of the two)."""

IntArray: TypeAlias = npt.NDArray[np.integer[Any]]
"""An integer array (class labels, indices)."""

ParamDict: TypeAlias = dict[str, FloatArray]
"""Parameters or gradients by name (``W1``, ``b1``, ...), as the book's ``params``."""

Split: TypeAlias = tuple[npt.NDArray[Any], npt.NDArray[Any]]
"""A data set's ``(x, t)``: samples (float32, or uint8 unnormalised) and labels or one-hot rows."""

Seed: TypeAlias = int | np.random.Generator | np.random.RandomState | None
"""None (numpy's global state), an int (its own stream), a Generator or a RandomState."""

MatrixLike: TypeAlias = Any
"""An estimator's X: array_like or a scipy.sparse matrix (scipy has no type information,
so this is not checked statically)."""

EpochCallback: TypeAlias = Callable[[Any, int, dict[str, float]], Any]
"""An estimator's ``callbacks`` entry: ``cb(estimator, epoch, logs)``; True stops training."""

PathLike: TypeAlias = str | os.PathLike[str]
"""A file name: a str or an ``os.PathLike`` (``pathlib.Path``)."""


class SupportsUpdate(Protocol):
    """An optimizer as the book's: anything with ``update(params, grads)``."""

    def update(self, params: dict[str, Any], grads: dict[str, Any]) -> None: ...
